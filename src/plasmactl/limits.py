"""Hard caps and the effective limits of a session.

The caps are constants in code, not configuration: a plan may tighten any of them and never loosen
one (IEC 60601-1 style: the software limit is a second layer beside the device's own protection).
The numbers behind them are explained in ``docs/domain.md``.
"""

from __future__ import annotations

import math
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Caps:
    """The hard caps. Units are in the names."""

    # The largest plasma skin regeneration handpiece pulses (1-4 J per pulse on a ~6 mm spot).
    MAX_ENERGY_J: Final = 4.0
    # Energy per area of one pulse. The top setting of the plasma skin regeneration devices, 4 J on a
    # ~6 mm spot, is about 14 J/cm2; fractional ablative zones are treated with 10-20 mJ over 120-300 um
    # (14-28 J/cm2 over 300 um). 25 J/cm2 is the top of that practice: the skin model already ablates
    # through the epidermis at ~17 J/cm2 on a 0.3 mm spot, and a millijoule number typed into a joule
    # field (a factor of 1000) lands far above the cap whatever the spot size. It caps what a pulse may
    # deliver, not only the setting: a plan is refused unless its setting x (1 + the energy tolerance), the
    # most the per-pulse energy check accepts, is within it (a generator running 10 % high on a setting at
    # the cap would otherwise deliver over it pulse after pulse, never tripping). The energy caps below
    # (MAX_ENERGY_J, limits.max_energy_j) are caps on the setting, as a generator's own range is.
    MAX_FLUENCE_J_CM2: Final = 25.0
    # The spot: fractional zones are 120-300 um across, the plasma skin regeneration handpiece's spot about
    # 6 mm. A diameter over 10 mm is no handpiece of this kind; it is a micrometre number in a millimetre
    # field (300 for 0.3 mm), which would make every fluence look a million times smaller than it is.
    MAX_SPOT_DIAMETER_MM: Final = 10.0
    MAX_PULSE_MS: Final = 100.0
    # the generator's setpoint resolution (its contract: ENERGY_SET in uJ, PULSE_SET in 10 us): a plan asking
    # for less cannot be configured, so it is refused when read, not at the device
    MIN_ENERGY_J: Final = 1e-6
    MIN_PULSE_MS: Final = 0.01
    # A spurt under 10 ms puts next to no water on the skin (cryogen spray cooling uses spurts of 10-100 ms)
    # and could open and close between two reads of the valve feedback: it would never count as cooling, so
    # every pulse would trip. A number under 1 is most likely seconds typed into the millisecond field.
    MIN_SPRAY_MS: Final = 10.0
    MAX_COOLING_DELAY_MS: Final = 1000.0  # epidermal heat diffuses in tens of ms: 1 s is already late
    SKIN_TEMP_MAX_C: Final = 43.0  # IEC 60601-1 applied-part limit
    MAX_SESSION_S: Final = 3600.0
    ENERGY_TOLERANCE_PCT: Final = 20.0  # IEC 60601-2-22: output within +-20 % of the setting
    READING_MAX_AGE_MS: Final = 2000.0
    STUCK_WINDOW_S: Final = 30.0
    MAX_PAUSE_S: Final = 600.0
    PLAUSIBLE_MIN_C: Final = 5.0
    PLAUSIBLE_MAX_C: Final = 60.0
    # A reading above the skin limit by this much trips at any time, not only before a pulse.
    HARD_TRIP_MARGIN_C: Final = 3.0
    # The tip distance sensor's range: a reading outside [0, this] is a sensor fault, not a lifted tip.
    TIP_SENSOR_MAX_MM: Final = 50.0
    # A spray counts as cooling only with at least this measured flow (a floor: a plan may raise it).
    MIN_SPRAY_FLOW_ML_S: Final = 0.05
    # A pulse is decided on safety inputs read at most this long before (from the moment the read was
    # sent): a footswitch released or a tip lifted since is at most this late to stop the next pulse. A
    # bus read of them takes 1-5 ms, one queued behind other polls on a shared RS-485 bus about 10 ms.
    FIRE_SAFETY_AGE_S: Final = 0.020


PositiveFloat = Annotated[float, Field(gt=0)]


def fluence_j_cm2(energy_j: float, spot_diameter_mm: float) -> float:
    """Energy per area of one pulse on a round spot."""
    radius_cm = spot_diameter_mm / 20.0
    return energy_j / (math.pi * radius_cm * radius_cm)


class Limits(BaseModel):
    """Effective limits: defaults are safe; each field may be tightened in a plan, never loosened."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    max_energy_j: PositiveFloat = Caps.MAX_ENERGY_J
    max_fluence_j_cm2: PositiveFloat = Caps.MAX_FLUENCE_J_CM2
    max_pulse_ms: PositiveFloat = Caps.MAX_PULSE_MS
    max_cooling_delay_ms: PositiveFloat = 100.0
    skin_temp_max_c: PositiveFloat = 40.0
    max_session_s: PositiveFloat = Caps.MAX_SESSION_S
    energy_tolerance_pct: PositiveFloat = Caps.ENERGY_TOLERANCE_PCT
    reading_max_age_ms: PositiveFloat = 500.0
    plausible_min_c: float = 5.0  # a cold mist takes the treated patch down to 10-15 C at times
    plausible_max_c: float = 50.0
    stuck_window_s: PositiveFloat = 10.0
    stuck_epsilon_c: Annotated[float, Field(ge=0)] = 0.005
    max_pause_s: PositiveFloat = 120.0
    # Arc distance window of the handpiece: no arc on contact, no controlled arc when lifted.
    tip_min_mm: Annotated[float, Field(ge=0.05)] = 0.2
    tip_max_mm: Annotated[float, Field(le=3.0)] = 1.5
    min_spray_flow_ml_s: PositiveFloat = Caps.MIN_SPRAY_FLOW_ML_S

    @model_validator(mode="after")
    def _within_caps(self) -> Limits:
        upper = {
            "max_energy_j": Caps.MAX_ENERGY_J,
            "max_fluence_j_cm2": Caps.MAX_FLUENCE_J_CM2,
            "max_pulse_ms": Caps.MAX_PULSE_MS,
            "max_cooling_delay_ms": Caps.MAX_COOLING_DELAY_MS,
            "skin_temp_max_c": Caps.SKIN_TEMP_MAX_C,
            "max_session_s": Caps.MAX_SESSION_S,
            "energy_tolerance_pct": Caps.ENERGY_TOLERANCE_PCT,
            "reading_max_age_ms": Caps.READING_MAX_AGE_MS,
            "stuck_window_s": Caps.STUCK_WINDOW_S,
            "max_pause_s": Caps.MAX_PAUSE_S,
            "plausible_max_c": Caps.PLAUSIBLE_MAX_C,
        }
        for name, cap in upper.items():
            value = getattr(self, name)
            if value > cap:
                raise ValueError(
                    f"{name} = {_exact(value)} exceeds the hard cap {cap:g} (a plan may only tighten limits)"
                )
        lower = {"plausible_min_c": Caps.PLAUSIBLE_MIN_C, "min_spray_flow_ml_s": Caps.MIN_SPRAY_FLOW_ML_S}
        for name, floor in lower.items():
            value = getattr(self, name)
            if value < floor:
                raise ValueError(
                    f"{name} = {_exact(value)} is below the hard cap {floor:g} (a plan may only tighten limits)"
                )
        if self.tip_min_mm >= self.tip_max_mm:
            raise ValueError("tip_min_mm must be below tip_max_mm")
        if self.plausible_min_c >= self.plausible_max_c:
            raise ValueError("plausible_min_c must be below plausible_max_c")
        if self.skin_temp_max_c <= self.plausible_min_c:
            raise ValueError(
                f"skin_temp_max_c = {self.skin_temp_max_c:g} must be above plausible_min_c ="
                f" {self.plausible_min_c:g}: every plausible reading would be over the limit"
            )
        if self.skin_temp_max_c >= self.plausible_max_c:
            raise ValueError(
                f"skin_temp_max_c = {self.skin_temp_max_c:g} must be below plausible_max_c ="
                f" {self.plausible_max_c:g}, or an over-temperature would read as a sensor fault"
            )
        return self

    @property
    def hard_trip_c(self) -> float:
        """Skin temperature that trips at any time (not only before a pulse)."""
        return self.skin_temp_max_c + Caps.HARD_TRIP_MARGIN_C

    @property
    def cooling_window_s(self) -> float:
        """The longest a pulse may wait for water on the skin, from its end."""
        return self.max_cooling_delay_ms / 1000.0

    @property
    def tolerance(self) -> float:
        """The energy tolerance as a fraction."""
        return self.energy_tolerance_pct / 100.0

    def energy_limit_j(self, energy_j: float) -> float:
        """What one pulse may deliver at most: the generator's own dose monitor is set to this."""
        return energy_j * (1.0 + self.tolerance)

    def pulse_bound_s(self, pulse_ms: float, fire_s: float = 0.0, off_s: float = 0.0, detect_s: float = 0.0) -> float:
        """From the fire command, how long the controller lets a pulse run before it switches it off.

        A stuck-on output at the set power delivers the set energy x (1 + tolerance) after the set length
        x (1 + tolerance) of emission; emission starts at most ``fire_s`` after the command, and the off
        command needs ``off_s`` to reach the generator. The bound is never closer to a normal pulse's end
        than seeing it over takes (``detect_s``, one status read) plus ``PULSE_END_SLACK_S``: on a link too
        slow for the energy bound, ``plasmactl check`` says what bound is reachable and the generator's own
        energy limit is what holds the dose."""
        pulse_s = pulse_ms / 1000.0
        bound = fire_s + pulse_s * (1.0 + self.tolerance) - off_s
        return max(bound, fire_s + pulse_s + detect_s + PULSE_END_SLACK_S)

    def stuck_on_pct(
        self, pulse_ms: float, fire_s: float, off_s: float, detect_s: float, earliest_start_s: float
    ) -> float:
        """What a stuck-on output at the set power could deliver before the software bound cuts it (% of the
        set energy), if emission started as early as it can (``earliest_start_s`` after the command)."""
        bound = self.pulse_bound_s(pulse_ms, fire_s, off_s, detect_s)
        return 100.0 * (bound + off_s - earliest_start_s) / (pulse_ms / 1000.0)


# The software pulse bound never comes closer than this to a pulse's normal end (polling resolution).
PULSE_END_SLACK_S: Final = 0.0005


def _exact(value: float) -> str:
    """``value`` short, unless that would hide why it is refused (1000.0000001 shown as "1000" over a cap of 1000)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)
