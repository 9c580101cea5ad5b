"""Helpers shared by the served-simulator tests (``test_served_*.py``); this module holds no tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import PLASMA, DeviceMap, join, owner_write, split
from plasmactl.faults import FaultScenario
from plasmactl.rig import PlasmaSim, Rig
from plasmactl.simulators.served import ServedSim, serve

Transport = Literal["tcp", "rtu"]
Client = AsyncModbusTcpClient | AsyncModbusSerialClient


def scenario(*faults: dict[str, Any]) -> FaultScenario:
    return FaultScenario.model_validate({"name": "test", "fault": list(faults)})


def rig(**plasma: Any) -> Rig:
    return Rig(plasma=PlasmaSim(**plasma)) if plasma else Rig()


@asynccontextmanager
async def served(
    the_rig: Rig | None = None,
    faults: FaultScenario | None = None,
    *,
    tcp: bool = True,
    rtu: str | bool = False,
    serial: str | bool = False,
    baud: int = 115200,
) -> AsyncIterator[ServedSim]:
    sim = await serve(
        the_rig or Rig(),
        faults or FaultScenario(),
        seed=1,
        modbus_tcp=("127.0.0.1", 0) if tcp else None,
        modbus_rtu=rtu,
        serial=serial,
        baud=baud,
    )
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def modbus_client(sim: ServedSim, transport: Transport, *, timeout_s: float = 0.5) -> AsyncIterator[Client]:
    client: Client
    if transport == "tcp":
        assert sim.modbus_tcp is not None
        client = AsyncModbusTcpClient(sim.modbus_tcp.host, port=sim.modbus_tcp.port, timeout=timeout_s, retries=0)
    else:
        assert sim.modbus_rtu is not None
        client = AsyncModbusSerialClient(
            sim.modbus_rtu.port, baudrate=sim.modbus_rtu.baud, timeout=timeout_s, retries=0, reconnect_delay=0
        )
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read(client: Client, dmap: DeviceMap, name: str) -> int:
    """One register by name, as its raw integer."""
    reg = dmap[name]
    rr = await client.read_holding_registers(reg.address, count=reg.words, device_id=dmap.unit_id)
    assert not rr.isError(), rr
    return join(rr.registers)


TOKEN = 0x7E57_0001  # the tests' session token (map v2: only the lease's owner writes)


async def claim(client: Client, dmap: DeviceMap, token: int = TOKEN) -> ModbusPDU:
    """Claim the unit's lease (renews it when ``token`` already owns it); returns the response."""
    reg = dmap["LEASE_CLAIM"]
    return await client.write_registers(reg.address, split(token, 2), device_id=dmap.unit_id)


async def as_owner(client: Client, dmap: DeviceMap, address: int, words: list[int], token: int = TOKEN) -> ModbusPDU:
    """The owner's write alone (no claim first): one FC16 request at WRITE_TOKEN carrying ``token``; refused
    (exception 1) unless ``token`` holds a live lease, e.g. from a :func:`claim` less than LEASE_MS ago."""
    at, request = owner_write(token, address, words)
    return await client.write_registers(at, request, device_id=dmap.unit_id)


async def write_words(client: Client, dmap: DeviceMap, address: int, words: list[int], token: int = TOKEN) -> ModbusPDU:
    """Write ``words`` at ``address`` as a controller does on a map v2 unit: claim the lease (a refused claim
    is returned as the response), then the owner's write carrying the token."""
    rr = await claim(client, dmap, token)
    if rr.isError():
        return rr
    return await as_owner(client, dmap, address, words, token)


async def write(client: Client, dmap: DeviceMap, name: str, raw: int) -> ModbusPDU:
    """Write one register by name as the lease's owner; returns the response (maybe an error)."""
    reg = dmap[name]
    return await write_words(client, dmap, reg.address, split(raw, reg.words))


async def configure(client: Client, energy_j: float, pulse_ms: float, limit_j: float | None = None) -> None:
    """Setpoints and the dose monitor's limit (default: the setpoint + 20 %, as the controller sets it)."""
    words = PLASMA["ENERGY_SET"].encode(energy_j) + PLASMA["PULSE_SET"].encode(pulse_ms)
    rr = await write_words(client, PLASMA, PLASMA["ENERGY_SET"].address, words)
    assert not rr.isError(), rr
    limit = PLASMA["ENERGY_LIMIT"].encode(energy_j * 1.2 if limit_j is None else limit_j)
    rr = await write_words(client, PLASMA, PLASMA["ENERGY_LIMIT"].address, limit)
    assert not rr.isError(), rr


async def command(client: Client, value: int, dmap: DeviceMap = PLASMA) -> ModbusPDU:
    return await write(client, dmap, "COMMAND", value)


def bit(value: int, position: int) -> bool:
    return bool(value >> position & 1)


async def poll_until(probe: Callable[[], Awaitable[bool]], within_s: float, period: float = 0.002) -> float | None:
    """Poll ``probe`` until it is true; the perf_counter time it first was, or None after ``within_s``."""
    deadline = time.perf_counter() + within_s
    while time.perf_counter() < deadline:
        if await probe():
            return time.perf_counter()
        await asyncio.sleep(period)
    return None


@asynccontextmanager
async def line_client(sim: ServedSim) -> AsyncIterator[LineClient]:
    assert sim.serial is not None
    import serial_asyncio_fast

    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=sim.serial.thermometer, baudrate=sim.serial.baud
    )
    try:
        yield LineClient(reader, writer)
    finally:
        writer.close()


class LineClient:
    """A bare client of the thermometer's line protocol."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader = reader
        self.writer = writer

    async def raw(self, data: bytes, wait_s: float = 0.5) -> bytes:
        self.writer.write(data)
        line: bytes = await asyncio.wait_for(self.reader.readline(), wait_s)
        return line

    async def ask(self, *fields: str, wait_s: float = 0.5) -> bytes:
        return await self.raw(lineproto.encode(*fields), wait_s)
