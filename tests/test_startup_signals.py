"""Class 10 of the safety assessment: a signal at any moment of start-up never leaves the generator armed or on.

``plasmactl run`` is started as a real process and sent a stop signal (SIGINT, SIGTERM, SIGHUP or SIGQUIT) at
50 moments spread from the process start to its first pulse. Whatever the moment: exit 128 + the signal's
number (130, 143, 129, 131), no traceback, and when a
session had begun its record is complete, every arming is followed by a disarm, and the simulated
generator itself (the session's ``simulator.json``) ends disarmed and off.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plasmactl.events import read_events
from plasmactl.invariants import check
from plasmactl.stop_signals import STOP_SIGNALS

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "examples" / "plans" / "short.toml"
pytestmark = pytest.mark.hazard("H11")

MOMENTS = 50
# Before the entry point has installed its handler (the interpreter's own start-up, tens of milliseconds, longer
# on a loaded machine) a signal is Python's to handle: the process ends by it, or Python reports a
# KeyboardInterrupt from its own start-up code. Nothing of ours beyond ``entry.py``'s first lines has run then,
# let alone opened a device; a traceback through any other plasmactl module is a defect.
FRAME = re.compile(r'File "([^"]+)"')


def _in_interpreter_start_up(stderr: str, returncode: int, log: Path) -> bool:
    # the console script and entry.py's own first imports (``signal`` itself) run before its handler can exist
    ours = [f for f in FRAME.findall(stderr) if "plasmactl" in f and not f.endswith(("entry.py", "/bin/plasmactl"))]
    return returncode != 0 and not log.exists() and "before a session started" not in stderr and not ours


def _start(out: Path) -> tuple[subprocess.Popen[str], float]:
    cmd = [str(Path(sys.executable).parent / "plasmactl"), "run", str(PLAN), "--out", str(out)]
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, started


def _windows(tmp: Path) -> tuple[float, float]:
    """Wall seconds from process start to the session's start and to its end (the short plan runs in a few
    milliseconds of wall time once its devices are built: its first pulse is near the end), measured on an
    undisturbed run."""
    proc, started = _start(tmp / "probe")
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    events = read_events(tmp / "probe" / "events.jsonl")
    return float(events[0]["wall_time"]) - started, float(events[-1]["wall_time"]) - started


def _moments(session_start: float, session_end: float) -> list[tuple[str, float]]:
    """Half of the moments over the command's start-up (from the process's start), half over the session's
    (from the moment its log appears: a start-up slower or faster than the probe's cannot move them out)."""
    half = MOMENTS // 2
    early = [("start", session_start * i / half) for i in range(half)]
    span = max(session_end - session_start, 0.001)
    late = [("log", span * i / (MOMENTS - half - 1)) for i in range(MOMENTS - half)]
    return early + late


def _wait_for_log(log: Path, proc: subprocess.Popen[str], limit_s: float = 60.0) -> float:
    """The time the session's log appeared (or the process ended first)."""
    deadline = time.time() + limit_s
    while not log.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.0005)
    return time.time()


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_signal_at_any_moment_of_start_up_leaves_the_generator_safe(tmp_path: Path) -> None:
    seen_sessions = 0
    for i, (anchor, delay) in enumerate(_moments(*_windows(tmp_path))):
        sig = signal.SIGINT if i % 2 == 0 else STOP_SIGNALS[(i // 2) % len(STOP_SIGNALS)]  # SIGHUP, SIGQUIT too
        out = tmp_path / f"run{i:02d}"
        log = out / "events.jsonl"
        proc, started = _start(out)
        at = started if anchor == "start" else _wait_for_log(log, proc)
        time.sleep(max(0.0, at + delay - time.time()))
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=120)
        where = f"signal {sig.name} {delay:.3f} s after {'start' if anchor == 'start' else 'the log appeared'}"
        if _in_interpreter_start_up(stderr, proc.returncode, log):
            continue
        assert "Traceback" not in stdout + stderr, where
        if not log.exists() or not log.read_bytes():
            assert proc.returncode == 128 + sig, (where, proc.returncode, stderr)  # nothing was opened
            continue
        seen_sessions += 1
        events = read_events(log)
        outcome = events[-1].get("outcome")
        expected = {"aborted": 128 + sig, "complete": 0}
        assert outcome in expected and proc.returncode == expected[outcome], (where, outcome, proc.returncode)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        record = out / "simulator.json"
        simulator = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
        assert check(events, summary=summary, simulator=simulator, exit_code=proc.returncode) == {}, where
        if simulator is not None:
            assert simulator["generator"] == {"armed": False, "output_on": False}, where
    assert seen_sessions >= MOMENTS // 4, "too few signals landed inside a session to say anything"


LATE = """
import os, signal, sys, tempfile
from pathlib import Path
from plasmactl.plan import load_plan
from plasmactl.session import SessionInputs, run_blocking
plan = load_plan(sys.argv[1])[0]
result = run_blocking(SessionInputs(plan=plan, plan_file=None), Path(tempfile.mkdtemp()))
for _ in range(int(sys.argv[2])):
    os.kill(os.getpid(), signal.SIGTERM)
print(result.outcome, flush=True)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize(("signals", "code"), [(1, 0), (2, 143)])
def test_a_signal_after_the_session_ended_keeps_its_outcome(signals: int, code: int) -> None:
    """Closing the session's event loop used to put the default handlers back: a SIGTERM in the moment
    between the end of the session and the end of the process killed it (-15) after a complete session.
    Now the first such signal is noted and the command ends with the session's own code; a second one ends
    the process at once (143)."""
    done = subprocess.run(
        [sys.executable, "-c", LATE, str(PLAN), str(signals)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == code, done.stderr
    assert "SIGTERM after the session had ended; its record is complete" in done.stderr
    assert ("complete" in done.stdout) == (code == 0)


@pytest.mark.subprocess
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_mid_session_ends_in_the_safe_state(tmp_path: Path, sig: signal.Signals) -> None:
    """Only SIGINT and SIGTERM were taken: SIGHUP (a closed terminal or SSH connection) or SIGQUIT mid-session
    killed the process by the signal's default action, exit 129/131 with no plasma_off, no disarm and no
    session_end, the generator armed until its own watchdog. Now every stop signal ends the session through
    the safe state, with the shell's exit code for it."""
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "plasmactl"), "run", str(PLAN), "--realtime", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = out / "events.jsonl"
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        if log.exists() and b'"pulse":2,' in log.read_bytes():
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the session ended before the signal"
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stdout + stderr
    events = read_events(log)
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] == "aborted" and end["signal"] == sig.name
    after = [e["event"] for e in events[next(i for i, e in enumerate(events) if e["event"] == "abort") :]]
    assert after.index("plasma_off") < after.index("plasma_disarm") < after.index("session_end")
    simulator = json.loads((out / "simulator.json").read_text(encoding="utf-8"))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert check(events, summary=summary, simulator=simulator, exit_code=proc.returncode) == {}
    assert simulator["generator"] == {"armed": False, "output_on": False}
