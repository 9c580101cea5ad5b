"""A spray whose water stops while it runs cut the skin's cooling short: the controller reads the flow while a
confirmed spray runs and trips (``spray_flow_lost``, a latched fault) when the valve shuts early or no water
comes any more. The simulated spray unit ends the skin's and the tissue's cooling at the moment its reservoir
runs dry (used up, or a ``reservoir_empty`` fault starting), and its record says when (``wet_until``), so the
invariants can tell a claim of cooling that outlived its water.
"""

from __future__ import annotations

from pathlib import Path

from plasmactl.invariants import check
from plasmactl.rig import Rig
from plasmactl.session import SessionInputs, run_blocking
from safety_run import Run, example_plan, run

SHORT = "short"  # a 5 ms pulse each second at t = 0, 1, ..., 5 s, a 150 ms spray after each


def _dry_sprays(r: Run) -> list[dict[str, object]]:
    return [s for s in r.simulator["sprays"] if s["wet"] and s["wet_until"] < s["t_close"] - 1e-9]


def test_a_reservoir_emptied_mid_spray_trips_and_stops_the_session(tmp_path: Path) -> None:
    # pulse 2 ends at ~1.0055 s, its spray opens ~15 ms later and would run to ~1.17 s; the water stops at 1.08
    faults = [{"device": "spray", "kind": "reservoir_empty", "at_s": 1.08}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "fault"
    assert r.rules()[0] == "spray_flow_lost"
    trip = r.named("interlock_trip")[0]
    assert 1.08 <= trip["t"] <= 1.08 + 0.025, trip
    assert "cooling was cut short" in trip["reason"]
    assert len(r.named("pulse_start")) == 2
    (dry,) = _dry_sprays(r)
    assert abs(float(dry["wet_until"]) - 1.08) < 1e-9  # type: ignore[arg-type]


def test_a_reservoir_used_up_mid_spray_trips(tmp_path: Path) -> None:
    """0.04 ml at 0.5 ml/s: the first 150 ms spray runs dry after 80 ms."""
    rig = Rig.model_validate({"spray": {"reservoir_ml": 0.04}})
    plan = example_plan(SHORT)
    result = run_blocking(SessionInputs(plan=plan, plan_file=None, rig=rig), tmp_path, handle_sigint=False)
    r = Run(tmp_path, [], result.outcome)
    assert r.violations == {}
    assert r.outcome == "fault" and r.rules()[0] == "spray_flow_lost"
    assert len(r.named("pulse_start")) == 1
    (dry,) = _dry_sprays(r)
    assert abs(float(dry["wet_until"]) - float(dry["t_open"]) - 0.08) < 1e-6  # type: ignore[arg-type]


def test_a_spray_that_keeps_flowing_is_not_tripped(tmp_path: Path) -> None:
    r = run(example_plan(SHORT), [], tmp_path)
    assert r.violations == {} and r.outcome == "complete"
    assert not _dry_sprays(r)


def test_the_invariant_finds_a_dry_spray_nobody_reported(tmp_path: Path) -> None:
    """What an earlier controller did (confirmed at the valve's opening, then never looked at the flow): the
    same session with its trip taken out of the log, and the spray left to run its full length, breaks
    ``dry_spray_unreported``."""
    faults = [{"device": "spray", "kind": "reservoir_empty", "at_s": 1.08}]
    r = run(example_plan(SHORT), faults, tmp_path)
    silent = [e for e in r.events if e["event"] != "interlock_trip"]
    (dry,) = _dry_sprays(r)
    dry["t_close"] = float(dry["t_open"]) + 0.15  # type: ignore[arg-type]
    assert "dry_spray_unreported" in check(silent, simulator=r.simulator)


def test_a_dry_glitch_in_a_spray_during_a_pause_latches_a_fault(tmp_path: Path) -> None:
    """The footswitch is released while pulse 2's spray runs (the safe state lets it finish) and the water
    stops for 50 ms meanwhile: the pause becomes a fault, it does not resume."""
    faults = [
        {"device": "safety", "kind": "footswitch_release", "at_s": 1.04, "duration_s": 0.3},
        {"device": "spray", "kind": "reservoir_empty", "at_s": 1.09, "duration_s": 0.05},
    ]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "fault"
    assert "spray_flow_lost" in r.rules()
    assert not r.named("resume")
