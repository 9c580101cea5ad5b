"""A pause ends at its limit exactly: its timeout is a timer from the pause's trip, not a poll of the monitor
started after the safe state's cooling (which let a pause run up to a monitor period, plus the spray, over)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plasmactl.invariants import check
from safety_run import example_plan, run

pytestmark = pytest.mark.hazard("H9")


@pytest.mark.parametrize("released_at", [1.5, 1.003, 1.05])  # between pulses, inside pulse 2, in its spray
def test_a_pause_times_out_at_its_limit(tmp_path: Path, released_at: float) -> None:
    plan = example_plan("short")
    plan = plan.model_copy(update={"limits": plan.limits.model_copy(update={"max_pause_s": 2.0})})
    faults = [{"device": "safety", "kind": "footswitch_release", "at_s": released_at, "duration_s": 10.0}]
    r = run(plan, faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "fault"
    pause, timeout = (
        r.named("interlock_trip", rule="footswitch_released")[0],
        r.named("interlock_trip", rule="pause_timeout")[0],
    )
    assert 2.0 <= timeout["t"] - pause["t"] <= 2.0 + 1e-6, (pause["t"], timeout["t"])


def test_the_invariant_finds_a_pause_that_outlived_its_limit(tmp_path: Path) -> None:
    plan = example_plan("short")
    plan = plan.model_copy(update={"limits": plan.limits.model_copy(update={"max_pause_s": 2.0})})
    faults = [{"device": "safety", "kind": "footswitch_release", "at_s": 1.5, "duration_s": 10.0}]
    r = run(plan, faults, tmp_path)
    late = [dict(e, t=e["t"] + 0.1) if e["event"] != "session_start" and e["t"] >= 3.5 else e for e in r.events]
    assert "pause_too_long" in check(late)
