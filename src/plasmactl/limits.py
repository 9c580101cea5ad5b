"""Hard caps and the effective limits of a session.

The caps are constants in code, not configuration: a plan may tighten any of them and never loosen
one (IEC 60601-1 style: the software limit is a second layer beside the device's own protection).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Caps:
    """The hard caps. Units are in the names."""

    MAX_ENERGY_J: Final = 4.0  # PSR-class handpieces deliver 1-4 J per pulse (DOMAIN.md)
    MAX_PULSE_MS: Final = 100.0
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


PositiveFloat = Annotated[float, Field(gt=0)]


class Limits(BaseModel):
    """Effective limits: defaults are safe; each field may be tightened in a plan, never loosened."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    max_energy_j: PositiveFloat = Caps.MAX_ENERGY_J
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
    # The bound on a pulse's length is its set length times this factor plus the slack below.
    pulse_overrun_factor: Annotated[float, Field(ge=1.0, le=2.0)] = 1.2
    pulse_overrun_slack_ms: Annotated[float, Field(ge=0.5, le=20.0)] = 3.0

    @model_validator(mode="after")
    def _within_caps(self) -> Limits:
        upper = {
            "max_energy_j": Caps.MAX_ENERGY_J,
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
                raise ValueError(f"{name} = {value:g} exceeds the hard cap {cap:g} (a plan may only tighten limits)")
        if self.plausible_min_c < Caps.PLAUSIBLE_MIN_C:
            raise ValueError(
                f"plausible_min_c = {self.plausible_min_c:g} is below the hard cap {Caps.PLAUSIBLE_MIN_C:g}"
                " (a plan may only tighten limits)"
            )
        if self.tip_min_mm >= self.tip_max_mm:
            raise ValueError("tip_min_mm must be below tip_max_mm")
        if self.plausible_min_c >= self.plausible_max_c:
            raise ValueError("plausible_min_c must be below plausible_max_c")
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

    def pulse_bound_s(self, pulse_ms: float) -> float:
        """Longest a pulse may stay on before it is a fault."""
        return (pulse_ms * self.pulse_overrun_factor + self.pulse_overrun_slack_ms) / 1000.0
