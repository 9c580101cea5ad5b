"""One clock for controller code: real time on the bench, virtual (fast-forward) time in CI.

Controller code only ever asks a :class:`Clock` for the time and for sleeps, so the same code runs on a
normal asyncio loop and on :class:`VirtualTimeLoop`, which jumps over idle time instead of waiting.

Real I/O (other processes, threads, ptys) does not live in virtual time: if the loop jumps while a reply is
on its way, the client's timeout fires first.  A driver therefore wraps each request in flight in
:func:`io_hold`, during which the virtual loop waits in real time and advances its clock 1:1.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["Clock", "LoopClock", "VirtualTimeLoop", "io_hold", "run"]

T = TypeVar("T")

SELECTOR_RESOLUTION_S = 1e-3  # a real loop's timer granularity: epoll/poll timeouts are whole milliseconds


class Clock(Protocol):
    """What controller code may ask about time; never call ``time.monotonic``/``asyncio.sleep`` directly."""

    def now(self) -> float:
        """Seconds since the clock's epoch (session start)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of clock time."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Sleep until ``now() == t`` (absolute; no drift accumulates over periodic loops)."""
        ...

    def call_at(self, t: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """Run ``callback`` when ``now() == t`` (a deadline without a task); cancel the handle to drop it."""
        ...

    def wall_time(self) -> float:
        """``time.time()``: for wall-clock fields in records only, never for control timing."""
        ...

    @property
    def timer_resolution_s(self) -> float:
        """The shortest sleep the clock times faithfully: a shorter one lasts this long (0: exact)."""
        ...

    @property
    def virtual(self) -> bool:
        """Whether this is virtual time (a pause of the host is no pause of the clock)."""
        ...


class LoopClock:
    """A :class:`Clock` over an event loop's ``time()``: real on a normal loop, virtual on a virtual one."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._epoch = self._loop.time()
        # On a virtual loop its time is read where it is kept (now() is called ~160k times per session).
        self._virtual = self._loop._virtual_selector if isinstance(self._loop, VirtualTimeLoop) else None

    @property
    def epoch(self) -> float:
        """The loop time at construction, i.e. where ``now()`` is 0.0."""
        return self._epoch

    def now(self) -> float:
        virtual = self._virtual
        return (virtual.now if virtual is not None else self._loop.time()) - self._epoch

    async def sleep(self, seconds: float) -> None:
        # asyncio.sleep, less its frame and its always-cancel of the timer that has just fired: the same timer
        # (loop.time() + seconds) and the same wakeup, tens of thousands of times per simulated session.
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = self._loop
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_at(loop.time() + seconds, _resolve, fut)
        try:
            await fut
        except BaseException:
            handle.cancel()  # cancelled while waiting: drop the timer
            raise

    async def sleep_until(self, t: float) -> None:
        # A timer at exactly epoch + t: on a virtual loop the clock then reads exactly that time on wakeup.
        fut: asyncio.Future[None] = self._loop.create_future()
        handle = self._loop.call_at(self._epoch + t, _resolve, fut)
        try:
            await fut
        except BaseException:
            handle.cancel()
            raise

    def call_at(self, t: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        return self._loop.call_at(self._epoch + t, callback)

    def wall_time(self) -> float:
        return time.time()

    @property
    def virtual(self) -> bool:
        return self._virtual is not None

    @property
    def timer_resolution_s(self) -> float:
        # asyncio's selectors wait in whole milliseconds (epoll, poll), rounded up; a virtual loop jumps exactly
        return 0.0 if self._virtual is not None else SELECTOR_RESOLUTION_S


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _VirtualSelector(selectors.DefaultSelector):
    """The real selector, plus the virtual clock: polls I/O without waiting, and jumps over idle time.

    asyncio passes ``select`` the time until the next timer (computed from the loop's ``time()``), 0 when
    callbacks are ready, or None when there are no timers; advancing the clock by exactly that timeout
    makes the next timer due.
    """

    # While callbacks are ready the OS is asked only every this many iterations (a poll is a system call,
    # and a simulated session runs hundreds of thousands of iterations); it is always asked before a jump.
    BUSY_POLL_EVERY = 16

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.holds = 0
        self._busy = 0
        # epoll and poll objects answer poll(0) with the ready fds: when that is empty (nearly every time) the
        # wrapper's select (timeout conversion, key lookups) is not needed. The OS is asked all the same.
        native: Any = getattr(self, "_selector", None)
        self._peek: Callable[[int], list[Any]] | None = (
            native.poll if isinstance(self, selectors.EpollSelector | selectors.PollSelector) else None
        )

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.holds == 0:
            if timeout == 0:
                self._busy += 1
                if self._busy < self.BUSY_POLL_EVERY:
                    return []
            self._busy = 0
            peek = self._peek
            events = [] if peek is not None and not peek(0) else super().select(0)
            if events or timeout == 0:
                return events
            if timeout is not None:
                self.now += timeout  # idle: jump to the next timer
                return []
            # No timers at all: only I/O, a thread or a signal can wake us, so wait for real.
        start = time.monotonic()
        try:
            return super().select(timeout)
        finally:
            self.now += time.monotonic() - start


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual (from 0.0) and which skips idle time, except during holds.

    Signals and ``call_soon_threadsafe`` still work: they wake the loop through its self-pipe, which the
    non-blocking poll sees.  Virtual time is deterministic as long as no hold is active and no outside
    I/O arrives; under a hold it follows real time.
    """

    def __init__(self) -> None:
        self._virtual_selector = _VirtualSelector()
        super().__init__(self._virtual_selector)

    def time(self) -> float:
        return self._virtual_selector.now

    @contextlib.contextmanager
    def io_hold(self) -> Iterator[None]:
        """While active, wait for I/O in real time (virtual time advances 1:1) instead of jumping."""
        self._virtual_selector.holds += 1
        try:
            yield
        finally:
            self._virtual_selector.holds -= 1


def io_hold() -> AbstractContextManager[None]:
    """Mark a request in flight on the running loop: a hold on a :class:`VirtualTimeLoop`, else a no-op.

    Usage in a driver: ``with clock.io_hold(): reply = await asyncio.wait_for(read_reply(), timeout)``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return contextlib.nullcontext()
    if isinstance(loop, VirtualTimeLoop):
        return loop.io_hold()
    return contextlib.nullcontext()


def run(main: Coroutine[Any, Any, T], *, virtual: bool) -> T:
    """Like ``asyncio.run``, on a :class:`VirtualTimeLoop` if ``virtual`` else on a normal new loop."""
    factory = VirtualTimeLoop if virtual else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
