"""(b) Cooling latency over Modbus TCP loopback, measured on the device side, for both cooling paths.

- software: the controller sees the pulse over (status reads) and commands the spray;
- trigger line (contract v2, ``spray.trigger_line``): the spray unit, armed before each pulse, starts its
  valve by itself on the generator's pulse-end edge after the set delay. The served model times that in the
  world's clock, as a hardware timer does; the host's own lateness in running that timer is printed beside
  it (what a software emulation of the line would add).

The simulated generator, spray unit and thermometer are served in another process (this script with
``--serve``), which records when each pulse really ended and when the valve really opened. A session of
>= 1000 pulses runs through the production drivers and the controller on the real clock; then the raw
pymodbus write round trip is measured against the same server. Prints p50/p99/max of pulse end -> valve
open and the raw write p50/p99. Target: cooling p99 <= 3 x raw write p99... plus the valve's own opening
latency, which no software can beat: it is printed too and subtracted for the ratio.
Run: .venv/bin/python benchmarks/cooling_latency_tcp.py [--spots 1024] [--path software|trigger|both]
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
from typing import Any


from _served import raw_write_round_trips, stats_ms
from plasmactl.faults import FaultScenario
from plasmactl.plan import Plan
from plasmactl.rig import Rig, SpraySim
from plasmactl.session import SessionInputs, run_blocking


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
    from plasmactl.simulators import trigger_line
    from plasmactl.simulators.served import serve

    sim = await serve(Rig(), FaultScenario(), 0, modbus_tcp=("127.0.0.1", 0), serial=True)
    times = _Times()
    sim.world.tissue = times
    line = trigger_line.TriggerLine.of(sim.world, sim.world.clock)
    late: list[float] = []
    take_due = line.take_due

    def timed_take_due() -> None:  # how late the host runs the line's timer (informational)
        edge, now = line._edge, line.clock.now()
        if edge is not None and now >= edge.t + line._delay_s:
            late.append(now - (edge.t + line._delay_s))
        take_due()

    line.take_due = timed_take_due  # type: ignore[method-assign]
    triggered: list[list[float]] = []
    spray = sim.spray.spray
    edge_of = spray._edge

    def record_edge(pulse: int, t_edge: float) -> None:
        armed = spray._trigger is not None
        edge_of(pulse, t_edge)
        if armed and spray.triggered_t is not None:
            triggered.append([t_edge, spray.triggered_t])

    spray._edge = record_edge  # type: ignore[method-assign]
    print(json.dumps(sim.as_json()), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sim.stop()
    Path(out).write_text(
        json.dumps({"pulses": times.pulses, "sprays": times.sprays, "triggered": triggered, "late": late})
    )


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


def _rig(report: dict[str, object], trigger: bool) -> Rig:
    serial, tcp = report["serial"], report["modbus_tcp"]
    assert isinstance(serial, dict) and isinstance(tcp, dict)
    common = {"host": "127.0.0.1", "port": tcp["port"], "timeout_ms": 20.0, "watchdog_ms": 500.0}
    return Rig.model_validate(
        {
            "name": "benchmark: served simulators over TCP",
            "plasma": {"kind": "modbus-tcp", "unit_id": 1, "poll_ms": 100.0, "heartbeat_ms": 100.0, **common},
            "spray": {
                "kind": "modbus-tcp",
                "unit_id": 2,
                "poll_ms": 100.0,
                "heartbeat_ms": 200.0,
                "trigger_line": trigger,
                **common,
            },
            "safety": {"kind": "modbus-tcp", "unit_id": 1, "poll_ms": 20.0, **common},
            "thermometer": {"kind": "serial", "port": serial["thermometer"], "timeout_ms": 50.0},
            "skin": {"tissue": False},
        }
    )


def _session(path: str, spots: int) -> dict[str, Any]:
    """One served session of ``spots`` pulses on one cooling path: its device-side times and the baseline."""
    plan = _plan(spots)
    with tempfile.TemporaryDirectory() as tmp:
        times_file = Path(tmp) / "device-times.json"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(times_file)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            report = json.loads(proc.stdout.readline())
            t0 = time.perf_counter()
            result = run_blocking(
                SessionInputs(plan=plan, plan_file=None, rig=_rig(report, path == "trigger")),
                Path(tmp) / "out",
                realtime=True,
                handle_sigint=False,
            )
            wall = time.perf_counter() - t0
            port = report["modbus_tcp"]["port"]
            # SPRAY_MS of the spray unit: a harmless setpoint, written as the controller writes (owner's write)
            raw = asyncio.run(raw_write_round_trips(port, 3000, address=11, value=150, unit=2))
            # the same write sent as the session sends its spray command: once a pulse interval, the host idle
            # between (on this kind of host a wake-up from idle costs more than the exchange itself)
            interval = plan.pulse.interval_s
            spaced = asyncio.run(raw_write_round_trips(port, 500, address=11, value=150, unit=2, gap_s=interval))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        data = json.loads(times_file.read_text())
    return {"result": result, "wall": wall, "raw": raw, "spaced": spaced, "interval": interval, **data}


def _software(spots: int) -> None:
    d = _session("software", spots)
    result, wall, raw = d["result"], d["wall"], d["raw"]
    opens = sorted(s[0] for s in d["sprays"])
    delays: list[float] = []
    j = 0
    for _, t_off in sorted(d["pulses"]):
        while j < len(opens) and opens[j] < t_off:
            j += 1
        if j < len(opens):
            delays.append(opens[j] - t_off)
    valve_s = SpraySim().valve_latency_ms / 1000.0
    c50, c99, cmax = stats_ms(delays)
    r50, r99, _ = stats_ms(raw)
    s50, s99, smax = stats_ms([d - valve_s for d in delays])
    print(f"[software] session: {result.outcome}, {result.pulses} pulses in {wall:.1f} s over Modbus TCP loopback")
    print(
        f"  device side, pulse end -> valve open ({len(delays)} pulses): p50 {c50:.2f} ms  p99 {c99:.2f} ms  max {cmax:.2f} ms"
    )
    print(f"  of which the valve's own opening latency: {valve_s * 1000:.1f} ms (simulated hardware)")
    print(f"  software part (pulse end -> valve command): p50 {s50:.2f} ms  p99 {s99:.2f} ms  max {smax:.2f} ms")
    print(f"  raw pymodbus owner's write round trip (3000, same run): p50 {r50:.3f} ms  p99 {r99:.3f} ms")
    print(f"  ratio software-part p99 / raw write p99: {s99 / r99:.1f}x   (target <= 3x)")
    g50, g99, _ = stats_ms(d["spaced"])
    print(
        f"  raw write sent as the session sends it, one per {d['interval'] * 1000:.0f} ms (500, same run):"
        f" p50 {g50:.3f} ms  p99 {g99:.3f} ms; software-part p99 / this p99: {s99 / g99:.1f}x"
    )


def _trigger(spots: int) -> None:
    d = _session("trigger", spots)
    result, wall = d["result"], d["wall"]
    pairs = d["triggered"]
    beyond = [cmd - edge for edge, cmd in pairs]  # the plan's delay is 0
    pulses = len(d["pulses"])
    print(f"[trigger line] session: {result.outcome}, {result.pulses} pulses in {wall:.1f} s over Modbus TCP loopback")
    if beyond:
        b50, b99, bmax = stats_ms(beyond)
        print(
            f"  device side, pulse end -> valve command beyond the set delay ({len(beyond)} of {pulses} pulses):"
            f" p50 {b50:.4f} ms  p99 {b99:.4f} ms  max {bmax:.4f} ms   (target p99 <= 0.1 ms)"
        )
    if d["late"]:
        l50, l99, lmax = stats_ms(d["late"])
        print(
            f"  (host: the served line's timer ran p50 {l50:.3f} ms, p99 {l99:.3f} ms, max {lmax:.3f} ms late;"
            " a device times this in hardware)"
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spots", type=int, default=1024)
    parser.add_argument("--path", choices=("software", "trigger", "both"), default="both")
    args = parser.parse_args()
    if args.path in ("software", "both"):
        _software(args.spots)
    if args.path in ("trigger", "both"):
        _trigger(args.spots)


if __name__ == "__main__":
    main()
