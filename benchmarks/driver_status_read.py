"""(a) Driver status read vs a raw pymodbus read of the same 16 registers, same server, same run.

The simulated generator is served by ``plasmactl serve-sim`` in another process (Modbus TCP, loopback).
Batches of the two alternate so that machine noise hits both alike. Prints median and p99 of each and
their ratios. Target: ratio <= 1.2.
Run: .venv/bin/python benchmarks/driver_status_read.py [--n 1000] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from pymodbus.client import AsyncModbusTcpClient

from _served import served, stats_ms
from plasmactl.clock import LoopClock
from plasmactl.drivers.devices import ModbusPlasma
from plasmactl.drivers.link_registry import LinkRegistry
from plasmactl.rig import ModbusTcp

PORT = 15120


async def bench(n: int, reps: int) -> None:
    cfg = ModbusTcp(kind="modbus-tcp", host="127.0.0.1", port=PORT, unit_id=1, timeout_ms=200.0, watchdog_ms=1000.0)
    registry = LinkRegistry()
    link = registry.acquire(cfg)
    plasma = ModbusPlasma(link, cfg, LoopClock())
    await link.open()
    raw = AsyncModbusTcpClient("127.0.0.1", port=PORT, timeout=1.0, retries=0)
    await raw.connect()
    driver_s: list[float] = []
    raw_s: list[float] = []
    for _ in range(50):  # warm-up
        await plasma.status()
        await raw.read_holding_registers(10, count=16, device_id=1)
    batch = 100  # short alternating batches: drifts in machine load hit both sides alike
    for _ in range(reps * n // batch):
        for _ in range(batch):
            t = time.perf_counter()
            await raw.read_holding_registers(10, count=16, device_id=1)
            raw_s.append(time.perf_counter() - t)
        for _ in range(batch):
            t = time.perf_counter()
            await plasma.status()
            driver_s.append(time.perf_counter() - t)
    raw.close()
    await registry.close()
    d50, d99, dmax = stats_ms(driver_s)
    r50, r99, rmax = stats_ms(raw_s)
    print(f"status read of 16 registers over Modbus TCP loopback, {reps} x {n} each, server in another process")
    print(f"  raw pymodbus read_holding_registers : median {r50:.3f} ms  p99 {r99:.3f} ms  max {rmax:.3f} ms")
    print(f"  ModbusPlasma.status() (driver)      : median {d50:.3f} ms  p99 {d99:.3f} ms  max {dmax:.3f} ms")
    print(f"  ratio driver/raw: median {d50 / r50:.2f}x  p99 {d99 / r99:.2f}x   (target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with served("--modbus-tcp", f"127.0.0.1:{PORT}"):
        asyncio.run(bench(args.n, args.reps))


if __name__ == "__main__":
    main()
