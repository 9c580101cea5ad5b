"""Which request goes first when several wait for one shared link (an RS-485 bus, one TCP connection).

A wire carries one exchange at a time. Without an order, a spray command could queue behind a heartbeat and
a routine status poll, and its cooling window would pass while they run. So every request carries a class:
the controller sets it for what it is doing (``at``), a link serves its waiting requests in class order and,
within a class, first come first served. An exchange already on the wire is never interrupted, so a request
waits for at most the one in flight plus the waiting requests of a more urgent class.

The class travels in a context variable: a task's requests inherit the class set in that task, and the
default is ``ROUTINE`` (status polls and heartbeats). While a cooling chain is open (see below), links hold
``ROUTINE`` requests back for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import weakref
from collections.abc import Iterator
from enum import IntEnum
from typing import Any


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


# ----------------------------------------------------------------------------- cooling chains
# From a pulse's checks to its spray seen wet, every exchange the controller makes is on the way to the water;
# a heartbeat or routine poll that slips into a gap between two of them (the controller's own step between a
# reply and its next request) delays all that follow. While a chain is open, links hold ``ROUTINE`` requests
# back; none waits so for longer than ``ROUTINE_HOLD_MAX_S`` (the rig's watchdog check counts it), and the
# hold lapses by itself at the time the controller gave.
ROUTINE_HOLD_MAX_S = 0.1

_HOLDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hold] = weakref.WeakKeyDictionary()


class _Hold:
    """A loop's routine hold: until when, and the gates to wake when it ends early."""

    def __init__(self) -> None:
        self.until = -math.inf
        self.gates: weakref.WeakSet[Any] = weakref.WeakSet()


def _hold() -> _Hold:
    loop = asyncio.get_running_loop()
    hold = _HOLDS.get(loop)
    if hold is None:
        hold = _HOLDS[loop] = _Hold()
    return hold


def hold_routine(seconds: float) -> None:
    """Hold ``ROUTINE`` requests back on every link of this loop for ``seconds`` from now (at most
    ``ROUTINE_HOLD_MAX_S``), replacing any hold set before."""
    hold = _hold()
    hold.until = asyncio.get_running_loop().time() + min(max(seconds, 0.0), ROUTINE_HOLD_MAX_S)
    for gate in list(hold.gates):
        gate.hold_changed()


def release_routine() -> None:
    """End the hold now (the chain's spray is seen wet, or it ended otherwise)."""
    hold = _hold()
    if hold.until > -math.inf:
        hold.until = -math.inf
        for gate in list(hold.gates):
            gate.hold_changed()


def routine_held_until() -> float:
    """The loop time until which ``ROUTINE`` requests wait (``-inf``: no hold)."""
    hold = _HOLDS.get(asyncio.get_running_loop())
    return -math.inf if hold is None else hold.until


def routine_held() -> bool:
    """Whether ``ROUTINE`` requests are held back now."""
    return asyncio.get_running_loop().time() < routine_held_until()


def watch_hold(gate: Any) -> None:
    """Register a link's gate to be told when this loop's hold changes (it must have ``hold_changed()``)."""
    _hold().gates.add(gate)
