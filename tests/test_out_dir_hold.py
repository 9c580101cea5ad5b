"""One session per output folder at a time, and --overwrite leaves nothing of the earlier session.

Before: two ``run --out X --overwrite`` at once both exited 0 "complete" into one interleaved log that no
longer verified (summary.json: 320 pulses, 80 spots over-dosed, for an 80-spot plan); an --overwrite left the
earlier session's simulator.json and report.html beside the new log.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = str(Path(sys.executable).with_name("plasmactl"))
SHORT = str(REPO / "examples/plans/short.toml")

pytestmark = pytest.mark.subprocess


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLASMACTL, "run", SHORT, "--out", str(out), "-q", *extra], capture_output=True, text=True, timeout=120
    )


def test_a_folder_held_by_another_session_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running session holds it
        for extra in ((), ("--overwrite",)):
            done = _run(out, *extra)
            assert done.returncode == 2 and "in use by another plasmactl session" in done.stderr, done.stderr
            assert not (out / "events.jsonl").exists()
    finally:
        os.close(fd)
    assert _run(out).returncode == 0  # released: the folder is free again


def test_a_killed_holder_releases_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(out)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert _run(out).returncode == 2
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    holder.stdout.close()
    assert _run(out).returncode == 0


def test_two_overwriting_runs_at_once_never_share_a_log(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(4):
        procs = [
            subprocess.Popen(
                [PLASMACTL, "run", SHORT, "--out", str(out), "--overwrite", "-q"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        codes = sorted(p.wait(timeout=120) for p in procs)
        assert codes in ([0, 0], [0, 2]), codes  # one after the other, or one refused: never both at once
        verified = subprocess.run([PLASMACTL, "verify-log", str(out / "events.jsonl")], capture_output=True, timeout=60)
        assert verified.returncode == 0, verified.stdout
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["pulses"] == 6 and summary["outcome"] == "complete"


def test_overwrite_removes_what_the_earlier_session_left(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(out).returncode == 0
    assert subprocess.run([PLASMACTL, "report", str(out)], capture_output=True, timeout=120).returncode == 0
    (out / "resumed_by.json").write_text('{"out": "elsewhere"}', encoding="utf-8")
    (out / "notes.txt").write_text("the operator's own file", encoding="utf-8")
    stamp = (out / "report.html").stat().st_mtime_ns
    time.sleep(0.01)
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 1\n', encoding="utf-8")
    assert _run(out, "--overwrite", "--faults", str(faults)).returncode == 3
    assert not (out / "report.html").exists() and not (out / "resumed_by.json").exists(), stamp
    assert (out / "notes.txt").exists()  # not ours: left alone
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["outcome"] == "fault"
