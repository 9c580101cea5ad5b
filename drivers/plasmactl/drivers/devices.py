"""Port implementations for the real devices: plasma generator, cold-spray unit, safety inputs (Modbus) and
the skin thermometer (serial line protocol).

Every status and reading carries the clock time at which its reply arrived. Values go through the
``Register`` declarations of :mod:`plasmactl.drivers.registers` both ways, so an out-of-range setpoint raises
``ValueError`` before anything is sent. ``connect()`` checks the device's identity (the session refuses to
start on :class:`IdentityMismatch`); ``close()`` stops the heartbeat and lets go of the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.clock import Clock
from plasmactl.ports import DeviceError, PlasmaStatus, SafetyState, SprayStatus
from plasmactl.rig import ModbusRtu, ModbusTcp

from .errors import IdentityMismatch
from .modbus import ModbusLink, RequestPolicy
from .registers import (
    NO_ENERGY,
    PLASMA,
    SPRAY,
    DeviceMap,
    PlasmaCommand,
    PlasmaStatusBit,
    Register,
    SafetyBit,
    SprayCommand,
    SprayStatusBit,
    join,
)

__all__ = [
    "DeviceIdentity",
    "ModbusPlasma",
    "ModbusSafety",
    "ModbusSpray",
]

_log = logging.getLogger(__name__)

ModbusCfg = ModbusTcp | ModbusRtu


@dataclass(frozen=True)
class DeviceIdentity:
    """What a Modbus device's identity block (registers 0-9) says."""

    vendor: int
    model: int
    firmware: tuple[int, int, int]
    map_version: int
    serial: int
    capabilities: int

    @classmethod
    def decode(cls, m: DeviceMap, words: Sequence[int]) -> DeviceIdentity:
        def raw(name: str) -> int:
            return join(_field(words, 0, m[name]))

        return cls(
            vendor=raw("VENDOR"),
            model=raw("MODEL"),
            firmware=(raw("FW_MAJOR"), raw("FW_MINOR"), raw("FW_PATCH")),
            map_version=raw("MAP_VERSION"),
            serial=raw("SERIAL"),
            capabilities=raw("CAPABILITIES"),
        )


def _field(words: Sequence[int], start: int, reg: Register) -> Sequence[int]:
    """The words of ``reg`` within a block read from ``start``."""
    offset = reg.address - start
    return words[offset : offset + reg.words]


def _bit(word: int, bit: int) -> bool:
    return bool((word >> bit) & 1)


def _encode(reg: Register, value: float) -> list[int]:
    if not math.isfinite(value):
        raise ValueError(f"{reg.name}: {value!r} {reg.unit} is not a finite number")
    return reg.encode(value)


class _ModbusDevice:
    """One unit on a :class:`ModbusLink`: identity check, typed reads and writes, optional heartbeat."""

    MAP: DeviceMap
    NAME: str

    def __init__(self, link: ModbusLink, cfg: ModbusCfg, clock: Clock, *, name: str | None = None) -> None:
        self.link = link
        self.cfg = cfg
        self.clock = clock
        self.name = name if name is not None else self.NAME
        self.unit = cfg.unit_id
        self.policy = RequestPolicy.of(cfg)
        self.identity: DeviceIdentity | None = None
        self.device_watchdog_ms: int | None = None
        self.heartbeats = 0
        self.heartbeat_failures = 0
        self.last_heartbeat_error: str | None = None
        self._beat = 0
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._heartbeat_stop = False
        self._heartbeat_busy = False

    @property
    def expected_identity(self) -> dict[str, int]:
        ident = self.cfg.identity
        model = ident.model if ident.model is not None else self.MAP.model
        return {"vendor": ident.vendor, "model": model, "map_version": ident.map_version}

    async def connect(self) -> DeviceIdentity:
        """Open the link (shared) and check the identity block; :class:`IdentityMismatch` refuses."""
        return await self.check_identity()

    async def check_identity(self) -> DeviceIdentity:
        """Open the link (shared) and read and check the identity block, and nothing else: no write, no
        heartbeat (what ``plasmactl probe`` does); :class:`IdentityMismatch` when it is not the expected one."""
        await self.link.open(self.name)
        start, count = self.MAP.block("VENDOR", "RESERVED")
        found = DeviceIdentity.decode(self.MAP, await self._read(start, count))
        expected = self.expected_identity
        seen = {"vendor": found.vendor, "model": found.model, "map_version": found.map_version}
        if seen != expected:
            raise IdentityMismatch(self.name, expected, seen)
        self.identity = found
        return found

    async def close(self) -> None:
        """Stop the heartbeat: a beat in flight is let finish (bounded by its timeout), so that no reply to
        an abandoned request is left on a shared bus."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            self._heartbeat_stop = True
            if not self._heartbeat_busy:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self, address: int, count: int) -> list[int]:
        return await self.link.read(self.unit, address, count, policy=self.policy, device=self.name)

    async def _write(self, address: int, values: Sequence[int], *, retry: bool = True) -> None:
        policy = self.policy if retry else RequestPolicy(self.policy.timeout_s, 0)
        await self.link.write(self.unit, address, values, policy=policy, device=self.name)

    async def _read_block(self, first: str, last: str) -> tuple[int, list[int], float]:
        """One read of ``first``..``last``: (start address, words, clock time of the reply)."""
        start, count = self.MAP.block(first, last)
        words = await self._read(start, count)
        return start, words, self.clock.now()

    # ------------------------------------------------------------------ heartbeat

    async def _check_watchdog(self) -> None:
        """The device's WATCHDOG_MS must outlast the heartbeat period, or it would switch off between beats."""
        reg = self.MAP["WATCHDOG_MS"]
        self.device_watchdog_ms = int(reg.decode(await self._read(reg.address, reg.words)))
        if 0 < self.device_watchdog_ms <= self.cfg.heartbeat_ms:
            raise DeviceError(
                self.name,
                f"heartbeat_ms ({self.cfg.heartbeat_ms:g}) must be below the device's WATCHDOG_MS "
                f"({self.device_watchdog_ms})",
            )

    def _start_heartbeat(self, period_s: float) -> None:
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.get_running_loop().create_task(
                self._heartbeat(period_s), name=f"{self.name} heartbeat"
            )

    async def _heartbeat(self, period_s: float) -> None:
        """Write a changing value to HEARTBEAT every period; a failed beat is counted, never raised (the
        controller's watchdog handles silence, and the device switches itself off)."""
        bus_priority.for_this_task(BusPriority.ROUTINE)  # whatever the task that started it was doing
        address = self.MAP["HEARTBEAT"].address
        policy = RequestPolicy(self.policy.timeout_s, 0)  # the next beat is the retry
        due = self.clock.now()
        self._heartbeat_stop = False
        while not self._heartbeat_stop:
            self._beat = (self._beat + 1) & 0xFFFF
            self._heartbeat_busy = True
            try:
                await self.link.write(self.unit, address, [self._beat], policy=policy, device=self.name)
                self.heartbeats += 1
            except Exception as exc:  # noqa: BLE001 - counted; a heartbeat must never crash anything
                self.heartbeat_failures += 1
                if self.last_heartbeat_error is None or self.heartbeat_failures % 100 == 1:
                    _log.warning("%s heartbeat failed (%d): %s", self.name, self.heartbeat_failures, exc)
                self.last_heartbeat_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._heartbeat_busy = False
            if self._heartbeat_stop:
                return
            due = max(due + period_s, self.clock.now())
            await self.clock.sleep_until(due)


class ModbusPlasma(_ModbusDevice):
    """:class:`plasmactl.ports.PlasmaSource` over Modbus (PLASMA map)."""

    MAP = PLASMA
    NAME = "plasma"

    async def connect(self) -> DeviceIdentity:
        ident = await super().connect()
        await self._check_watchdog()
        self._start_heartbeat(self.cfg.heartbeat_ms / 1000.0)
        return ident

    async def configure(self, energy_j: float, pulse_ms: float, energy_limit_j: float) -> None:
        """ENERGY_SET and PULSE_SET in one FC16 request, then ENERGY_LIMIT; ValueError (nothing sent) when
        any is out of range."""
        energy, pulse, limit = PLASMA["ENERGY_SET"], PLASMA["PULSE_SET"], PLASMA["ENERGY_LIMIT"]
        assert pulse.address == energy.address + energy.words
        words = _encode(energy, energy_j) + _encode(pulse, pulse_ms)
        limit_words = limit.encode_down(energy_limit_j)  # a dose limit is never rounded up
        await self._write(energy.address, words)
        await self._write(limit.address, limit_words)

    async def _command(self, command: PlasmaCommand, *, retry: bool = True) -> None:
        await self._write(PLASMA["COMMAND"].address, [int(command)], retry=retry)

    async def arm(self) -> None:
        await self._command(PlasmaCommand.ARM)

    async def disarm(self) -> None:
        await self._command(PlasmaCommand.DISARM)

    async def fire(self) -> None:
        # Never retried: a FIRE that reached the generator but whose reply was lost would fire twice.
        await self._command(PlasmaCommand.FIRE, retry=False)

    async def output_off(self) -> None:
        await self._command(PlasmaCommand.OUTPUT_OFF)

    async def reset_fault(self) -> None:
        await self._command(PlasmaCommand.RESET_FAULT)

    async def status(self) -> PlasmaStatus:
        t_sent = self.clock.now()
        start, w, t = await self._read_block("COMMAND", "FAULT_CODE")
        limit = PLASMA["ENERGY_LIMIT"]
        status = join(_field(w, start, PLASMA["STATUS"]))
        last = _field(w, start, PLASMA["LAST_ENERGY"])
        return PlasmaStatus(
            t=t,
            armed=_bit(status, PlasmaStatusBit.ARMED),
            output_on=_bit(status, PlasmaStatusBit.OUTPUT_ON),
            energy_setpoint_j=PLASMA["ENERGY_SET"].decode(_field(w, start, PLASMA["ENERGY_SET"])),
            pulse_ms_setpoint=PLASMA["PULSE_SET"].decode(_field(w, start, PLASMA["PULSE_SET"])),
            pulse_count=join(_field(w, start, PLASMA["PULSE_COUNT"])),
            last_energy_j=None if join(last) == NO_ENERGY else PLASMA["LAST_ENERGY"].decode(last),
            fault_code=join(_field(w, start, PLASMA["FAULT_CODE"])),
            energy_limit_j=limit.decode(_field(w, start, limit)),
            t_sent=t_sent,
        )

    async def close(self) -> None:
        """Stop the heartbeat, leave the generator off and disarmed, and release it (its watchdog stands
        down, so the end of a session is not a lost heartbeat); best effort, bounded."""
        await super().close()
        if self.link.connected:
            for command in (PlasmaCommand.OUTPUT_OFF, PlasmaCommand.DISARM, PlasmaCommand.RELEASE):
                with contextlib.suppress(DeviceError):
                    await self._command(command, retry=False)


class ModbusSpray(_ModbusDevice):
    """:class:`plasmactl.ports.SprayUnit` over Modbus (SPRAY map)."""

    MAP = SPRAY
    NAME = "spray"

    async def connect(self) -> DeviceIdentity:
        ident = await super().connect()
        await self._check_watchdog()
        self._start_heartbeat(self.cfg.heartbeat_ms / 1000.0)
        return ident

    async def spray(self, duration_s: float) -> None:
        """[SPRAY, ms] to COMMAND..SPRAY_MS in one FC16 request; ValueError (nothing sent) when out of range."""
        command, length = SPRAY["COMMAND"], SPRAY["SPRAY_MS"]
        assert length.address == command.address + command.words
        words = [int(SprayCommand.SPRAY), *_encode(length, duration_s * 1000.0)]
        await self._write(command.address, words)

    async def stop(self) -> None:
        await self._write(SPRAY["COMMAND"].address, [int(SprayCommand.STOP)])

    async def close(self) -> None:
        """Stop the heartbeat and release the unit (valve closed, its watchdog stands down); best effort."""
        await super().close()
        if self.link.connected:
            with contextlib.suppress(DeviceError):
                await self._write(SPRAY["COMMAND"].address, [int(SprayCommand.RELEASE)], retry=False)

    async def status(self) -> SprayStatus:
        start, w, t = await self._read_block("STATUS", "FAULT_CODE")
        status = join(_field(w, start, SPRAY["STATUS"]))
        return SprayStatus(
            t=t,
            valve_open=_bit(status, SprayStatusBit.VALVE_OPEN),
            spray_commanded=_bit(status, SprayStatusBit.SPRAY_COMMANDED),
            reservoir_ml=SPRAY["RESERVOIR"].decode(_field(w, start, SPRAY["RESERVOIR"])),
            flow_ml_s=SPRAY["FLOW"].decode(_field(w, start, SPRAY["FLOW"])),
            spray_count=join(_field(w, start, SPRAY["SPRAY_COUNT"])),
            fault_code=join(_field(w, start, SPRAY["FAULT_CODE"])),
        )


class ModbusSafety(_ModbusDevice):
    """:class:`plasmactl.ports.SafetyInputs` from the generator's SAFETY and TIP_DISTANCE (unit 1); the
    generator's heartbeat is :class:`ModbusPlasma`'s business."""

    MAP = PLASMA
    NAME = "safety"

    def __init__(self, link: ModbusLink, cfg: ModbusCfg, clock: Clock, *, name: str | None = None) -> None:
        super().__init__(link, cfg, clock, name=name)
        self._last: SafetyState | None = None  # the last state handed out: what a change is a change from

    async def read(self) -> SafetyState:
        """The inputs now: always a read on the bus (the controller decides emission on it)."""
        return await self._poll()

    async def _poll(self) -> SafetyState:
        """One read of the inputs, also the state a change is judged from."""
        # stamped when the request goes, not when the reply comes: the device may have read its inputs at any
        # moment in between, so the state is as old as the request (emission is judged on that age)
        t = self.clock.now()
        start, w, _ = await self._read_block("SAFETY", "TIP_DISTANCE")
        bits = join(_field(w, start, PLASMA["SAFETY"]))
        st = SafetyState(
            t=t,
            estop=_bit(bits, SafetyBit.ESTOP),
            footswitch=_bit(bits, SafetyBit.FOOTSWITCH),
            tip_distance_mm=PLASMA["TIP_DISTANCE"].decode(_field(w, start, PLASMA["TIP_DISTANCE"])),
        )
        self._last = st
        return st

    async def wait_change(self, timeout_s: float) -> SafetyState:
        """Poll every ``poll_ms`` until an input differs from the last state handed out, or ``timeout_s``."""
        previous = self._last
        deadline = self.clock.now() + timeout_s
        period = self.cfg.poll_ms / 1000.0
        while True:
            st = await self._poll()
            if previous is None or _inputs(st) != _inputs(previous):
                return st
            now = self.clock.now()
            if now >= deadline:
                return st
            await self.clock.sleep_until(min(now + period, deadline))


def _inputs(st: SafetyState) -> tuple[bool, bool, float]:
    return st.estop, st.footswitch, st.tip_distance_mm
