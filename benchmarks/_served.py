"""Benchmark helper: start ``plasmactl serve-sim`` in another process and read where it put the devices."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient


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


async def raw_write_round_trips(
    port: int, n: int, *, address: int, value: int, unit: int, warmup: int = 0
) -> list[float]:
    """The baseline: ``n`` single-register writes from a bare pymodbus client to 127.0.0.1:``port``, each
    timed (seconds), after ``warmup`` untimed ones."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    await client.connect()
    out: list[float] = []
    try:
        for i in range(n + warmup):
            t = time.perf_counter()
            reply = await client.write_register(address, value, device_id=unit)
            if i >= warmup:
                out.append(time.perf_counter() - t)
            assert not reply.isError()
    finally:
        client.close()
    return out
