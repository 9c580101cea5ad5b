"""Crash test of the audit log: ``plasmactl run`` killed with SIGKILL at random moments, two at a time.

Each trial runs ``plasmactl run examples/plans/short.toml --realtime --out DIR`` (about 6 s of session after
about 1 s of start-up), every other one with the E-stop scenario (a trip, plasma off and disarm, the latch
and ``estop``: safety events in the middle of the session, and a fault file in the genesis), and kills its
process group at a moment drawn uniformly over the run's expected length (seeded: the seed is printed and
is in every failure message; PLASMACTL_CRASH_SEED replays it, PLASMACTL_CRASH_TRIALS sets the count).

After each death:

* the chain verifies (``verify_file``) up to the last complete line, and the log starts with
  ``session_start``: no line, so no safety event, is in the log without every line before it;
* the witness: the console prints every notable event (``cli.NOTABLE``, and a state change into a latched
  state: every safety event but ``session_start``) from a log listener, i.e. only after ``AuditLog.emit``
  has written the line (one ``os.write``) and, for a safety event, fsynced it; rich flushes each print to
  the stdout file. So the events the child printed before it died must be exactly the first notable events
  of the log, in order (the log may hold a few more: written, not yet printed);
* a run that ended by itself before its kill left a summary.json whose anchor matches.

What SIGKILL cannot show: the page cache outlives the process, so this checks the write-before-report order,
whole lines and the chain over what was written, not fsync against a power cut (``test_deadline_events``'s
``test_fsync_on_safety_events_only`` checks that every safety event is fsynced before emit returns).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plasmactl.cli import NOTABLE
from plasmactl.events import LATCHED_STATES, SAFETY_EVENTS, read_events
from plasmactl.log_chain import NotALog, verify_file

pytestmark = pytest.mark.hazard("H14")

REPO = Path(__file__).parents[1]
SHORT = REPO / "examples" / "plans" / "short.toml"
ESTOP = REPO / "examples" / "faults" / "safety-estop.toml"
PLASMACTL = Path(sys.executable).parent / "plasmactl"
TRIALS = int(os.environ.get("PLASMACTL_CRASH_TRIALS", "50"))
SEED = int(os.environ.get("PLASMACTL_CRASH_SEED", str(time.time_ns() % 2**32)))
# A run's expected length from its start (start-up ~1 s; short.toml ~6 s, ~2.8 s to the E-stop's end).
HORIZON_S = {"plain": 7.2, "estop": 4.0}
# "   12.345s  plasma_off      ok=True ...": what cli._describe prints for an event.
PRINTED = re.compile(r"^\s*(-?\d+\.\d{3})s  (\S+)(?: |$)")

_live: set[subprocess.Popen[bytes]] = set()


@dataclass
class Trial:
    index: int
    scenario: str
    delay_s: float
    out: Path
    stdout: Path
    killed: bool = False
    returncode: int | None = None

    def __str__(self) -> str:
        return f"seed {SEED} trial {self.index} ({self.scenario}, kill at {self.delay_s:.3f} s, {self.out})"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # its own session: the group is the child and all it started
        os.killpg(proc.pid, signal.SIGKILL)


def _run(trial: Trial) -> Trial:
    args = [str(PLASMACTL), "run", str(SHORT), "--realtime", "--out", str(trial.out)]
    if trial.scenario == "estop":
        args += ["--faults", str(ESTOP)]
    with trial.stdout.open("wb") as stdout:
        proc = subprocess.Popen(
            args,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
            start_new_session=True,
        )
    _live.add(proc)
    try:
        try:
            trial.returncode = proc.wait(timeout=trial.delay_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            trial.killed = True
            trial.returncode = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            _kill(proc)
            proc.wait(timeout=30)
        _live.discard(proc)
    return trial


def _notable(e: dict[str, Any]) -> bool:
    return e["event"] in NOTABLE or (e["event"] == "state" and e.get("dest") in LATCHED_STATES)


def _safety(e: dict[str, Any]) -> bool:
    return e["event"] in SAFETY_EVENTS or (e["event"] == "state" and e.get("dest") in LATCHED_STATES)


def _printed(stdout: Path) -> list[tuple[str, str]]:
    """The events the child printed, from whole lines only (the last one may be cut by the kill)."""
    text = stdout.read_bytes().decode("utf-8", errors="replace")
    found = (PRINTED.match(line) for line in text.split("\n")[:-1])
    return [(m.group(1), m.group(2)) for m in found if m]


def _check(trial: Trial) -> tuple[list[str], dict[str, int]]:
    """The problems of one trial, and what it was (for the tally)."""
    problems: list[str] = []
    log = trial.out / "events.jsonl"
    printed = _printed(trial.stdout)
    try:
        report = verify_file(log)
    except NotALog:  # killed before the first line was written whole
        if printed:
            problems.append(f"{trial}: printed {printed} but the log holds no record")
        return problems, {"before the first record": 1}
    if not report.ok:
        problems.append(f"{trial}: chain does not verify: {report.problem}")
        return problems, {}
    events = read_events(log)[: report.records]
    if events[0]["event"] != "session_start":
        problems.append(f"{trial}: the log starts with {events[0]['event']}")
    in_log = [(f"{e['t']:.3f}", e["event"]) for e in events if _notable(e)]
    if printed != in_log[: len(printed)]:
        problems.append(f"{trial}: printed {printed}, the log's notable events {in_log}")
    if not trial.killed:
        if trial.returncode not in (0, 3) or not (report.anchored and report.session_end):
            problems.append(f"{trial}: ended by itself (exit {trial.returncode}) without a whole anchored log")
        return problems, {"ended by itself": 1}
    tally = {
        "killed mid-session" if not report.session_end else "killed after session_end": 1,
        "safety events in the logs": sum(1 for e in events if _safety(e)),
        "printed events checked": len(printed),
        "printed safety events checked": sum(1 for _, name in printed if name in SAFETY_EVENTS or name == "state"),
        "torn last line": int(report.torn),
    }
    return problems, tally


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_at_random_moments_leaves_a_verifiable_log(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"crash test: seed {SEED}, {TRIALS} trials (PLASMACTL_CRASH_SEED={SEED} replays it)")
    trials = []
    for i in range(TRIALS):
        scenario = "estop" if i % 2 else "plain"
        delay = rng.uniform(0.05, HORIZON_S[scenario])
        trials.append(Trial(i, scenario, delay, tmp_path / f"out{i}", tmp_path / f"stdout{i}.txt"))
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = list(pool.map(_run, trials))
    finally:
        for proc in list(_live):  # the test itself failed or was interrupted: no child outlives it
            _kill(proc)
    problems: list[str] = []
    tally: dict[str, int] = {}
    for trial in done:
        found, counts = _check(trial)
        problems += found
        for key, n in counts.items():
            tally[key] = tally.get(key, 0) + n
    print(f"crash test: {time.monotonic() - started:.1f} s; {tally}")
    assert not problems, "\n".join(problems)
    assert tally.get("killed mid-session", 0) >= TRIALS // 4, f"seed {SEED}: too few kills mid-session: {tally}"
