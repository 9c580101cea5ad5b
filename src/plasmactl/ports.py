"""Typed async interfaces of the devices.

The controller only ever talks to these Protocols, so the same controller runs against in-process
simulators, simulators served over wires, and real hardware. Every status and reading carries the
clock time (session seconds) at which it was taken: interlocks reason about the age of what they
know, never about "now" alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from plasmactl.clock import Clock

__all__ = [
    "Clock",
    "CoolingStatus",
    "CoolingUnit",
    "DeviceError",
    "PlasmaSource",
    "PlasmaStatus",
    "SafetyInputs",
    "SafetyState",
    "SkinReading",
    "SkinThermometer",
]


class DeviceError(Exception):
    """A device refused or failed a command (the reply was an error, not silence)."""

    def __init__(self, device: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{device}: {message}" + (f" (code {code})" if code is not None else ""))
        self.device = device
        self.code = code


@dataclass(frozen=True, slots=True)
class PlasmaStatus:
    """What the plasma generator reports about itself at clock time ``t``."""

    t: float
    armed: bool
    output_on: bool
    energy_setpoint_j: float
    pulse_ms_setpoint: float
    pulse_count: int  # pulses emitted since power-up (ended or not)
    last_energy_j: float | None  # energy delivered by the last completed pulse
    fault_code: int = 0  # 0 = none; device-specific otherwise


@dataclass(frozen=True, slots=True)
class CoolingStatus:
    """What the cold-spray unit reports at clock time ``t``; ``valve_open`` is the feedback contact."""

    t: float
    valve_open: bool
    spray_commanded: bool
    reservoir_ml: float
    flow_ml_s: float  # consumption while the valve is open
    spray_count: int
    fault_code: int = 0


@dataclass(frozen=True, slots=True)
class SkinReading:
    """A skin-surface temperature sample; ``t`` is when the sensor took it, not when it was read."""

    t: float
    value_c: float


@dataclass(frozen=True, slots=True)
class SafetyState:
    """Operator-side safety inputs at clock time ``t``."""

    t: float
    estop: bool  # True = E-stop pressed
    footswitch: bool  # True = pressed (emission permitted by the operator)
    tip_distance_mm: float  # tip-to-skin gap; 0.0 = contact


class PlasmaSource(Protocol):
    """Plasma handpiece generator: a pulse is ``fire``d and ends by itself after the set length."""

    async def configure(self, energy_j: float, pulse_ms: float) -> None: ...
    async def arm(self) -> None: ...
    async def disarm(self) -> None: ...
    async def fire(self) -> None: ...
    async def output_off(self) -> None: ...
    async def status(self) -> PlasmaStatus: ...


class CoolingUnit(Protocol):
    """Cold-spray unit: ``spray`` opens the valve (after its latency) for a duration, ``stop`` closes it."""

    async def spray(self, duration_s: float) -> None: ...
    async def stop(self) -> None: ...
    async def status(self) -> CoolingStatus: ...


class SkinThermometer(Protocol):
    """Skin thermometer: returns its latest sample (which may be older than now)."""

    async def read(self) -> SkinReading: ...


class SafetyInputs(Protocol):
    """E-stop, footswitch and tip distance.

    ``wait_change`` returns as soon as any input changes, or after ``timeout_s`` with the current
    state, so a monitor reacts to an E-stop at once without the cost of tight polling; a driver over
    a wire implements it by polling at its own period.
    """

    async def read(self) -> SafetyState: ...
    async def wait_change(self, timeout_s: float) -> SafetyState: ...
