"""The operator's explicit act that clears a fault a generator has latched (``plasmactl clear-fault``).

A generator that lost its controller's heartbeat, hit its hardware pulse limit or saw its E-stop latches a
fault code and refuses arm and fire; the next session's self-test reports it and refuses to start. Nothing
in a session clears it: that is for the operator, once the cause is understood. This claims the device as
a session would (this host's endpoint lock, then its owner lease on a map v2 device), reads the fault,
sends RESET_FAULT, reads it back, and releases the device (off, disarmed, lease let go).
"""

from __future__ import annotations

from dataclasses import dataclass

from plasmactl.clock import Clock, LoopClock
from plasmactl.rig import ModbusRtu, ModbusTcp, Rig

from .devices import ModbusPlasma
from .host_locks import HostLocks, serial_key, tcp_key
from .link_registry import LinkRegistry
from .modbus import TcpEndpoint
from .modbus_device import new_token
from .rig import resolve_port


@dataclass(frozen=True)
class Cleared:
    fault_before: int
    fault_after: int

    @property
    def ok(self) -> bool:
        return self.fault_after == 0


async def clear_generator_fault(
    rig: Rig, clock: Clock | None = None, served_ports: dict[str, str] | None = None
) -> Cleared:
    """Clear the generator's latched fault; raises ``DeviceError`` (unreachable, owned by another controller,
    another session on this host) and ``ValueError`` for a rig whose generator is not on a wire."""
    cfg = rig.plasma
    if not isinstance(cfg, ModbusTcp | ModbusRtu):
        raise ValueError(f"plasma: kind {cfg.kind!r}: only a generator on a wire keeps a latched fault between runs")
    clock = clock if clock is not None else LoopClock()
    port = resolve_port("plasma", cfg.port, served_ports) if isinstance(cfg, ModbusRtu) else None
    links = LinkRegistry()
    locks = HostLocks("plasmactl clear-fault")
    link = links.acquire(cfg, port)
    plasma = ModbusPlasma(link, cfg, clock, token=new_token())
    try:
        ep = link.endpoint
        locks.acquire("plasma", tcp_key(ep.host, ep.port) if isinstance(ep, TcpEndpoint) else serial_key(ep.path))
        await plasma.check_identity()
        await plasma.claim()
        before = (await plasma.status()).fault_code
        if before:
            await plasma.reset_fault()
        after = (await plasma.status()).fault_code
        return Cleared(before, after)
    finally:
        try:
            await plasma.close()
        finally:
            await links.close()
            locks.release()
