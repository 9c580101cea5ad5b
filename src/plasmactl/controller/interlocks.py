"""Interlocks: pure functions over a snapshot of the rig that pass or return a named trip with its reason.

They hold no state and do no I/O, so each one can be tested in isolation with a hand-made snapshot,
and the controller can evaluate the same rule as a guard (before ``arm``/``fire``) and in its monitor.
Timed rules (a pulse's bound, the cooling window) are deadlines owned by the controller; their rule
names are declared here too so every name a trip can carry is in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from plasmactl.limits import Limits
from plasmactl.ports import CoolingStatus, PlasmaStatus, SafetyState, SkinReading

Latch = Literal["fault", "estop", "pause"]


@dataclass(frozen=True, slots=True)
class Trip:
    rule: str
    reason: str
    latch: Latch = "fault"


@dataclass(frozen=True)
class Snapshot:
    """What the controller knows at ``now``; every reading carries the time it was taken."""

    now: float
    limits: Limits
    spray_s: float
    safety: SafetyState | None = None
    reading: SkinReading | None = None
    plasma: PlasmaStatus | None = None
    cooling: CoolingStatus | None = None
    last_heard: Mapping[str, float] = field(default_factory=dict)
    watchdog_s: Mapping[str, float] = field(default_factory=dict)
    # stuck-sensor tracking: when the reading last moved beyond the noise band, and pulses since then
    reading_moved_t: float | None = None
    pulses_since_moved: int = 0
    session_start: float = 0.0


Interlock = Callable[[Snapshot], Trip | None]


# Rules owned by controller deadlines or device replies (not snapshot functions).
COOLING_NOT_CONFIRMED = "cooling_not_confirmed"
PULSE_OVERRUN = "pulse_overrun"
ENERGY_OUT_OF_TOLERANCE = "energy_out_of_tolerance"
DEVICE_NO_REPLY = "device_no_reply"
SELF_TEST_FAILED = "self_test_failed"
CONTROLLER_ERROR = "controller_error"
PAUSE_TIMEOUT = "pause_timeout"
UNEXPECTED_OUTPUT = "unexpected_output"


def estop(s: Snapshot) -> Trip | None:
    if s.safety is None:
        return Trip("safety_inputs_unknown", "no state of the E-stop, footswitch and tip inputs yet")
    if s.safety.estop:
        return Trip("estop", "E-stop input is active", "estop")
    return None


def footswitch(s: Snapshot) -> Trip | None:
    if s.safety is not None and not s.safety.footswitch:
        return Trip("footswitch_released", "footswitch released: emission paused", "pause")
    return None


def tip_window(s: Snapshot) -> Trip | None:
    if s.safety is None:
        return None
    d, lim = s.safety.tip_distance_mm, s.limits
    if not (lim.tip_min_mm <= d <= lim.tip_max_mm):
        return Trip(
            "tip_out_of_window",
            f"tip distance {d:.2f} mm outside the arc window [{lim.tip_min_mm:g}, {lim.tip_max_mm:g}] mm",
        )
    return None


def thermometer_stale(s: Snapshot) -> Trip | None:
    if s.reading is None:
        return Trip("thermometer_stale", "no skin temperature reading yet")
    age_ms = (s.now - s.reading.t) * 1000.0
    if age_ms > s.limits.reading_max_age_ms:
        return Trip(
            "thermometer_stale",
            f"last skin reading is {age_ms:.0f} ms old (limit {s.limits.reading_max_age_ms:g} ms)",
        )
    return None


def thermometer_plausible(s: Snapshot) -> Trip | None:
    if s.reading is None:
        return None
    v, lim = s.reading.value_c, s.limits
    if not (lim.plausible_min_c <= v <= lim.plausible_max_c):
        return Trip(
            "thermometer_implausible",
            f"skin reading {v:.2f} C outside the plausible range [{lim.plausible_min_c:g}, {lim.plausible_max_c:g}] C",
        )
    return None


def thermometer_stuck(s: Snapshot) -> Trip | None:
    if s.reading_moved_t is None or s.pulses_since_moved == 0:
        return None
    still_s = s.now - s.reading_moved_t
    if still_s > s.limits.stuck_window_s:
        return Trip(
            "thermometer_stuck",
            f"skin reading unchanged (within {s.limits.stuck_epsilon_c:g} C) for {still_s:.1f} s"
            f" while {s.pulses_since_moved} pulses were delivered",
        )
    return None


def skin_temp_before_pulse(s: Snapshot) -> Trip | None:
    if s.reading is not None and s.reading.value_c >= s.limits.skin_temp_max_c:
        return Trip(
            "skin_temp_limit",
            f"skin {s.reading.value_c:.2f} C is at or over the limit {s.limits.skin_temp_max_c:g} C",
        )
    return None


def skin_temp_hard(s: Snapshot) -> Trip | None:
    if s.reading is not None and s.reading.value_c > s.limits.hard_trip_c:
        return Trip(
            "skin_temp_hard_limit",
            f"skin {s.reading.value_c:.2f} C exceeds the hard limit {s.limits.hard_trip_c:g} C",
        )
    return None


def reservoir(s: Snapshot) -> Trip | None:
    if s.cooling is None:
        return Trip("reservoir_low", "reservoir level unknown")
    needed = s.cooling.flow_ml_s * s.spray_s
    if s.cooling.reservoir_ml < needed:
        return Trip(
            "reservoir_low",
            f"reservoir {s.cooling.reservoir_ml:.2f} ml is below the {needed:.2f} ml the next spray needs",
        )
    return None


def device_fault_codes(s: Snapshot) -> Trip | None:
    for name, status in (("plasma", s.plasma), ("spray", s.cooling)):
        if status is not None and status.fault_code:
            return Trip("device_fault", f"{name} reports fault code {status.fault_code}")
    return None


def watchdog(s: Snapshot) -> Trip | None:
    for device, limit in s.watchdog_s.items():
        heard = s.last_heard.get(device)
        if heard is None:
            continue
        silent = s.now - heard
        if silent > limit:
            return Trip(
                "device_watchdog",
                f"{device} silent for {silent * 1000:.0f} ms (watchdog {limit * 1000:g} ms)",
            )
    return None


def session_time(s: Snapshot) -> Trip | None:
    elapsed = s.now - s.session_start
    if elapsed > s.limits.max_session_s:
        return Trip(
            "session_time_exceeded",
            f"session running {elapsed:.0f} s, over limits.max_session_s = {s.limits.max_session_s:g}",
        )
    return None


# Checked before arming the plasma source.
ARM: tuple[Interlock, ...] = (
    estop,
    tip_window,
    thermometer_stale,
    thermometer_plausible,
    skin_temp_before_pulse,
    reservoir,
    device_fault_codes,
    watchdog,
    session_time,
)
# Checked before every pulse: never fire a pulse that cannot be cooled.
FIRE: tuple[Interlock, ...] = (
    estop,
    footswitch,
    tip_window,
    thermometer_stale,
    thermometer_plausible,
    skin_temp_hard,
    skin_temp_before_pulse,
    thermometer_stuck,
    reservoir,
    device_fault_codes,
    watchdog,
    session_time,
)
# Re-checked by the monitor at every tick while a session runs.
CONTINUOUS: tuple[Interlock, ...] = (
    estop,
    thermometer_stale,
    thermometer_plausible,
    skin_temp_hard,
    thermometer_stuck,
    device_fault_codes,
    watchdog,
    session_time,
)


def first_trip(rules: tuple[Interlock, ...], snapshot: Snapshot) -> Trip | None:
    """The first rule that trips, in declaration order (E-stop first)."""
    for rule in rules:
        trip = rule(snapshot)
        if trip is not None:
            return trip
    return None
