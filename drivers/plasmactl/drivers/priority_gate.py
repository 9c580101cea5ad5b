"""One exchange at a time on a link, the most urgent waiting request first (see plasmactl.bus_priority).

pymodbus serialises a client's requests with a FIFO lock; this gate sits in front of it, so the order in
which requests reach the wire is the order of their classes. A waiter cancelled before its turn leaves the
queue; one cancelled just after it was handed the link passes the link on, so a turn is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from plasmactl.bus_priority import BusPriority


class PriorityGate:
    """An exclusive hold on a link, granted in (priority, arrival) order."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self.waits = 0  # requests that found the link busy
        self.waits_by_priority: dict[BusPriority, int] = {}

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def queued(self) -> int:
        return sum(1 for *_, fut in self._waiting if not fut.done())

    async def acquire(self, priority: BusPriority) -> None:
        if not self._busy and not self._waiting:
            self._busy = True  # the common case: a free link, no future, no suspension
            return
        self.waits += 1
        self.waits_by_priority[priority] = self.waits_by_priority.get(priority, 0) + 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(priority), next(self._arrivals), fut))
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

    def _grant_next(self) -> None:
        while self._waiting:
            *_, fut = heapq.heappop(self._waiting)
            if not fut.done():  # a cancelled waiter's future is done: skip it
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
