"""A new user's rig mistakes get a message that says what is wrong and which rig field to check: nothing
listening on the port, no such serial device, a unit id no device answers behind the gateway, and two
devices' unit ids swapped (the identity found is the other device's)."""

from __future__ import annotations

import socket

import pytest

from plasmactl.clock import LoopClock
from plasmactl.drivers.devices import ModbusPlasma, ModbusSpray
from plasmactl.drivers.errors import ExceptionResponse, IdentityMismatch, LinkDown
from plasmactl.drivers.link_registry import LinkRegistry
from plasmactl.drivers.modbus import ModbusLink, RtuEndpoint, TcpEndpoint
from plasmactl.rig import ModbusTcp
from test_served_support import served

HOST = "127.0.0.1"


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def test_nothing_listening_says_so_and_names_the_field() -> None:
    port = _unused_port()
    link = ModbusLink(TcpEndpoint(HOST, port))
    with pytest.raises(LinkDown) as info:
        await link.open("plasma")
    await link.close()
    assert f"connection refused: nothing listens on {HOST}:{port}; check plasma.port" in str(info.value)


async def test_an_unknown_host_says_so() -> None:
    link = ModbusLink(TcpEndpoint("no-such-host.invalid", 502))
    with pytest.raises(LinkDown) as info:
        await link.open("spray")
    await link.close()
    assert "unknown host 'no-such-host.invalid'" in str(info.value) and "check spray.host" in str(info.value)


async def test_no_such_serial_device_says_so() -> None:
    link = ModbusLink(RtuEndpoint("/dev/ttyPLASMACTL-NONE"))
    with pytest.raises(LinkDown) as info:
        await link.open("plasma")
    await link.close()
    assert "no such device /dev/ttyPLASMACTL-NONE; check plasma.port" in str(info.value)


def _tcp(port: int, unit: int) -> ModbusTcp:
    return ModbusTcp(kind="modbus-tcp", host=HOST, port=port, unit_id=unit)


async def test_a_wrong_unit_id_points_at_the_unit_id() -> None:
    async with served() as sim:
        assert sim.modbus_tcp is not None
        cfg = _tcp(sim.modbus_tcp.port, 7)
        links = LinkRegistry()
        plasma = ModbusPlasma(links.acquire(cfg), cfg, LoopClock())
        try:
            with pytest.raises((ExceptionResponse, LinkDown)) as info:
                await plasma.connect()
        finally:
            await plasma.close()
            await links.close()
    assert "check plasma.unit_id" in str(info.value), str(info.value)


async def test_swapped_unit_ids_name_the_device_found() -> None:
    async with served() as sim:
        assert sim.modbus_tcp is not None
        port = sim.modbus_tcp.port
        links = LinkRegistry()
        plasma_cfg, spray_cfg = _tcp(port, 2), _tcp(port, 1)
        plasma = ModbusPlasma(links.acquire(plasma_cfg), plasma_cfg, LoopClock())
        spray = ModbusSpray(links.acquire(spray_cfg), spray_cfg, LoopClock())
        try:
            with pytest.raises(IdentityMismatch) as found_spray:
                await plasma.connect()
            with pytest.raises(IdentityMismatch) as found_plasma:
                await spray.connect()
        finally:
            await plasma.close()
            await spray.close()
            await links.close()
    assert "that is the spray unit's model: are the unit ids (or ports) of plasma and it swapped?" in str(
        found_spray.value
    )
    assert "that is the plasma generator's model" in str(found_plasma.value)
