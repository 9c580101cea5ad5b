"""Every example plan on the served rigs on the real clock, with two CPU-bound processes beside it.

The bench's question: does each example plan complete on ``sim-tcp.toml`` and ``sim-rtu.toml`` (spawned
serve-sim, real drivers, real clock) on a busy host, run after run, and does ``check`` say beforehand which
combinations cannot meet their cooling window? A combination ``check`` refuses (exit 2, naming the numbers)
is not run: the refusal is what is tested.

CI profile: the short plan, one run per rig, and every plan's ``check``. The full profile
(``PLASMACTL_REALCLOCK_RUNS=3 PLASMACTL_REALCLOCK_PLANS=all``, ``make realclock-check``) runs every example
plan three times on each rig (the full-face plan is 25 minutes a run); ``PLASMACTL_REALCLOCK_PLANS`` also
takes a comma-separated list of plan names (``short,periorbital``). ``PLASMACTL_REALCLOCK_HOGS`` (default 2)
sets how many CPU-bound processes run beside: to run the two rigs' profiles side by side (two pytest runs,
``-k sim-tcp`` and ``-k sim-rtu``), give each one 1, so that the machine has two busy processes and each
session also has the other rig's session and server beside it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plasmactl.events import read_events

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
PLANS = sorted(p.stem for p in (REPO / "examples" / "plans").glob("*.toml"))
RIGS = ("sim-tcp", "sim-rtu")
RUNS = int(os.environ.get("PLASMACTL_REALCLOCK_RUNS", "1"))
HOGS = int(os.environ.get("PLASMACTL_REALCLOCK_HOGS", "2"))
_ASKED = os.environ.get("PLASMACTL_REALCLOCK_PLANS", "short")
RUN_PLANS = PLANS if _ASKED == "all" else [p.strip() for p in _ASKED.split(",") if p.strip()]
if unknown := sorted(set(RUN_PLANS) - set(PLANS)):
    raise pytest.UsageError(f"PLASMACTL_REALCLOCK_PLANS names no example plan: {unknown} (plans: {PLANS}, or all)")
HOG = (
    "import os, sys, threading\n"
    "threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n"  # dies with us
    "while True: pass\n"
)

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.hazard("H1")]


@contextlib.contextmanager
def cpu_hogs(n: int = 2) -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE) for _ in range(n)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


def _check(plan: str, rig: str) -> subprocess.CompletedProcess[str]:
    args = [str(PLASMACTL), "check", f"examples/plans/{plan}.toml", "--rig", f"examples/rigs/{rig}.toml"]
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


@pytest.mark.parametrize("rig", RIGS)
@pytest.mark.parametrize("plan", PLANS)
def test_check_computes_the_cooling_budget_of_every_example(plan: str, rig: str) -> None:
    done = _check(plan, rig)
    assert done.returncode == 0, done  # every example fits both bench rigs (periorbital on sim-rtu too)
    assert "cooling: water on the skin" in done.stdout and "at worst" in done.stdout, done.stdout


@pytest.mark.parametrize("rig", RIGS)
@pytest.mark.parametrize("plan", RUN_PLANS)
def test_every_example_completes_on_the_real_clock_beside_two_busy_processes(
    plan: str, rig: str, tmp_path: Path
) -> None:
    with cpu_hogs(HOGS):
        for run in range(RUNS):
            out = tmp_path / f"run{run}"
            args = [str(PLASMACTL), "run", f"examples/plans/{plan}.toml", "--rig", f"examples/rigs/{rig}.toml"]
            done = subprocess.run(
                [*args, "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=3600, check=False
            )
            end = read_events(out / "events.jsonl")[-1]
            assert (done.returncode, end["outcome"]) == (0, "complete"), (run, end, done.stdout[-2000:])
