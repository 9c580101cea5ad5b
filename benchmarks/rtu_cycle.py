"""(c) Modbus RTU at 115200 baud on a paced pty: the driver's status-read cycle vs the theoretical wire time.

serve-sim serves the generator on one RTU bus (a pty pair whose replies are paced to 11 bits per
character plus 3.5-character silent intervals, as a real RS-485 line is). The driver reads the status
block (16 registers) back to back; theory for one cycle: request 8 bytes + reply 5 + 2*16 bytes at 11
bits each, plus two 3.5-character silent intervals. Target: cycle <= 1.3 x theory.
Run: .venv/bin/python benchmarks/rtu_cycle.py [--n 500] [--baud 115200]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _served import served, stats_ms
from plasmactl.clock import LoopClock
from plasmactl.drivers.devices import ModbusPlasma
from plasmactl.drivers.link_registry import LinkRegistry
from plasmactl.rig import ModbusRtu


def theory_s(baud: int, request_bytes: int, reply_bytes: int) -> float:
    char = 11.0 / baud
    return (request_bytes + reply_bytes) * char + 2 * 3.5 * char


async def bench(port: str, baud: int, n: int) -> list[float]:
    cfg = ModbusRtu(kind="modbus-rtu", port=port, baud=baud, unit_id=1, timeout_ms=200.0, watchdog_ms=1000.0)
    registry = LinkRegistry()
    link = registry.acquire(cfg)
    await link.open()
    plasma = ModbusPlasma(link, cfg, LoopClock())
    for _ in range(20):
        await plasma.status()
    cycles: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        await plasma.status()
        cycles.append(time.perf_counter() - t)
    await registry.close()
    return cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args()
    with served("--modbus-rtu", "pty", "--baud", str(args.baud)) as report:
        cycles = asyncio.run(bench(report["modbus_rtu"]["port"], args.baud, args.n))
    theory = theory_s(args.baud, 8, 5 + 2 * 16)
    p50, p99, mx = stats_ms(cycles)
    print(f"RTU status read (16 registers) at {args.baud} baud on a paced pty, {args.n} cycles")
    print(f"  theoretical wire time: {theory * 1000:.2f} ms")
    print(f"  measured cycle: median {p50:.2f} ms  p99 {p99:.2f} ms  max {mx:.2f} ms")
    print(f"  ratio: median {p50 / (theory * 1000):.2f}x  p99 {p99 / (theory * 1000):.2f}x   (target <= 1.3)")


if __name__ == "__main__":
    main()
