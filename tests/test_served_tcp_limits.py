"""The served Modbus TCP stack is bounded as a device's is: a partial frame or an idle connection is closed
after its time, and connections beyond the cap are closed at once (it used to hold them all forever)."""

from __future__ import annotations

import asyncio
import time

import pytest

from plasmactl.simulators.served_transports import ModbusTcpServer
from test_served_support import served

HOST = "127.0.0.1"


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    t0 = time.monotonic()
    data = await asyncio.wait_for(reader.read(100), seconds)
    assert data == b""  # EOF: the server closed the connection
    return time.monotonic() - t0


@pytest.mark.parametrize(
    ("limit", "sent"),
    [
        ("partial_frame_s", b"\x00\x01\x00"),  # three bytes of a seven-byte header, then nothing
        ("idle_s", b""),  # a connection that never asks anything
    ],
)
async def test_a_stalled_connection_is_closed_after_its_time(
    limit: str, sent: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ModbusTcpServer, limit, 0.2)
    async with served() as sim:
        assert sim.modbus_tcp is not None
        reader, writer = await asyncio.open_connection(HOST, sim.modbus_tcp.port)
        writer.write(sent)
        await writer.drain()
        assert 0.15 < await _closed_within(reader, 2.0) < 1.0
        writer.close()


async def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    async with served() as sim:
        assert sim.modbus_tcp is not None
        port = sim.modbus_tcp.port
        held = [await asyncio.open_connection(HOST, port) for _ in range(ModbusTcpServer.max_connections)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await _closed_within(reader, 1.0) < 0.5
        writer.close()
        # the ones inside the cap still work: a read of the generator's identity
        r, w = held[0]
        w.write(bytes.fromhex("000100000006010300000002"))
        await w.drain()
        reply = await asyncio.wait_for(r.readexactly(13), 1.0)
        assert reply[7:9] == b"\x03\x04" and reply[9:11] == b"\x50\x4c"
        for _, w in held:
            w.close()
