"""The common part of the Modbus device drivers: the identity check, typed reads and writes, the heartbeat,
and the owner lease of register map version 2.

On a map v2 device the driver claims the lease with the session's token at connect (``claim``), after which
every write goes as the owner's write carrying that token, and the heartbeat keeps the lease alive; a
device another controller owns refuses the claim (:class:`LeaseHeld`, naming the owner's token) before
anything else is written. A map v1 device (older firmware) has no lease and takes direct writes; the host's
endpoint locks are then the only guard against a second controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from plasmactl import bus_priority
from plasmactl.bus_priority import ROUTINE_HOLD_MAX_S, BusPriority
from plasmactl.clock import Clock
from plasmactl.ports import DeviceError
from plasmactl.rig import ModbusRtu, ModbusTcp

from .errors import IdentityMismatch
from .modbus import ModbusLink, RequestPolicy
from .registers import NOT_OWNER, DeviceMap, Register, join, owner_write, split

__all__ = ["DeviceIdentity", "LeaseHeld", "ModbusCfg", "ModbusDevice", "new_token"]

_log = logging.getLogger("plasmactl.drivers.devices")

ModbusCfg = ModbusTcp | ModbusRtu


def new_token() -> int:
    """A session's lease token: random, 32 bits, never 0 (0 means "free")."""
    return secrets.randbits(32) or 1


class LeaseHeld(DeviceError):
    """A map v2 device is owned by another controller: the claim was refused, nothing else was written."""

    def __init__(self, device: str, owner: int | None, lease_ms: int | None) -> None:
        who = "another controller" if owner is None else f"another controller (session token 0x{owner:08X})"
        lapse = "" if lease_ms is None else f"; its lease lapses {lease_ms} ms after that controller's last heartbeat"
        super().__init__(device, f"owned by {who}: the claim was refused{lapse}", NOT_OWNER)
        self.owner = owner


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
            return join(field_of(words, 0, m[name]))

        return cls(
            vendor=raw("VENDOR"),
            model=raw("MODEL"),
            firmware=(raw("FW_MAJOR"), raw("FW_MINOR"), raw("FW_PATCH")),
            map_version=raw("MAP_VERSION"),
            serial=raw("SERIAL"),
            capabilities=raw("CAPABILITIES"),
        )


def field_of(words: Sequence[int], start: int, reg: Register) -> Sequence[int]:
    """The words of ``reg`` within a block read from ``start``."""
    offset = reg.address - start
    return words[offset : offset + reg.words]


def _bit(word: int, bit: int) -> bool:
    return bool((word >> bit) & 1)


def encode(reg: Register, value: float) -> list[int]:
    if not math.isfinite(value):
        raise ValueError(f"{reg.name}: {value!r} {reg.unit} is not a finite number")
    return reg.encode(value)


class ModbusDevice:
    """One unit on a :class:`ModbusLink`: identity check, typed reads and writes, optional heartbeat."""

    MAP: DeviceMap
    NAME: str

    def __init__(
        self, link: ModbusLink, cfg: ModbusCfg, clock: Clock, *, name: str | None = None, token: int | None = None
    ) -> None:
        self.link = link
        self.token = token  # the session's lease token (None: reads only, as probe and monitors use it)
        self.owned = False  # the lease is ours: every write goes as the owner's write
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

    async def _read(self, address: int, count: int, on_send: Callable[[], None] | None = None) -> list[int]:
        return await self.link.read(self.unit, address, count, policy=self.policy, device=self.name, on_send=on_send)

    async def _write(
        self, address: int, values: Sequence[int], *, retry: bool = True, on_send: Callable[[], None] | None = None
    ) -> None:
        policy = self.policy if retry else RequestPolicy(self.policy.timeout_s, 0)
        await self._send(address, values, policy, on_send)

    async def _send(
        self, address: int, values: Sequence[int], policy: RequestPolicy, on_send: Callable[[], None] | None = None
    ) -> None:
        """One write: as the owner's write (carrying the token) once the lease is ours, else direct (map v1)."""
        if self.owned and self.token is not None:
            address, values = owner_write(self.token, address, values)
        await self.link.write(self.unit, address, values, policy=policy, device=self.name, on_send=on_send)

    async def _take_over(self) -> None:
        """After the identity check: the lease claimed, the device's watchdog checked, the heartbeat going."""
        await self.claim()
        await self._check_watchdog()
        self._start_heartbeat(self.cfg.heartbeat_ms / 1000.0)

    @property
    def may_release(self) -> bool:
        """Whether this driver may send its goodbye commands: the link is up and the device is ours to write."""
        return self.link.connected and (self.owned or not self.has_lease)

    # ------------------------------------------------------------------ lease (map v2)

    @property
    def has_lease(self) -> bool:
        return self.identity is not None and self.identity.map_version >= 2

    async def claim(self) -> None:
        """Claim the device's lease with the session token (map v2; nothing to do on v1)."""
        if not self.has_lease:
            return
        if self.token is None:
            raise DeviceError(self.name, "a map v2 device is written only by its owner: no session token given")
        claim = self.MAP["LEASE_CLAIM"]
        try:
            await self.link.write(self.unit, claim.address, split(self.token, 2), policy=self.policy, device=self.name)
        except DeviceError as exc:
            if exc.code != NOT_OWNER:
                raise
            raise LeaseHeld(self.name, *await self._lease_holder()) from exc
        self.owned = True

    async def lease_owner(self) -> int:
        """The token of the device's owner now (0: free); map v2 only."""
        reg = self.MAP["LEASE_OWNER"]
        return join(await self._read(reg.address, reg.words))

    async def _lease_holder(self) -> tuple[int | None, int | None]:
        try:
            start, words, _ = await self._read_block("LEASE_OWNER", "LEASE_MS")
        except DeviceError:
            return None, None
        return join(field_of(words, start, self.MAP["LEASE_OWNER"])), join(field_of(words, start, self.MAP["LEASE_MS"]))

    async def _read_block(
        self, first: str, last: str, on_send: Callable[[], None] | None = None
    ) -> tuple[int, list[int], float]:
        """One read of ``first``..``last``: (start address, words, clock time of the reply)."""
        start, count = self.MAP.block(first, last)
        words = await self._read(start, count, on_send)
        return start, words, self.clock.now()

    # ------------------------------------------------------------------ heartbeat

    async def _check_watchdog(self) -> None:
        """The device's WATCHDOG_MS must outlast the heartbeat period, or it would switch off between beats."""
        reg = self.MAP["WATCHDOG_MS"]
        self.device_watchdog_ms = int(reg.decode(await self._read(reg.address, reg.words)))
        # a heartbeat is routine traffic: a cooling chain may hold it back for up to ROUTINE_HOLD_MAX_S
        longest_ms = self.cfg.heartbeat_ms + ROUTINE_HOLD_MAX_S * 1000.0
        if 0 < self.device_watchdog_ms <= longest_ms:
            raise DeviceError(
                self.name,
                f"heartbeat_ms ({self.cfg.heartbeat_ms:g}) plus the longest routine hold of a cooling chain"
                f" ({ROUTINE_HOLD_MAX_S * 1000.0:g} ms) must be below the device's WATCHDOG_MS"
                f" ({self.device_watchdog_ms})",
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
                await self._send(address, [self._beat], policy)  # the owner's heartbeat keeps its lease
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


def bit(word: int, position: int) -> bool:
    return bool((word >> position) & 1)
