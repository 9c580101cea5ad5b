"""The base of a served Modbus unit: the register contract checked on every request, the device-side
heartbeat watchdog, and the owner lease of map version 2 (the units themselves are in ``served_units``).

Reads are filled from the unit's model; a write must cover whole, writable registers (else exception 2)
and carry raw values inside the declared write range (else exception 3); a device that refuses a command
answers the ``DeviceError`` code as the exception code (3 illegal value, 4 device failure, 6 busy). On a
map v2 unit every write but a claim must come as the live owner's write (else exception 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from plasmactl.clock import Clock
from plasmactl.drivers.registers import (
    MAP_VERSION,
    NOT_OWNER,
    Capability,
    DeviceMap,
    Register,
    join,
    split,
)
from plasmactl.ports import DeviceError
from plasmactl.simulators.served_lease import Apply, Claimed, Lease, route

log = logging.getLogger("plasmactl.served")


def bit_of(position: int, on: bool) -> int:
    return (1 << position) if on else 0


def raw_of(reg: Register, value: float) -> int:
    """An engineering value as the register's raw integer, clamped to what its words can carry."""
    if not math.isfinite(value):
        return 0
    return min(max(round(value * reg.scale), 0), (1 << (16 * reg.words)) - 1)


def _exception_code(exc: DeviceError) -> ExcCodes:
    try:
        return ExcCodes(exc.code) if exc.code is not None else ExcCodes.DEVICE_FAILURE
    except ValueError:
        return ExcCodes.DEVICE_FAILURE


class HeartbeatWatchdog:
    """Trips ``on_trip`` when the heartbeat value has not changed for longer than ``window_s``.

    Armed by the first heartbeat write (whatever its value); a write of the same value again is no
    heartbeat. After a trip it is disarmed until the next heartbeat write.
    """

    def __init__(self, clock: Clock, window_s: float, on_trip: Callable[[], Awaitable[None]]) -> None:
        self.clock = clock
        self.window_s = window_s
        self._on_trip = on_trip
        self.armed = False
        self.last_beat = -math.inf
        self._value: int | None = None
        self._task: asyncio.Task[None] | None = None

    def beat(self, value: int) -> bool:
        """A HEARTBEAT write; True if it counts as a heartbeat."""
        if self.armed and value == self._value:
            return False
        self._value = value
        self.last_beat = self.clock.now()
        if not self.armed:
            self.armed = True
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name="served heartbeat watchdog")
        return True

    async def _run(self) -> None:
        while self.armed:
            deadline = self.last_beat + self.window_s
            if self.clock.now() >= deadline:
                self.armed = False
                await self._on_trip()
                return
            await self.clock.sleep_until(deadline)

    async def stop(self) -> None:
        self.armed = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ServedUnit(ABC):
    """One Modbus unit over a device map: reads filled from ``read_image``, writes checked then ``write``."""

    def __init__(self, device_map: DeviceMap, clock: Clock, map_version: int = MAP_VERSION) -> None:
        if map_version not in (1, 2):
            raise ValueError(f"map version {map_version} is not 1 or 2")
        self.map = device_map = device_map.in_version(map_version)
        self.clock = clock
        self.map_version = map_version
        window_s = device_map["WATCHDOG_MS"].default / 1000.0
        self.lease = Lease(device_map.device, clock, window_s) if map_version >= 2 else None
        self._at = {address: reg for reg in device_map for address in reg.addresses}
        self._zeroed = [r for r in device_map if r.name == "LEASE_CLAIM" or r.name.startswith("WRITE_")]
        self.trips: list[float] = []  # clock times at which the unit's own watchdog tripped

    @property
    def unit_id(self) -> int:
        return self.map.unit_id

    def sim_device(self) -> SimDevice:
        simdata = [
            SimData(
                r.address,
                values=split(self._default(r), r.words),
                datatype=DataType.REGISTERS,
                readonly=r.access == "R",
            )
            for r in self.map
        ]
        return SimDevice(id=self.map.unit_id, simdata=simdata, action=self._action)

    def _default(self, reg: Register) -> int:
        if reg.name == "MAP_VERSION":
            return self.map_version
        if reg.name == "CAPABILITIES":  # the served world wires the pulse-end line between its two units
            return 1 << Capability.TRIGGER_LINE if self.map_version >= 2 else 0
        return reg.default

    def _device_us(self, t: float | None) -> int:
        """A world time on the device's microsecond clock (wraps at 2**32)."""
        return 0 if t is None else round(t * 1e6) & 0xFFFFFFFF

    def _lease_image(self) -> dict[str, int]:
        """The lease as a read shows it: the owner, and zeros where tokens are written (never read back)."""
        if self.lease is None:
            return {}
        image = {r.name: 0 for r in self._zeroed}
        image["LEASE_OWNER"] = self.lease.owner()
        return image

    def _renew(self) -> None:
        if self.lease is not None:
            self.lease.renew()

    def _release(self) -> None:
        if self.lease is not None:
            self.lease.release()

    @abstractmethod
    async def read_image(self) -> dict[str, int]:
        """Raw values of the registers that come from the model (the others keep their declared default)."""

    @abstractmethod
    async def write(self, writes: dict[str, int]) -> None:
        """Apply checked raw values (a ``DeviceError`` refuses the request)."""

    @abstractmethod
    async def stop(self) -> None:
        """Power off: stop the unit's timers and switch its actuator off."""

    async def _action(
        self,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        del function_code
        if values is None:  # a read (also the read-back of a single-register write)
            image = await self.read_image()
            image.update(self._lease_image())
            for name, raw in image.items():
                shown = self.map[name]
                for i, word in enumerate(split(raw, shown.words)):
                    at = shown.address + i - start
                    if 0 <= at < len(registers):
                        registers[at] = word
            return None
        where = route(self.map, self.lease, address, [int(v) for v in values][:count])
        if isinstance(where, Claimed):
            return None if where.accepted else ExcCodes(NOT_OWNER)
        if not isinstance(where, Apply):
            return where
        return await self._apply(where.address, where.words)

    async def _apply(self, address: int, words: list[int]) -> ExcCodes | None:
        """A write's checks (whole registers, declared ranges), then the unit's ``write``."""
        count = len(words)
        writes: dict[str, int] = {}
        i = 0
        while i < count:
            reg = self._at.get(address + i)
            if reg is None or reg.address != address + i or reg.address + reg.words > address + count:
                return ExcCodes.ILLEGAL_ADDRESS  # unmapped, or only part of a 32-bit register
            if reg.access == "R":
                return ExcCodes.ILLEGAL_ADDRESS
            raw = join(words[i : i + reg.words])
            if not reg.low <= raw <= reg.high:
                return ExcCodes.ILLEGAL_VALUE
            writes[reg.name] = raw
            i += reg.words
        try:
            await self.write(writes)
        except DeviceError as exc:
            return _exception_code(exc)
        return None
