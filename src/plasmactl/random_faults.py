"""Random fault scenarios for the generative campaigns: every fault kind, single, double and triple, at random
moments and at the edges of the pulse cycle (a pulse's command, emission, end, the valve opening, the end of
the cooling window, the spray's end, a pause and its resume), as 50 ms glitches, short and long windows and
permanent faults, with values inside and beyond their plausible ranges.

A scenario is a plain dict in the fault-file format (``{"fault": [...]}``), so it can be written to a file
and replayed with ``plasmactl run PLAN --faults FILE --seed SEED`` exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plasmactl.faults import KINDS
from plasmactl.plan import Plan

PAIRS: tuple[tuple[str, str], ...] = tuple((device, kind) for device, kinds in KINDS.items() for kind in kinds)
LINK_TARGETS = ("plasma", "spray", "thermometer", "safety")
# offsets (ms) from a pulse's command: before it, at emission (~0.5 ms), during, at its end (~5.5 ms for a
# 5 ms pulse: replaced by the plan's length), while the valve opens (~15 ms later), at the cooling window's
# end (~100 ms), while the spray runs (50, 80, 140 ms), at its end (~150 ms after it opened), and between pulses
_EDGE_MS = (
    -2.0,
    -0.3,
    0.0,
    0.2,
    0.5,
    0.6,
    1.0,
    2.5,
    None,
    6.0,
    10.0,
    16.0,
    20.0,
    21.0,
    50.0,
    80.0,
    99.0,
    105.0,
    140.0,
    170.0,
    171.0,
    400.0,
)


@dataclass(frozen=True)
class Timeline:
    """When a plan's pulses are due if nothing goes wrong (faults shift the rest of a session; the fault
    kinds tied to ``after_pulses`` follow the real pulses wherever they land)."""

    starts: tuple[float, ...]
    pulse_ms: float
    session_s: float

    @classmethod
    def of(cls, plan: Plan) -> Timeline:
        p = plan.pulse
        period = max(p.spot_interval, p.pulses_per_spot * p.interval_s)
        starts = tuple(
            spot * period + i * p.interval_s for spot in range(plan.spots.count) for i in range(p.pulses_per_spot)
        )
        return cls(starts, p.pulse_ms, starts[-1] + 1.0)


def _value(kind: str, rng: random.Random) -> float | None:
    """A kind's value: inside its plausible range, at its edges, or beyond."""
    r = rng.random()
    if kind == "energy_drift":
        return rng.choice(
            [
                rng.uniform(0.85, 1.15),
                rng.choice([0.79, 0.8, 1.2, 1.21]),
                0.0,
                rng.uniform(0.0, 0.8),
                rng.uniform(1.2, 5.0),
            ]
        )
    if kind == "valve_slow":
        return rng.choice([rng.uniform(0.0, 70.0), rng.uniform(70.0, 100.0), rng.uniform(100.0, 2000.0)])
    if kind == "stuck":
        return (
            None
            if r < 0.3
            else rng.choice(
                [rng.uniform(20.0, 39.5), rng.uniform(39.5, 50.0), rng.uniform(-50.0, 5.0), rng.uniform(50.0, 500.0)]
            )
        )
    if kind == "offset":
        return rng.choice(
            [rng.uniform(-3.0, 3.0), rng.uniform(3.0, 12.0), rng.uniform(-30.0, -3.0), rng.uniform(12.0, 100.0)]
        )
    if kind == "tip_lift":
        return (
            None
            if r < 0.25
            else rng.choice(
                [rng.uniform(0.2, 1.5), rng.uniform(0.0, 0.2), rng.uniform(1.5, 20.0), rng.uniform(40.0, 80.0), -1.0]
            )
        )
    if kind == "delay":
        return rng.choice([rng.uniform(0.0, 15.0), rng.uniform(15.0, 40.0), rng.uniform(40.0, 1000.0)])
    return None


def _duration(rng: random.Random) -> float | None:
    r = rng.random()
    if r < 0.2:
        return 0.05  # a 50 ms glitch
    if r < 0.3:
        return round(rng.uniform(0.001, 0.02), 4)
    if r < 0.65:
        return round(rng.uniform(0.05, 2.0), 4)
    return None  # permanent


def _moment(rng: random.Random, timeline: Timeline) -> dict[str, Any]:
    """``at_s`` at a random time or at a pulse-cycle edge, or ``after_pulses`` (the end of a real pulse)."""
    r = rng.random()
    if r < 0.3:
        return {"at_s": round(rng.uniform(0.0, timeline.session_s), 4)}
    if r < 0.55:
        return {"after_pulses": rng.randint(1, len(timeline.starts))}
    t0 = rng.choice(timeline.starts)
    edge = rng.choice(_EDGE_MS)
    offset_ms = timeline.pulse_ms + 0.5 if edge is None else edge
    jitter = rng.choice([0.0, 0.0, rng.uniform(-0.3, 0.3)])
    return {"at_s": round(max(0.0, t0 + (offset_ms + jitter) / 1000.0), 6)}


def fault(device: str, kind: str, rng: random.Random, timeline: Timeline) -> dict[str, Any]:
    f: dict[str, Any] = {"device": device, "kind": kind, **_moment(rng, timeline)}
    if device == "link":
        f["target"] = rng.choice(LINK_TARGETS)
    duration = _duration(rng)
    if duration is not None:
        f["duration_s"] = duration
    needs_value, meaning = KINDS[device][kind]
    value = _value(kind, rng)
    if value is not None and (needs_value or meaning):
        f["value"] = round(float(value), 4)
    elif needs_value:
        f["value"] = 1.0
    return f


def scenario(rng: random.Random, timeline: Timeline, pairs: Sequence[tuple[str, str]] = PAIRS) -> dict[str, Any]:
    """One to three faults; a third of the multi-fault scenarios put a fault at a pause's edge (at the
    footswitch's release or at its return, give or take a few milliseconds)."""
    count = rng.choice([1, 1, 1, 2, 2, 3])
    faults = [fault(d, k, rng, timeline) for d, k in rng.sample(list(pairs), count)]
    if count > 1 and rng.random() < 0.33:
        release = fault("safety", "footswitch_release", rng, timeline)
        release.setdefault("duration_s", round(rng.uniform(0.05, 2.0), 4))
        release.pop("after_pulses", None)
        release["at_s"] = round(max(0.0, rng.choice(timeline.starts) + rng.uniform(-0.002, 0.008)), 6)
        edge = release["at_s"] + rng.choice([0.0, release["duration_s"]]) + rng.uniform(-0.003, 0.003)
        other = faults[-1]
        other.pop("after_pulses", None)
        other["at_s"] = round(max(0.0, edge), 6)
        faults[0] = release
    return {"name": "random", "fault": faults}


def to_toml(sc: dict[str, Any]) -> str:
    """The scenario as a fault file (``plasmactl run --faults``)."""
    lines = [f'name = "{sc.get("name", "random")}"']
    for f in sc["fault"]:
        lines.append("[[fault]]")
        lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in f.items()]
    return "\n".join(lines) + "\n"
