"""The served RTU bus frames as the spec says (Modbus over serial line 2.5.1.1): a frame ends after a silence
of t3.5; a silence over t1.5 inside a frame makes it invalid and it is discarded (no reply); above 19200 baud
both are fixed at 750 us and 1.75 ms. Requests are written by hand to the master of a pty pair."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from pymodbus.framer import FramerRTU

from plasmactl.rig import rtu_char_s
from plasmactl.rig import rtu_intervals_s as rtu_intervals
from test_served_support import served

pytestmark = pytest.mark.hazard("H13")


def test_intervals_are_the_spec_numbers() -> None:
    assert rtu_intervals(9600) == pytest.approx((1.5 * 11 / 9600, 3.5 * 11 / 9600))
    assert rtu_intervals(19200) == pytest.approx((1.5 * 11 / 19200, 3.5 * 11 / 19200))
    for baud in (38400, 115200, 460800):
        assert rtu_intervals(baud) == (0.00075, 0.00175)
    assert rtu_char_s(9600) == pytest.approx(11 / 9600)


def frame(pdu: bytes) -> bytes:
    return pdu + FramerRTU.compute_CRC(pdu).to_bytes(2, "big")


READ_ID = frame(bytes([1, 3, 0, 0, 0, 2]))  # VENDOR, MODEL of unit 1
REPLY = bytes([1, 3, 4, 0x50, 0x4C, 0x01, 0x01])


async def reply_to(master: int, parts: list[bytes], gap_s: float, wait_s: float = 0.25) -> bytes:
    """Write ``parts`` with ``gap_s`` between them, from a thread (the server runs on this loop and must read
    the first part while the writer waits; ``time.sleep`` releases the GIL); the reply."""
    loop = asyncio.get_running_loop()

    def write() -> None:
        for i, part in enumerate(parts):
            if i:
                time.sleep(gap_s)
            os.write(master, part)

    await asyncio.to_thread(write)
    reply = b""
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(master, _resolve, ready)
        try:
            await asyncio.wait_for(ready, max(0.001, deadline - loop.time()))
        except TimeoutError:
            break
        finally:
            loop.remove_reader(master)
        reply += os.read(master, 256)
    return reply


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@pytest.mark.parametrize(
    ("baud", "gap_s", "answered", "discarded"),
    [
        (9600, 0.0, True, 0),  # one frame, written in two pieces back to back
        (9600, 0.0028, False, 1),  # 2.8 ms: over t1.5 (1.72 ms), under t3.5 (4.01 ms): the frame is invalid
        (9600, 0.012, False, 0),  # 12 ms: over t3.5, two frames, each with a bad CRC: no reply either
        (115200, 0.0012, False, 1),  # 1.2 ms: over the fixed 750 us, under the fixed 1.75 ms
        (115200, 0.004, False, 0),  # 4 ms: over 1.75 ms: two frames
    ],
)
async def test_a_gap_inside_a_frame(baud: int, gap_s: float, answered: bool, discarded: int) -> None:
    master, slave = os.openpty()
    try:
        async with served(tcp=False, rtu=os.ttyname(slave), baud=baud) as sim:
            server = sim.rtu_server
            assert server is not None
            want = (answered, discarded, 2 if gap_s > rtu_intervals(baud)[1] else 1)
            seen = []
            for _ in range(3):  # a loaded host can stretch a gap as the server reads it: one clean try is proof
                before = (server.frames, server.discarded)
                reply = await reply_to(master, [READ_ID[:3], READ_ID[3:]], gap_s)
                seen.append((reply[:7] == REPLY, server.discarded - before[1], server.frames - before[0]))
                if seen[-1] == want:
                    break
            assert seen[-1] == want, seen
            # the bus is fine afterwards: a whole frame is answered
            assert (await reply_to(master, [READ_ID], 0.0))[:7] == REPLY
    finally:
        os.close(master)
        os.close(slave)
