"""Plan and rig settings that fail on the first pulses by themselves, with no fault, are refused by ``check``
and ``run`` (exit 2, naming the fields): they passed ``check`` and faulted at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli import EXAMPLES, all_output, invoke

SHORT = (EXAMPLES / "plans" / "short.toml").read_text(encoding="utf-8")


def _plan(tmp_path: Path, limits: str) -> Path:
    """The short plan with ``limits`` (one ``key = value``) set in its [limits] table."""
    path = tmp_path / "plan.toml"
    key = limits.split("=")[0].strip()
    lines = [line for line in SHORT.splitlines() if not (key and line.split("=")[0].strip() == key)]
    body = "\n".join(lines).replace("[limits]", "[limits]\n" + limits, 1)
    path.write_text(body + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("limits", "rig", "says"),
    [
        ("skin_temp_max_c = 1.0", "", "must be above plausible_min_c"),
        ("energy_tolerance_pct = 0.0001", "", "of healthy pulses would trip"),
        ("", '[spray]\nkind = "sim"\nflow_ml_s = 0.01\n', "no spray would count as cooling"),
    ],
)
def test_a_setting_that_fails_by_itself_is_refused(
    tmp_path: Path, command: str, limits: str, rig: str, says: str
) -> None:
    args = [command, str(_plan(tmp_path, limits))]
    if rig:
        (tmp_path / "rig.toml").write_text('name = "low flow"\n' + rig, encoding="utf-8")
        args += ["--rig", str(tmp_path / "rig.toml")]
    if command == "run":
        args += ["--out", str(tmp_path / "out")]
    result = invoke(args)
    assert result.exit_code == 2, all_output(result)
    assert says in all_output(result)
    assert not (tmp_path / "out" / "events.jsonl").exists()


def test_a_tolerance_well_outside_the_spread_passes(tmp_path: Path) -> None:
    result = invoke(["check", str(_plan(tmp_path, "energy_tolerance_pct = 10.0"))])
    assert result.exit_code == 0, all_output(result)
