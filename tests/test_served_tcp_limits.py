"""The served Modbus TCP stack is bounded as a device's is: a partial frame or an idle connection is closed
after its time, and connections beyond the cap are closed at once (it used to hold them all forever)."""

from __future__ import annotations

import asyncio
import sys
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


FLOOD = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex("000100000006010300000002") * int(sys.argv[2]))  # and never reads a reply
print("sent", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("requests", [5000, 300_000])
async def test_a_client_that_floods_does_not_starve_another(requests: int) -> None:
    """Before: 5000 pipelined reads from another process held another client's read for about a second, and
    a client that never read its replies (4 MB of requests) held every client until it closed: a running
    session faulted with device_no_reply."""
    async with served() as sim:
        assert sim.modbus_tcp is not None
        port = sim.modbus_tcp.port
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, str(port), str(requests), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert flood.stdout is not None
            await asyncio.wait_for(flood.stdout.readline(), 30.0)
            await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection(HOST, port)
            waits = []
            for _ in range(5):
                t0 = time.monotonic()
                writer.write(bytes.fromhex("000200000006010300000002"))
                reply = await asyncio.wait_for(reader.readexactly(13), 5.0)
                waits.append(time.monotonic() - t0)
                assert reply[:2] == b"\x00\x02" and reply[7:9] == b"\x03\x04"
            assert max(waits) < 0.1, waits
            writer.close()
        finally:
            flood.kill()
            await flood.wait()
