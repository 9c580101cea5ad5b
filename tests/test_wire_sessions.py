"""Whole sessions through the production drivers against the simulators served on real wires
(``serve-sim`` spawned by the run): Modbus TCP on loopback, Modbus RTU on a paced pty, the thermometer's
line protocol on a pty. The record must prove the same invariants as in-process, and every wire fault
must end in the safe state with a named rule. Real time: a few seconds per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audit import ACTIONS, EXAMPLES, cooling_violations, first, names, skin_violations
from plasmactl.budget import cooling_budget
from plasmactl.events import read_events
from plasmactl.faults import load_faults
from plasmactl.plan import load_plan
from plasmactl.rig import load_rig
from plasmactl.session import SessionInputs, run_blocking

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

# The safety inputs are wired to the generator (unit 1 on the served rigs): a fault on the generator's link
# silences them too, and the first rule to see it depends on where in the cycle it lands: the pulse watch's
# read (device_no_reply), the monitor's staleness bound on the E-stop inputs (safety_inputs_stale: the
# served TCP server answers a connection's requests in order, so one late reply makes the rest late), the
# next pulse's status checks (plasma_status_stale) or the watchdog
GENERATOR_SILENT = {"device_no_reply", "device_watchdog", "safety_inputs_stale", "plasma_status_stale"}
WIRE_FAULTS = {
    "link-timeout-plasma": GENERATOR_SILENT,
    "link-delay-plasma": GENERATOR_SILENT,
    "link-corrupt-plasma": GENERATOR_SILENT,
    "link-garbage-spray": {"device_no_reply", "device_watchdog", "cooling_not_confirmed"},
    "link-disconnect-thermometer": {"thermometer_stale", "device_watchdog"},
}


def _inputs(rig: str, faults: str | None = None) -> SessionInputs:
    plan, plan_file = load_plan(str(EXAMPLES / "plans" / "short.toml"))
    r, rig_file = load_rig(str(EXAMPLES / "rigs" / f"{rig}.toml"))
    if faults is None:
        return SessionInputs(plan=plan, plan_file=plan_file, rig=r, rig_file=rig_file)
    scenario, faults_file = load_faults(str(EXAMPLES / "faults" / f"{faults}.toml"))
    return SessionInputs(
        plan=plan, plan_file=plan_file, rig=r, rig_file=rig_file, faults=scenario, faults_file=faults_file
    )


def _run(inputs: SessionInputs, out: Path) -> list[dict[str, Any]]:
    run_blocking(inputs, out, realtime=not inputs.rig.virtual_time_ok, handle_sigint=False)
    return read_events(out / "events.jsonl")


HOST_SLACK_MS = 8.0  # a loaded shared host on the real clock (the runtime deadline is the guard, not this figure)


@pytest.mark.parametrize(
    ("rig", "plan"),
    [
        ("sim-tcp", "short"),  # serve-sim in another process, real time
        ("sim-rtu", "short"),
        ("sim-rtu-inprocess", "short"),  # served inside the run: real ptys, virtual time
        ("sim-tcp-inprocess", "periorbital"),
        ("sim-tcp-inprocess", "full-face"),  # 1517 pulses, 25 session minutes over real sockets
    ],
)
def test_example_plan_completes_over_the_wire(rig: str, plan: str, tmp_path: Path) -> None:
    inputs = _inputs(rig)
    p, plan_file = load_plan(str(EXAMPLES / "plans" / f"{plan}.toml"))
    inputs.plan, inputs.plan_file = p, plan_file
    events = _run(inputs, tmp_path)
    assert events[-1]["event"] == "session_end"
    assert events[-1]["outcome"] == "complete", events[-1]
    assert sum(e["event"] == "pulse_end" for e in events) == p.pulse_count
    assert cooling_violations(events) == []
    assert skin_violations(events) == []
    # what `plasmactl check` computes as this combination's worst case bounds every measured cooling delay; on
    # the real clock a shared CI host adds its own scheduling to each exchange (seen: 0.5-6 ms over the
    # budget's loopback figures at a load average of 4), which the budget does not model; in virtual time none
    worst = cooling_budget(p, inputs.rig).worst_water_ms
    slack = 0.0 if rig.endswith("inprocess") else HOST_SLACK_MS
    delays = [e["delay_ms"] for e in events if e["event"] == "spray_start"]
    assert len(delays) == p.pulse_count // (p.pulse.pulses_per_spot if p.cooling.when == "spot" else 1)
    assert max(delays) <= worst + slack, (max(delays), worst)
    served = next(e for e in events if e["event"] == "serve_sim")
    assert "serial" in served["report"]


@pytest.mark.parametrize(
    ("rig", "fault"),
    [*(("sim-tcp", f) for f in WIRE_FAULTS), ("sim-rtu", "link-corrupt-plasma"), ("sim-rtu", "safety-estop")],
)
@pytest.mark.hazard("H7")
def test_wire_fault_ends_in_safe_state(rig: str, fault: str, tmp_path: Path) -> None:
    events = _run(_inputs(rig, fault), tmp_path)
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] in ("fault", "estop"), end
    assert end["internal_error"] is False
    i = first(events, "interlock_trip")
    assert i is not None
    expected = WIRE_FAULTS.get(fault, {"estop"})
    assert events[i]["rule"] in expected, events[i]
    after = events[i + 1 :]
    assert "pulse_start" not in names(after)
    assert next(n for n in names(after) if n in ACTIONS) == "plasma_off"
    missed = {p for e in events if e["event"] == "cooling_missed" for p in e["pulses"]}
    problems = cooling_violations(events)
    if "thermometer" in fault or (fault == "safety-estop" and rig != "sim-rtu"):
        assert problems == []  # the generator and the spray unit still answer: every pulse is cooled
    else:
        # the generator and the spray unit share one link (a gateway, a bus): a link fault may take the spray
        # with it, and on the 115200-baud RTU bus the safe state's off and disarm (first in line) can take the
        # rest of the window from the spray's confirmation; every pulse not cooled must be on record as missed
        assert [m for m in problems if int(m.split()[1].rstrip(":")) not in missed] == []


@pytest.mark.hazard("H1")
def test_a_trip_disarms_after_the_spray_is_confirmed_not_before(tmp_path: Path) -> None:
    """On one slow bus the safe state's disarm must not stand between a pulse's spray and its confirmation:
    off first, then the spray's confirmation, then the disarm (before the spray runs out)."""
    events = _run(_inputs("sim-rtu-inprocess", "safety-estop"), tmp_path)
    i = first(events, "interlock_trip")
    assert i is not None and events[i]["rule"] == "estop"
    after = [
        e["event"] for e in events[i + 1 :] if e["event"] in ("plasma_off", "plasma_disarm", "spray_start", "spray_end")
    ]
    if "spray_start" in after:  # a spray was pending at the trip
        assert after.index("plasma_off") < after.index("spray_start") < after.index("plasma_disarm")
        assert after.index("plasma_disarm") < after.index("spray_end")
    else:
        assert after[:2] == ["plasma_off", "plasma_disarm"]
    # the off goes first and takes the bus for one exchange inside the window: with the few ms of margin
    # `check` reports for this rig (a healthy session's worst case, 96.3 of 100 ms), the spray's confirmation
    # can come too late on a loaded host (seen in CI); then the miss must be on record, never silent
    missed = {p for e in events if e["event"] == "cooling_missed" for p in e["pulses"]}
    assert [m for m in cooling_violations(events) if int(m.split()[1].rstrip(":")) not in missed] == []
