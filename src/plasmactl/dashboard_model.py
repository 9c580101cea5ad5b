"""The dashboard's state, built from a session's audit-log events alone (no Textual here: tested on its own).

:class:`DashboardModel` takes the events one by one, as ``plasmactl monitor`` reads them from
``RUN_DIR/events.jsonl`` or as ``plasmactl run --live`` gets them from the session's log listener, and keeps
what the dashboard shows: the controller's state, one lamp per interlock rule, the skin temperature with the
pulses and sprays, progress by spot, the cooling delays and the dose ledger. Feeding an event is cheap (a
few assignments); what costs more (percentiles, the ledger rebuilt by
:func:`~plasmactl.controller.ledger.ledger_from_events`) is computed when asked for, and only once per change.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from plasmactl.controller.ledger import DoseLedger, ledger_from_events
from plasmactl.controller.trips import Rule

T = TypeVar("T")
LampStatus = Literal["ok", "pause", "trip"]
LATCHED = frozenset({"fault", "estop"})
HELD = frozenset({"paused", *LATCHED})  # states a lamp's latch holds the session in
CHART_POINTS = 4096  # readings (and markers) kept for the chart: far more than a screen's width of history
LEDGER_EVENTS = frozenset({"session_start", "plan_edit", "pulse_start", "pulse_end", "spray_start"})


def number(v: Any) -> float | None:
    """A finite number from a record (the log writes inf and nan as their names), else None."""
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


@dataclass
class Lamp:
    """One interlock rule: green (ok), amber (its pause holds emission) or red (it tripped a fault/E-stop)."""

    rule: str
    status: LampStatus = "ok"
    reason: str | None = None  # the last trip's reason (kept once the lamp is green again)
    t: float | None = None
    trips: int = 0


@dataclass(frozen=True)
class CoolingStats:
    """``spray_start.delay_ms`` (the end of a pulse to water on the skin) against the plan's limit."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    limit_ms: float | None
    over: int  # delays over the limit
    missed: int  # pulses recorded as never cooled (cooling_missed)


@dataclass(frozen=True)
class Progress:
    spots_planned: int
    spots_reached: int  # spots at least one pulse was fired at
    spots_finished: int  # spots every planned pulse of which was fired
    current_spot: int | None
    pulses_planned: int
    pulses_started: int
    elapsed_s: float  # session time since the first pulse
    eta_s: float | None  # session time left at the rate so far (None before a spot is finished, or at the end)

    @property
    def fraction(self) -> float:
        return self.spots_finished / self.spots_planned if self.spots_planned else 0.0


@dataclass(frozen=True)
class LedgerView:
    """The dose ledger by spot: done as planned, partial (started, short of the plan), not started, over-dosed."""

    done: int
    partial: int
    not_started: int
    over_dosed: int
    over_spots: tuple[int, ...]
    partial_spots: tuple[int, ...]
    pulses_cut: int
    energy_unknown: int


class DashboardModel:
    """What the dashboard shows, from the events of one session (a log written anew needs a new model)."""

    def __init__(self) -> None:
        self.version = 0  # bumped by every event: a view redraws only when it changed
        self.events = 0
        self.started = False
        self.plan_name: str | None = None
        self.seed: int | None = None
        self.skin_limit_c: float | None = None
        self.hard_limit_c: float | None = None
        self.delay_limit_ms: float | None = None
        self.spots_planned = 0
        self.pulses_planned = 0
        self.pulses_per_spot = 1
        self.state = "disconnected"
        self.history: deque[tuple[float, str, str, str]] = deque(maxlen=8)  # t, from, to, trigger
        self.state_changes = 0
        self.lamps: dict[str, Lamp] = {str(r): Lamp(str(r)) for r in Rule}
        self.readings: deque[tuple[float, float]] = deque(maxlen=CHART_POINTS)
        self.pulse_marks: deque[float] = deque(maxlen=CHART_POINTS)
        self.spray_marks: deque[float] = deque(maxlen=CHART_POINTS)
        self.skin_max_c: float | None = None
        self.skin_last_c: float | None = None
        self.delays: list[float] = []
        self.missed = 0
        self.pulses_started = 0
        self.pulses_in_spot: dict[int, int] = {}
        self.current_spot: int | None = None
        self.t_first_pulse: float | None = None
        self.t_last = 0.0
        self.plasma = "off"
        self.abort_reason: str | None = None
        self.outcome: str | None = None
        self.cause: str | None = None
        self.internal_error = False
        self.error: str | None = None  # the log could not be read on (set by the reader)
        self._ledger_events: list[Mapping[str, Any]] = []
        self.ledger_version = 0  # bumped by the events the ledger is built from
        self._cache: dict[str, tuple[int, Any]] = {}

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        for e in events:
            self.feed(e)

    def feed(self, e: Mapping[str, Any]) -> None:
        name = e.get("event")
        self.version += 1
        self.events += 1
        t = number(e.get("t"))
        if t is not None:
            self.t_last = max(self.t_last, t)
        if name in LEDGER_EVENTS:
            self._ledger_events.append(e)
            self.ledger_version += 1
        handler = _HANDLERS.get(str(name))
        if handler is not None:
            handler(self, e, self.t_last if t is None else t)

    # ------------------------------------------------------------------ per event

    def _session_start(self, e: Mapping[str, Any], t: float) -> None:
        self.started = True
        plan, limits = _mapping(e.get("plan")), _mapping(e.get("limits"))
        self.plan_name = str(plan.get("name")) if plan.get("name") is not None else None
        self.seed = e.get("seed") if isinstance(e.get("seed"), int) else None
        self.skin_limit_c = number(limits.get("skin_temp_max_c"))
        self.hard_limit_c = number(e.get("hard_trip_c"))
        self.delay_limit_ms = number(limits.get("max_cooling_delay_ms"))
        self.spots_planned = int(number(e.get("spots_planned")) or 0)
        self.pulses_planned = int(number(e.get("pulses_planned")) or 0)
        pulse = _mapping(plan.get("pulse"))
        self.pulses_per_spot = max(1, int(number(pulse.get("pulses_per_spot")) or 1))

    def _state(self, e: Mapping[str, Any], t: float) -> None:
        src, dest = str(e.get("src")), str(e.get("dest"))
        self.state = dest
        self.state_changes += 1
        self.history.append((t, src, dest, str(e.get("trigger", ""))))
        if src in HELD and dest not in HELD:  # resumed (a pause's cause gone) or reset (a latch cleared)
            clear: tuple[LampStatus, ...] = ("pause",) if src == "paused" else ("pause", "trip")
            for lamp in self.lamps.values():
                if lamp.status in clear:
                    lamp.status = "ok"

    def _trip(self, e: Mapping[str, Any], t: float) -> None:
        rule = str(e.get("rule"))
        lamp = self.lamps.setdefault(rule, Lamp(rule))
        lamp.status = "pause" if e.get("latch") == "pause" else "trip"
        lamp.reason = str(e.get("reason", ""))
        lamp.t = t
        lamp.trips += 1

    def _reading(self, e: Mapping[str, Any], t: float) -> None:
        skin = number(e.get("skin_c"))
        if skin is None:
            return
        self.readings.append((t, skin))
        self.skin_last_c = skin
        self.skin_max_c = skin if self.skin_max_c is None else max(self.skin_max_c, skin)

    def _pulse_start(self, e: Mapping[str, Any], t: float) -> None:
        self._reading(e, t)
        self.pulse_marks.append(t)
        self.pulses_started += 1
        if self.t_first_pulse is None:
            self.t_first_pulse = t
        spot = e.get("spot")
        if isinstance(spot, int):
            self.current_spot = spot
            self.pulses_in_spot[spot] = self.pulses_in_spot.get(spot, 0) + 1

    def _spray_start(self, e: Mapping[str, Any], t: float) -> None:
        self.spray_marks.append(t)
        delay = number(e.get("delay_ms"))
        if delay is not None:
            self.delays.append(delay)

    def _missed(self, e: Mapping[str, Any], t: float) -> None:
        pulses = e.get("pulses")
        self.missed += len(pulses) if isinstance(pulses, list) else 1

    def _plasma(self, e: Mapping[str, Any], t: float) -> None:
        name = e.get("event")
        if name == "plasma_arm" and e.get("ok"):
            self.plasma = "armed"
        elif name == "plasma_disarm" and e.get("ok"):
            self.plasma = "off"
        elif name == "plasma_off" and self.plasma == "armed":
            self.plasma = "armed, output off" if e.get("ok") else "armed, OUTPUT OFF NOT CONFIRMED"

    def _abort(self, e: Mapping[str, Any], t: float) -> None:
        self.abort_reason = str(e.get("reason"))

    def _session_end(self, e: Mapping[str, Any], t: float) -> None:
        self.outcome = str(e.get("outcome"))
        cause = e.get("cause")
        self.cause = None if cause is None else str(cause)
        self.internal_error = bool(e.get("internal_error"))

    # ------------------------------------------------------------------ derived (cached per version)

    def _cached(self, key: str, version: int, make: Callable[[], T]) -> T:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            value: T = hit[1]
            return value
        value = make()
        self._cache[key] = (version, value)
        return value

    def cooling(self) -> CoolingStats:
        return self._cached("cooling", len(self.delays) + self.missed, self._make_cooling)

    def _make_cooling(self) -> CoolingStats:
        d = self.delays
        arr = np.asarray(d, dtype=float)
        limit = self.delay_limit_ms
        return CoolingStats(
            count=len(d),
            p50_ms=float(np.percentile(arr, 50)) if d else None,
            p99_ms=float(np.percentile(arr, 99)) if d else None,
            max_ms=max(d) if d else None,
            limit_ms=limit,
            over=sum(1 for v in d if v > limit) if limit is not None else 0,
            missed=self.missed,
        )

    def progress(self) -> Progress:
        finished = sum(1 for n in self.pulses_in_spot.values() if n >= self.pulses_per_spot)
        elapsed = self.t_last - self.t_first_pulse if self.t_first_pulse is not None else 0.0
        eta: float | None = None
        if finished and not self.ended:
            eta = elapsed / finished * max(self.spots_planned - finished, 0)
        return Progress(
            spots_planned=self.spots_planned,
            spots_reached=len(self.pulses_in_spot),
            spots_finished=finished,
            current_spot=self.current_spot,
            pulses_planned=self.pulses_planned,
            pulses_started=self.pulses_started,
            elapsed_s=elapsed,
            eta_s=eta,
        )

    def ledger(self) -> DoseLedger | None:
        """The dose ledger the events so far record (rebuilt by ``ledger_from_events`` when they changed)."""
        return self._cached("ledger", self.ledger_version, lambda: ledger_from_events(self._ledger_events))

    def ledger_view(self) -> LedgerView | None:
        return self._cached("ledger_view", self.ledger_version, self._make_ledger_view)

    def _make_ledger_view(self) -> LedgerView | None:
        ledger = self.ledger()
        if ledger is None:
            return None
        by: dict[str, list[int]] = {"complete": [], "under_dosed": [], "over_dosed": [], "not_started": []}
        for sd in ledger.spots:
            by[sd.status(ledger.tolerance)].append(sd.spot)
        return LedgerView(
            done=len(by["complete"]),
            partial=len(by["under_dosed"]),
            not_started=len(by["not_started"]),
            over_dosed=len(by["over_dosed"]),
            over_spots=tuple(by["over_dosed"]),
            partial_spots=tuple(by["under_dosed"]),
            pulses_cut=sum(sd.cut_pulses for sd in ledger.spots),
            energy_unknown=sum(sd.unknown for sd in ledger.spots),
        )

    def lamp_list(self) -> list[Lamp]:
        return list(self.lamps.values())


_HANDLERS: dict[str, Callable[[DashboardModel, Mapping[str, Any], float], None]] = {
    "session_start": DashboardModel._session_start,
    "state": DashboardModel._state,
    "interlock_trip": DashboardModel._trip,
    "reading": DashboardModel._reading,
    "pulse_start": DashboardModel._pulse_start,
    "spray_start": DashboardModel._spray_start,
    "cooling_missed": DashboardModel._missed,
    "plasma_arm": DashboardModel._plasma,
    "plasma_disarm": DashboardModel._plasma,
    "plasma_off": DashboardModel._plasma,
    "abort": DashboardModel._abort,
    "session_end": DashboardModel._session_end,
}
