"""The session summary, derived from the audit log alone (so anything in it can be recomputed)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from plasmactl.controller.ledger import DoseLedger, ledger_from_events
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


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    events = list(events)
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
    for e in events:
        name = e.get("event")
        t_last = max(t_last, float(e.get("t", 0.0)))
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
    ledger = ledger_from_events(events)
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
