"""Tests for plasmactl.clock: virtual time jumps over idle time, but follows real time under an io hold."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plasmactl import clock


def test_long_sleep_is_fast_and_exact() -> None:
    async def main() -> float:
        c = clock.LoopClock()
        assert c.now() == 0.0
        await c.sleep(1800)
        return c.now()

    start = time.monotonic()
    assert clock.run(main(), virtual=True) == 1800.0
    assert time.monotonic() - start < 0.5


def _scenario() -> list[tuple[str, float]]:
    """Interleaved periodic tasks; returns (task, virtual time) in wakeup order."""

    async def main() -> list[tuple[str, float]]:
        c = clock.LoopClock()
        log: list[tuple[str, float]] = []

        async def sleeper(name: str, period: float, count: int) -> None:
            for _ in range(count):
                await c.sleep(period)
                log.append((name, c.now()))

        await asyncio.gather(sleeper("a", 0.3, 4), sleeper("b", 0.5, 2), sleeper("c", 0.7, 2))
        return log

    return clock.run(main(), virtual=True)


def test_interleaved_sleepers_wake_in_order_at_exact_times() -> None:
    log = _scenario()
    a, b, c = 0.3, 0.5, 0.7
    expected = [
        ("a", a),
        ("b", b),
        ("a", a + a),
        ("c", c),
        ("a", a + a + a),
        ("b", b + b),
        ("a", a + a + a + a),
        ("c", c + c),
    ]
    assert log == expected  # exact float equality: wakeup at precisely the scheduled time


def test_deterministic() -> None:
    assert _scenario() == _scenario()


def test_sleep_until_lands_exactly() -> None:
    targets = [0.1, 0.30000000000000004, 1.0, 59.97, 1800.0, 3600.123456]

    async def main() -> list[float]:
        c = clock.LoopClock()
        woke = []
        for t in targets:
            await c.sleep_until(t)
            woke.append(c.now())
        await c.sleep_until(10.0)  # in the past: returns at once
        woke.append(c.now())
        return woke

    assert clock.run(main(), virtual=True) == [*targets, targets[-1]]


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_jump_makes_timer_due(now: float, when: float) -> None:
    """asyncio fires timers with ``when < time() + clock_resolution``; the jump ``now + (when - now)`` may be
    off by one ulp for extreme operands, but must never land where the timer is not yet due."""
    if now > when:
        now, when = when, now
    assert when < now + (when - now) + time.get_clock_info("monotonic").resolution


def test_wait_for_and_timeout_fire_at_virtual_deadline() -> None:
    async def main() -> tuple[float, float]:
        c = clock.LoopClock()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(100), 2.5)
        t1 = c.now()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(4.0):
                await asyncio.Event().wait()
        return t1, c.now()

    assert clock.run(main(), virtual=True) == (2.5, 6.5)


def _race_thread_reply_against_timer(hold: bool) -> tuple[str, float]:
    """A thread replies after 50 ms real time while a 1 s virtual timer competes; returns (winner, time)."""

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        c = clock.LoopClock()
        reply: asyncio.Future[str] = loop.create_future()

        def replier() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(reply.set_result, "reply")

        thread = threading.Thread(target=replier)
        timer = asyncio.ensure_future(c.sleep(1.0))
        thread.start()
        with clock.io_hold() if hold else contextlib.nullcontext():
            racers: set[asyncio.Future[Any]] = {reply, timer}
            done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        result = ("reply" if reply in done else "timer", c.now())
        await reply  # let the thread finish before the loop closes
        thread.join()
        timer.cancel()
        return result

    return clock.run(main(), virtual=True)


def test_io_hold_lets_outside_reply_beat_timer() -> None:
    winner, t = _race_thread_reply_against_timer(hold=True)
    assert winner == "reply"
    assert 0.04 <= t < 0.5


def test_without_io_hold_timer_wins() -> None:
    winner, t = _race_thread_reply_against_timer(hold=False)
    assert winner == "timer"
    assert t == 1.0


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A line echo server in a real thread (outside the event loop); yields its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as rf:
            for line in rf:
                time.sleep(0.001)  # the reply takes real time
                conn.sendall(line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    thread.join(timeout=5)
    srv.close()


def test_tcp_loopback_with_io_hold_no_timeouts(echo_server: int) -> None:
    async def main() -> tuple[int, int, float]:
        c = clock.LoopClock()
        ticks = 0

        async def ticker() -> None:  # competing timers, as a controller's periodic loop would have
            nonlocal ticks
            while True:
                await c.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        await c.sleep(5.0)  # virtual time passes with no hold: jumps
        with clock.io_hold():
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", echo_server), 1.0)
        timeouts = 0
        for i in range(100):
            with clock.io_hold():
                writer.write(f"req {i}\n".encode())
                try:
                    line = await asyncio.wait_for(reader.readline(), 1.0)
                    assert line == f"req {i}\n".encode()
                except TimeoutError:
                    timeouts += 1
            await c.sleep(0.1)  # idle between requests: jumps
        writer.close()
        await writer.wait_closed()
        tick_task.cancel()
        return timeouts, ticks, c.now()

    start = time.monotonic()
    timeouts, ticks, now = clock.run(main(), virtual=True)
    assert timeouts == 0
    assert now >= 15.0  # 5 s + 100 * 0.1 s virtual, plus the real time spent in holds
    assert ticks >= 1400
    assert time.monotonic() - start < 3.0


def test_loop_clock_on_real_loop_follows_real_time() -> None:
    async def main() -> tuple[float, float, float]:
        c = clock.LoopClock()
        start = time.monotonic()
        await c.sleep(0.02)
        after_sleep = c.now()
        await c.sleep_until(0.04)
        return after_sleep, c.now(), time.monotonic() - start

    after_sleep, after_until, real = clock.run(main(), virtual=False)
    assert 0.02 <= after_sleep < 0.2
    assert 0.04 <= after_until < 0.25
    assert real >= 0.039


def test_io_hold_is_noop_on_normal_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert not isinstance(loop, clock.VirtualTimeLoop)
        with clock.io_hold():
            await asyncio.sleep(0)

    clock.run(main(), virtual=False)
    with clock.io_hold():  # no running loop: also a no-op
        pass


def test_io_hold_nests_and_releases() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, clock.VirtualTimeLoop)
        with clock.io_hold(), clock.io_hold():
            pass
        c = clock.LoopClock()
        start = time.monotonic()
        await c.sleep(60)  # holds released: must jump, not wait
        assert time.monotonic() - start < 0.5
        return c.now()

    assert clock.run(main(), virtual=True) == 60.0


def test_thread_wakes_idle_loop_without_timers() -> None:
    """No timers at all: the loop waits for real, and call_soon_threadsafe wakes it."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        thread = threading.Timer(0.03, loop.call_soon_threadsafe, (fut.set_result, "woken"))
        thread.start()
        result = await fut
        thread.join()
        return result

    assert clock.run(main(), virtual=True) == "woken"


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_signal_handler_works_on_virtual_loop() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        c = clock.LoopClock()
        got: asyncio.Future[None] = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, None)
        try:
            thread = threading.Timer(0.03, os.kill, (os.getpid(), signal.SIGUSR1))
            thread.start()
            with clock.io_hold():
                await asyncio.wait_for(got, 10.0)
            thread.join()
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        return c.now()

    assert clock.run(main(), virtual=True) < 1.0


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_signal_is_seen_while_virtual_time_jumps() -> None:
    """No hold, and only a timer chain: every iteration jumps, so only the poll before each jump can see the
    signal's byte in the self-pipe (no task wakes to poll it otherwise)."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[str] = loop.create_future()
        give_up = time.monotonic() + 5.0

        def tick() -> None:
            if time.monotonic() > give_up:
                if not got.done():
                    got.set_result("not seen")
                return
            loop.call_at(loop.time() + 0.001, tick)

        loop.add_signal_handler(signal.SIGUSR1, lambda: None if got.done() else got.set_result("seen"))
        try:
            loop.call_at(0.001, tick)
            thread = threading.Timer(0.03, os.kill, (os.getpid(), signal.SIGUSR1))
            thread.start()
            result = await got
            thread.join()
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        return result

    assert clock.run(main(), virtual=True) == "seen"


def test_run_cancels_leftover_tasks_and_closes_loop() -> None:
    cancelled = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1e9)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> int:
        loops.append(asyncio.get_running_loop())
        asyncio.create_task(forever())  # noqa: RUF006 - left running on purpose
        await asyncio.sleep(0)
        return 7

    assert clock.run(main(), virtual=True) == 7
    assert cancelled == [True]
    assert loops[0].is_closed()
