"""Which request goes first when several wait for one shared link (an RS-485 bus, one TCP connection).

A wire carries one exchange at a time. Without an order, a spray command could queue behind a heartbeat and
a routine status poll, and its cooling window would pass while they run. So every request carries a class:
the controller sets it for what it is doing (``at``), a link serves its waiting requests in class order and,
within a class, first come first served. An exchange already on the wire is never interrupted, so a request
waits for at most the one in flight plus the waiting requests of a more urgent class.

The class travels in a context variable: a task's requests inherit the class set in that task, and the
default is ``ROUTINE`` (status polls and heartbeats).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from enum import IntEnum


class BusPriority(IntEnum):
    """Lower goes first."""

    EMISSION_OFF = 0  # output off and disarm: the safe state
    SAFETY = 1  # E-stop, footswitch and tip reads
    PULSE = 2  # the pulse's own exchanges: the checks just before it, fire, its end
    COOLING = 3  # the spray command and its valve feedback
    ROUTINE = 4  # heartbeats and routine status polls


_CURRENT: contextvars.ContextVar[BusPriority] = contextvars.ContextVar("bus_priority", default=BusPriority.ROUTINE)


def current() -> BusPriority:
    """The class of a request sent now from this task."""
    return _CURRENT.get()


@contextlib.contextmanager
def at(priority: BusPriority) -> Iterator[None]:
    """Requests made inside the block (by this task) carry ``priority``."""
    token = _CURRENT.set(priority)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def for_this_task(priority: BusPriority) -> None:
    """Every later request of the calling task carries ``priority`` (a task's context is its own copy)."""
    _CURRENT.set(priority)
