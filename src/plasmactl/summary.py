"""The session summary, derived from the audit log alone (so anything in it can be recomputed)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from plasmactl.controller.ledger import DoseLedger, ledger_from_events
from plasmactl.events import read_events, writer_of
from plasmactl.log_chain import PREV_FIELD

# What the skin physics reports per spot and, as maxima over spots, per session (summary "tissue").
TISSUE_METRICS = (
    "max_surface_c",
    "max_basal_c",
    "basal_omega_henriques",
    "basal_omega_weaver_stoll",
    "cem43_min",
    "ablation_depth_um",
    "lateral_damage_radius_um",
)


# The events whose fields beyond "t" and "event" the summary reads (here and in ``ledger_from_events``): a
# summary of any other record needs those two alone (``records_of`` parses only these lines).
FIELDS_READ = frozenset(
    {
        "session_start",
        "pulse_start",
        "pulse_end",
        "spray_start",
        "cooling_missed",
        "reading",
        "interlock_trip",
        "tissue_summary",
        "tissue_error",
        "session_end",
        "plan_edit",
    }
)
# Those of them the dose ledger reads; it ignores every other record, so it is given these alone.
LEDGER_EVENTS = frozenset({"session_start", "plan_edit", "pulse_start", "pulse_end", "spray_start"})


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    pulses = sprays = 0
    delays: list[float] = []
    skin: list[float] = []
    trips: list[dict[str, Any]] = []
    start: Mapping[str, Any] = {}
    start_wall = end_wall = None
    outcome: str | None = None
    cause: str | None = None
    t_last = 0.0
    energies: list[float] = []
    interrupted = 0
    tissue: dict[str, Any] | None = None
    tissue_error: str | None = None
    missed: list[int] = []
    ledger_events: list[Mapping[str, Any]] = []
    for e in events:
        name = e.get("event")
        t = float(e.get("t", 0.0))
        if t > t_last:  # = max(t_last, t), without the call
            t_last = t
        if name.__class__ is str:  # (a name of another type matches none of the comparisons below)
            if name not in FIELDS_READ:
                continue  # most records (state, tissue, spray_end, ...): nothing but their time counts
            if name in LEDGER_EVENTS:
                ledger_events.append(e)
        else:
            ledger_events.append(e)  # not a plain str: the ledger judges it, as it would among all records
        if name == "session_start":
            start = e
            start_wall = e.get("wall_time")
        elif name == "pulse_start":
            pulses += 1
        elif name == "pulse_end":
            interrupted += bool(e.get("interrupted"))
            if isinstance(e.get("energy_j"), int | float) and not e.get("interrupted"):
                energies.append(float(e["energy_j"]))
        elif name == "spray_start":
            sprays += 1
            if isinstance(e.get("delay_ms"), int | float):
                delays.append(float(e["delay_ms"]))
        elif name == "cooling_missed":
            missed.extend(int(p) for p in e.get("pulses", []))
        if name in ("reading", "pulse_start") and isinstance(e.get("skin_c"), int | float):
            if math.isfinite(e["skin_c"]):
                skin.append(float(e["skin_c"]))
        elif name == "interlock_trip":
            trips.append({"t": e["t"], "rule": e["rule"], "reason": e["reason"]})
        elif name == "tissue_summary":
            tissue = {k: v for k, v in e.items() if k not in ("t", "event", PREV_FIELD)}
        elif name == "tissue_error":
            tissue_error = str(e.get("error"))
        elif name == "session_end":
            outcome = e.get("outcome")
            cause = e.get("cause")
            end_wall = e.get("wall_time")
    wall = (float(end_wall) - float(start_wall)) if start_wall is not None and end_wall is not None else None
    ledger = ledger_from_events(ledger_events)
    return {
        **_session_facts(start),
        "outcome": outcome or "unknown: no session_end in the log (the session was cut)",
        "cause": cause,
        "pulses": pulses,
        "pulses_interrupted": interrupted,
        "pulses_not_cooled": missed,
        "sprays": sprays,
        "energy_j_mean": float(np.mean(energies)) if energies else None,
        "cooling_delay_ms": {
            "max": max(delays) if delays else None,
            "p50": _percentile(delays, 50),
            "p99": _percentile(delays, 99),
        },
        "max_skin_temp_c": max(skin) if skin else None,
        "trips": trips,
        "tissue": tissue,
        "tissue_error": tissue_error,
        "ledger": None if ledger is None else ledger.summary(),
        "dose_ledger": _dose_ledger(ledger),
        "session_s": t_last,
        "wall_s": wall,
    }


def _session_facts(start: Mapping[str, Any]) -> dict[str, Any]:
    """What ``session_start`` says about the session (None for what it does not hold, e.g. a cut log)."""
    plan = start.get("plan")
    rig_file = start.get("rig_file")
    wall = start.get("wall_time")
    started = (
        datetime.fromtimestamp(float(wall), tz=UTC).isoformat()
        if isinstance(wall, int | float) and not isinstance(wall, bool) and math.isfinite(wall)
        else None
    )
    return {
        "plan_name": plan.get("name") if isinstance(plan, Mapping) else None,
        "pulses_planned": start.get("pulses_planned"),
        "seed": start.get("seed"),
        "version": start.get("version"),
        "rig": (rig_file.get("path") if isinstance(rig_file, Mapping) else "default") if start else None,
        "started_at": started,
    }


def _dose_ledger(ledger: DoseLedger | None) -> list[dict[str, Any]] | None:
    """Per spot (1-based, in plan order): the energy planned and delivered, and whether it is done as planned."""
    if ledger is None:
        return None
    return [
        {
            "spot": sd.spot,
            "planned_j": round(sd.planned_j, 9),  # the log's own resolution (a sum adds float noise)
            "delivered_j": round(sd.delivered_j, 9),
            "done": sd.status(ledger.tolerance) == "complete",
        }
        for sd in ledger.spots
    ]


def records_of(log: Path, anchor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The log's records as ``read_events`` gives them, for :func:`summarize`: from the writer's own lines when
    they are provably the file's (parsing only the records whose fields the summary reads; of the others it
    reads ``t`` and ``event`` alone), else read back from the file."""
    writer = writer_of(log) if anchor is not None else None
    written = None if writer is None or anchor is None else writer.as_written(anchor)
    if written is None:
        return read_events(log)
    parse = orjson.loads
    return [
        parse(line) if event.__class__ is not str or event in FIELDS_READ else {"t": t, "event": event}
        for event, t, line in zip(*written, strict=True)
    ]
