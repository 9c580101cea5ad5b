"""CLI conventions: `--version`, and an output folder that cannot be written refused (exit 2, the reason)
before any session runs, for every command that writes one (a sweep or campaign would otherwise lose all
its runs at the end)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plasmactl.version import VERSION
from test_cli import EXAMPLES, all_output, invoke

pytestmark = pytest.mark.hazard("H12")
SHORT = str(EXAMPLES / "plans" / "short.toml")


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"plasmactl {VERSION}"


@pytest.mark.parametrize(
    "command",
    [
        ["run", SHORT],
        ["sweep", SHORT, "--vary", "energy_j=0.002,0.003"],
        ["campaign", "--transport", "inprocess"],
    ],
    ids=["run", "sweep", "campaign"],
)
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_an_unwritable_output_folder_is_refused_first(command: list[str], where: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "sub" if where == "under_a_file" else blocker
    t0 = time.perf_counter()
    result = invoke([*command, "--out", str(out)])
    text = all_output(result)
    assert result.exit_code == 2, text
    assert ("cannot be created" in text) if where == "under_a_file" else ("is not a folder" in text)
    assert "Traceback" not in text and time.perf_counter() - t0 < 10.0  # refused before the runs
