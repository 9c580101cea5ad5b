"""Where the software cooling path's time goes: pulse end -> spray command at the device, cut into segments.

The session of ``cooling_latency_tcp.py --path software`` (served simulators in another process, Modbus TCP
loopback, the real clock), with both processes stamping on the host's monotonic clock (one clock for both on
Linux): the served server stamps each request when its frame is complete and when its reply is written; the
controller stamps every frame it receives and sends. Per pulse:

- detect:     pulse end -> the first generator status read that can have seen it complete at the device
              (0 when it was complete just before the end and sampled just after);
- dev_reply:  that read complete -> its reply written (device work and the send);
- to_host:    reply written -> its bytes at the controller;
- controller: bytes in -> the spray command's bytes handed to the socket (decode, owner, records, encode);
- to_device:  -> the spray command complete at the device;
- dev_exec:   -> the valve commanded (the device's execution of the write).

Prints p50/p90/p99/max of each and of the whole. For finding the next thing to cut, not a target.
Run: .venv/bin/python benchmarks/cooling_path_segments.py [--spots 400]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import sys
import time
from pathlib import Path
from typing import Any

import cooling_latency_tcp as bench
from _served import stats_ms
import numpy as np

from plasmactl.drivers.registers import MAPS
from plasmactl.rig import SpraySim


def _serve(out: str) -> None:
    """The benchmark's served world, each TCP request's completion and reply times recorded."""
    from plasmactl.simulators import served, served_transports

    requests: list[tuple[float, float, int, int, int, int]] = []  # (complete, replied, tid, unit, fc, address)
    offset: list[float] = []
    request = served_transports.ModbusTcpServer._request

    async def timed_request(self: Any, writer: Any, tid: int, unit: int, pdu: bytes) -> bool:
        t0 = time.monotonic()
        ok: bool = await request(self, writer, tid, unit, pdu)
        requests.append((t0, time.monotonic(), tid, unit, pdu[0] if pdu else -1, int.from_bytes(pdu[1:3], "big")))
        return ok

    served_transports.ModbusTcpServer._request = timed_request  # type: ignore[method-assign]
    serve = served.serve

    async def serve_and_note_epoch(*a: Any, **k: Any) -> Any:
        sim = await serve(*a, **k)
        offset.append(time.monotonic() - sim.world.clock.now())
        return sim

    served.serve = serve_and_note_epoch
    asyncio.run(bench._serve(out))  # writes the device-side times at SIGTERM; the request times go beside them
    data = json.loads(Path(out).read_text())
    data.update(requests=requests, offset=offset[0])
    Path(out).write_text(json.dumps(data))


def _stamp_frames() -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]:
    """Every frame the controller receives and sends, with its monotonic time (the MBAP header and FC; a frame
    that arrives split is stamped when its start came)."""
    from asyncio import selector_events

    from pymodbus.transport.transport import ModbusProtocol

    rx: list[tuple[float, bytes]] = []
    tx: list[tuple[float, bytes]] = []
    received = ModbusProtocol.data_received
    transport: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009 - private, for stamping
    write = transport.write

    def stamped_received(self: Any, data: bytes) -> None:
        at, rest = time.monotonic(), bytes(data)
        while len(rest) >= 8:  # one chunk may hold several frames: each is stamped with the chunk's arrival
            rx.append((at, rest[:8]))
            rest = rest[6 + int.from_bytes(rest[4:6], "big") :]
        received(self, data)

    def stamped_write(self: Any, data: Any) -> None:
        tx.append((time.monotonic(), bytes(data[:8])))
        write(self, data)

    ModbusProtocol.data_received = stamped_received  # type: ignore[method-assign]
    transport.write = stamped_write
    return rx, tx


def _segments(
    d: dict[str, Any], rx: list[tuple[float, bytes]], tx: list[tuple[float, bytes]]
) -> dict[str, list[float]]:
    off = d["offset"]
    reqs = sorted(tuple(r) for r in d["requests"])
    plasma = MAPS["plasma"]
    # the generator's status reads (FC3 from COMMAND; its unit also answers the safety reads)
    status = [r for r in reqs if r[3] == plasma.unit_id and r[4] == 3 and r[5] == plasma["COMMAND"].address]
    # a read sees the end if the device sampled after it: somewhere between its frame complete and its reply
    status_t = [r[1] for r in status]
    writes = [r for r in reqs if r[3] == MAPS["spray"].unit_id and r[4] == 16]  # the spray unit's owner writes
    writes_t = [r[0] for r in writes]
    sent = sorted(t for t, h in tx if len(h) >= 8 and h[6] == MAPS["spray"].unit_id and h[7] == 16)
    replies: dict[int, list[float]] = {}
    for t, h in rx:
        if len(h) >= 8 and h[6] == plasma.unit_id and h[7] == 3:
            replies.setdefault(int.from_bytes(h[:2], "big"), []).append(t)
    valve_s = SpraySim().valve_latency_ms / 1000.0
    opens = sorted(s[0] for s in d["sprays"])
    out: dict[str, list[float]] = {
        k: [] for k in ("total", "detect", "dev_reply", "to_host", "controller", "to_device", "dev_exec")
    }
    for _, t_off in sorted(d["pulses"]):
        end = t_off + off
        j = bisect.bisect_left(opens, t_off)
        i = bisect.bisect_left(status_t, end)
        if j >= len(opens) or i >= len(status):
            continue
        cmd = opens[j] - valve_s + off
        read = status[i]
        k = bisect.bisect_right(writes_t, cmd) - 1
        back = [t for t in replies.get(read[2], []) if t >= read[0]]  # may come before the send returns
        if k < 0 or not back or not read[0] < cmd:
            continue
        m = bisect.bisect_right(sent, writes[k][0]) - 1
        if m < 0:
            continue
        arrived, went = min(back), sent[m]
        parts = (
            cmd - end,
            max(0.0, read[0] - end),
            read[1] - read[0],
            arrived - read[1],
            went - arrived,
            writes[k][0] - went,
            cmd - writes[k][0],
        )
        for key, v in zip(out, parts, strict=True):
            out[key].append(v)
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, default=400)
    args = parser.parse_args()
    bench.__file__ = __file__  # the session's server is this script's --serve
    rx, tx = _stamp_frames()
    d = bench._session("software", args.spots)
    seg = _segments(d, rx, tx)
    print(f"session: {d['result'].outcome}, {d['result'].pulses} pulses; {len(seg['total'])} pulses traced")
    print(f"{'segment':>11} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}   (ms)")
    for key, values in seg.items():
        if values:
            a = np.asarray(values) * 1000.0
            q50, q90, q99 = np.percentile(a, [50, 90, 99])
            print(f"{key:>11} {q50:7.3f} {q90:7.3f} {q99:7.3f} {a.max():7.3f}")
    r50, r99, _ = stats_ms(d["raw"])
    print(f"raw pymodbus owner's write round trip (same run): p50 {r50:.3f} ms  p99 {r99:.3f} ms")


if __name__ == "__main__":
    main()
