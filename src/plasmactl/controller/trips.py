"""What a trip is (its :class:`Rule` and what it latches) and what the rules judge (the :class:`Snapshot`).

The rules themselves are the pure functions of :mod:`plasmactl.controller.interlocks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, NamedTuple

from plasmactl.limits import Limits
from plasmactl.ports import PlasmaStatus, SafetyState, SkinReading, SprayStatus

Latch = Literal["fault", "estop", "pause"]
_EMPTY: Mapping[str, float] = MappingProxyType({})


class Rule(StrEnum):
    """Every name a trip can carry (the audit log's ``rule`` strings)."""

    ESTOP = "estop"
    SAFETY_INPUTS_STALE = "safety_inputs_stale"
    FOOTSWITCH_RELEASED = "footswitch_released"
    TIP_OUT_OF_WINDOW = "tip_out_of_window"
    TIP_IMPLAUSIBLE = "tip_implausible"
    THERMOMETER_STALE = "thermometer_stale"
    THERMOMETER_IMPLAUSIBLE = "thermometer_implausible"
    THERMOMETER_STUCK = "thermometer_stuck"
    SKIN_TEMP_LIMIT = "skin_temp_limit"
    SKIN_TEMP_HARD_LIMIT = "skin_temp_hard_limit"
    SPRAY_STATUS_STALE = "spray_status_stale"
    RESERVOIR_LOW = "reservoir_low"
    PLASMA_STATUS_STALE = "plasma_status_stale"
    DEVICE_FAULT = "device_fault"
    DEVICE_WATCHDOG = "device_watchdog"
    DEVICE_NO_REPLY = "device_no_reply"
    SESSION_TIME_EXCEEDED = "session_time_exceeded"
    DOSE_LIMIT = "dose_limit"
    UNEXPECTED_OUTPUT = "unexpected_output"
    PULSE_OVERRUN = "pulse_overrun"
    PULSE_NOT_DELIVERED = "pulse_not_delivered"
    ENERGY_OUT_OF_TOLERANCE = "energy_out_of_tolerance"
    COOLING_NOT_CONFIRMED = "cooling_not_confirmed"
    COOLING_WINDOW_UNREACHABLE = "cooling_window_unreachable"
    SPRAY_FLOW_LOST = "spray_flow_lost"
    VALVE_NOT_CLOSED = "valve_not_closed"
    PAUSE_TIMEOUT = "pause_timeout"
    SELF_TEST_FAILED = "self_test_failed"
    CONTROLLER_ERROR = "controller_error"


# What a rule latches; every rule not named here latches a fault. A pause inhibits emission (output off,
# disarmed) until its cause is gone and every guard of ``resume`` passes again.
LATCH: Mapping[Rule, Latch] = {
    Rule.ESTOP: "estop",
    Rule.SAFETY_INPUTS_STALE: "pause",
    Rule.FOOTSWITCH_RELEASED: "pause",
    Rule.TIP_OUT_OF_WINDOW: "pause",
    Rule.SPRAY_STATUS_STALE: "pause",
    Rule.PLASMA_STATUS_STALE: "pause",
}


@dataclass(frozen=True, slots=True)
class Trip:
    rule: Rule
    reason: str
    device: str | None = None  # the device concerned, when there is one
    answered: bool = False  # a command the device refused with an answer (it is not silent)

    @property
    def latch(self) -> Latch:
        return LATCH.get(self.rule, "fault")


@dataclass(frozen=True, slots=True)
class PulseFacts:
    """The pulse in flight or just ended, as far as the controller knows it."""

    number: int
    spot: int  # 1-based
    t_cmd: float  # the fire command was sent (emission cannot have started earlier)
    bound: float  # clock time by which a normal pulse is over (the software pulse bound)
    expected_count: int  # the generator's pulse count once this pulse has been emitted
    interrupted: bool = False
    t_off: float | None = None  # emission confirmed over (its end seen, or the cut acknowledged)
    energy_j: float | None = None  # delivered, as the generator reported it


@dataclass(frozen=True, slots=True)
class CoolingFacts:
    """Pulses waiting for their spray: the cooling window runs from the end of the first of them."""

    pulses: tuple[int, ...]
    window_start: float
    spray: int | None = None  # the spray commanded for them
    confirmed: bool = False  # the spray was seen open with water flowing inside the window
    t_spray_end: float | None = None  # a confirmed spray's planned end (the valve must close after it)
    t_spray_cmd: float | None = None  # when its command was sent (its valve cannot close before + spray_s)
    t_wet: float | None = None  # when it was seen open with water flowing

    def window_end(self, limits: Limits) -> float:
        """The window's last instant: water on the skin then is still in time."""
        return self.window_start + limits.cooling_window_s


@dataclass(frozen=True, slots=True)
class SpotFacts:
    """The dose ledger's view of the spot the next pulse goes to."""

    spot: int
    pulses_started: int
    pulses_planned: int
    delivered_j: float
    unknown_pulses: int  # pulses whose delivered energy the generator never reported
    planned_j: float


class Snapshot(NamedTuple):
    """What the controller knows at ``now``; every status and reading carries the time it was taken.

    Immutable (a NamedTuple: built several times per pulse, so it is cheap to make)."""

    now: float
    limits: Limits
    energy_j: float  # the plan's energy per pulse
    pulse_s: float  # the plan's pulse length
    spray_s: float
    safety: SafetyState | None = None
    reading: SkinReading | None = None
    plasma: PlasmaStatus | None = None
    spray: SprayStatus | None = None
    max_age_s: Mapping[str, float] = _EMPTY
    last_heard: Mapping[str, float] = _EMPTY
    watchdog_s: Mapping[str, float] = _EMPTY
    # stuck-sensor tracking: when the reading last moved beyond the noise band, and pulses since then
    reading_moved_t: float | None = None
    pulses_since_moved: int = 0
    session_start: float = 0.0
    flow_seen_ml_s: float = 0.0  # the largest flow measured during a spray so far
    pulse: PulseFacts | None = None
    pending: CoolingFacts | None = None
    spot: SpotFacts | None = None
    paused_since: float | None = None
    output_off_since: float = -math.inf  # emission last confirmed off (an older status may show it on)
    # from a pulse's fire decision to the earliest water on the skin after it: the fire latency, the pulse,
    # seeing its end, the spray's way to water (as last seen, or as the rig says before any spray)
    cooling_lead_s: float = 0.0

    def age(self, t: float | None) -> float:
        return math.inf if t is None else self.now - t

    def stale(self, device: str, t: float | None) -> bool:
        return self.age(t) > self.max_age_s.get(device, math.inf)


Interlock = Callable[[Snapshot], Trip | None]


def emits(*rules: Rule) -> Callable[[Interlock], Interlock]:
    """Declare the rules a function may return (a test checks that every rule is in some set)."""

    def mark(fn: Interlock) -> Interlock:
        fn.rules = rules  # type: ignore[attr-defined]
        return fn

    return mark


def rules_of(fn: Interlock) -> tuple[Rule, ...]:
    rules: tuple[Rule, ...] = getattr(fn, "rules", ())
    return rules


def first_trip(rules: tuple[Interlock, ...], snapshot: Snapshot, skip_latch: tuple[str, ...] = ()) -> Trip | None:
    """The first rule that trips, in declaration order (passing over trips whose latch is in ``skip_latch``)."""
    for rule in rules:
        trip = rule(snapshot)
        if trip is not None and trip.latch not in skip_latch:
            return trip
    return None


def all_trips(rules: tuple[Interlock, ...], snapshot: Snapshot) -> list[Trip]:
    """Every rule that trips (what a refused reset reports)."""
    return [t for t in (rule(snapshot) for rule in rules) if t is not None]
