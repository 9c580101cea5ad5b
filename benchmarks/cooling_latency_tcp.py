"""(b) Cooling latency over Modbus TCP loopback, measured on the device side.

The simulated generator, spray unit and thermometer are served in another process (this script with
``--serve``), which records when each pulse really ended and when the valve really opened. A session of
>= 1000 pulses runs through the production drivers and the controller on the real clock; then the raw
pymodbus write round trip is measured against the same server. Prints p50/p99/max of pulse end -> valve
open and the raw write p50/p99. Target: cooling p99 <= 3 x raw write p99... plus the valve's own opening
latency, which no software can beat: it is printed too and subtracted for the ratio.
Run: .venv/bin/python benchmarks/cooling_latency_tcp.py [--spots 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from _served import raw_write_round_trips, stats_ms
from plasmactl.faults import FaultScenario
from plasmactl.plan import Plan
from plasmactl.rig import Rig, SpraySim
from plasmactl.session import SessionInputs, run_blocking

PORT = 15130


class _Times:
    """A TissueSink that only keeps the device-side times."""

    def __init__(self) -> None:
        self.pulses: list[list[float]] = []
        self.sprays: list[list[float]] = []

    def pulse(self, number: int, t_on: float, t_off: float, energy_j: float) -> None:
        self.pulses.append([t_on, t_off])

    def cut_pulse(self, t: float) -> None:
        if self.pulses:
            self.pulses[-1][1] = min(self.pulses[-1][1], t)

    def spray(self, t_open: float, t_close: float) -> None:
        self.sprays.append([t_open, t_close])

    def stop_spray(self, t: float) -> None:
        if self.sprays:
            self.sprays[-1][1] = min(self.sprays[-1][1], t)


async def _serve(out: str) -> None:
    from plasmactl.simulators.served import serve

    sim = await serve(Rig(), FaultScenario(), 0, modbus_tcp=("127.0.0.1", PORT), serial=True)
    times = _Times()
    sim.world.tissue = times
    print(json.dumps(sim.as_json()), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sim.stop()
    Path(out).write_text(json.dumps({"pulses": times.pulses, "sprays": times.sprays}))


def _plan(spots: int) -> Plan:
    side = int(spots**0.5 + 0.999)
    return Plan.model_validate(
        {
            "name": "cooling-latency benchmark",
            "spots": {"grid": {"width_mm": (side - 1) * 1.0, "height_mm": (side - 1) * 1.0, "spacing_mm": 1.0}},
            "pulse": {"energy_j": 0.002, "pulse_ms": 2.0, "interval_s": 0.07},
            "cooling": {"spray_ms": 20.0},
        }
    )


def _rig(report: dict[str, object]) -> Rig:
    serial = report["serial"]
    assert isinstance(serial, dict)
    common = {"host": "127.0.0.1", "port": PORT, "timeout_ms": 20.0, "watchdog_ms": 500.0}
    return Rig.model_validate(
        {
            "name": "benchmark: served simulators over TCP",
            "plasma": {"kind": "modbus-tcp", "unit_id": 1, "poll_ms": 100.0, "heartbeat_ms": 100.0, **common},
            "spray": {"kind": "modbus-tcp", "unit_id": 2, "poll_ms": 100.0, "heartbeat_ms": 200.0, **common},
            "safety": {"kind": "modbus-tcp", "unit_id": 1, "poll_ms": 20.0, **common},
            "thermometer": {"kind": "serial", "port": serial["thermometer"], "timeout_ms": 50.0},
            "skin": {"tissue": False},
        }
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spots", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times_file = Path(tmp) / "device-times.json"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(times_file)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            report = json.loads(proc.stdout.readline())
            plan = _plan(args.spots)
            t0 = time.perf_counter()
            result = run_blocking(
                SessionInputs(plan=plan, plan_file=None, rig=_rig(report)),
                Path(tmp) / "out",
                realtime=True,
                handle_sigint=False,
            )
            wall = time.perf_counter() - t0
            # SPRAY_MS of the spray unit: a harmless setpoint
            raw = asyncio.run(raw_write_round_trips(PORT, 3000, address=11, value=150, unit=2))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        data = json.loads(times_file.read_text())
    opens = sorted(s[0] for s in data["sprays"])
    delays: list[float] = []
    j = 0
    for _, t_off in sorted(data["pulses"]):
        while j < len(opens) and opens[j] < t_off:
            j += 1
        if j < len(opens):
            delays.append(opens[j] - t_off)
    valve_s = SpraySim().valve_latency_ms / 1000.0
    c50, c99, cmax = stats_ms(delays)
    r50, r99, _ = stats_ms(raw)
    s50, s99, smax = stats_ms([d - valve_s for d in delays])
    print(f"session: {result.outcome}, {result.pulses} pulses in {wall:.1f} s over Modbus TCP loopback")
    print(
        f"device side, pulse end -> valve open ({len(delays)} pulses): p50 {c50:.2f} ms  p99 {c99:.2f} ms  max {cmax:.2f} ms"
    )
    print(f"  of which the valve's own opening latency: {valve_s * 1000:.1f} ms (simulated hardware)")
    print(f"  software part (minus the valve): p50 {s50:.2f} ms  p99 {s99:.2f} ms  max {smax:.2f} ms")
    print(f"raw pymodbus write_register round trip (3000): p50 {r50:.3f} ms  p99 {r99:.3f} ms")
    print(f"ratio software-part p99 / raw write p99: {s99 / r99:.1f}x   (target <= 3x)")


if __name__ == "__main__":
    main()
