"""Hardware-timed cooling: the spray unit armed before each pulse and started by the generator's pulse-end
line, by itself, at the plan's delay after the output went off, with the controller confirming it by
feedback inside the window exactly as a commanded spray.

The simulated devices' own record is the judge: every triggered spray's command time is the pulse's real
end (a cut pulse's cut) plus the delay, to the nanosecond in virtual time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plasmactl.faults import FaultScenario
from plasmactl.plan import Plan
from plasmactl.random_campaign import plan_named, rig_for, run_recorded
from plasmactl.rig import Rig
from plasmactl.session import SessionInputs

pytestmark = pytest.mark.hazard("H1")


def _plan(delay_ms: float = 0.0, **cooling: Any) -> Plan:
    base = plan_named("fast").model_dump(mode="json")
    base["cooling"] = {**base["cooling"], "delay_ms": delay_ms, **cooling}
    return Plan.model_validate(base)


def _run(plan: Plan, faults: list[dict[str, Any]] | None = None, rig: Rig | None = None) -> Any:
    scenario = FaultScenario.model_validate({"name": "t", "fault": faults or []})
    inputs = SessionInputs(plan=plan, plan_file=None, rig=rig or rig_for("trigger"), faults=scenario, seed=3)
    recorded = run_recorded(inputs)
    assert recorded.violations() == {}, recorded.violations()
    return recorded


@pytest.mark.parametrize("delay_ms", [0.0, 10.0])
def test_every_spray_starts_on_its_pulse_end_plus_the_delay(delay_ms: float) -> None:
    rec = _run(_plan(delay_ms))
    assert rec.events[-1]["outcome"] == "complete"
    pulses, sprays = rec.simulator["pulses"], rec.simulator["sprays"]
    assert len(pulses) == len(sprays) == rec.summary["pulses"] > 0
    for pulse, spray in zip(pulses, sprays, strict=True):
        assert spray["t_cmd"] == pytest.approx(pulse["t_off"] + delay_ms / 1000.0, abs=1e-9)
    commands = [e for e in rec.events if e["event"] == "spray_command"]
    assert commands and all(e["timed_by"] == "trigger_line" for e in commands)


def test_software_cooling_is_kept_for_a_rig_without_the_line() -> None:
    rec = _run(_plan(), rig=Rig())
    pulses, sprays = rec.simulator["pulses"], rec.simulator["sprays"]
    assert all(s["t_cmd"] >= p["t_off"] for p, s in zip(pulses, sprays, strict=True))  # commanded once seen over
    assert not [e for e in rec.events if "timed_by" in e]


def test_a_cut_pulse_triggers_its_spray_at_the_cut() -> None:
    """A stuck-on output cut by the controller: the line's edge is the cut, and the spray follows it."""
    rec = _run(_plan(), [{"device": "plasma", "kind": "stuck_on", "after_pulses": 2}])
    pulses, sprays = rec.simulator["pulses"], rec.simulator["sprays"]
    stuck = pulses[2]
    assert stuck["t_off"] - stuck["t_on"] < 0.150  # cut before the generator's own 150 ms limit
    triggered = [s for s in sprays if s["t_cmd"] == pytest.approx(stuck["t_off"], abs=1e-9)]
    assert len(triggered) == 1, (stuck, sprays)
    assert rec.events[-1]["outcome"] == "fault"


def test_no_pulse_goes_when_the_trigger_could_not_be_armed() -> None:
    """The spray unit silent before a pulse: the arm fails, so that pulse never fires."""
    rec = _run(_plan(), [{"device": "link", "kind": "timeout", "target": "spray", "after_pulses": 3}])
    assert rec.events[-1]["outcome"] == "fault"
    assert len(rec.simulator["pulses"]) == 3  # the fourth pulse's arm failed: it never went
    assert len(rec.simulator["sprays"]) == 3


def _wire_rig(trigger: str, map_version: int = 2) -> dict[str, Any]:
    def device(name: str, unit: int) -> dict[str, Any]:
        cfg = {"kind": "modbus-tcp", "unit_id": unit, "identity": {"map_version": map_version}}
        return cfg | ({"trigger_line": True} if name == trigger else {})

    return {
        "plasma": device("plasma", 1),
        "spray": device("spray", 2),
        "safety": device("safety", 1),
        "thermometer": {"kind": "serial", "port": "/dev/null"},
    }


def test_the_rig_file_names_a_misplaced_or_impossible_trigger_line() -> None:
    with pytest.raises(ValueError, match="trigger line is a spray unit setting"):
        Rig.model_validate(_wire_rig("plasma"))
    with pytest.raises(ValueError, match="needs a register map of version 2"):
        Rig.model_validate(_wire_rig("spray", map_version=1))
    assert Rig.model_validate(_wire_rig("spray")).trigger_line
    assert not Rig().trigger_line


async def test_the_served_units_time_the_spray_on_the_line_and_report_it_on_their_clocks() -> None:
    """Over Modbus TCP: the spray unit armed with a 2 ms delay opens by itself after the generator's pulse; the
    generator's LAST_END_US is the edge the spray unit saw (EDGE_US), its valve command 2 ms after it."""
    from plasmactl.clock import LoopClock
    from plasmactl.drivers.devices import ModbusPlasma, ModbusSpray
    from plasmactl.drivers.modbus import ModbusLink, TcpEndpoint
    from plasmactl.drivers.registers import PLASMA, SPRAY
    from plasmactl.rig import ModbusTcp
    from test_served_support import modbus_client, read, served

    async with served() as sim:
        assert sim.modbus_tcp is not None
        port = sim.modbus_tcp.port
        clock = LoopClock()
        link = ModbusLink(TcpEndpoint("127.0.0.1", port))

        def cfg(unit: int, **extra: Any) -> ModbusTcp:
            return ModbusTcp.model_validate({"kind": "modbus-tcp", "port": port, "unit_id": unit, **extra})

        plasma = ModbusPlasma(link, cfg(1), clock, token=77)
        spray = ModbusSpray(link, cfg(2, trigger_line=True), clock, token=77)
        try:
            await plasma.connect()
            await spray.connect()
            await plasma.configure(0.005, 5.0, 0.006)
            await spray.arm_trigger(0.1, 0.002)
            assert (await spray.status()).trigger_armed
            await plasma.arm()
            await plasma.fire()
            await asyncio.sleep(0.06)
            st = await spray.status()
            assert st.valve_open and not st.trigger_armed and st.spray_count == 1
            async with modbus_client(sim, "tcp") as c:
                assert await read(c, PLASMA, "END_COUNT") == 1
                end_us = await read(c, PLASMA, "LAST_END_US")
                assert await read(c, SPRAY, "EDGE_US") == end_us
                assert await read(c, SPRAY, "TRIGGERED_US") - end_us == 2000
                assert await read(c, SPRAY, "TRIGGER_COUNT") == 1
        finally:
            await spray.close()
            await plasma.close()
            await link.close()


def _spot_plan(interval_s: float) -> Plan:
    """Two pulses a spot ``interval_s`` apart, one spray after the second, a 100 ms window."""
    base = plan_named("fast").model_dump(mode="json")
    base["pulse"] = {**base["pulse"], "pulses_per_spot": 2, "interval_s": interval_s, "spot_interval_s": 0.6}
    base["cooling"] = {**base["cooling"], "when": "spot"}
    base["limits"] = {**base["limits"], "max_cooling_delay_ms": 100.0}
    return Plan.model_validate(base)


def test_a_spots_spray_is_timed_from_its_last_pulse_not_the_first() -> None:
    """The spray the line starts after a spot's second pulse was recorded as commanded at the first pulse's
    end (the window's start): the valve then looked 60 ms slower than it is, and the fire guard predicting the
    next spot's water refused its second pulse (cooling_window_unreachable) on a healthy rig."""
    rec = _run(_spot_plan(0.06))
    assert rec.events[-1]["outcome"] == "complete", [e for e in rec.events if e["event"] == "interlock_trip"]
    starts = [e for e in rec.events if e["event"] == "spray_start"]
    assert len(starts) == rec.summary["pulses"] // 2 and all(e["delay_ms"] < 100.0 for e in starts)


def test_a_spots_last_pulse_is_armed_in_the_gap_after_its_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arm write goes as soon as the spot's first pulse is seen over, before the second is due, and the
    tick does not arm again: on a shared bus it is not one more exchange between the spot's pulses."""
    from plasmactl.simulators.devices import SimSpray

    arms: list[float] = []
    arm = SimSpray.arm_trigger

    async def spy(self: SimSpray, duration_s: float, delay_s: float) -> None:
        arms.append(self.w.clock.now())
        await arm(self, duration_s, delay_s)

    monkeypatch.setattr(SimSpray, "arm_trigger", spy)
    interval = 0.05
    rec = _run(_spot_plan(interval))
    assert rec.events[-1]["outcome"] == "complete"
    firsts = [e for e in rec.events if e["event"] == "pulse_start" and e["pulse"] % 2 == 1]
    ends = {e["pulse"]: e["t"] for e in rec.events if e["event"] == "pulse_end"}
    assert len(arms) == len(firsts)  # one arm a spot
    for first, t_arm in zip(firsts, arms, strict=True):
        assert ends[first["pulse"]] - 1e-6 <= t_arm < first["t"] + interval  # after its first pulse, before the tick
