"""Every example fault scenario ends in a safe state with a named rule, and the record shows the safe
sequence: no pulse after the trip, plasma off as the first action, the last pulse cooled if the spray works."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import ACTIONS, EXAMPLES, cooling_violations, first, names, run_to_log
from plasmactl.faults import FaultScenario, load_faults
from plasmactl.plan import load_plan
from plasmactl.session import SessionInputs

SCENARIOS = sorted((EXAMPLES / "faults").glob("*.toml"))

# the rule each example must name (several are acceptable where the physics allows either)
EXPECTED_RULES = {
    "link-timeout-plasma": {"device_no_reply", "device_watchdog"},
    "link-timeout-thermometer": {"thermometer_stale", "device_watchdog"},
    "link-delay-plasma": {"device_no_reply", "device_watchdog"},
    "link-corrupt-plasma": {"device_no_reply", "device_watchdog"},
    "link-garbage-spray": {"device_no_reply", "device_watchdog", "cooling_not_confirmed"},
    "link-disconnect-thermometer": {"thermometer_stale", "device_watchdog"},
    "plasma-energy-drift": {"energy_out_of_tolerance"},
    "plasma-no-output": {"energy_out_of_tolerance"},
    "plasma-stuck-on": {"pulse_overrun", "energy_out_of_tolerance"},
    "safety-estop": {"estop"},
    "safety-footswitch-release": {"footswitch_released"},
    "safety-tip-lift": {"tip_out_of_window"},
    "spray-reservoir-empty": {"reservoir_low", "spray_flow_lost"},  # dry mid-spray on a plan spraying then
    "spray-valve-slow": {"cooling_not_confirmed"},
    "spray-valve-stuck-closed": {"cooling_not_confirmed"},
    "thermometer-dropout": {"thermometer_stale"},
    "thermometer-offset": {"skin_temp_limit", "skin_temp_hard_limit", "thermometer_implausible"},
    "thermometer-stuck": {"thermometer_stuck"},
    "thermometer-stuck-implausible": {"thermometer_implausible"},
}


def _inputs(plan: str, scenario: FaultScenario, seed: int = 0) -> SessionInputs:
    p, loaded = load_plan(str(EXAMPLES / "plans" / f"{plan}.toml"))
    return SessionInputs(plan=p, plan_file=loaded, faults=scenario, seed=seed)


def test_every_example_has_an_expectation() -> None:
    assert {s.stem for s in SCENARIOS} == set(EXPECTED_RULES)


# A stuck reading needs stuck_window_s (10 s) of pulses: the short plan (6 s) ends before it can trip.
CASES = [
    pytest.param(path, plan, id=f"{path.stem}-{plan}")
    for plan in ("short", "periorbital")
    for path in SCENARIOS
    if not (plan == "short" and path.stem == "thermometer-stuck")
]


@pytest.mark.parametrize(("path", "plan"), CASES)
def test_fault_ends_in_safe_state(path: Path, plan: str, tmp_path: Path) -> None:
    scenario, _ = load_faults(str(path))
    events = run_to_log(_inputs(plan, scenario), tmp_path)
    end = events[-1]
    assert end["event"] == "session_end"
    assert end["outcome"] in ("fault", "estop"), end
    assert not end["internal_error"]

    trip_at = first(events, "interlock_trip")
    assert trip_at is not None
    trip = events[trip_at]
    assert trip["rule"] in EXPECTED_RULES[path.stem], trip
    assert trip["reason"]
    # plasma off is the very first thing after the trip, then disarm (when the generator answers)
    assert events[trip_at + 1]["event"] == "plasma_off"
    after = events[trip_at + 1 :]
    assert "pulse_start" not in names(after)
    actions = [n for n in names(after) if n in ACTIONS]
    assert actions[0] == "plasma_off"
    # the machine ends latched (or paused then faulted by the pause timeout)
    states = [e for e in events if e["event"] == "state"]
    assert states[-1]["dest"] in ("fault", "estop")

    spray_broken = scenario.fault[0].affected == "spray"
    if spray_broken:
        # every pulse is either cooled in time or explicitly recorded as missed
        missed = {p for e in events if e["event"] == "cooling_missed" for p in e["pulses"]}
        problems = [msg for msg in cooling_violations(events) if int(msg.split()[1].rstrip(":")) not in missed]
        assert problems == []
    else:
        assert cooling_violations(events) == [], "the spray works, so every pulse must be cooled"


def test_footswitch_release_pauses_and_resumes(tmp_path: Path) -> None:
    scenario = FaultScenario.model_validate(
        {"fault": [{"device": "safety", "kind": "footswitch_release", "after_pulses": 2, "duration_s": 3.0}]}
    )
    events = run_to_log(_inputs("short", scenario), tmp_path)
    assert events[-1]["outcome"] == "complete"
    trip_at = first(events, "interlock_trip", rule="footswitch_released")
    resume_at = first(events, "resume")
    assert trip_at is not None and resume_at is not None and trip_at < resume_at
    assert events[trip_at + 1]["event"] == "plasma_off"
    assert "pulse_start" not in names(events[trip_at:resume_at])
    paused = [e for e in events if e["event"] == "state" and e["dest"] == "paused"]
    assert len(paused) == 1
    assert events[resume_at]["t"] >= paused[0]["t"] + 3.0 - 0.3  # released for 3 s (safety heartbeat)
    assert cooling_violations(events) == []


def test_estop_mid_pulse_cuts_emission_at_once(tmp_path: Path) -> None:
    # short plan: pulse 4 is fired at t = 3.0 s and is on from 3.0005 s for 5 ms
    scenario = FaultScenario.model_validate({"fault": [{"device": "safety", "kind": "estop", "at_s": 3.002}]})
    events = run_to_log(_inputs("short", scenario), tmp_path)
    trip_at = first(events, "interlock_trip", rule="estop")
    assert trip_at is not None
    off = events[trip_at + 1]
    assert off["event"] == "plasma_off" and off["ok"] is True
    assert off["t"] - 3.002 <= 0.010  # emission off within 10 ms of the E-stop input (virtual time)
    cut = next(e for e in events if e["event"] == "pulse_end" and e["pulse"] == 4)
    assert cut["interrupted"] is True
    assert cut["energy_j"] < 0.005 * 0.8  # only part of the pulse was delivered
    assert events[-1]["outcome"] == "estop"
    assert cooling_violations(events) == []  # the cut pulse is still cooled


def test_fault_scenarios_are_deterministic(tmp_path: Path) -> None:
    scenario, _ = load_faults(str(EXAMPLES / "faults" / "plasma-energy-drift.toml"))
    a = run_to_log(_inputs("periorbital", scenario, seed=11), tmp_path / "a")
    b = run_to_log(_inputs("periorbital", scenario, seed=11), tmp_path / "b")
    strip = [{k: v for k, v in e.items() if k not in ("wall_time", "prev_sha256")} for e in a]
    assert strip == [{k: v for k, v in e.items() if k not in ("wall_time", "prev_sha256")} for e in b]
