"""The live view (tracker issue 11, item 1): ``plasmactl monitor RUN_DIR`` and ``plasmactl run PLAN --live``.

Headless, with Textual's pilot: the monitor on a finished faulted session and on a log that does not exist
yet (then grows, a line at a time half written); the live dashboard's abort key taking a running session to
the safe state through the controller's own abort; the dashboard's numbers against the log's; bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from textual.pilot import Pilot

from plasmactl.cli import exit_code
from plasmactl.cli_inputs import load_inputs
from plasmactl.controller.ledger import ledger_from_events
from plasmactl.controller.trips import Rule
from plasmactl.dashboard import ABORT_REASON, Dashboard
from plasmactl.dashboard_chart import LIMIT_LINE, skin_chart
from plasmactl.dashboard_model import DashboardModel
from plasmactl.dashboard_source import LogFollower, NotALog, check_log
from plasmactl.dashboard_widgets import LampPanel, SkinChart, StatePanel
from plasmactl.events import read_events
from plasmactl.live_run import LiveSession, dashboard_for
from plasmactl.session import run_blocking
from test_cli import EXAMPLES, FULL_FACE, PLASMACTL, SHORT, all_output, invoke

SIZE = (130, 42)
OFFSET = EXAMPLES / "faults" / "thermometer-offset.toml"  # skin over the hard limit at 2.3 s: a fault
FOOTSWITCH = EXAMPLES / "faults" / "safety-footswitch-release.toml"  # a pause, then the pause timeout


def session_log(out: Path, plan: Path, faults: Path | None) -> Path:
    run_blocking(load_inputs(plan, None, faults, 0), out, handle_sigint=False)
    return out


@pytest.fixture(scope="module")
def offset_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_log(tmp_path_factory.mktemp("offset") / "run", SHORT, OFFSET)


@pytest.fixture(scope="module")
def footswitch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_log(tmp_path_factory.mktemp("footswitch") / "run", SHORT, FOOTSWITCH)


async def until(pilot: Pilot[None], cond: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.iterdir()}


# --------------------------------------------------------------------------- monitor


async def test_monitor_on_a_finished_faulted_session(offset_run: Path) -> None:
    before = snapshot(offset_run)
    app = Dashboard(LogFollower(offset_run / "events.jsonl"), where=str(offset_run))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.model.ended)
        await pilot.pause()
        m = app.model
        assert m.state == "fault" and m.state_changes > 5 and m.outcome == "fault"
        state = app.query_one(StatePanel).plain
        assert "FAULT" in state and "armed → fault" in state and "session fault (skin_temp_hard_limit)" in state
        lamps = app.query_one(LampPanel)
        lamp = lamps.lamp(Rule.SKIN_TEMP_HARD_LIMIT)
        assert lamp is not None and lamp.status == "trip"
        assert lamp.reason is not None and "exceeds the hard limit" in lamp.reason
        assert f"● skin_temp_hard_limit  (2.300 s): {lamp.reason}" in lamps.plain
        assert all(x.status == "ok" for x in m.lamp_list() if x.rule != Rule.SKIN_TEMP_HARD_LIMIT)
        assert {x.rule for x in m.lamp_list()} == {str(r) for r in Rule}
        assert app.check_action("abort", ()) is False  # no abort key: the monitor only reads
        chart = app.query_one(SkinChart).render()
        assert "40.0┤" in str(chart) and LIMIT_LINE in str(chart)
        await pilot.press("q")
    assert app.return_code == 0
    assert snapshot(offset_run) == before  # read-only: nothing written, nothing touched


async def test_monitor_started_before_the_log_exists(footswitch_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "events.jsonl"
    lines = (footswitch_run / "events.jsonl").read_bytes().splitlines(keepends=True)
    paused = next(i for i, line in enumerate(lines) if b'"dest":"paused"' in line) + 1
    app = Dashboard(LogFollower(log), where=str(run_dir), refresh_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        assert app.model.events == 0 and "waiting for" in app.query_one(StatePanel).plain
        with log.open("ab") as f:  # the session so far, and half of its next line
            f.write(b"".join(lines[:paused]) + lines[paused][:20])
        await until(pilot, lambda: app.model.state == "paused")
        await pilot.pause(0.2)
        assert app.model.events == paused  # the half line is not read
        lamp = app.query_one(LampPanel).lamp(Rule.FOOTSWITCH_RELEASED)
        assert lamp is not None and lamp.status == "pause" and lamp.reason == "footswitch released: emission paused"
        assert "PAUSED" in app.query_one(StatePanel).plain
        with log.open("ab") as f:
            f.write(lines[paused][20:] + b"".join(lines[paused + 1 :]))
        await until(pilot, lambda: app.model.ended)
        await pilot.pause()
        assert app.model.events == len(lines) and app.model.state == "fault"
        lamps = app.query_one(LampPanel)
        timeout = lamps.lamp(Rule.PAUSE_TIMEOUT)
        assert timeout is not None and timeout.status == "trip" and "paused for over 120 s" in lamps.plain
        assert "paused → fault" in app.query_one(StatePanel).plain
    assert sorted(p.name for p in run_dir.iterdir()) == ["events.jsonl"]


def test_the_follower_reads_complete_lines_and_starts_over_on_a_new_log(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    follower = LogFollower(log)
    assert follower.poll().events == [] and follower.waiting is not None
    log.write_bytes(b'{"t": 0.0, "event": "session_start"}\n{"t": 0.1, "ev')
    assert [e["event"] for e in follower.poll().events] == ["session_start"] and follower.waiting is None
    with log.open("ab") as f:
        f.write(b'ent": "state", "dest": "idle"}\n')
    assert [e["event"] for e in follower.poll().events] == ["state"]
    log.write_bytes(b'{"t": 0.0, "event": "session_start"}\n')  # written anew (--overwrite)
    batch = follower.poll()
    assert batch.restart and [e["event"] for e in batch.events] == ["session_start"]
    follower.close()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0.0, "event": "state"}\n', encoding="utf-8")
    with pytest.raises(NotALog, match="first record is 'state'"):
        check_log(bad)


def test_the_chart_keeps_to_its_size_and_marks_pulses_sprays_and_the_limit() -> None:
    readings = [(0.1 * i, 35.0 + 0.1 * i) for i in range(100)]  # 35.0 .. 44.9 C over 10 s
    text = skin_chart(readings, [1.0, 2.0], [1.02], limit_c=40.0, t_end=9.9, width=40, height=12)
    rows = text.plain.split("\n")
    assert len(rows) == 12 and all(len(r) <= 40 for r in rows)
    assert rows[-3].count("▲") == 2 and rows[-2].count("≈") == 1
    limit_row = next(r for r in rows if r.startswith("  40.0┤"))
    assert LIMIT_LINE in limit_row
    over = [span for span in text.spans if span.style == "bold red"]
    assert over  # readings over the limit are drawn red


# --------------------------------------------------------------------------- run --live


@pytest.mark.hazard("H2")
async def test_live_abort_key_takes_the_session_to_the_safe_state(tmp_path: Path) -> None:
    out = tmp_path / "live"
    # on the real clock: in virtual time the 1517 pulses can all be over before the key is taken
    session = LiveSession(load_inputs(FULL_FACE, None, None, 0), out, realtime=True)
    app = dashboard_for(session, start=True)  # the session starts once the first frame is shown
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model.pulses_started >= 3)
            assert app.check_action("abort", ()) is True
            await pilot.press("q")  # refused while the session runs
            assert app.return_code is None
            await pilot.press("a")
            await until(pilot, lambda: app.model.ended and not session.running, within_s=60.0)
            await pilot.pause(0.3)
            assert app.model.outcome == "aborted" and app.model.state == "idle"
            assert app.check_action("abort", ()) is None  # shown, disabled: the session has ended
            state = app.query_one(StatePanel).plain
            assert f"abort: {ABORT_REASON}" in state and "session aborted" in state and "press q" in state
            model = app.model
            await pilot.press("q")
        assert app.return_code == 0
        result = session.join(30.0)
    finally:
        if session.started and session.running:
            session.request_abort()
            session.wait()
    assert result.outcome == "aborted" and result.cause == "operator interrupt" and result.signal is None
    assert exit_code(result) == 130  # as `run` (an operator's stop)
    events = read_events(out / "events.jsonl")
    aborts = [i for i, e in enumerate(events) if e["event"] == "abort"]
    assert len(aborts) == 1 and events[aborts[0]]["reason"] == ABORT_REASON and events[aborts[0]]["signal"] is None
    after = events[aborts[0] :]
    assert any(e["event"] == "plasma_off" and e["ok"] for e in after)
    assert any(e["event"] == "plasma_disarm" and e["ok"] for e in after)
    assert [e["dest"] for e in after if e["event"] == "state"][-1] == "idle"
    assert events[-1]["event"] == "session_end" and events[-1]["outcome"] == "aborted"

    # the dashboard's numbers are the log's
    assert model.events == len(events)
    delays = [float(e["delay_ms"]) for e in events if e["event"] == "spray_start"]
    c = model.cooling()
    assert c.count == len(delays) and c.max_ms == max(delays)
    assert c.p50_ms == float(np.percentile(delays, 50)) and c.p99_ms == float(np.percentile(delays, 99))
    assert c.limit_ms == events[0]["limits"]["max_cooling_delay_ms"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["cooling_delay_ms"] == {"max": c.max_ms, "p50": c.p50_ms, "p99": c.p99_ms}
    p = model.progress()
    spots = {e["spot"] for e in events if e["event"] == "pulse_start"}
    assert p.pulses_started == sum(e["event"] == "pulse_start" for e in events) == result.pulses
    assert p.spots_finished == len(spots) and p.spots_planned == events[0]["spots_planned"] == 1517
    assert p.eta_s is None  # ended
    ledger, expected = model.ledger(), ledger_from_events(events)
    assert ledger is not None and expected is not None and ledger.summary() == expected.summary()
    view = model.ledger_view()
    assert view is not None and view.not_started == summary["ledger"]["spots_not_started"]
    assert view.done == summary["ledger"]["spots_complete"] and view.over_dosed == 0


@pytest.mark.hazard("H2")
async def test_ctrl_c_in_a_live_session_is_the_abort(tmp_path: Path) -> None:
    """In a terminal, Ctrl-C means stop: in ``run --live`` it takes the session to the safe state (as the
    abort key), it does not leave the dashboard with the session running."""
    out = tmp_path / "live"
    session = LiveSession(load_inputs(FULL_FACE, None, None, 0), out, realtime=True)
    app = dashboard_for(session, start=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model.pulses_started >= 3)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: app.model.ended and not session.running, within_s=60.0)
            await until(pilot, lambda: not app._live_running, within_s=10.0)  # the session thread's end seen
            await pilot.pause(0.3)
            assert app.model.outcome == "aborted"
            await pilot.press("ctrl+c")  # the session over: Ctrl-C now quits
        assert app.return_code == 0
        result = session.join(30.0)
    finally:
        if session.started and session.running:
            session.request_abort()
            session.wait()
    assert result.outcome == "aborted"
    events = read_events(out / "events.jsonl")
    assert [e["reason"] for e in events if e["event"] == "abort"] == [ABORT_REASON]
    assert events[-1]["event"] == "session_end" and events[-1]["outcome"] == "aborted"


def test_an_abort_asked_for_before_the_session_starts_is_its_first_message(tmp_path: Path) -> None:
    session = LiveSession(load_inputs(SHORT, None, None, 0), tmp_path / "early")
    session.request_abort()
    session.start()
    result = session.join(60.0)
    assert result.outcome == "aborted" and result.pulses == 0
    events = read_events(tmp_path / "early" / "events.jsonl")
    assert [e["reason"] for e in events if e["event"] == "abort"] == [ABORT_REASON]
    assert not any(e["event"] == "pulse_start" for e in events)
    drained = 0
    while not session.events.empty():
        session.events.get_nowait()
        drained += 1
    assert drained == len(events)  # every event went to the dashboard's queue


def test_the_model_counts_what_the_log_says(offset_run: Path) -> None:
    events = read_events(offset_run / "events.jsonl")
    m = DashboardModel()
    m.feed_all(events)
    assert m.skin_limit_c == events[0]["limits"]["skin_temp_max_c"] and m.plan_name == "short"
    assert m.skin_max_c == max(float(e["skin_c"]) for e in events if e["event"] in ("reading", "pulse_start"))
    assert len(m.pulse_marks) == 3 and len(m.spray_marks) == 3
    p = m.progress()
    assert (p.spots_finished, p.spots_planned, p.pulses_started) == (3, 6, 3)
    view = m.ledger_view()
    assert view is not None and (view.done, view.partial, view.not_started, view.over_dosed) == (3, 0, 3, 0)


# --------------------------------------------------------------------------- the command


def test_monitor_bad_input_exits_2_without_a_traceback(tmp_path: Path) -> None:
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("hello\n", encoding="utf-8")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "events.jsonl").write_text('{"t": 0.0, "event": "state"}\n', encoding="utf-8")
    for args, says in (
        (["monitor", str(tmp_path / "nope")], "no such folder"),
        (["monitor", str(not_a_log)], "not a session's audit log: line 1 is not a JSON record"),
        (["monitor", str(bad_dir)], "not a session's audit log: its first record is 'state'"),
        (["monitor", str(tmp_path), "--port", "8080"], "--port is the port of --web"),
        (["monitor"], "Missing argument"),
        (["run", str(SHORT), "--live", "--out", str(tmp_path / "o")], "the dashboard needs a terminal"),
    ):
        result = invoke(args)
        assert result.exit_code == 2, (args, all_output(result))
        assert says in all_output(result) and "Traceback" not in all_output(result)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "o").exists()


async def first_screen(url: str, wanted: bytes) -> bytes:
    """What the dashboard a browser tab gets over the websocket shows, until ``wanted`` is in it."""
    got = b""
    async with aiohttp.ClientSession() as client, client.ws_connect(f"{url}/ws?width=120&height=40") as ws:
        async with asyncio.timeout(30):
            async for msg in ws:
                got += msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
                if wanted in got:
                    break
    return got


@pytest.mark.subprocess
def test_monitor_web_serves_the_dashboard_on_loopback(tmp_path: Path) -> None:
    run_dir = tmp_path / "not-started-yet"
    run_dir.mkdir()
    with subprocess.Popen(
        [str(PLASMACTL), "monitor", str(run_dir), "--web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), url
            with urllib.request.urlopen(url, timeout=10) as page:
                html = page.read().decode()
            assert page.status == 200 and f"ws://{url.removeprefix('http://')}/ws" in html
            shown = asyncio.run(first_screen(url, b"waiting for"))  # the tab's own `plasmactl monitor RUN_DIR`
            assert b"waiting for" in shown
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert list(run_dir.iterdir()) == []  # read-only
