"""A plan delivered on the rig under test completes, and its record proves the interlocks held."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from plasmactl.events import read_events
from plasmactl.plan import load_plan
from plasmactl.rig import load_rig
from plasmactl.session import SessionInputs, run_blocking

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from audit import cooling_violations, skin_violations


def test_plan_completes_on_rig(rig_path: str | None, plan_path: str, realtime: bool, tmp_path: Path) -> None:
    plan, plan_file = load_plan(plan_path)
    rig, rig_file = load_rig(rig_path)
    inputs = SessionInputs(plan=plan, plan_file=plan_file, rig=rig, rig_file=rig_file)
    result = run_blocking(inputs, tmp_path, realtime=realtime, handle_sigint=False)
    events = read_events(tmp_path / "events.jsonl")
    assert result.outcome == "complete", events[-1]
    assert cooling_violations(events) == []
    assert skin_violations(events) == []
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pulses"] == plan.pulse_count
    assert summary["cooling_delay_ms"]["max"] <= plan.limits.max_cooling_delay_ms
