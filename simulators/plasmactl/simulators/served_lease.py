"""The owner lease of a served unit (register map version 2), as a device keeps it.

One controller at a time may write to a device: it claims the lease with its session token, and every
write it makes afterwards carries that token (the owner's write at WRITE_TOKEN). The lease lapses when the
owner's heartbeat stops for LEASE_MS, or at a RELEASE command, so a controller that died never locks the
device for longer than its heartbeat window. Reads are never refused: a monitor or ``probe`` reads freely.

:func:`route` turns one write request into what the unit must do with it: apply a direct write (map v1),
claim, apply an owner's embedded write, or refuse with an exception code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pymodbus.constants import ExcCodes

from plasmactl.clock import Clock
from plasmactl.drivers.registers import LEASE_END, LEASE_FIRST, NOT_OWNER, DeviceMap, join

log = logging.getLogger("plasmactl.served")


class Lease:
    """Who owns the unit now; lapses ``window_s`` after the owner's last claim or heartbeat."""

    def __init__(self, device: str, clock: Clock, window_s: float) -> None:
        self.device = device
        self.clock = clock
        self.window_s = window_s
        self._owner = 0
        self._until = -math.inf
        self.refused = 0  # writes and claims refused (a second controller, a tool that does not claim)

    def owner(self) -> int:
        """The live owner's token (0: free); a lapsed lease is let go here."""
        if self._owner and self.clock.now() > self._until:
            log.warning(
                "%s: lease of 0x%08X lapsed (no heartbeat for %.0f ms)", self.device, self._owner, self.window_s * 1e3
            )
            self._owner = 0
        return self._owner

    def claim(self, token: int) -> bool:
        """Take (or renew) the lease for ``token``; False while another owner's lease is live."""
        current = self.owner()
        if current not in (0, token):
            self.refused += 1
            return False
        self._owner, self._until = token, self.clock.now() + self.window_s
        return True

    def renew(self) -> None:
        """The owner's heartbeat changed: the lease runs on."""
        if self._owner:
            self._until = self.clock.now() + self.window_s

    def release(self) -> None:
        self._owner, self._until = 0, -math.inf


@dataclass(frozen=True)
class Apply:
    """Apply ``words`` at ``address`` with every check of a write (direct on v1, embedded on v2)."""

    address: int
    words: list[int]


@dataclass(frozen=True)
class Claimed:
    """A claim, accepted or not (its refusal is answered with NOT_OWNER)."""

    accepted: bool


Route = Apply | Claimed | ExcCodes


def route(m: DeviceMap, lease: Lease | None, address: int, words: list[int]) -> Route:
    """What a write of ``words`` at ``address`` means on a unit with ``lease`` (None: map v1, no lease)."""
    if lease is None:
        return Apply(address, words)
    claim, token_reg = m["LEASE_CLAIM"], m["WRITE_TOKEN"]
    if address == claim.address and len(words) == claim.words:
        token = join(words)
        if not claim.low <= token <= claim.high:
            return ExcCodes.ILLEGAL_VALUE
        return Claimed(lease.claim(token))
    if address != token_reg.address or len(words) < 5:
        lease.refused += 1
        return ExcCodes(NOT_OWNER)  # a direct write: nothing but the owner's write changes a v2 device
    token, target, count, data = join(words[0:2]), words[2], words[3], words[4:]
    if count != len(data):
        return ExcCodes.ILLEGAL_VALUE
    if token == 0 or token != lease.owner():
        lease.refused += 1
        return ExcCodes(NOT_OWNER)
    if target < LEASE_END and target + count > LEASE_FIRST:
        return ExcCodes.ILLEGAL_ADDRESS  # the lease and the owner's write are not written through themselves
    return Apply(target, data)
