"""Messages to the task that owns the state machine.

Nothing but that task changes the machine or commands emission; watchers, the monitor and the
operator only post these. Trips, E-stop and abort jump the queue (priority 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from plasmactl.controller.interlocks import Trip
from plasmactl.ports import SafetyState


@dataclass(frozen=True, slots=True)
class Tick:
    """Time for the next pulse."""

    seq: int


@dataclass(frozen=True, slots=True)
class Finish:
    """Every spot of the plan has been delivered and cooled."""


@dataclass(frozen=True, slots=True)
class PulseEnded:
    pulse: int
    t_end: float  # conservative (never later than the true end) estimate of when emission stopped
    energy_j: float | None
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class SprayDue:
    """The plan's deliberate cooling delay has elapsed for this pulse."""

    pulse: int


@dataclass(frozen=True, slots=True)
class SprayConfirmed:
    spray: int
    t_open: float  # time of the first status that showed the valve open


@dataclass(frozen=True, slots=True)
class SprayDone:
    spray: int
    t_closed: float


@dataclass(frozen=True, slots=True)
class SafetyChanged:
    state: SafetyState


@dataclass(frozen=True, slots=True)
class TripCmd:
    trip: Trip


@dataclass(frozen=True, slots=True)
class Abort:
    reason: str


@dataclass(frozen=True, slots=True)
class Crash:
    """A helper task failed unexpectedly; the owner drives to the safe state."""

    where: str
    error: str


Command = Tick | Finish | PulseEnded | SprayDue | SprayConfirmed | SprayDone | SafetyChanged | TripCmd | Abort | Crash


def priority(cmd: Command) -> int:
    return 0 if isinstance(cmd, TripCmd | Abort | Crash | SafetyChanged) else 1
