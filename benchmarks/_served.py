"""Benchmark helper: start ``plasmactl serve-sim`` in another process and read where it put the devices."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient

from plasmactl.drivers.registers import MAPS, owner_write, split


@contextmanager
def served(*args: str) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "plasmactl.cli", "serve-sim", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("serve-sim did not start")
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)


def stats_ms(samples_s: list[float]) -> tuple[float, float, float]:
    """(median, p99, max) in milliseconds."""
    a = np.asarray(samples_s) * 1000.0
    return float(np.median(a)), float(np.percentile(a, 99)), float(a.max())


BASELINE_TOKEN = 0x7E57_0B01  # the baseline client's lease token (map v2)


async def raw_write_round_trips(
    port: int, n: int, *, address: int, value: int, unit: int, warmup: int = 0, gap_s: float = 0.0
) -> list[float]:
    """The baseline: ``n`` writes of one register from a bare pymodbus client to 127.0.0.1:``port``, each timed
    (seconds), after ``warmup`` untimed ones. Each is the write a controller sends: on a map v2 unit (MAP_VERSION
    read first) the owner's write (one FC16 request at WRITE_TOKEN carrying the token, the address and the value)
    after a claim of the lease, which is renewed by an untimed claim well inside LEASE_MS; on a map v1 unit a
    direct FC6 write. ``gap_s`` > 0: each write goes that long after the one before (the link idle meanwhile), as
    a controller's spray command goes after a pulse interval; 0: back to back."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    await client.connect()
    out: list[float] = []
    try:
        m = next(m for m in MAPS.values() if m.unit_id == unit)
        version = await client.read_holding_registers(m["MAP_VERSION"].address, count=1, device_id=unit)
        assert not version.isError(), version
        owner = version.registers[0] >= 2
        renew_s, claimed = 0.0, -math.inf
        if owner:
            lease = await client.read_holding_registers(m["LEASE_MS"].address, count=1, device_id=unit)
            assert not lease.isError(), lease
            renew_s = lease.registers[0] / 1000.0 / 3
        at, words = owner_write(BASELINE_TOKEN, address, [value])
        for i in range(n + warmup):
            if owner and time.perf_counter() - claimed > renew_s:
                claim = m["LEASE_CLAIM"].address
                reply = await client.write_registers(claim, split(BASELINE_TOKEN, 2), device_id=unit)
                assert not reply.isError(), reply
                claimed = time.perf_counter()
            if gap_s > 0:
                await asyncio.sleep(gap_s)
            t = time.perf_counter()
            if owner:
                reply = await client.write_registers(at, words, device_id=unit)
            else:
                reply = await client.write_register(address, value, device_id=unit)
            if i >= warmup:
                out.append(time.perf_counter() - t)
            assert not reply.isError(), reply
    finally:
        client.close()
    return out
