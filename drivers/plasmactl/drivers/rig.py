"""Build, connect and identity-check the real devices a rig names; one Modbus link per endpoint."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from plasmactl.clock import Clock
from plasmactl.ports import Devices
from plasmactl.rig import DEVICES, SERVED_PORTS, ModbusRtu, ModbusTcp, Rig, SerialLine

from .devices import ModbusPlasma, ModbusSafety, ModbusSpray
from .host_locks import HostLocks, serial_key, tcp_key
from .link_registry import LinkRegistry
from .modbus import ModbusLink, TcpEndpoint, TracePacket
from .modbus_device import new_token
from .thermometer import SerialThermometer

__all__ = ["open_devices", "resolve_port"]

_log = logging.getLogger(__name__)


def resolve_port(device: str, port: str, served_ports: dict[str, str] | None) -> str:
    if not port.startswith("@"):
        return port
    if port not in SERVED_PORTS:
        raise ValueError(f"{device}.port: {port!r} is not one of {', '.join(SERVED_PORTS)}")
    if served_ports is None or port not in served_ports:
        raise ValueError(f"{device}.port = {port!r}, but no served port was given for it")
    return served_ports[port]


def _modbus(rig: Rig, device: str) -> ModbusTcp | ModbusRtu:
    cfg = getattr(rig, device)
    if not isinstance(cfg, ModbusTcp | ModbusRtu):
        raise ValueError(f"{device}: kind {cfg.kind!r} is not a Modbus device (drivers cover real devices only)")
    return cfg


async def open_devices(
    rig: Rig,
    clock: Clock,
    served_ports: dict[str, str] | None = None,
    *,
    trace_packet: TracePacket | None = None,
    holder: str = "a plasmactl session",
    token: int | None = None,
) -> tuple[Devices, Callable[[], Awaitable[None]]]:
    """The four port implementations for a rig of real (or served) devices, connected and identity-checked,
    and the coroutine function that closes them. Any failure closes what was opened and raises: a
    :class:`~plasmactl.drivers.errors.IdentityMismatch` or :class:`~plasmactl.drivers.errors.LinkDown` means
    the session must not start, as does :class:`~plasmactl.drivers.host_locks.EndpointBusy` (another session
    on this host holds an endpoint; raised before anything is sent). A ``sim`` device raises ValueError (it
    is not a driver's business). ``token``: the session's lease token on map v2 devices (default: a new
    random one); a device another controller owns raises :class:`~plasmactl.drivers.devices.LeaseHeld`."""
    sims = [d for d in DEVICES if getattr(rig, d).kind == "sim"]
    if sims:
        raise ValueError(f"open_devices builds drivers for real devices; {', '.join(sims)} is 'sim'")
    links = LinkRegistry(trace_packet=trace_packet)
    locks = HostLocks(holder)
    opened: list[ModbusPlasma | ModbusSpray | ModbusSafety | SerialThermometer] = []

    def link_for(device: str) -> tuple[ModbusTcp | ModbusRtu, ModbusLink]:
        cfg = _modbus(rig, device)
        port = resolve_port(device, cfg.port, served_ports) if isinstance(cfg, ModbusRtu) else None
        return cfg, links.acquire(cfg, port)

    plasma_cfg, plasma_link = link_for("plasma")
    spray_cfg, spray_link = link_for("spray")
    safety_cfg, safety_link = link_for("safety")
    therm_cfg = rig.thermometer
    if not isinstance(therm_cfg, SerialLine):  # pragma: no cover - excluded above
        raise ValueError("thermometer: not a serial device")
    token = new_token() if token is None else token
    plasma = ModbusPlasma(plasma_link, plasma_cfg, clock, token=token)
    spray = ModbusSpray(spray_link, spray_cfg, clock, token=token)
    safety = ModbusSafety(safety_link, safety_cfg, clock)
    thermometer = SerialThermometer(therm_cfg, clock, port=resolve_port("thermometer", therm_cfg.port, served_ports))

    async def close() -> None:
        for device in reversed(opened):
            try:
                await device.close()
            except Exception as exc:  # noqa: BLE001 - closing goes on for the others
                _log.warning("closing %s: %s", type(device).__name__, exc)
        opened.clear()
        try:
            await links.close()
        finally:
            locks.release()

    try:
        for name, link in (("plasma", plasma_link), ("spray", spray_link), ("safety", safety_link)):
            ep = link.endpoint
            locks.acquire(name, tcp_key(ep.host, ep.port) if isinstance(ep, TcpEndpoint) else serial_key(ep.path))
        locks.acquire("thermometer", serial_key(thermometer.path))
        for device in (plasma, safety, spray, thermometer):
            opened.append(device)
            await device.connect()
    except BaseException:
        with contextlib.suppress(Exception):
            await close()
        raise
    return Devices(plasma=plasma, spray=spray, thermometer=thermometer, safety=safety), close
