"""The device sections of a rig file: each device's implementation (an in-process simulator, Modbus TCP or
RTU, a serial line) with its timing, and the wire arithmetic they share (RTU character times, host:port).
:mod:`plasmactl.rig` puts them together into a rig."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class DeviceTiming(_Strict):
    """How the controller talks to a device: per-request timeout, silence watchdog, heartbeat poll."""

    timeout_ms: PosFloat = 100.0
    watchdog_ms: PosFloat = 500.0
    poll_ms: PosFloat = 100.0
    # The oldest status (or, for the thermometer, sample) of this device a guard accepts before emission;
    # an older one blocks it. Default: one refresh period plus one call plus 50 ms (the thermometer: the
    # plan's limits.reading_max_age_ms). See Rig.max_age_s.
    max_age_ms: PosFloat | None = None

    @model_validator(mode="after")
    def _order(self) -> DeviceTiming:
        if self.timeout_ms >= self.watchdog_ms:
            raise ValueError(f"timeout_ms ({self.timeout_ms:g}) must be below watchdog_ms ({self.watchdog_ms:g})")
        if self.poll_ms >= self.watchdog_ms:
            raise ValueError(f"poll_ms ({self.poll_ms:g}) must be below watchdog_ms ({self.watchdog_ms:g})")
        if self.max_age_ms is not None and self.max_age_ms > self.watchdog_ms:
            raise ValueError(
                f"max_age_ms ({self.max_age_ms:g}) must not exceed watchdog_ms ({self.watchdog_ms:g}): a stale"
                " input blocks emission before the watchdog ends the session"
            )
        return self

    @property
    def call_budget_ms(self) -> float:
        """The longest one call may take (the controller's per-call timeout)."""
        return self.timeout_ms


class PlasmaSim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 20.0
    poll_ms: PosFloat = 250.0  # heartbeat between pulses; the pulse cycle itself polls it every pulse
    latency_ms: NonNeg = 0.5  # fire command to output on
    energy_noise_pct: NonNeg = 2.0  # 1-sigma of delivered energy
    hw_max_pulse_ms: PosFloat = 150.0  # the generator's own hardware pulse limit
    # The generator's own watchdog: with no request for this long it switches off and disarms (latching a
    # fault). It must outlast the controller's heartbeat polls (poll_ms, checked every thermometer poll).
    own_watchdog_ms: PosFloat = 1000.0


class SpraySim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 20.0
    poll_ms: PosFloat = 250.0  # heartbeat between pulses; the pulse cycle itself polls it every pulse
    valve_latency_ms: NonNeg = 15.0
    reservoir_ml: NonNeg = 500.0
    flow_ml_s: PosFloat = 0.5
    # the generator's pulse-end line is wired to this unit's trigger input: the unit, armed before each
    # pulse, opens its valve by itself after the pulse ends (hardware-timed cooling)
    trigger_line: bool = False


class ThermometerSim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 50.0
    sample_ms: PosFloat = 100.0
    latency_ms: NonNeg = 10.0
    noise_c: NonNeg = 0.03
    time_constant_ms: NonNeg = 60.0


class SafetySim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 50.0
    tip_distance_mm: NonNeg = 0.5
    heartbeat_ms: PosFloat = 250.0  # wait_change returns at least this often


class SkinLayer(_Strict):
    """One tissue layer for the skin models (docs/domain.md's table); perfusion in 1/s."""

    name: Annotated[str, Field(min_length=1)]
    thickness_um: Annotated[float, Field(gt=0, le=20_000)]
    rho: Annotated[float, Field(gt=100, le=3000)]  # kg/m3
    c: Annotated[float, Field(gt=100, le=10_000)]  # J/(kg K)
    k: Annotated[float, Field(gt=0.01, le=5)]  # W/(m K)
    w_b: Annotated[float, Field(ge=0, le=0.1)] = 0.0  # 1/s (not ml/min/100 g: a frequent unit bug)
    q_m: Annotated[float, Field(ge=0, le=1e5)] = 0.0  # W/m3


class Skin(_Strict):
    """The simulated skin: the patch the thermometer sees, and the per-spot tissue physics.

    ``layers`` replaces docs/domain.md's default stack (stratum corneum, epidermis, dermis, fat), top first."""

    model: Literal["layered1d"] = "layered1d"
    # The treated patch the thermometer sees; pulse energy is spread over it (1-D model).
    field_diameter_mm: Annotated[float, Field(gt=1.0, le=50.0)] = 10.0
    # Per-spot tissue physics (damage, ablation, lateral spread); its results go into the log and summary.
    tissue: bool = True
    lateral: bool = True  # the axisymmetric 2-D model for the lateral damage radius
    spray_h: Annotated[float, Field(gt=0, le=1e6)] = 2500.0  # W/(m2 K) while the valve is open (docs/domain.md)
    spray_temp_c: Annotated[float, Field(ge=-20, le=40)] = 8.0
    air_h: Annotated[float, Field(ge=0, le=1e3)] = 8.7
    air_temp_c: Annotated[float, Field(ge=0, le=45)] = 24.0
    deposit_depth_um: Annotated[float, Field(gt=0, le=500)] = 10.0
    layers: Annotated[list[SkinLayer], Field(min_length=1, max_length=10)] | None = None


class Identity(_Strict):
    """What the device must report in its identity block; a mismatch refuses the session."""

    vendor: Annotated[int, Field(ge=0, le=0xFFFF)] = 0x504C
    model: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None  # None: the model of the device's role
    map_version: Annotated[int, Field(ge=0, le=0xFFFF)] = 2  # 2: owner lease, trigger line; 1: older firmware


class _Wire(DeviceTiming):
    """Common to devices on a wire: bounded retries, reconnect backoff, heartbeat period."""

    timeout_ms: PosFloat = 50.0
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    reconnect_max_ms: Annotated[float, Field(ge=10, le=60_000)] = 2000.0
    heartbeat_ms: Annotated[float, Field(ge=10, le=10_000)] = 100.0
    trigger_line: bool = False  # spray unit only: the generator's pulse-end line is wired to its trigger input

    @model_validator(mode="after")
    def _retries_fit(self) -> _Wire:
        budget = self.timeout_ms * (self.retries + 1)
        if budget >= self.watchdog_ms:
            raise ValueError(
                f"timeout_ms x (retries + 1) = {budget:g} must be below watchdog_ms ({self.watchdog_ms:g})"
            )
        return self

    @property
    def call_budget_ms(self) -> float:
        """The longest one call may take, retries included (the controller's per-call timeout)."""
        return self.timeout_ms * (self.retries + 1) + 5.0

    def frame_ms(self, chars: int) -> float:
        """Time one frame of ``chars`` characters takes on this link (0 for links without a baud rate)."""
        return 0.0


class ModbusTcp(_Wire):
    kind: Literal["modbus-tcp"]
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    # 0: the port the rig's own [serve] server listens on (it picks a free one when its modbus_tcp port is 0)
    port: Annotated[int, Field(ge=0, le=65535)] = 5020
    unit_id: Annotated[int, Field(ge=1, le=247)]
    identity: Identity = Identity()


SERVED_PORTS = ("@rtu", "@serial")  # filled in from the spawned serve-sim's report


class ModbusRtu(_Wire):
    kind: Literal["modbus-rtu"]
    port: Annotated[str, Field(min_length=1)]  # a serial device, a pty, or "@rtu" (the spawned serve-sim's bus)
    baud: Annotated[int, Field(ge=300, le=4_000_000)] = 115200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: Annotated[int, Field(ge=1, le=247)]
    identity: Identity = Identity()

    def frame_ms(self, chars: int) -> float:
        """11 bits per character (start, 8 data, parity or a second stop, stop) plus the silence that ends a
        frame (t3.5: 3.5 characters, fixed at 1.75 ms above 19200 baud)."""
        return chars * rtu_char_s(self.baud) * 1000.0 + rtu_intervals_s(self.baud)[1] * 1000.0


RTU_BITS_PER_CHAR = 11  # start + 8 data + parity-or-second-stop + stop: Modbus RTU always frames 11 bits


def rtu_char_s(baud: int) -> float:
    return RTU_BITS_PER_CHAR / baud


def rtu_intervals_s(baud: int) -> tuple[float, float]:
    """(t1.5, t3.5) in seconds: the longest silence allowed inside an RTU frame, and the silence that ends one
    (Modbus over serial line 2.5.1.1: 1.5 and 3.5 characters of 11 bits, fixed at 750 us and 1.75 ms above
    19200 baud)."""
    if baud > 19200:
        return 0.00075, 0.00175
    char = rtu_char_s(baud)
    return 1.5 * char, 3.5 * char


class SerialLine(_Wire):
    kind: Literal["serial"]
    port: Annotated[str, Field(min_length=1)]  # a serial device, a pty, or "@serial"
    baud: Annotated[int, Field(ge=300, le=4_000_000)] = 115200


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:5020`` for IPv6) -> (host, port); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    name = host.strip("[]")  # an empty name would bind every interface: "[]:5020" is no host
    if not sep or not name or not (port.isascii() and port.isdigit() and len(port) <= 5) or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return name, int(port)
