"""The Modbus devices' contracts: register maps declared once, as data.

Drivers read and write through these declarations and the simulators serve them, so the two cannot drift
apart; ``docs/device-contracts.md`` is generated from them (``plasmactl contracts``) and a test fails
when it is stale. All registers are holding registers (function codes 3, 6, 16); 32-bit values take two
registers, high word first. Every Modbus device starts with the same identity block at 0-9.

Map version 2 adds, on every Modbus device:

- **an owner lease** (40-44): a controller claims the device by writing its session token to LEASE_CLAIM;
  the claim is refused (exception 1) while another owner's lease is live. The lease lapses when the owner's
  heartbeat has not changed for LEASE_MS (the device's heartbeat window), or at COMMAND = RELEASE.
- **the owner's write** (50-61): every write except a claim goes as one FC16 request to WRITE_TOKEN:
  ``[token high, token low, address, count, value, ...]`` (:func:`owner_write`). The device applies the
  embedded write, with every check a direct write would have, only when the token is the live owner's;
  otherwise it answers exception 1 and changes nothing. A direct write to a writable register (FC6, or FC16
  anywhere but WRITE_TOKEN) is refused with exception 1: on a v2 device nothing but the owner writes. A write
  to a read-only or unmapped address answers exception 2 first, owner or not (the Modbus order of checks:
  function, address, value, then execution).
- **hardware-timed cooling**: the generator reports each pulse's end on its own clock (END_COUNT,
  LAST_END_US) and drives a pulse-end trigger line; the spray unit, armed by COMMAND = ARM_TRIGGER, opens
  its valve for SPRAY_MS at TRIGGER_DELAY after the next edge on that line, timed by the device itself, and
  records the edge and the valve command on its own clock. CAPABILITIES bit 0 says the line is there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Literal

Access = Literal["R", "W", "RW"]

VENDOR_ID = 0x504C  # "PL"
MAP_VERSION = 2
NOT_OWNER = 1  # the exception code of a write that does not carry the live owner's token (ILLEGAL_FUNCTION:
# "the server is in the wrong state to process a request of this type")
OWNER_WRITE_MAX = 8  # registers one owner write may carry


@dataclass(frozen=True)
class Register:
    """One value in a device's map. ``scale``: register units per SI/engineering unit given in ``unit``."""

    name: str
    address: int
    words: int  # 1 (16-bit) or 2 (32-bit, high word first)
    access: Access
    unit: str
    scale: float  # raw = round(value * scale)
    low: int  # lowest raw value a write may carry (reads are not range-checked)
    high: int  # highest raw value
    default: int
    doc: str

    @property
    def addresses(self) -> range:
        return range(self.address, self.address + self.words)

    def encode(self, value: float) -> list[int]:
        """Engineering value -> register words; raises ValueError when out of the declared range."""
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: {value!r} is not a finite number")
        raw = round(value * self.scale)
        if not (self.low <= raw <= self.high):
            lo, hi = self.low / self.scale, self.high / self.scale
            raise ValueError(f"{self.name}: {value!r} {self.unit} is outside [{lo:g}, {hi:g}]")
        return split(raw, self.words)

    def encode_down(self, value: float) -> list[int]:
        """Like :meth:`encode`, but rounded down to the register's unit (for a limit: never above the value)."""
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: {value!r} is not a finite number")
        raw = math.floor(value * self.scale * (1 + 1e-12))
        if not (self.low <= raw <= self.high):
            lo, hi = self.low / self.scale, self.high / self.scale
            raise ValueError(f"{self.name}: {value!r} {self.unit} is outside [{lo:g}, {hi:g}]")
        return split(raw, self.words)

    def decode(self, words: Sequence[int]) -> float:
        return join(words) / self.scale


def split(raw: int, words: int) -> list[int]:
    if words == 1:
        return [raw & 0xFFFF]
    return [(raw >> 16) & 0xFFFF, raw & 0xFFFF]


def join(words: Sequence[int]) -> int:
    value = 0
    for w in words:
        value = (value << 16) | (w & 0xFFFF)
    return value


@dataclass(frozen=True)
class DeviceMap:
    """A device's whole map: its unit id on a shared bus, model code and registers."""

    device: str
    unit_id: int
    model: int
    registers: tuple[Register, ...]

    def __post_init__(self) -> None:
        # name lookups sit on every status read's path: a dict, not a scan
        object.__setattr__(self, "_by_name", {r.name: r for r in self.registers})

    def __getitem__(self, name: str) -> Register:
        by_name: dict[str, Register] = self.__dict__["_by_name"]
        return by_name[name]

    def __iter__(self) -> Iterator[Register]:
        return iter(self.registers)

    @property
    def size(self) -> int:
        return max(r.address + r.words for r in self.registers)

    def in_version(self, version: int) -> DeviceMap:
        """The map as a device of register map ``version`` serves it (v1: without the v2 registers, and the
        spray unit's COMMAND only up to RELEASE)."""
        if version >= MAP_VERSION:
            return self
        kept = []
        for r in self.registers:
            if r.name in V2_ONLY:
                continue
            if (self.device, r.name) in V1_HIGH:
                r = replace(r, high=V1_HIGH[self.device, r.name])
            kept.append(r)
        return DeviceMap(self.device, self.unit_id, self.model, tuple(kept))

    def block(self, first: str, last: str) -> tuple[int, int]:
        """(start address, count) of the registers from ``first`` to ``last`` inclusive (one read)."""
        a, b = self[first], self[last]
        return a.address, b.address + b.words - a.address


def _identity(model: int) -> tuple[Register, ...]:
    ro: Access = "R"
    return (
        Register("VENDOR", 0, 1, ro, "", 1, 0, 0xFFFF, VENDOR_ID, "vendor id, 0x504C ('PL')"),
        Register("MODEL", 1, 1, ro, "", 1, 0, 0xFFFF, model, "model code"),
        Register("FW_MAJOR", 2, 1, ro, "", 1, 0, 0xFFFF, 1, "firmware major version"),
        Register("FW_MINOR", 3, 1, ro, "", 1, 0, 0xFFFF, 0, "firmware minor version"),
        Register("FW_PATCH", 4, 1, ro, "", 1, 0, 0xFFFF, 0, "firmware patch version"),
        Register("MAP_VERSION", 5, 1, ro, "", 1, 0, 0xFFFF, MAP_VERSION, "register map version"),
        Register("SERIAL", 6, 2, ro, "", 1, 0, 0xFFFFFFFF, 1, "serial number"),
        Register("CAPABILITIES", 8, 1, ro, "", 1, 0, 0xFFFF, 0, "capability flags: bit 0 pulse-end trigger line"),
        Register("RESERVED", 9, 1, ro, "", 1, 0, 0xFFFF, 0, "reserved, reads 0"),
    )


class PlasmaCommand(IntEnum):
    NONE = 0
    ARM = 1
    DISARM = 2
    FIRE = 3
    OUTPUT_OFF = 4
    RESET_FAULT = 5
    RELEASE = 6  # the controller is done: output off, disarmed, the heartbeat watchdog stands down


class PlasmaStatusBit(IntEnum):
    ARMED = 0
    OUTPUT_ON = 1
    FAULT = 2
    WATCHDOG_TRIPPED = 3  # the heartbeat stopped for longer than WATCHDOG_MS: output forced off, disarmed


class SafetyBit(IntEnum):
    ESTOP = 0  # 1 = E-stop pressed
    FOOTSWITCH = 1  # 1 = pressed


class SprayCommand(IntEnum):
    NONE = 0
    SPRAY = 1  # open the valve for SPRAY_MS (write [SPRAY, ms] to COMMAND..SPRAY_MS in one request)
    STOP = 2
    RELEASE = 3  # the controller is done: valve closed, the heartbeat watchdog stands down
    ARM_TRIGGER = 4  # spray for SPRAY_MS at TRIGGER_DELAY after the next pulse-end edge (write [4, ms] at once)
    DISARM_TRIGGER = 5  # forget an armed trigger


class SprayStatusBit(IntEnum):
    VALVE_OPEN = 0  # the valve's feedback contact
    SPRAY_COMMANDED = 1
    FAULT = 2
    TRIGGER_ARMED = 3  # an ARM_TRIGGER waits for its pulse-end edge


class Capability(IntEnum):
    TRIGGER_LINE = 0  # generator: drives the pulse-end line; spray unit: its trigger input is wired


class FaultCode(IntEnum):
    NONE = 0
    WATCHDOG = 1  # heartbeat lost
    PULSE_LIMIT = 2  # the hardware pulse limit cut a pulse
    ESTOP = 3
    VALVE = 4


NO_ENERGY = 0xFFFFFFFF  # LAST_ENERGY before any pulse


def _lease(window_ms: int) -> tuple[Register, ...]:
    """The owner lease and the owner's write (map v2), at the same addresses on every Modbus device."""
    rw: Access = "RW"
    return (
        Register("LEASE_OWNER", 40, 2, "R", "", 1, 0, 0xFFFFFFFF, 0, "the owner's session token, 0 = free"),
        Register(
            "LEASE_CLAIM", 42, 2, rw, "", 1, 1, 0xFFFFFFFF, 0, "write your token to claim; refused while owned; reads 0"
        ),
        Register("LEASE_MS", 44, 1, "R", "ms", 1, 0, 0xFFFF, window_ms, "the lease lapses this long after a heartbeat"),
        Register("WRITE_TOKEN", 50, 2, rw, "", 1, 0, 0xFFFFFFFF, 0, "owner's write: the token (reads 0)"),
        Register("WRITE_ADDRESS", 52, 1, rw, "", 1, 0, 0xFFFF, 0, "owner's write: first register written"),
        Register("WRITE_COUNT", 53, 1, rw, "", 1, 1, OWNER_WRITE_MAX, 1, "owner's write: registers carried"),
        *(
            Register(f"WRITE_DATA_{i}", 54 + i, 1, rw, "", 1, 0, 0xFFFF, 0, "owner's write: a value")
            for i in range(OWNER_WRITE_MAX)
        ),
    )


# what a map v1 device (older firmware) does not have (END_COUNT's place read 0 there: it stays, reading 0)
V2_ONLY = frozenset(
    {"LAST_END_US", "DEVICE_US", "TRIGGER_DELAY", "TRIGGER_COUNT", "EDGE_US", "TRIGGERED_US"}
    | {r.name for r in _lease(0)}
)
V1_HIGH = {("spray", "COMMAND"): 3}

LEASE_FIRST, LEASE_END = 40, 54 + OWNER_WRITE_MAX  # the addresses an owner's write may not target


def owner_write(token: int, address: int, values: Sequence[int]) -> tuple[int, list[int]]:
    """(address, words) of the FC16 request that writes ``values`` at ``address`` as the owner ``token``."""
    if not 1 <= len(values) <= OWNER_WRITE_MAX:
        raise ValueError(f"an owner's write carries 1..{OWNER_WRITE_MAX} registers, not {len(values)}")
    return 50, [*split(token, 2), address, len(values), *values]


PLASMA = DeviceMap(
    "plasma",
    unit_id=1,
    model=0x0101,
    registers=(
        *_identity(0x0101),
        Register(
            "COMMAND", 10, 1, "RW", "", 1, 0, 6, 0, "1 arm, 2 disarm, 3 fire, 4 output off, 5 reset fault, 6 release"
        ),
        Register("ENERGY_SET", 11, 2, "RW", "J", 1e6, 1, 10_000_000, 0, "energy per pulse setpoint (uJ)"),
        Register("PULSE_SET", 13, 1, "RW", "ms", 100, 1, 15_000, 0, "pulse length setpoint (10 us units)"),
        Register("HEARTBEAT", 14, 1, "RW", "", 1, 0, 0xFFFF, 0, "write a changing value at least every WATCHDOG_MS"),
        Register("WATCHDOG_MS", 15, 1, "R", "ms", 1, 0, 0xFFFF, 300, "heartbeat window; silence longer forces off"),
        Register(
            "ENERGY_LIMIT",
            16,
            2,
            "RW",
            "J",
            1e6,
            1,
            10_000_000,
            0,
            "dose monitor (uJ): a pulse ends when its energy reaches this; 0 = not set, FIRE refused",
        ),
        Register("END_COUNT", 18, 2, "R", "", 1, 0, 0xFFFFFFFF, 0, "pulses ended since power-up (v2)"),
        Register("STATUS", 20, 1, "R", "", 1, 0, 0xFFFF, 0, "bits: 0 armed, 1 output on, 2 fault, 3 watchdog"),
        Register("PULSE_COUNT", 21, 2, "R", "", 1, 0, 0xFFFFFFFF, 0, "pulses emitted since power-up"),
        Register(
            "LAST_ENERGY", 23, 2, "R", "J", 1e6, 0, 0xFFFFFFFF, NO_ENERGY, "energy of the last completed pulse (uJ)"
        ),
        Register("FAULT_CODE", 25, 1, "R", "", 1, 0, 0xFFFF, 0, "0 none, 1 watchdog, 2 pulse limit, 3 E-stop"),
        Register("LAST_END_US", 26, 2, "R", "us", 1e6, 0, 0xFFFFFFFF, 0, "the last pulse's end, device clock (v2)"),
        Register("DEVICE_US", 28, 2, "R", "us", 1e6, 0, 0xFFFFFFFF, 0, "the device clock now (wraps; v2)"),
        Register("SAFETY", 30, 1, "R", "", 1, 0, 0xFFFF, 2, "handpiece inputs, bits: 0 E-stop, 1 footswitch"),
        Register("TIP_DISTANCE", 31, 1, "R", "mm", 100, 0, 0xFFFF, 50, "tip-to-skin gap (0.01 mm units)"),
        *_lease(300),
    ),
)

SPRAY = DeviceMap(
    "spray",
    unit_id=2,
    model=0x0201,
    registers=(
        *_identity(0x0201),
        Register(
            "COMMAND",
            10,
            1,
            "RW",
            "",
            1,
            0,
            5,
            0,
            "1 spray for SPRAY_MS, 2 stop, 3 release, 4 arm trigger, 5 disarm it",
        ),
        Register("SPRAY_MS", 11, 1, "RW", "ms", 1, 1, 10_000, 150, "spray length for the next SPRAY command"),
        Register("HEARTBEAT", 12, 1, "RW", "", 1, 0, 0xFFFF, 0, "write a changing value at least every WATCHDOG_MS"),
        Register("WATCHDOG_MS", 13, 1, "R", "ms", 1, 0, 0xFFFF, 1000, "heartbeat window (the unit stops spraying)"),
        Register("TRIGGER_DELAY", 14, 1, "RW", "ms", 100, 0, 10_000, 0, "pulse-end edge to valve command (10 us; v2)"),
        Register(
            "STATUS",
            20,
            1,
            "R",
            "",
            1,
            0,
            0xFFFF,
            0,
            "bits: 0 valve open (feedback), 1 commanded, 2 fault, 3 trigger armed",
        ),
        Register("RESERVOIR", 21, 1, "R", "ml", 10, 0, 0xFFFF, 5000, "reservoir level (0.1 ml units)"),
        Register("FLOW", 22, 1, "R", "ml/s", 1000, 0, 0xFFFF, 500, "flow while the valve is open (0.001 ml/s)"),
        Register("SPRAY_COUNT", 23, 1, "R", "", 1, 0, 0xFFFF, 0, "sprays commanded since power-up (wraps)"),
        Register("FAULT_CODE", 24, 1, "R", "", 1, 0, 0xFFFF, 0, "0 none, 1 watchdog, 4 valve"),
        Register("TRIGGER_COUNT", 25, 1, "R", "", 1, 0, 0xFFFF, 0, "sprays started by the trigger line (wraps; v2)"),
        Register("EDGE_US", 26, 2, "R", "us", 1e6, 0, 0xFFFFFFFF, 0, "last pulse-end edge seen, device clock (v2)"),
        Register("TRIGGERED_US", 28, 2, "R", "us", 1e6, 0, 0xFFFFFFFF, 0, "its valve command, device clock (v2)"),
        *_lease(1000),
    ),
)

MAPS: dict[str, DeviceMap] = {m.device: m for m in (PLASMA, SPRAY)}


def _markdown_table(m: DeviceMap) -> list[str]:
    lines = [
        f"## {m.device} (unit id {m.unit_id}, model 0x{m.model:04X})",
        "",
        "| address | name | words | access | unit | scale (raw per unit) | write range (raw) | default | meaning |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in m.registers:
        addr = f"{r.address}" if r.words == 1 else f"{r.address}-{r.address + r.words - 1}"
        rng = f"{r.low}..{r.high}" if "W" in r.access else ""
        lines.append(
            f"| {addr} | {r.name} | {r.words} | {r.access} | {r.unit} | {r.scale:g} | {rng} | {r.default} | {r.doc} |"
        )
    return [*lines, ""]
