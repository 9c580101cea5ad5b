"""What watches a session cannot end it: a console whose pipe closed, a full stdout, a listener that raises.

Before the stdout guard and the listener isolation, ``plasmactl run PLAN -v | head -200`` ended the session
in the middle of a pulse's cooling (rich turns a broken pipe into SystemExit inside the audit log's listener):
no plasma_off, no disarm, ``session_end`` "did not start" with 0 pulses after 28, exit 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plasmactl.clock import LoopClock, VirtualTimeLoop
from plasmactl.events import AuditLog, read_events
from plasmactl.invariants import check
from plasmactl.session import SessionInputs, run_blocking
from safety_run import ROOT, example_plan

PLASMACTL = str(Path(sys.executable).with_name("plasmactl"))
PLAN = str(ROOT / "examples/plans/periorbital.toml")


def _ends_safely(out: Path, pulses: int) -> list[dict[str, Any]]:
    events = read_events(out / "events.jsonl")
    names = [e["event"] for e in events]
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] == "complete" and not end["internal_error"], end
    assert end["pulses"] == pulses and names.count("pulse_start") == pulses
    assert "plasma_disarm" in names
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["outcome"] == "complete" and summary["pulses"] == pulses
    return events


@pytest.mark.parametrize("lines", [3, 200, 2000])
def test_a_reader_that_goes_away_does_not_end_the_session(tmp_path: Path, lines: int) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PLASMACTL, "run", PLAN, "-v", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    for _ in range(lines):  # the first lines, as `head -N` reads them, then the pipe is closed
        if not proc.stdout.readline():
            break
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    _ends_safely(out, example_plan("periorbital").pulse_count)


def test_a_full_stdout_is_reported_and_is_exit_1_not_a_traceback(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([PLASMACTL, "check", PLAN], stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 1
    assert b"could not write to stdout" in done.stderr and b"Traceback" not in done.stderr
    # a session's record is its product: complete on disk, the console's loss reported
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [PLASMACTL, "run", PLAN, "--out", str(out)], stdout=full, stderr=subprocess.PIPE, timeout=120
        )
    assert done.returncode == 1 and b"could not write to stdout" in done.stderr, done.stderr
    _ends_safely(out, example_plan("periorbital").pulse_count)


def test_a_failing_listener_is_dropped_and_recorded(tmp_path: Path) -> None:
    loop = VirtualTimeLoop()
    try:

        async def main() -> list[str]:
            log = AuditLog(tmp_path / "events.jsonl", LoopClock())
            seen: list[str] = []

            def console(e: Mapping[str, Any]) -> None:
                seen.append(e["event"])
                raise SystemExit(1)  # what rich's Console does on a broken pipe

            log.subscribe(console)
            log.emit("session_start")
            log.emit("state", src="a", dest="b")
            log.close()
            return seen

        seen = loop.run_until_complete(main())
    finally:
        loop.close()
    events = read_events(tmp_path / "events.jsonl")
    assert seen == ["session_start"]  # dropped after its failure
    assert [e["event"] for e in events] == ["session_start", "listener_error", "state"]
    assert "SystemExit" in events[1]["error"]


@settings(max_examples=12, deadline=None)
@given(at=st.integers(0, 2000), kind=st.sampled_from([SystemExit, BrokenPipeError, ValueError]))
def test_a_listener_failing_at_any_event_leaves_the_session_whole(at: int, kind: type[BaseException]) -> None:
    """Whatever record the console fails on (start-up, a pulse, a spray, the end), the session runs to its end
    with every safety invariant held and its records in agreement."""
    count = [0]

    def console(e: Mapping[str, Any]) -> None:
        count[0] += 1
        if count[0] > at:
            raise kind("console gone")

    plan = example_plan("periorbital")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result = run_blocking(SessionInputs(plan=plan, plan_file=None), out, listeners=(console,), handle_sigint=False)
        assert result.outcome == "complete" and not result.internal_error
        events = _ends_safely(out, plan.pulse_count)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        simulator = json.loads((out / "simulator.json").read_text(encoding="utf-8"))
        violations = {k: v for k, v in check(events, summary=summary, simulator=simulator).items() if v}
        assert not violations, violations
        dropped = [e for e in events if e["event"] == "listener_error"]
        assert len(dropped) == (1 if at < len(events) - len(dropped) else 0)
