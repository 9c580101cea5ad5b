"""Link faults injected at the wire of the served devices (timeout, delay, corrupt, garbage, disconnect) over
Modbus TCP, Modbus RTU on a pty and the thermometer's line, seen by raw clients byte for byte and by pymodbus."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import serial_asyncio_fast
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerRTU

from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import PLASMA, SPRAY, PlasmaCommand, PlasmaStatusBit
from plasmactl.faults import Fault
from plasmactl.simulators.served import ServedSim
from plasmactl.simulators.served_wire import rtu_wire_time
from test_served_support import (
    as_owner,
    claim,
    command,
    configure,
    line_client,
    modbus_client,
    read,
    scenario,
    served,
)


def link(kind: str, target: str = "plasma", **extra: Any) -> dict[str, Any]:
    return {"device": "link", "kind": kind, "target": target, **({"at_s": 0.0} | extra)}


def tcp_read_request(tid: int, unit: int, address: int = 0, count: int = 10) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count)


def rtu_read_request(unit: int, address: int = 0, count: int = 10) -> bytes:
    frame = struct.pack(">BBHH", unit, 3, address, count)
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def rtu_crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], (frame[-2] << 8) | frame[-1])


@asynccontextmanager
async def raw_tcp(sim: ServedSim) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    assert sim.modbus_tcp is not None
    reader, writer = await asyncio.open_connection(sim.modbus_tcp.host, sim.modbus_tcp.port)
    try:
        yield reader, writer
    finally:
        writer.close()


@asynccontextmanager
async def raw_rtu(sim: ServedSim) -> AsyncIterator[tuple[Any, Any]]:
    assert sim.modbus_rtu is not None
    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=sim.modbus_rtu.port, baudrate=sim.modbus_rtu.baud
    )
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_some(reader: Any, n: int, wait_s: float = 0.3) -> bytes:
    """Up to ``n`` bytes, whatever arrives within ``wait_s`` (b"" for silence)."""
    out = b""
    deadline = time.perf_counter() + wait_s
    while len(out) < n:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(n - len(out)), left)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    return out


GOOD_TCP_REPLY_LEN = 9 + 20  # MBAP 7 + FC + byte count + 10 registers
GOOD_RTU_REPLY_LEN = 5 + 20  # unit + FC + byte count + 10 registers + CRC


# -------------------------------------------------------------------------------------------- TCP


async def test_tcp_timeout_is_silence_and_the_request_never_reaches_the_device() -> None:
    """An ARM the lease's owner sends inside the timeout is never answered and never reaches the generator:
    not armed, and not even refused there (the lease was claimed just before the fault: it would be taken)."""
    async with served() as sim:
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            assert not (await claim(client, PLASMA)).isError()  # live for 300 ms
            sim.world.inject(Fault.model_validate(link("timeout", duration_s=0.3)))
            with pytest.raises(ModbusIOException):
                await as_owner(client, PLASMA, PLASMA["COMMAND"].address, [PlasmaCommand.ARM])
            # another device on the same gateway connection answers
            assert await read(client, SPRAY, "VENDOR") == 0x504C
        await asyncio.sleep(0.3)
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            assert not (await read(client, PLASMA, "STATUS")) >> PlasmaStatusBit.ARMED & 1
            assert sim.plasma.lease is not None and sim.plasma.lease.refused == 0
            assert not (await command(client, PlasmaCommand.ARM)).isError()  # the same ARM, after the fault
            assert (await read(client, PLASMA, "STATUS")) >> PlasmaStatusBit.ARMED & 1


async def test_tcp_delay_adds_the_value_to_each_reply() -> None:
    async with served(faults=scenario(link("delay", value=120.0))) as sim, modbus_client(sim, "tcp") as client:
        t0 = time.perf_counter()
        assert await read(client, PLASMA, "VENDOR") == 0x504C
        elapsed = time.perf_counter() - t0
        assert 0.120 <= elapsed <= 0.120 + 0.05, elapsed
        t0 = time.perf_counter()
        await read(client, SPRAY, "VENDOR")
        assert time.perf_counter() - t0 < 0.05  # the spray unit's link is fine


async def test_tcp_corrupt_damages_the_frame() -> None:
    async with served(faults=scenario(link("corrupt"))) as sim:
        async with raw_tcp(sim) as (reader, writer):
            writer.write(tcp_read_request(tid=7, unit=1))
            reply = await read_some(reader, GOOD_TCP_REPLY_LEN)
            assert len(reply) == GOOD_TCP_REPLY_LEN
            tid, pid, length, unit = struct.unpack(">HHHB", reply[:7])
            assert (tid, length, unit) == (7, 23, 1) and pid == 0xDEAD
            assert reply[7:11] == bytes([3, 20, 0x50, 0x4C])  # the payload itself is the device's answer
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=10, device_id=1)


async def test_tcp_garbage_replaces_the_reply() -> None:
    async with served(faults=scenario(link("garbage"))) as sim:
        async with raw_tcp(sim) as (reader, writer):
            writer.write(tcp_read_request(tid=7, unit=1))
            reply = await read_some(reader, GOOD_TCP_REPLY_LEN)
            assert len(reply) == GOOD_TCP_REPLY_LEN
            assert reply[:7] != struct.pack(">HHHB", 7, 0, 23, 1)
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            with pytest.raises((ModbusIOException, ConnectionException)):
                await client.read_holding_registers(0, count=10, device_id=1)


async def test_tcp_disconnect_closes_the_connection() -> None:
    async with served(faults=scenario(link("disconnect", duration_s=0.4))) as sim:
        async with raw_tcp(sim) as (reader, writer):
            writer.write(tcp_read_request(tid=1, unit=2))  # the spray unit is not affected
            assert len(await read_some(reader, GOOD_TCP_REPLY_LEN)) == GOOD_TCP_REPLY_LEN
            writer.write(tcp_read_request(tid=2, unit=1))
            assert await asyncio.wait_for(reader.read(100), 1.0) == b""  # EOF: closed by the server
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            with pytest.raises((ModbusIOException, ConnectionException)):
                await client.read_holding_registers(0, count=10, device_id=1)
        await asyncio.sleep(0.4)
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            assert await read(client, PLASMA, "VENDOR") == 0x504C


async def test_a_safety_link_fault_hits_only_the_safety_registers() -> None:
    async with (
        served(faults=scenario(link("timeout", target="safety"))) as sim,
        modbus_client(sim, "tcp", timeout_s=0.1) as client,
    ):
        assert await read(client, PLASMA, "STATUS") == 0
        with pytest.raises(ModbusIOException):
            await read(client, PLASMA, "SAFETY")


async def test_a_link_fault_after_a_pulse_starts_when_that_pulse_ends() -> None:
    faults = scenario({"device": "link", "kind": "timeout", "target": "plasma", "after_pulses": 1})
    async with served(faults=faults) as sim, modbus_client(sim, "tcp", timeout_s=0.1) as client:
        await configure(client, 1.0, 40.0)  # long enough that a read inside it survives a loaded machine
        await command(client, PlasmaCommand.ARM)
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(0.002)  # past the 0.5 ms fire latency
        assert await read(client, PLASMA, "PULSE_COUNT") == 1  # still inside the pulse
        await asyncio.sleep(0.05)
        with pytest.raises(ModbusIOException):
            await read(client, PLASMA, "STATUS")


# -------------------------------------------------------------------------------------------- RTU


async def test_rtu_corrupt_reply_fails_its_crc() -> None:
    async with served(faults=scenario(link("corrupt")), tcp=False, rtu=True) as sim:
        async with raw_rtu(sim) as (reader, writer):
            writer.write(rtu_read_request(1))
            reply = await read_some(reader, GOOD_RTU_REPLY_LEN)
            assert len(reply) == GOOD_RTU_REPLY_LEN
            assert reply[:5] == bytes([1, 3, 20, 0x50, 0x4C])
            assert not rtu_crc_ok(reply)
            writer.write(rtu_read_request(2))  # the spray unit's replies are fine
            assert rtu_crc_ok(await read_some(reader, GOOD_RTU_REPLY_LEN))
        async with modbus_client(sim, "rtu", timeout_s=0.1) as client:
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=10, device_id=1)


async def test_rtu_garbage_reply_is_not_a_frame() -> None:
    async with served(faults=scenario(link("garbage")), tcp=False, rtu=True) as sim, raw_rtu(sim) as (reader, writer):
        writer.write(rtu_read_request(1))
        reply = await read_some(reader, GOOD_RTU_REPLY_LEN)
        assert len(reply) == GOOD_RTU_REPLY_LEN
        assert not rtu_crc_ok(reply)
        assert reply[:3] != bytes([1, 3, 20])


async def test_rtu_timeout_and_delay() -> None:
    faults = scenario(link("timeout", duration_s=0.25), link("delay", target="spray", value=80.0))
    async with served(faults=faults, tcp=False, rtu=True) as sim, modbus_client(sim, "rtu", timeout_s=0.1) as client:
        with pytest.raises(ModbusIOException):
            await read(client, PLASMA, "VENDOR")
        t0 = time.perf_counter()
        assert await read(client, SPRAY, "VENDOR") == 0x504C
        elapsed = time.perf_counter() - t0
        theory = rtu_wire_time(8, 7, 115200)
        assert 0.080 + theory <= elapsed <= 0.080 + theory + 0.03, elapsed
        await asyncio.sleep(0.25)
        assert await read(client, PLASMA, "VENDOR") == 0x504C


async def test_rtu_disconnect_is_silence_and_drops_buffered_bytes() -> None:
    faults = scenario(link("disconnect", duration_s=0.3))
    async with served(faults=faults, tcp=False, rtu=True) as sim, raw_rtu(sim) as (reader, writer):
        writer.write(rtu_read_request(1))
        await asyncio.sleep(0.01)
        writer.write(rtu_read_request(1, address=20, count=6))  # buffered behind the first: dropped too
        assert await read_some(reader, 64, wait_s=0.3) == b""
        await asyncio.sleep(0.05)
        writer.write(rtu_read_request(1))
        reply = await read_some(reader, 64, wait_s=0.2)
        assert len(reply) == GOOD_RTU_REPLY_LEN and rtu_crc_ok(reply)  # exactly one reply: nothing stale


# ------------------------------------------------------------------------------------------- line


@pytest.mark.parametrize("kind", ["timeout", "disconnect"])
async def test_line_silence(kind: str) -> None:
    faults = scenario(link(kind, target="thermometer", duration_s=0.3))
    async with served(faults=faults, tcp=False, serial=True) as sim, line_client(sim) as line:
        with pytest.raises(TimeoutError):
            await line.ask("ID", wait_s=0.2)
        await asyncio.sleep(0.15)
        assert lineproto.decode(await line.ask("ID"))[0] == "ID"


async def test_line_delay() -> None:
    faults = scenario(link("delay", target="thermometer", value=100.0))
    async with served(faults=faults, tcp=False, serial=True) as sim, line_client(sim) as line:
        t0 = time.perf_counter()
        assert lineproto.decode(await line.ask("ID"))[0] == "ID"
        assert 0.100 <= time.perf_counter() - t0 <= 0.100 + 0.03


async def test_line_corrupt_fails_the_checksum() -> None:
    faults = scenario(link("corrupt", target="thermometer"))
    async with served(faults=faults, tcp=False, serial=True) as sim, line_client(sim) as line:
        reply = await line.ask("ID")
        assert reply.startswith(b"$ID,") and reply.endswith(b"\r\n")
        with pytest.raises(lineproto.FrameError) as err:
            lineproto.decode(reply)
        assert err.value.code == lineproto.ErrorCode.BAD_CHECKSUM


async def test_line_garbage_is_not_a_frame() -> None:
    faults = scenario(link("garbage", target="thermometer"))
    async with served(faults=faults, tcp=False, serial=True) as sim, line_client(sim) as line:
        reply = await line.ask("ID")
        assert reply.endswith(b"\r\n") and b"\n" not in reply[:-1]
        with pytest.raises(lineproto.FrameError):
            lineproto.decode(reply)
