"""Inputs an adversarial user can name: a FIFO or /dev/zero where a plan, rig, fault file or audit log goes
(refused at once, exit 2, never a hang or a read that fills memory), a file over the size limit, a plan
name with terminal control characters (escaped in ``run``'s banner as ``check`` shows it), and numbers too
large to print digit by digit (shown in significant figures on the console)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plasmactl.cli import app
from plasmactl.console_format import fixed, printable, rounded, value_text
from plasmactl.regular_file import TOML_LIMIT

pytestmark = [pytest.mark.subprocess, pytest.mark.hazard("H12")]

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
SHORT = REPO / "examples" / "plans" / "short.toml"
SIM_RIG = REPO / "examples" / "rigs" / "sim.toml"
FAULTS = REPO / "examples" / "faults" / "thermometer-offset.toml"
NOT_REGULAR = {"fifo": "not a regular file (a FIFO)", "zero": "not a regular file (a character device)"}
MEMORY_CAP = 2 << 30  # a child that reads /dev/zero whole stops at a MemoryError, not the machine's OOM killer


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _plasmactl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command (a FIFO's hang is a process-level failure), bounded in time and memory."""
    return subprocess.run(
        [str(PLASMACTL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
        preexec_fn=_cap_memory,
    )


def _special(tmp_path: Path, kind: str, name: str = "special.toml") -> Path:
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return path


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished session's folder (events.jsonl and summary.json), made once."""
    out = tmp_path_factory.mktemp("session") / "run"
    done = _plasmactl("run", SHORT, "--out", out, "-q", cwd=REPO)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("role", ["plan", "rig", "faults"])
def test_check_refuses_a_special_file_at_once(tmp_path: Path, role: str, kind: str) -> None:
    special = _special(tmp_path, kind)
    by_role: dict[str, list[str | Path]] = {
        "plan": [special],
        "rig": [SHORT, "--rig", special],
        "faults": [SHORT, "--faults", special],
    }
    args = by_role[role]
    done = _plasmactl("check", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert NOT_REGULAR[kind] in _flat(done.stderr) and "special.toml" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_verify_log_refuses_a_special_file_at_once(tmp_path: Path, kind: str) -> None:
    special = _special(tmp_path, kind, "events.jsonl")
    done = _plasmactl("verify-log", special, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert NOT_REGULAR[kind] in _flat(done.stderr)


@pytest.mark.parametrize("command", ["replay", "monitor"])
def test_the_other_log_readers_refuse_a_fifo(tmp_path: Path, command: str) -> None:
    special = _special(tmp_path, "fifo", "events.jsonl")
    done = _plasmactl(command, special, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert NOT_REGULAR["fifo"] in _flat(done.stderr)


@pytest.mark.parametrize("command", ["verify-log", "report", "summary"])
def test_a_fifo_summary_beside_the_log_is_no_anchor_not_a_hang(tmp_path: Path, session_dir: Path, command: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_bytes((session_dir / "events.jsonl").read_bytes())
    os.mkfifo(run / "summary.json")
    done = _plasmactl(command, run / "events.jsonl" if command == "verify-log" else run, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if command == "verify-log":
        assert "chain intact" in done.stdout and NOT_REGULAR["fifo"] in done.stdout


def test_a_plan_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as f:
        f.truncate(TOML_LIMIT + 1)  # sparse: no disk used, no bytes read
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, ["check", str(huge)])
    assert result.exit_code == 2
    assert f"too large ({TOML_LIMIT + 1} bytes; the limit is {TOML_LIMIT})" in _flat(result.output)


def test_run_banner_escapes_control_characters_of_the_plan_name(tmp_path: Path) -> None:
    text = SHORT.read_text(encoding="utf-8").replace('name = "short"', 'name = "evil\\u001b[31mRED\\u0007"')
    plan = tmp_path / "evil.toml"
    plan.write_text(text, encoding="utf-8")
    checked = _plasmactl("check", plan, cwd=tmp_path)
    ran = _plasmactl("run", plan, "--out", tmp_path / "out", cwd=tmp_path)
    assert checked.returncode == 0 and ran.returncode == 0, ran.stderr
    assert "evil\\x1b[31mRED\\x07" in checked.stdout  # what check shows
    banner = next(line for line in ran.stdout.splitlines() if line.startswith("plasmactl: plan"))
    assert "evil\\x1b[31mRED\\x07" in banner
    assert "\x1b" not in ran.stdout and "\x07" not in ran.stdout


def test_printable_escapes_only_what_a_terminal_acts_on() -> None:
    assert printable("full face [left]") == "full face [left]"
    assert printable("é ü 日本") == "é ü 日本"
    assert printable("a\x1b[2Jb\nc\u202e") == "a\\x1b[2Jb\\nc\\u202e"
    assert value_text("reason", "x\x1by") == "x\\x1by"


def test_huge_numbers_are_shown_in_significant_figures() -> None:
    assert fixed(1e300, 1) == "1e+300"
    assert fixed(-3.5e20, 3) == "-3.5e+20"
    assert rounded(1e300, 1) == "1e+300"
    assert value_text("skin_c", 1e300) == "1e+300"
    assert len(value_text("t_ms", 1e300)) < 10
    # ordinary values keep their fixed decimals
    assert fixed(16.52, 1) == "16.5" and fixed(5.0, 1) == "5" and rounded(7.0, 1) == "7.0"
    assert fixed(float("inf"), 1) == "inf" and rounded(float("nan"), 0) == "nan"


def test_run_console_shows_a_huge_fault_reading_in_significant_figures(tmp_path: Path) -> None:
    faults = tmp_path / "stuck.toml"
    text = FAULTS.read_text(encoding="utf-8").replace('kind = "offset"', 'kind = "stuck"')
    faults.write_text(text.replace("value = 20.0", "value = 1e300"), encoding="utf-8")
    ran = _plasmactl("run", SHORT, "--faults", faults, "--out", tmp_path / "out", "-v", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    readings = [line for line in ran.stdout.splitlines() if " reading " in line and "skin_c=1e+300" in line]
    assert readings, ran.stdout[-2000:]
    assert all(len(line) < 200 for line in readings)


@pytest.mark.subprocess
def test_a_console_that_cannot_show_a_name_gets_it_escaped(tmp_path: Path) -> None:
    """A plan named in another script, on a console whose encoding cannot show it (PYTHONIOENCODING=ascii, a
    C locale's terminal): a UnicodeEncodeError traceback and exit 1 before anything started. Now escaped."""
    root = Path(__file__).resolve().parents[1]
    short = (root / "examples" / "plans" / "short.toml").read_text(encoding="utf-8")
    plan = tmp_path / "u.toml"
    body = "\n".join(line for line in short.splitlines() if not line.startswith("name = "))
    plan.write_text('name = "平面 ✓ é"\n' + body + "\n", encoding="utf-8")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for args in (["check", str(plan)], ["run", str(plan), "--out", str(tmp_path / "out")]):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "plasmactl"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert "\\u5e73\\u9762" in done.stdout + done.stderr
