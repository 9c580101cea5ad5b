"""Wire time of the served serial lines (RTU at 9600 and 115200 baud, the thermometer's line), and the TCP
round trip of a served simulator in another process (printed: the figures the issue asks for)."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient

from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import PLASMA
from plasmactl.simulators.served_wire import line_wire_time, rtu_wire_time
from test_served_support import as_owner, claim, line_client, modbus_client, served

READ_10 = (8, 5 + 20)  # request and reply bytes of a read of 10 registers
OWNER_WRITE_1 = (9 + 2 * 5, 8)  # the owner's write of one register (map v2): FC16 of token, address, count, value


async def _timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


def _check(label: str, samples: list[float], theory: float) -> None:
    samples = sorted(samples)
    median, worst = statistics.median(samples), samples[-1]
    p90 = samples[int(0.9 * (len(samples) - 1))]
    print(
        f"\n{label}: theory {theory * 1000:.2f} ms, measured min {samples[0] * 1000:.2f} / median {median * 1000:.2f}"
        f" / p90 {p90 * 1000:.2f} / max {worst * 1000:.2f} ms (median {median / theory:.2f}x theory)"
    )
    assert samples[0] >= theory, "a reply came back faster than the wire can carry it"
    assert median <= 1.5 * theory + 0.003
    assert p90 <= 1.5 * theory + 0.005


@pytest.mark.slow
@pytest.mark.parametrize(("baud", "reps"), [(115200, 60), (9600, 12)])
async def test_rtu_replies_take_the_wire_time(baud: int, reps: int) -> None:
    async with served(tcp=False, rtu=True, baud=baud) as sim, modbus_client(sim, "rtu") as client:
        await client.read_holding_registers(0, count=10, device_id=1)  # warm up

        async def read10() -> None:
            rr = await client.read_holding_registers(0, count=10, device_id=1)
            assert not rr.isError()

        beats = iter(range(1, reps + 1))

        async def write1() -> None:
            # a changing heartbeat: each one renews the lease (an unchanging value would let it lapse)
            rr = await as_owner(client, PLASMA, PLASMA["HEARTBEAT"].address, [next(beats)])
            assert not rr.isError(), rr

        _check(f"RTU {baud} baud, read 10 registers", await _timed(read10, reps), rtu_wire_time(*READ_10, baud))
        assert not (await claim(client, PLASMA)).isError()
        _check(
            f"RTU {baud} baud, the owner's write of 1 register",
            await _timed(write1, reps),
            rtu_wire_time(*OWNER_WRITE_1, baud),
        )


@pytest.mark.slow
@pytest.mark.parametrize(("baud", "reps"), [(115200, 40), (9600, 12)])
async def test_line_replies_take_the_wire_time(baud: int, reps: int) -> None:
    async with served(tcp=False, serial=True, baud=baud) as sim, line_client(sim) as line:
        request = lineproto.encode("ID")
        reply = await line.raw(request)

        async def ask() -> None:
            assert await line.raw(request) == reply

        theory = line_wire_time(len(request), len(reply), baud)
        _check(f"line {baud} baud, $ID", await _timed(ask, reps), theory)


@pytest.mark.slow
@pytest.mark.subprocess
async def test_tcp_round_trip_to_a_served_sim_in_another_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plasmactl.simulators.served",
        "--modbus-tcp",
        "127.0.0.1:0",
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        where = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15.0))
        client = AsyncModbusTcpClient("127.0.0.1", port=where["modbus_tcp"]["port"], timeout=1.0, retries=0)
        assert await client.connect()
        try:
            for _ in range(50):
                await client.read_holding_registers(0, count=10, device_id=1)

            async def read10() -> None:
                rr = await client.read_holding_registers(0, count=10, device_id=1)
                assert not rr.isError()

            samples = sorted(await _timed(read10, 1000))
        finally:
            client.close()
        median, p99 = statistics.median(samples), samples[989]
        print(
            f"\nTCP read of 10 registers, served sim in another process: median {median * 1000:.3f} ms,"
            f" p99 {p99 * 1000:.3f} ms, max {samples[-1] * 1000:.3f} ms over 1000 reads"
        )
        assert median < 0.005
        assert p99 < 0.025
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0
