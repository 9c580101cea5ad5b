"""The dose ledger: the controller's own equals the one summary.json rebuilds from the log; what it says
of cut, unknown and over-delivered pulses; and a physics error is shown, never lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plasmactl import clock as clockmod
from plasmactl.controller.ledger import DoseLedger, ledger_from_events
from plasmactl.controller.owner import Controller
from plasmactl.events import read_events
from plasmactl.faults import FaultScenario
from plasmactl.session import SessionInputs, run_session
from safety_run import example_plan

SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "clean": [],
    "cut-by-pause": [{"device": "safety", "kind": "footswitch_release", "at_s": 1.003, "duration_s": 0.4}],
    "energy-trip": [{"device": "plasma", "kind": "energy_drift", "after_pulses": 5, "value": 1.5}],
    "link-loss": [{"device": "link", "kind": "timeout", "target": "plasma", "at_s": 2.002}],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("plan", ["short", "periorbital"])
def test_the_controllers_ledger_is_the_one_the_log_records(name: str, plan: str, tmp_path: Path) -> None:
    seen: list[Controller] = []
    inputs = SessionInputs(
        plan=example_plan(plan), plan_file=None, faults=FaultScenario.model_validate({"fault": SCENARIOS[name]})
    )
    clockmod.run(run_session(inputs, tmp_path, on_controller=seen.append), virtual=True)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    own = json.loads(json.dumps(seen[0].ledger.summary()))
    _same(summary["ledger"], own)
    rebuilt = ledger_from_events(read_events(tmp_path / "events.jsonl"))
    assert rebuilt is not None
    _same(json.loads(json.dumps(rebuilt.summary())), own)


def _same(got: Any, want: Any) -> None:
    """Equal, but for the log's rounding of energies to the nanojoule (counts and spot lists exactly)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for k in want:
            _same(got[k], want[k])
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
    else:
        assert got == want


def test_ledger_statuses() -> None:
    ledger = DoseLedger(spots=4, pulses_per_spot=2, energy_j=0.005, tolerance=0.2)
    ledger.pulse_started(1, 1)
    ledger.pulse_ended(1, 0.005, False)
    ledger.pulse_started(2, 1)
    ledger.pulse_ended(2, 0.0051, False)  # spot 1: complete
    ledger.pulse_started(3, 2)
    ledger.pulse_ended(3, 0.002, True)  # spot 2: a cut pulse, never fired again
    ledger.pulse_started(4, 2)
    ledger.pulse_ended(4, 0.005, False)
    ledger.pulse_started(5, 3)
    ledger.pulse_ended(5, None, True)  # spot 3: an unreported cut pulse
    s = ledger.summary()
    assert (s["spots_complete"], s["spots_under_dosed"], s["spots_over_dosed"], s["spots_not_started"]) == (1, 2, 0, 1)
    assert s["under_dosed"] == [2, 3] and s["pulses_cut"] == 2 and s["pulses_energy_unknown"] == 1
    assert ledger.owed() == [3, 4]
    assert ledger.facts(3).unknown_pulses == 1 and ledger.facts(1).delivered_j == pytest.approx(0.0101)


def test_an_over_delivered_spot_is_reported() -> None:
    ledger = DoseLedger(spots=1, pulses_per_spot=1, energy_j=0.005, tolerance=0.2)
    ledger.pulse_started(1, 1)
    ledger.pulse_ended(1, 0.0061, False)
    assert ledger.summary()["over_dosed"] == [1]


def test_a_physics_error_is_in_the_summary_and_on_the_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import plasmactl.simulators.tissue as tissue
    from plasmactl.cli import app

    def broken(self: object) -> dict[str, Any]:
        raise ValueError("ablated through the whole column")

    monkeypatch.setattr(tissue.TissueRecorder, "finish", broken)
    plan = Path(__file__).resolve().parents[1] / "examples" / "plans" / "short.toml"
    result = CliRunner().invoke(app, ["run", str(plan), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["tissue"] is None
    assert summary["tissue_error"] == "ValueError: ablated through the whole column"
    assert "tissue physics failed" in result.output and "ablated through the whole column" in result.output
