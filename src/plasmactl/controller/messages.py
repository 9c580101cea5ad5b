"""What the helper tasks post to the owner task, and in which order it takes them.

Nothing but the owner changes the machine or commands a device's emission; watchers, the monitor, the
safety listener, signal handlers and timers only post these. Trips, safety input changes (an E-stop),
abort, crashes, a cooling window's deadline and a spray confirmed inside it jump the queue (priority 0); the
pulse cycle comes after (1), in order of posting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plasmactl.controller.trips import Trip
from plasmactl.ports import PlasmaStatus, SafetyState, SprayStatus


@dataclass(frozen=True, slots=True)
class Start:
    """Connect, self-test, arm: the first thing the owner does (after anything of priority 0)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time for the next pulse (a stale tick, superseded by a later schedule, is dropped)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Finish:
    """Every spot of the plan has had its pulses and its cooling."""


@dataclass(frozen=True, slots=True)
class PulseOver:
    """The generator shows the pulse over: output off and its count advanced."""

    pulse: int
    status: PlasmaStatus


@dataclass(frozen=True, slots=True)
class SprayDue:
    """The plan's deliberate cooling delay has elapsed for these pulses."""

    pulse: int


@dataclass(frozen=True, slots=True)
class SprayConfirmed:
    """The valve feedback showed open with water flowing, inside the cooling window."""

    spray: int
    status: SprayStatus


@dataclass(frozen=True, slots=True)
class SprayDone:
    spray: int
    t_closed: float


@dataclass(frozen=True, slots=True)
class SafetyChanged:
    state: SafetyState


@dataclass(frozen=True, slots=True)
class Recheck:
    """The monitor's period passed while paused: see whether emission may resume."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A timed interlock's deadline has come (the cooling window's end): judge its rules now."""


@dataclass(frozen=True, slots=True)
class TripCmd:
    trip: Trip


@dataclass(frozen=True, slots=True)
class Abort:
    reason: str
    signal: str | None = None  # SIGINT / SIGTERM


@dataclass(frozen=True, slots=True)
class Crash:
    """A helper task failed unexpectedly; the owner drives to the safe state."""

    where: str
    error: str


Changes = Mapping[str, Mapping[str, Any]]  # plan section -> field -> new value


@dataclass(frozen=True)
class EditResult:
    """What became of a plan edit: applied from pulse ``from_pulse`` on, or refused with ``reason``."""

    applied: bool
    reason: str
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    from_pulse: int | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """An operator's plan edit (``plasmactl.controller.edits``); ``reply`` is told what became of it."""

    changes: Changes
    reply: Callable[[EditResult], None] | None = None


Message = (
    Start
    | Edit
    | Tick
    | Finish
    | PulseOver
    | SprayDue
    | SprayConfirmed
    | SprayDone
    | SafetyChanged
    | Recheck
    | Deadline
    | TripCmd
    | Abort
    | Crash
)


# A spray confirmed inside its window is as urgent as the window's deadline: whichever was posted first is
# taken first (a tuple: no union object made per message).
_URGENT = (TripCmd, Abort, Crash, SafetyChanged, Deadline, SprayConfirmed)


def priority(msg: Message) -> int:
    return 0 if isinstance(msg, _URGENT) else 1


class Inbox:
    """The owner's queue: by priority, then in order of posting; one reader.

    What ``asyncio.PriorityQueue`` does for one reader and no size limit, in a fraction of its calls (a
    message per pulse step, some ten thousand per session): an idle reader waits on one future, which the
    next post resolves (so it wakes where the queue's getter would).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Message]] = []
        self._seq = itertools.count()
        self._waiter: asyncio.Future[None] | None = None

    def post(self, msg: Message) -> None:
        heapq.heappush(self._heap, (priority(msg), next(self._seq), msg))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> Message:
        while not self._heap:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return heapq.heappop(self._heap)[2]

    def drain(self) -> list[Message]:
        """Everything still queued, in order (the queue is left empty)."""
        left = [msg for _, _, msg in sorted(self._heap)]
        self._heap.clear()
        return left
