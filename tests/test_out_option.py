"""An empty ``--out`` is refused by every command that writes a folder, before anything runs or is written.

Before: ``plasmactl run PLAN --out "$OUT"`` with ``OUT`` unset ran the session into the current folder
(``Path("")`` is ``.``: events.jsonl, summary.json, simulator.json beside whatever was there), and ``--out " "``
made a folder named by one space.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plasmactl.cli import app

REPO = Path(__file__).resolve().parents[1]
SHORT = str(REPO / "examples/plans/short.toml")


def _args(command: str, out: str, tmp_path: Path) -> list[str]:
    run_dir = tmp_path / "earlier"
    return {
        "run": ["run", SHORT, "--out", out, "-q"],
        "sweep": ["sweep", SHORT, "--vary", "pulse.energy_j=0.1,0.2", "--out", out],
        "campaign": ["campaign", "--transport", "inprocess", "--out", out],
        "replay": ["replay", str(run_dir / "events.jsonl"), "--out", out],
        "resume": ["resume", str(run_dir), "--out", out],
    }[command]


@pytest.mark.parametrize("command", ["run", "sweep", "campaign", "replay", "resume"])
@pytest.mark.parametrize("out", ["", " ", "\t "])
def test_an_empty_out_is_refused_and_nothing_is_written(
    command: str, out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    result = CliRunner().invoke(app, _args(command, out, tmp_path))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output
    assert ("an empty name" if not out else "a name of only spaces") in result.output
    assert os.listdir(here) == []  # nothing in the folder the shell stood in


def test_a_real_folder_name_still_works(tmp_path: Path) -> None:
    out = tmp_path / "a folder"
    result = CliRunner().invoke(app, ["run", SHORT, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "events.jsonl").is_file()
