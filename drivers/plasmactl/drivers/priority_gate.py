"""One exchange at a time on a link, the most urgent waiting request first (see plasmactl.bus_priority).

pymodbus serialises a client's requests with a FIFO lock; this gate sits in front of it, so the order in
which requests reach the wire is the order of their classes. A waiter cancelled before its turn leaves the
queue; one cancelled just after it was handed the link passes the link on, so a turn is never lost. While
a cooling chain holds routine traffic back (``bus_priority.hold_routine``), a routine request waits even on a
free link, for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority


class PriorityGate:
    """An exclusive hold on a link, granted in (priority, arrival) order; ``ROUTINE`` requests also wait
    while their loop's routine hold lasts (a cooling chain is open), at most ``ROUTINE_HOLD_MAX_S`` each."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, float, asyncio.Future[None]]] = []  # (priority, arrival, since, fut)
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None  # wakes a routine request held back on a free link
        self._watching = False
        self.waits = 0  # requests that found the link busy (or, routine ones, held)
        self.waits_by_priority: dict[BusPriority, int] = {}

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def queued(self) -> int:
        return sum(1 for *_, fut in self._waiting if not fut.done())

    async def acquire(self, priority: BusPriority) -> None:
        loop = asyncio.get_running_loop()
        if not self._watching:
            bus_priority.watch_hold(self)
            self._watching = True
        now = loop.time()
        if not self._busy and not self._waiting and _eligible(priority, now, now):
            self._busy = True  # the common case: a free link, no future, no suspension
            return
        self.waits += 1
        self.waits_by_priority[priority] = self.waits_by_priority.get(priority, 0) + 1
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (int(priority), next(self._arrivals), now, fut))
        if not self._busy:
            self._grant_next()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed the link as it was cancelled: hand it on
            raise

    def release(self) -> None:
        if not self._busy:
            raise RuntimeError("PriorityGate.release() without a hold")
        self._busy = False
        self._grant_next()

    def hold_changed(self) -> None:
        """The loop's routine hold was set or ended: a free link looks at its waiting requests again."""
        if not self._busy:
            self._grant_next()

    def _wake(self) -> None:
        self._timer = None
        if not self._busy:
            self._grant_next()

    def _grant_next(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._waiting:
            priority, _, since, fut = self._waiting[0]
            if fut.done():  # a cancelled waiter's future is done: skip it
                heapq.heappop(self._waiting)
                continue
            if not _eligible(priority, since, loop.time()):
                # the most urgent waiter is a held routine request, so every other one is too: the link stays
                # free for the chain until the hold ends or this request has waited its longest
                at = min(bus_priority.routine_held_until(), since + bus_priority.ROUTINE_HOLD_MAX_S)
                self._timer = loop.call_at(at, self._wake)
                return
            heapq.heappop(self._waiting)
            self._busy = True
            fut.set_result(None)
            return

    @contextlib.asynccontextmanager
    async def hold(self, priority: BusPriority) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


def _eligible(priority: int, since: float, now: float) -> bool:
    """Whether a request of ``priority`` waiting since ``since`` may have the link at ``now``."""
    if priority < BusPriority.ROUTINE:
        return True
    # ``since + MAX`` exactly as the wake-up timer computes it: ``now - since >= MAX`` can be false at that very
    # time by a rounding (0.8 - 0.7 < 0.1), and a virtual loop, which wakes exactly then, would spin
    return now >= bus_priority.routine_held_until() or now >= since + bus_priority.ROUTINE_HOLD_MAX_S
