"""The dose ledger: what each spot of a plan has received, and what it is still owed.

One object owns it. A cut pulse counts what it delivered and is never fired again (a spot left short is
reported under-dosed, never topped up with a pulse it could not be shown to need); a pulse whose energy the
generator never reported counts as unknown, which the dose rule treats as the most it could have been.
The controller feeds it as pulses start and end; :func:`ledger_from_events` rebuilds the same ledger from an
audit log alone, so ``summary.json`` shows what the record says, and a test holds the two equal.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plasmactl.controller.trips import SpotFacts

EPS = 1e-6  # relative slack for energy sums (the log rounds to 1e-9 J)


@dataclass
class PulseDose:
    number: int
    energy_j: float | None = None  # None: not ended yet, or never reported
    ended: bool = False
    interrupted: bool = False
    cooling_delay_ms: float | None = None


@dataclass
class SpotDose:
    spot: int  # 1-based, in plan order
    pulses_planned: int
    planned_j: float
    pulses: list[PulseDose] = field(default_factory=list)

    @property
    def delivered_j(self) -> float:
        return sum(p.energy_j for p in self.pulses if p.energy_j is not None)

    @property
    def unknown(self) -> int:
        return sum(1 for p in self.pulses if p.energy_j is None)

    @property
    def complete_pulses(self) -> int:
        return sum(1 for p in self.pulses if p.ended and not p.interrupted and p.energy_j is not None)

    @property
    def cut_pulses(self) -> int:
        return sum(1 for p in self.pulses if p.interrupted)

    def status(self, tolerance: float) -> str:
        """not_started | complete | under_dosed | over_dosed (energy known over the plan + tolerance)."""
        return self._status(tolerance, self.delivered_j)

    def _status(self, tolerance: float, delivered_j: float) -> str:
        if not self.pulses:
            return "not_started"
        if delivered_j > self.planned_j * (1.0 + tolerance) * (1.0 + EPS):
            return "over_dosed"
        low = self.planned_j * (1.0 - tolerance) * (1.0 - EPS)
        if self.complete_pulses == self.pulses_planned and self.unknown == 0 and delivered_j >= low:
            return "complete"
        return "under_dosed"


class DoseLedger:
    """Per spot: pulses started, complete and cut, energy delivered, cooling delay of each pulse."""

    def __init__(self, spots: int, pulses_per_spot: int, energy_j: float, tolerance: float) -> None:
        self.energy_j = energy_j
        self.tolerance = tolerance
        self.spots = [SpotDose(i + 1, pulses_per_spot, energy_j * pulses_per_spot) for i in range(spots)]
        self._pulse: dict[int, tuple[SpotDose, PulseDose]] = {}

    def replan(self, energy_j: float) -> None:
        """A plan edit: the spots not started yet are owed the new energy per pulse (started ones keep theirs)."""
        self.energy_j = energy_j
        for sd in self.spots:
            if not sd.pulses:
                sd.planned_j = energy_j * sd.pulses_planned

    def pulse_started(self, pulse: int, spot: int) -> None:
        sd = self.spots[spot - 1]
        dose = PulseDose(pulse)
        sd.pulses.append(dose)
        self._pulse[pulse] = (sd, dose)

    def pulse_ended(self, pulse: int, energy_j: float | None, interrupted: bool) -> None:
        _, dose = self._pulse[pulse]
        dose.ended, dose.energy_j, dose.interrupted = True, energy_j, interrupted

    def cooled(self, pulses: Iterable[int], delay_ms: float) -> None:
        for n in pulses:
            if n in self._pulse:
                self._pulse[n][1].cooling_delay_ms = delay_ms

    def facts(self, spot: int) -> SpotFacts:
        """What the dose rule needs to judge one more pulse on ``spot`` (1-based)."""
        sd = self.spots[spot - 1]
        return SpotFacts(spot, len(sd.pulses), sd.pulses_planned, sd.delivered_j, sd.unknown, sd.planned_j)

    def owed(self) -> list[int]:
        """Spots (1-based) that may still be treated: never started, or with planned pulses not yet fired."""
        return [sd.spot for sd in self.spots if len(sd.pulses) < sd.pulses_planned]

    def summary(self) -> dict[str, Any]:
        by_status: dict[str, list[int]] = {"complete": [], "under_dosed": [], "over_dosed": [], "not_started": []}
        delivered: list[float] = []  # of the spots started; each spot's sum taken once (two summaries per session)
        pct: list[float] = []
        cut = unknown = 0
        for sd in self.spots:
            delivered_j = sd.delivered_j
            by_status[sd._status(self.tolerance, delivered_j)].append(sd.spot)
            if sd.pulses:
                delivered.append(delivered_j)
                pct.append(100.0 * delivered_j / sd.planned_j)
            cut += sd.cut_pulses
            unknown += sd.unknown
        return {
            "spots_planned": len(self.spots),
            "spots_complete": len(by_status["complete"]),
            "spots_under_dosed": len(by_status["under_dosed"]),
            "spots_over_dosed": len(by_status["over_dosed"]),
            "spots_not_started": len(by_status["not_started"]),
            "under_dosed": by_status["under_dosed"][:100],
            "over_dosed": by_status["over_dosed"][:100],
            "pulses_cut": cut,
            "pulses_energy_unknown": unknown,
            "delivered_pct_of_plan": _distribution(pct),
            "delivered_j": _distribution(delivered),
        }


def _distribution(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "p50": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    return {
        "min": float(arr.min()),
        "p50": float(np.percentile(arr, 50)),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
    }


def ledger_from_events(events: Iterable[Mapping[str, Any]]) -> DoseLedger | None:
    """The ledger a log records (None without a readable ``session_start``)."""
    ledger: DoseLedger | None = None
    for e in events:
        name = e.get("event")
        if name == "session_start":
            ledger = _ledger_for(e)
        elif ledger is None:
            continue
        elif name == "plan_edit" and e.get("ok"):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                ledger.replan(float(e["plan"]["pulse"]["energy_j"]))
        elif name == "pulse_start":
            ledger.pulse_started(int(e["pulse"]), int(e["spot"]))
        elif name == "pulse_end" and int(e["pulse"]) in ledger._pulse:
            energy = e.get("energy_j")
            known = float(energy) if isinstance(energy, int | float) and _number(energy) else None
            ledger.pulse_ended(int(e["pulse"]), known, bool(e.get("interrupted")))
        elif name == "spray_start" and _number(e.get("delay_ms")):
            ledger.cooled((int(p) for p in e.get("pulses", [])), float(e["delay_ms"]))
    return ledger


def _ledger_for(start: Mapping[str, Any]) -> DoseLedger | None:
    try:
        plan, limits = start["plan"], start["limits"]
        spots = int(start["spots_planned"])
        pulse = plan["pulse"]
        return DoseLedger(
            spots, int(pulse["pulses_per_spot"]), float(pulse["energy_j"]), limits["energy_tolerance_pct"] / 100.0
        )
    except (KeyError, TypeError, ValueError):
        return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
