"""Typed async interfaces of the devices, and the neutral types every layer shares.

The controller only ever talks to these Protocols, so the same controller runs against in-process
simulators, simulators served over wires, and real hardware. Every status and reading carries the
clock time (session seconds) at which it was taken: interlocks reason about the age of what they
know, never about "now" alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from plasmactl.clock import Clock

__all__ = [
    "Clock",
    "DeviceError",
    "DeviceNoReply",
    "Devices",
    "Outcome",
    "PlasmaSource",
    "PlasmaStatus",
    "SafetyInputs",
    "SafetyState",
    "SessionResult",
    "SkinReading",
    "SkinThermometer",
    "SprayStatus",
    "SprayUnit",
]


class DeviceError(Exception):
    """A device refused or failed a command (the reply was an error, or there was none)."""

    def __init__(self, device: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{device}: {message}" + (f" (code {code})" if code is not None else ""))
        self.device = device
        self.code = code


class DeviceNoReply(DeviceError):
    """A device did not answer within the time the controller gives one call (retries included)."""

    def __init__(self, device: str, timeout_s: float) -> None:
        super().__init__(device, f"did not reply within {timeout_s * 1000:g} ms")
        self.timeout_s = timeout_s


@dataclass(frozen=True, slots=True)
class PlasmaStatus:
    """What the plasma generator reports about itself at clock time ``t``."""

    t: float
    armed: bool
    output_on: bool
    energy_setpoint_j: float
    pulse_ms_setpoint: float
    pulse_count: int  # pulses emitted since power-up (ended or not)
    last_energy_j: float | None  # energy delivered by the last completed (or cut) pulse
    fault_code: int = 0  # 0 = none; device-specific otherwise
    # The generator's own dose monitor ends any pulse whose delivered energy reaches this (0 = not set:
    # the generator refuses to fire). The controller sets it to the plan's energy x (1 + tolerance).
    energy_limit_j: float = 0.0
    # On a wire, ``t`` is when the reply came and ``t_sent`` when the request went: the device read its state
    # somewhere in between. None: no wire (the state is as of ``t``).
    t_sent: float | None = None

    @property
    def sampled_after(self) -> float:
        """The earliest moment the reported state can be from: what "still on at time x" is judged on."""
        return self.t if self.t_sent is None else self.t_sent


@dataclass(frozen=True, slots=True)
class SprayStatus:
    """What the cold-spray unit reports at clock time ``t``.

    ``valve_open`` is the valve's feedback contact; ``flow_ml_s`` is the measured flow (0 while the valve
    is closed, and 0 with the valve open when no water comes out: a dry reservoir, a blocked nozzle)."""

    t: float
    valve_open: bool
    spray_commanded: bool
    reservoir_ml: float
    flow_ml_s: float
    spray_count: int
    fault_code: int = 0
    trigger_armed: bool = False  # an armed trigger waits for the generator's pulse-end edge


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
    """Plasma handpiece generator: a pulse is ``fire``d and ends by itself after the set length, or earlier
    when its delivered energy reaches the energy limit."""

    # When the latest ``fire`` reached the wire (a driver) or the generator (a simulator), clock time; None
    # when not known. Emission cannot have started before it: the controller times the pulse from it.
    fired_at: float | None

    async def configure(self, energy_j: float, pulse_ms: float, energy_limit_j: float) -> None: ...
    async def arm(self) -> None: ...
    async def disarm(self) -> None: ...
    async def fire(self) -> None: ...
    async def output_off(self) -> None: ...
    async def status(self) -> PlasmaStatus: ...


class SprayUnit(Protocol):
    """Cold-spray unit: ``spray`` opens the valve (after its latency) for a duration, ``stop`` closes it.

    ``arm_trigger`` has the unit itself open the valve for ``duration_s`` at ``delay_s`` after the next
    pulse-end edge on the generator's trigger line (hardware-timed cooling, where the rig wires that line);
    ``disarm_trigger`` forgets it."""

    async def spray(self, duration_s: float) -> None: ...
    async def stop(self) -> None: ...
    async def status(self) -> SprayStatus: ...
    async def arm_trigger(self, duration_s: float, delay_s: float) -> None: ...
    async def disarm_trigger(self) -> None: ...


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


@dataclass
class Devices:
    """The four devices of a rig, whatever implements them."""

    plasma: PlasmaSource
    spray: SprayUnit
    thermometer: SkinThermometer
    safety: SafetyInputs


# complete: every spot got its plan; incomplete: the plan ran to its end but some spot is under-dosed
# (a pulse cut by a pause is never fired again); fault / estop: latched safe state; aborted: operator stop.
Outcome = Literal["complete", "incomplete", "fault", "estop", "aborted"]


@dataclass
class SessionResult:
    outcome: Outcome
    cause: str | None = None  # the rule (or reason) that ended the session early
    internal_error: bool = False
    pulses: int = 0  # pulses started (each has exactly one pulse_end)
    sprays: int = 0  # sprays confirmed with water on the skin (as summary.json counts spray_start)
    signal: str | None = None  # SIGINT / SIGTERM when a signal aborted the session
