"""The controller against in-process devices: abort, reset of a latched fault, and bugs that must
still end in the safe state."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from audit import EXAMPLES, cooling_violations, first, names
from plasmactl import clock as clockmod
from plasmactl.controller.owner import Controller
from plasmactl.events import AuditLog, read_events
from plasmactl.faults import FaultScenario
from plasmactl.plan import Plan, load_plan
from plasmactl.ports import PlasmaStatus, SessionResult
from plasmactl.rig import PlasmaSim, Rig
from plasmactl.simulators.devices import SimPlasma
from plasmactl.simulators.inprocess import build_devices


def _plan(name: str = "short") -> Plan:
    return load_plan(str(EXAMPLES / "plans" / f"{name}.toml"))[0]


def _controller(out: Path, scenario: FaultScenario, plan: Plan) -> tuple[Controller, AuditLog]:
    clock = clockmod.LoopClock()
    log = AuditLog(out / "events.jsonl", clock)
    log.emit("session_start", limits=plan.limits.model_dump())
    rig = Rig()
    devices, _ = build_devices(rig, scenario, 0, clock)
    return Controller(plan, devices, rig, clock, log), log


def test_abort_mid_session_reaches_safe_state(tmp_path: Path) -> None:
    async def main() -> SessionResult:
        controller, log = _controller(tmp_path, FaultScenario(), _plan())
        asyncio.get_running_loop().call_later(2.003, controller.request_abort, "test abort")  # mid pulse 3
        result = await controller.run()
        log.close()
        return result

    result = clockmod.run(main(), virtual=True)
    assert result.outcome == "aborted"
    events = read_events(tmp_path / "events.jsonl")
    i = first(events, "abort")
    assert i is not None
    assert events[i + 1]["event"] == "plasma_off"
    assert "pulse_start" not in names(events[i:])
    assert cooling_violations(events) == []  # the pulse cut by the abort is still cooled
    assert [e for e in events if e["event"] == "state"][-1]["dest"] == "idle"


def test_reset_refused_while_cause_present_then_allowed(tmp_path: Path) -> None:
    scenario = FaultScenario.model_validate(
        {"fault": [{"device": "safety", "kind": "tip_lift", "at_s": 1.5, "duration_s": 2.0, "value": -1.0}]}
    )

    async def main() -> tuple[SessionResult, bool, bool, str]:
        controller, log = _controller(tmp_path, scenario, _plan())
        result = await controller.run()
        refused = await controller.reset()  # the tip sensor still implausible
        await controller.clock.sleep_until(4.0)
        allowed = await controller.reset()
        log.close()
        return result, refused, allowed, controller.state

    result, refused, allowed, state = clockmod.run(main(), virtual=True)
    assert result.outcome == "fault" and result.cause == "tip_implausible"  # a sensor fault latches
    assert refused is False
    assert allowed is True
    assert state == "idle"
    resets = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "reset"]
    assert resets[0]["ok"] is False and "tip_implausible" in resets[0]["blocked_by"]
    assert resets[1]["ok"] is True


class _BuggyPlasma(SimPlasma):
    """A generator model with a bug: its status raises something no one expects after a while."""

    async def status(self) -> PlasmaStatus:
        if self.count >= 3:
            raise ZeroDivisionError("simulated bug in a device model")
        return await super().status()


def test_unexpected_exception_drives_to_safe_state(tmp_path: Path) -> None:
    result, events = _run_with(tmp_path, _BuggyPlasma, FaultScenario())
    assert result.internal_error is True
    err = first(events, "controller_error")
    trip = first(events, "interlock_trip", rule="controller_error")
    assert err is not None and trip is not None
    assert "ZeroDivisionError" in events[err]["error"]
    assert events[trip + 1]["event"] == "plasma_off"
    assert "pulse_start" not in names(events[trip:])
    assert cooling_violations(events) == []


class _OnAfterDisarm(SimPlasma):
    """A generator whose status reports its output on from the moment it is disarmed (a welded relay, a
    status bit stuck): an acknowledged off/disarm alone must not count as the safe state."""

    disarmed = False

    async def disarm(self) -> None:
        await super().disarm()
        self.disarmed = True

    async def status(self) -> PlasmaStatus:
        st = await super().status()
        return dataclasses.replace(st, output_on=True) if self.disarmed else st


def _run_with(
    tmp_path: Path, plasma: type[SimPlasma], scenario: FaultScenario
) -> tuple[SessionResult, list[dict[str, Any]]]:
    """A session of the short plan with the generator model replaced by ``plasma``; it must end in a fault."""

    async def main() -> SessionResult:
        controller, log = _controller(tmp_path, scenario, _plan())
        assert isinstance(controller.d.plasma, SimPlasma)
        controller.d.plasma = plasma(controller.d.plasma.w, PlasmaSim())
        result = await controller.run()
        log.close()
        return result

    result = clockmod.run(main(), virtual=True)
    assert result.outcome == "fault", result
    return result, read_events(tmp_path / "events.jsonl")


def test_a_generator_reporting_output_on_after_the_plan_is_a_fault_not_complete(tmp_path: Path) -> None:
    """Before: the plan's final disarm was acknowledged and the session ended complete, exit 0."""
    _, events = _run_with(tmp_path, _OnAfterDisarm, FaultScenario())
    assert first(events, "interlock_trip", rule="unexpected_output") is not None
    assert first(events, "emission_unconfirmed") is not None


def test_a_trip_whose_generator_still_reports_output_on_records_emission_unconfirmed(tmp_path: Path) -> None:
    """Before: the trip's off and disarm were acknowledged and the safe state claimed without a read back."""
    scenario = FaultScenario.model_validate(
        {"fault": [{"device": "spray", "kind": "valve_stuck_closed", "after_pulses": 2}]}
    )
    _, events = _run_with(tmp_path, _OnAfterDisarm, scenario)
    trip = first(events, "interlock_trip", rule="cooling_not_confirmed")
    unconfirmed = first(events, "emission_unconfirmed")
    assert trip is not None and unconfirmed is not None and unconfirmed > trip
    assert "output on" in str(events[unconfirmed]["reason"])
