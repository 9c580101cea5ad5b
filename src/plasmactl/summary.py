"""The session summary, derived from the audit log alone (so anything in it can be recomputed)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from plasmactl.controller.ledger import ledger_from_events
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
        "session_s": t_last,
        "wall_s": wall,
    }
