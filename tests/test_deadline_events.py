"""Tests for ``with_timeout`` (deadline.py), the audit log (events.py) and the summary (summary.py)."""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plasmactl import clock
from plasmactl.deadline import with_timeout
from plasmactl.events import SAFETY_EVENTS, AuditLog, read_events
from plasmactl.summary import summarize

T = TypeVar("T")
LOOPS = pytest.mark.parametrize("virtual", [True, False], ids=["virtual", "real"])


def _run(main: Coroutine[Any, Any, T], virtual: bool) -> T:
    return clock.run(main, virtual=virtual)


@pytest.fixture
def timeouts(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Counts the ``asyncio.timeout`` contexts ``with_timeout`` opens (each one arms a timer)."""
    calls: list[float | None] = []
    real = asyncio.timeout

    def counting(delay: float | None) -> asyncio.Timeout:
        calls.append(delay)
        return real(delay)

    monkeypatch.setattr(asyncio, "timeout", counting)  # deadline.py looks it up at call time
    return calls


# -------------------------------------------------------------------------------------- with_timeout


async def _immediate(value: int) -> int:
    return value


async def _after(delay: float, value: int) -> int:
    await asyncio.sleep(delay)
    return value


@LOOPS
def test_immediate_value_without_a_timer(virtual: bool, timeouts: list[float | None]) -> None:
    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        value = await with_timeout(_immediate(7), 0.5)
        after = len(loop._scheduled)  # type: ignore[attr-defined]
        return value, before, after

    value, before, after = _run(main(), virtual)
    assert value == 7
    assert before == after
    assert timeouts == []


@LOOPS
def test_immediate_value_of_a_done_future(virtual: bool, timeouts: list[float | None]) -> None:
    async def main() -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.set_result("done")
        return await with_timeout(fut, 0.5)

    assert _run(main(), virtual) == "done"
    assert timeouts == []


@LOOPS
def test_suspending_value_within_timeout(virtual: bool, timeouts: list[float | None]) -> None:
    async def main() -> tuple[int, float]:
        c = clock.LoopClock()
        value = await with_timeout(_after(0.01, 42), 1.0)
        return value, c.now()

    value, elapsed = _run(main(), virtual)
    assert value == 42
    assert timeouts == [1.0]
    assert 0.01 <= elapsed < 1.0
    if virtual:
        assert elapsed == pytest.approx(0.01)


@LOOPS
def test_pending_future_resolved_later(virtual: bool) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.01, fut.set_result, "late")
        return await with_timeout(fut, 1.0)

    assert _run(main(), virtual) == "late"


@LOOPS
def test_timeout_raises_and_cancels_the_inner_coroutine(virtual: bool) -> None:
    seen: list[str] = []

    async def slow() -> int:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("finally")
        return 1

    async def main() -> float:
        c = clock.LoopClock()
        with pytest.raises(TimeoutError):
            await with_timeout(slow(), 0.05)
        return c.now()

    elapsed = _run(main(), virtual)
    assert seen == ["cancelled", "finally"]
    assert 0.05 <= elapsed < 5.0
    if virtual:
        assert elapsed == pytest.approx(0.05)


@LOOPS
def test_timeout_of_a_pending_future(virtual: bool) -> None:
    async def main() -> bool:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError):
            await with_timeout(fut, 0.02)
        return fut.cancelled()

    assert _run(main(), virtual) is True


@LOOPS
def test_several_suspensions_under_one_deadline(virtual: bool) -> None:
    async def steps() -> int:
        total = 0
        for i in range(5):
            await asyncio.sleep(0.01)
            total += i
        return total

    async def main() -> None:
        assert await with_timeout(steps(), 1.0) == 10
        with pytest.raises(TimeoutError):
            await with_timeout(steps(), 0.035)  # the deadline covers all the steps, not each one

    _run(main(), virtual)


@LOOPS
def test_cancelling_the_outer_task_cancels_the_inner(virtual: bool) -> None:
    seen: list[str] = []

    async def inner() -> int:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("finally")
        return 1

    async def main() -> bool:
        task = asyncio.get_running_loop().create_task(with_timeout(inner(), 60.0))
        await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert _run(main(), virtual) is True
    assert seen == ["cancelled", "finally"]


@LOOPS
def test_cancel_before_first_suspension_completes(virtual: bool) -> None:
    """A task cancelled while waiting for its first step (created, not yet run) never starts the inner."""
    started: list[bool] = []

    async def inner() -> int:
        started.append(True)
        await asyncio.sleep(1.0)
        return 1

    async def main() -> None:
        coro = inner()
        task = asyncio.get_running_loop().create_task(with_timeout(coro, 5.0))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        coro.close()  # never started, as with a plain await: close it to silence the warning

    _run(main(), virtual)
    assert started == []


@LOOPS
def test_exception_after_suspending_propagates_unchanged(virtual: bool) -> None:
    error = ValueError("boom")

    async def failing() -> int:
        await asyncio.sleep(0.01)
        raise error

    async def main() -> BaseException:
        with pytest.raises(ValueError, match="boom") as exc:
            await with_timeout(failing(), 1.0)
        return exc.value

    assert _run(main(), virtual) is error


@LOOPS
def test_exception_before_suspending_propagates_unchanged(virtual: bool) -> None:
    error = KeyError("k")

    async def failing() -> int:
        raise error

    async def main() -> BaseException:
        with pytest.raises(KeyError) as exc:
            await with_timeout(failing(), 1.0)
        return exc.value

    assert _run(main(), virtual) is error


@LOOPS
def test_inner_may_handle_cancellation_itself(virtual: bool) -> None:
    """As with a plain await: if the inner swallows the timeout's cancellation, its value is returned."""

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            return "cleaned up"
        return "slept"

    async def main() -> str:
        return await with_timeout(stubborn(), 0.01)

    # asyncio.timeout only converts a CancelledError it sees; a swallowed one leaves the value.
    assert _run(main(), virtual) == "cleaned up"


def test_virtual_long_timeout_is_fast() -> None:
    async def main() -> tuple[int, float]:
        c = clock.LoopClock()
        value = await with_timeout(_after(1000.0, 3), 2000.0)
        with pytest.raises(TimeoutError):
            await with_timeout(_after(1000.0, 3), 999.0)
        return value, c.now()

    value, now = clock.run(main(), virtual=True)
    assert value == 3
    assert now == pytest.approx(1999.0)


# ------------------------------------------------------------------------------------------ audit log


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _in_virtual_time(fn: Callable[[clock.LoopClock], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn(clock.LoopClock())

    return clock.run(main(), virtual=True)


def test_audit_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    heard: list[Mapping[str, Any]] = []

    async def session(c: clock.LoopClock) -> list[dict[str, Any]]:
        log = AuditLog(path, c)
        log.subscribe(heard.append)
        returned = [log.emit("session_start", plan="p", rig="r")]
        await c.sleep(1.5)
        returned.append(log.emit("reading", skin_c=33.123456789123456, sample_t=1.4999999999999))
        await c.sleep(0.25)
        returned.append(log.emit("pulse_start", pulse=1, pos=[1.0000000000004, 2.5], meta={"x": 1 / 3}))
        await c.sleep(1234.5)
        returned.append(log.emit("pulse_end", pulse=1, energy_j=float("nan"), hi=float("inf"), lo=[float("-inf")]))
        returned.append(log.emit("session_end", outcome="complete"))
        assert log.count == 5
        log.close()
        log.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            log.emit("reading", skin_c=1.0)
        assert log.count == 5
        return returned

    returned = _in_virtual_time(session)
    events = _lines(path)
    assert len(events) == 5
    for e in events:
        assert list(e)[:2] == ["t", "event"]
    assert [e["t"] for e in events] == [0.0, 1.5, 1.75, 1236.25, 1236.25]
    assert [e["event"] for e in events] == ["session_start", "reading", "pulse_start", "pulse_end", "session_end"]
    # the chain's prev_sha256 comes last (tests/test_audit_chain.py checks its value)
    assert list(events[1]) == ["t", "event", "skin_c", "sample_t", "prev_sha256"]
    unchained = {k: v for k, v in events[1].items() if k != "prev_sha256"}
    assert unchained == {"t": 1.5, "event": "reading", "skin_c": 33.123456789, "sample_t": 1.5}
    assert events[2]["pos"] == [1.0, 2.5]
    assert events[2]["meta"] == {"x": 0.333333333}
    assert events[3]["energy_j"] == "nan"
    assert events[3]["hi"] == "inf"
    assert events[3]["lo"] == ["-inf"]
    # listeners and the return value are what was written
    assert [dict(h) for h in heard] == events
    assert returned == events
    assert read_events(path) == events


def test_audit_log_survives_an_unserializable_field(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def session(c: clock.LoopClock) -> None:
        log = AuditLog(path, c)
        log.emit("reading", skin_c=30.0)
        with pytest.raises(TypeError):
            log.emit("reading", skin_c=object())
        await c.sleep(1.0)
        log.emit("reading", skin_c=31.0)
        log.close()

    _in_virtual_time(session)
    assert [(e["t"], e["skin_c"]) for e in _lines(path)] == [(0.0, 30.0), (1.0, 31.0)]


def test_audit_log_truncates_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"t":0,"event":"old"}\n', encoding="utf-8")

    async def session(c: clock.LoopClock) -> None:
        log = AuditLog(path, c)
        log.emit("session_start")
        log.close()

    _in_virtual_time(session)
    assert [e["event"] for e in _lines(path)] == ["session_start"]


def test_fsync_on_safety_events_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    path = tmp_path / "audit.jsonl"
    counts: dict[str, int] = {}

    async def session(c: clock.LoopClock) -> None:
        log = AuditLog(path, c)

        def emit(event: str, **fields: Any) -> None:
            before = len(synced)
            log.emit(event, **fields)
            key = event if "dest" not in fields else f"state->{fields['dest']}"
            counts[key] = len(synced) - before

        for event in ("reading", "pulse_start", "pulse_end", "spray_start", "spray_end", "comm_error"):
            emit(event)
        for event in sorted(SAFETY_EVENTS):
            emit(event)
        for dest in ("armed", "pulsing", "idle", "fault", "estop", "paused", "complete"):
            emit("state", src="x", dest=dest, trigger="t")
        before = len(synced)
        log.close()
        counts["close"] = len(synced) - before

    _in_virtual_time(session)
    for event in ("reading", "pulse_start", "pulse_end", "spray_start", "spray_end", "comm_error"):
        assert counts[event] == 0, event
    for event in SAFETY_EVENTS:
        assert counts[event] == 1, event
    for dest in ("armed", "pulsing", "idle"):
        assert counts[f"state->{dest}"] == 0, dest
    for dest in ("fault", "estop", "paused", "complete"):
        assert counts[f"state->{dest}"] == 1, dest
    assert counts["close"] == 1
    assert {"session_start", "session_end", "interlock_trip", "fault", "estop", "reset"} <= SAFETY_EVENTS


def test_audit_log_on_a_real_loop(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def main() -> None:
        c = clock.LoopClock()
        log = AuditLog(path, c)
        log.emit("session_start")
        await c.sleep(0.01)
        log.emit("reading", skin_c=30.0)
        log.close()

    clock.run(main(), virtual=False)
    events = _lines(path)
    assert events[0]["t"] == pytest.approx(0.0, abs=0.005)
    assert events[1]["t"] >= 0.01


# ---------------------------------------------------------------------------------------- read_events


def test_read_events_drops_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"t":0.0,"event":"a"}\n{"t":1.0,"event":"b"}\n{"t":2.0,"ev', encoding="utf-8")
    assert read_events(path) == [{"t": 0.0, "event": "a"}, {"t": 1.0, "event": "b"}]


def test_read_events_keeps_a_complete_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"t":0.0,"event":"a"}\n{"t":1.0,"event":"b"}', encoding="utf-8")
    assert [e["event"] for e in read_events(path)] == ["a", "b"]


def test_read_events_raises_on_a_torn_line_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"t":0.0,"event":"a"}\n{"t":1.0,"ev\n{"t":2.0,"event":"c"}\n', encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        read_events(path)


def test_read_events_raises_on_a_bad_terminated_last_line(tmp_path: Path) -> None:
    # a line that ends in a newline was written whole: if it does not parse, that is corruption
    path = tmp_path / "a.jsonl"
    path.write_text('{"t":0.0,"event":"a"}\n{"t":1.0,"ev\n', encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        read_events(path)


def test_read_events_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("", encoding="utf-8")
    assert read_events(path) == []


# ------------------------------------------------------------------------------------------- summary


def _session_events() -> list[dict[str, Any]]:
    delays = [10.0, 20.0, 30.0, 40.0]
    events: list[dict[str, Any]] = [
        {"t": 0.0, "event": "session_start", "wall_time": 1000.0},
        {"t": 0.1, "event": "reading", "skin_c": 32.0, "sample_t": 0.05},
    ]
    for i, delay in enumerate(delays, start=1):
        t = float(i)
        events += [
            {"t": t, "event": "pulse_start", "pulse": i, "skin_c": 33.0 + i / 10},
            {"t": t + 0.005, "event": "pulse_end", "pulse": i, "energy_j": 0.05 + i / 100},
            {"t": t + 0.01, "event": "spray_start", "spray": i, "delay_ms": delay},
            {"t": t + 0.2, "event": "spray_end", "spray": i},
        ]
    events += [
        {"t": 4.5, "event": "reading", "skin_c": 36.5, "sample_t": 4.45},
        {"t": 4.6, "event": "pulse_start", "pulse": 5},  # no skin_c: not counted
        {"t": 4.7, "event": "interlock_trip", "rule": "skin_temp_limit", "reason": "too warm", "latch": "fault"},
        {"t": 4.8, "event": "fault", "rule": "skin_temp_limit", "reason": "too warm"},
        {"t": 4.9, "event": "session_end", "outcome": "fault", "cause": "skin_temp_limit", "wall_time": 1004.5},
    ]
    return events


def test_summarize() -> None:
    s = summarize(_session_events())
    assert s["outcome"] == "fault"
    assert s["cause"] == "skin_temp_limit"
    assert s["pulses"] == 5  # pulses started (the fifth has no end: the record lacks it)
    assert s["sprays"] == 4
    assert s["energy_j_mean"] == pytest.approx((0.06 + 0.07 + 0.08 + 0.09) / 4)
    delays = s["cooling_delay_ms"]
    assert delays["max"] == 40.0
    assert delays["p50"] == pytest.approx(25.0)
    assert delays["p99"] == pytest.approx(30.0 + 0.97 * 10.0)  # linear interpolation
    assert s["max_skin_temp_c"] == 36.5
    assert s["trips"] == [{"t": 4.7, "rule": "skin_temp_limit", "reason": "too warm"}]
    assert s["session_s"] == 4.9
    assert s["wall_s"] == pytest.approx(4.5)
    json.dumps(s, allow_nan=False)  # the summary is plain JSON


def test_summarize_max_skin_from_pulse_start() -> None:
    events = [
        {"t": 0.0, "event": "reading", "skin_c": 33.0},
        {"t": 1.0, "event": "pulse_start", "skin_c": 38.25},
    ]
    assert summarize(events)["max_skin_temp_c"] == 38.25


def test_summarize_incomplete_log() -> None:
    s = summarize([{"t": 0.0, "event": "session_start", "wall_time": 5.0}, {"t": 2.0, "event": "pulse_end"}])
    assert s["outcome"] == "unknown: no session_end in the log (the session was cut)"
    assert s["pulses"] == 0  # pulses are counted by their start
    assert s["energy_j_mean"] is None
    assert s["cooling_delay_ms"] == {"max": None, "p50": None, "p99": None}
    assert s["max_skin_temp_c"] is None
    assert s["trips"] == []
    assert s["session_s"] == 2.0
    assert s["wall_s"] is None


def test_summarize_empty() -> None:
    s = summarize([])
    assert s["pulses"] == 0 and s["sprays"] == 0
    assert s["session_s"] == 0.0


def test_summary_of_a_written_log(tmp_path: Path) -> None:
    """The summary is derived from the log alone: writing and reading back gives the same summary."""
    path = tmp_path / "audit.jsonl"
    source = _session_events()

    async def session(c: clock.LoopClock) -> None:
        log = AuditLog(path, c)
        for e in source:
            await c.sleep_until(e["t"])
            fields = {k: v for k, v in e.items() if k not in ("t", "event")}
            log.emit(e["event"], **fields)
        log.close()

    _in_virtual_time(session)
    from_log = summarize(read_events(path))
    expected = summarize(source)
    assert from_log["pulses"] == expected["pulses"]
    assert from_log["trips"][0]["rule"] == "skin_temp_limit"
    assert from_log["trips"][0]["t"] == pytest.approx(4.7)
    assert from_log["cooling_delay_ms"] == expected["cooling_delay_ms"]
    assert from_log["max_skin_temp_c"] == expected["max_skin_temp_c"]
    assert math.isclose(from_log["session_s"], 4.9)


@pytest.mark.hazard("H2")
def test_a_trip_sends_its_off_before_fsyncing_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trip's record is written first (a crash keeps it), but the output-off command does not wait for the
    disk: no fsync between the record's write and the off command; one right after it covers both lines."""
    import orjson

    from plasmactl import events as events_mod
    from plasmactl.faults import load_faults
    from plasmactl.plan import load_plan
    from plasmactl.session import SessionInputs, run_blocking
    from plasmactl.simulators.devices import SimPlasma

    order: list[str] = []
    real_fsync, real_off, real_msg = os.fsync, SimPlasma.output_off, events_mod._FileSink.msg

    def fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    async def output_off(self: SimPlasma) -> None:
        order.append("off")
        await real_off(self)

    def msg(self: Any, line: bytes) -> None:
        order.append("write " + str(orjson.loads(line)["event"]))
        real_msg(self, line)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(SimPlasma, "output_off", output_off)
    monkeypatch.setattr(events_mod._FileSink, "msg", msg)
    examples = Path(__file__).resolve().parents[1] / "examples"
    plan, plan_file = load_plan(str(examples / "plans" / "short.toml"))
    faults, faults_file = load_faults(str(examples / "faults" / "safety-estop.toml"))
    inputs = SessionInputs(plan=plan, plan_file=plan_file, faults=faults, faults_file=faults_file)
    run_blocking(inputs, tmp_path, handle_sigint=False)
    trip = order.index("write interlock_trip")
    after = [x for x in order[trip + 1 :] if x in ("fsync", "off")]
    assert after[:2] == ["off", "fsync"], order[trip : trip + 6]
    assert order[trip + 1 : order.index("fsync", trip)].count("write plasma_off") == 1


@pytest.mark.hazard("H2")
def test_a_generator_that_refused_a_fire_with_an_answer_gets_the_full_off_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIRE refused with an answer (a Modbus exception response: the generator's own E-stop input) trips,
    but the generator is there: its off gets the link's whole budget, not the 10 ms a silent one gets. Before,
    on a busy RTU bus the short attempt failed and the acknowledged off came only after the cooling, 250 ms
    after the press (found by the hil suite's E-stop reaction test)."""
    from plasmactl.plan import load_plan
    from plasmactl.ports import DeviceError
    from plasmactl.session import SessionInputs, run_blocking
    from plasmactl.simulators.devices import SimPlasma

    real_fire, real_off = SimPlasma.fire, SimPlasma.output_off
    fired: list[int] = []

    async def fire(self: SimPlasma) -> None:
        fired.append(1)
        if len(fired) == 2:
            raise DeviceError("plasma", "write 10=[3] @1: exception response to FC6: server device failure", 4)
        await real_fire(self)

    async def output_off(self: SimPlasma) -> None:
        await asyncio.sleep(0.015)  # a shared bus: 15 ms to get the off through (virtual time; budget 20 ms)
        await real_off(self)

    monkeypatch.setattr(SimPlasma, "fire", fire)
    monkeypatch.setattr(SimPlasma, "output_off", output_off)
    examples = Path(__file__).resolve().parents[1] / "examples"
    plan, plan_file = load_plan(str(examples / "plans" / "short.toml"))
    run_blocking(SessionInputs(plan=plan, plan_file=plan_file), tmp_path, handle_sigint=False)
    events = read_events(tmp_path / "events.jsonl")
    trip = next(i for i, e in enumerate(events) if e["event"] == "interlock_trip")
    assert events[trip]["rule"] == "device_no_reply" and "exception response" in events[trip]["reason"]
    off = next(e for e in events[trip:] if e["event"] == "plasma_off")
    assert off["ok"] is True, off
    assert float(off["t"]) - float(events[trip]["t"]) < 0.05
