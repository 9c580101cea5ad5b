"""The numbers of a session report, taken from its audit log alone (so a report can be rebuilt, and checked,
from the record without the rig, the plan file or the simulators).

Each field comes from one kind of record: the plan, rig and limits from ``session_start`` (limits are fixed
for a session; a ``plan_edit`` changes only the treatment settings), skin temperatures from ``reading`` and
``pulse_start``, cooling delays from ``spray_start``, the dose per spot from the dose ledger the summary uses
(:func:`ledger_from_events`), tissue results from ``tissue`` / ``tissue_summary``, and the summary itself
from :func:`plasmactl.summary.summarize`, unchanged, so the report shows exactly what summary.json holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from plasmactl.controller.ledger import DoseLedger, ledger_from_events
from plasmactl.log_chain import FILE_FIELDS, PREV_FIELD
from plasmactl.plan import Spots
from plasmactl.run_log import LogError, RunLog, chain_line, malformed
from plasmactl.summary import TISSUE_METRICS, summarize

TIMELINE_EVENTS = ("interlock_trip", "fault", "estop", "abort", "resume", "reset", "cooling_missed", "controller_error")
DEVICE_NAMES = ("plasma", "spray", "thermometer", "safety")
_HIDDEN = ("t", "event", PREV_FIELD)


@dataclass(frozen=True)
class SpotDose:
    """One planned spot as the ledger has it, where the plan puts it."""

    spot: int  # 1-based, in plan order
    x_mm: float | None
    y_mm: float | None
    planned_j: float
    delivered_j: float
    pulses: int
    pulses_planned: int
    cut: int
    unknown: int
    status: str  # not_started | complete | under_dosed | over_dosed
    cooling_delay_ms: float | None  # the longest of its pulses' (None: no confirmed spray)

    @property
    def delivered_pct(self) -> float | None:
        return 100.0 * self.delivered_j / self.planned_j if self.planned_j > 0 and self.pulses else None


@dataclass(frozen=True)
class TissueSpot:
    """The physics' result for one treated spot (``spot``: the plan's, found through its pulses)."""

    spot: int | None
    pulses: list[int]
    values: dict[str, float | None]


@dataclass(frozen=True)
class TimelineRow:
    t: float
    event: str
    rule: str
    reason: str
    details: str


@dataclass
class ReportData:
    """Everything the page shows; the plots and the HTML read only this."""

    log: RunLog
    summary: dict[str, Any]
    plan_name: str
    skin_t: list[float] = field(default_factory=list)
    skin_c: list[float] = field(default_factory=list)
    skin_limit_c: float | None = None
    hard_trip_c: float | None = None
    pulse_t: list[float] = field(default_factory=list)
    sprays: list[tuple[float, float]] = field(default_factory=list)  # valve open, closed (session s)
    delays_ms: list[float] = field(default_factory=list)
    max_delay_ms: float | None = None
    tolerance_pct: float | None = None
    spots: list[SpotDose] = field(default_factory=list)
    dose_sessions: list[str] = field(default_factory=list)  # the logs the dose map combines (resumed sessions)
    tissue: list[TissueSpot] = field(default_factory=list)
    tissue_summary: dict[str, Any] | None = None
    tissue_note: str | None = None  # why there is no tissue plot (None: there is one)
    timeline: list[TimelineRow] = field(default_factory=list)
    plan_rows: list[tuple[str, str]] = field(default_factory=list)
    limit_rows: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, str, str]] = field(default_factory=list)  # kind, path, sha256
    genesis: str = ""
    plan_edits: list[TimelineRow] = field(default_factory=list)
    devices: list[tuple[str, str, str, str]] = field(default_factory=list)  # device, kind, where, identity
    served: list[str] = field(default_factory=list)
    self_tests: list[TimelineRow] = field(default_factory=list)
    identities: list[TimelineRow] = field(default_factory=list)
    chain: str = ""
    chain_ok: bool = True
    chain_notes: list[str] = field(default_factory=list)


def _num(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def fields_text(e: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A record's fields as ``k=v`` (the log's own time, name and hash left out)."""
    return " ".join(f"{k}={v}" for k, v in e.items() if k not in _HIDDEN and k not in skip)


def build_report_data(log: RunLog) -> ReportData:
    """The report's numbers; LogError when a record lacks what every session writes (an edited log)."""
    try:
        return _build(log)
    except (KeyError, TypeError, ValueError) as exc:
        raise LogError(malformed(log, exc)) from None


def _build(log: RunLog) -> ReportData:
    events = log.events
    start = log.start
    plan = _mapping(start.get("plan"))
    limits = _mapping(start.get("limits"))
    data = ReportData(log=log, summary=summarize(events), plan_name=str(plan.get("name", "?")))
    data.skin_limit_c = _num(limits.get("skin_temp_max_c"))
    data.hard_trip_c = _num(start.get("hard_trip_c"))
    data.max_delay_ms = _num(limits.get("max_cooling_delay_ms"))
    data.tolerance_pct = _num(limits.get("energy_tolerance_pct"))
    _series(data, events)
    data.spots = spot_doses(events, plan)
    if isinstance(start.get("resume_of"), dict):  # a resumed session: the dose map of the whole plan
        from plasmactl.resume import combined_spot_doses

        data.spots, data.dose_sessions = combined_spot_doses(log)
    _tissue(data, events, start)
    data.timeline = [_timeline_row(e) for e in events if e.get("event") in TIMELINE_EVENTS]
    _plan_and_rig(data, start, plan, limits)
    data.plan_edits = [
        TimelineRow(
            _t(e),
            "plan_edit",
            "applied" if e.get("ok") else "refused",
            str(e.get("reason") or ""),
            f"changes={e.get('changes')} from_pulse={e.get('from_pulse')}",
        )
        for e in events
        if e.get("event") == "plan_edit"
    ]
    _devices(data, events, start)
    data.chain, data.chain_ok, data.chain_notes = chain_line(log.chain), log.chain.ok, list(log.chain.notes)
    return data


def _t(e: Mapping[str, Any]) -> float:
    return _num(e.get("t")) or 0.0


def _series(data: ReportData, events: list[dict[str, Any]]) -> None:
    """Skin temperature (at the sample's own time), pulse starts, spray intervals, cooling delays."""
    points: set[tuple[float, float]] = set()
    opened: dict[Any, float] = {}
    t_last = 0.0
    for e in events:
        name, t = e.get("event"), _t(e)
        t_last = max(t_last, t)
        if name == "reading":
            c, ts = _num(e.get("skin_c")), _num(e.get("sample_t"))
            if c is not None:
                points.add((t if ts is None else ts, c))
        elif name == "pulse_start":
            data.pulse_t.append(t)
            c, ts = _num(e.get("skin_c")), _num(e.get("skin_t"))
            if c is not None:
                points.add((t if ts is None else ts, c))
        elif name == "spray_start":
            opened[e.get("spray")] = _num(e.get("t_open")) or t
            delay = _num(e.get("delay_ms"))
            if delay is not None:
                data.delays_ms.append(delay)
        elif name == "spray_end" and e.get("spray") in opened:
            data.sprays.append((opened.pop(e.get("spray")), _num(e.get("t_closed")) or t))
    data.sprays.extend((t_open, t_last) for t_open in opened.values())  # a spray the record cut off
    for ts, c in sorted(points):
        data.skin_t.append(ts)
        data.skin_c.append(c)


def spot_positions(plan: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    """Spot number -> (x, y) mm: the plan's pattern, else (a plan this version cannot read) the pulses'."""
    try:
        positions = Spots.model_validate(plan.get("spots")).positions()
    except (ValidationError, TypeError, ValueError):
        found: dict[int, tuple[float, float]] = {}
        for e in events:
            x, y = _num(e.get("x_mm")), _num(e.get("y_mm"))
            if e.get("event") == "pulse_start" and x is not None and y is not None:
                found.setdefault(int(e["spot"]), (x, y))
        return found
    return {i: (float(x), float(y)) for i, (x, y) in enumerate(positions, start=1)}


def spot_doses(events: list[dict[str, Any]], plan: Mapping[str, Any]) -> list[SpotDose]:
    ledger: DoseLedger | None = ledger_from_events(events)
    if ledger is None:
        return []
    where = spot_positions(plan, events)
    out: list[SpotDose] = []
    for sd in ledger.spots:
        delays = [p.cooling_delay_ms for p in sd.pulses if p.cooling_delay_ms is not None]
        x, y = where.get(sd.spot, (None, None))
        out.append(
            SpotDose(
                spot=sd.spot,
                x_mm=x,
                y_mm=y,
                planned_j=sd.planned_j,
                delivered_j=sd.delivered_j,
                pulses=len(sd.pulses),
                pulses_planned=sd.pulses_planned,
                cut=sd.cut_pulses,
                unknown=sd.unknown,
                status=sd.status(ledger.tolerance),
                cooling_delay_ms=max(delays) if delays else None,
            )
        )
    return out


def _tissue(data: ReportData, events: list[dict[str, Any]], start: Mapping[str, Any]) -> None:
    spot_of_pulse = {e.get("pulse"): e.get("spot") for e in events if e.get("event") == "pulse_start"}
    error: str | None = None
    for e in events:
        name = e.get("event")
        if name == "tissue":
            pulses = [int(p) for p in e.get("pulses", []) if isinstance(p, int)]
            spot = spot_of_pulse.get(pulses[0]) if pulses else None
            values = {k: _num(e.get(k)) for k in TISSUE_METRICS}
            data.tissue.append(TissueSpot(spot if isinstance(spot, int) else None, pulses, values))
        elif name == "tissue_summary":
            data.tissue_summary = {k: v for k, v in e.items() if k not in _HIDDEN}
        elif name == "tissue_error":
            error = str(e.get("error"))
    if data.tissue:
        return
    skin = _mapping(_mapping(start.get("rig")).get("skin"))
    if error is not None:
        data.tissue_note = f"The tissue physics failed: {error}. No tissue results."
    elif skin.get("tissue") is False:
        data.tissue_note = "The tissue physics did not run: the rig sets [skin] tissue = false."
    elif data.tissue_summary is not None:
        data.tissue_note = "The tissue physics ran, but no spot received energy: no tissue results per spot."
    else:
        data.tissue_note = (
            "The log holds no tissue results: the physics runs on the in-process simulators when the session"
            " ends (a rig of real or served devices, or a session cut before its end, leaves none)."
        )


def _timeline_row(e: Mapping[str, Any]) -> TimelineRow:
    name = str(e.get("event"))
    rule = str(e.get("rule") or ("estop" if name == "estop" else ""))
    reason = e.get("reason") or e.get("error") or ""
    skip: tuple[str, ...] = ("rule", "reason", "error")
    if name == "reset":
        blocked = e.get("blocked_by") or []
        reason = "reset accepted" if e.get("ok") else f"reset refused: blocked by {', '.join(map(str, blocked))}"
        skip = (*skip, "ok", "blocked_by")
    elif name == "resume":
        reason = f"resumed; next pulse {e.get('pulse_next')}"
        skip = (*skip, "pulse_next")
    return TimelineRow(_t(e), name, rule, str(reason), fields_text(e, skip))


def _plan_and_rig(data: ReportData, start: Mapping[str, Any], plan: Mapping[str, Any], limits: Any) -> None:
    pulse, cooling = _mapping(plan.get("pulse")), _mapping(plan.get("cooling"))
    rig, faults = _mapping(start.get("rig")), _mapping(start.get("faults"))
    data.plan_rows = [
        ("plan", str(plan.get("name", ""))),
        ("description", str(plan.get("description", ""))),
        ("spots planned", str(start.get("spots_planned"))),
        ("pulses planned", str(start.get("pulses_planned"))),
        (
            "pulse",
            f"{pulse.get('energy_j')} J, {pulse.get('pulse_ms')} ms, {pulse.get('pulses_per_spot')} per spot,"
            f" every {pulse.get('interval_s')} s",
        ),
        ("fluence", f"{start.get('fluence_j_cm2')} J/cm2"),
        (
            "cooling",
            f"{cooling.get('spray_ms')} ms spray after every {cooling.get('when')}, delay {cooling.get('delay_ms')} ms",
        ),
        ("generator energy limit", f"{start.get('energy_limit_j')} J"),
        ("pulse bound", f"{start.get('pulse_bound_ms')} ms"),
        ("rig", str(rig.get("name", ""))),
        ("faults", f"{faults.get('name') or 'none'} ({len(faults.get('fault') or [])} fault(s))"),
        ("seed", str(start.get("seed"))),
        ("software version", str(start.get("version"))),
    ]
    data.limit_rows = [(str(k), str(v)) for k, v in _mapping(limits).items()]
    if start.get("hard_trip_c") is not None:
        data.limit_rows.append(("hard_trip_c", str(start.get("hard_trip_c"))))
    for name in FILE_FIELDS:
        entry = _mapping(start.get(name))
        kind = name.removesuffix("_file")
        if entry:
            data.files.append((kind, str(entry.get("path")), str(entry.get("sha256"))))
        else:
            data.files.append((kind, "none (built-in default)" if kind == "rig" else "none", ""))
    data.genesis = str(start.get(PREV_FIELD, ""))


def _where(cfg: Mapping[str, Any]) -> str:
    kind = cfg.get("kind")
    if kind == "sim":
        return "in-process simulator"
    if "host" in cfg:
        return f"{cfg.get('host')}:{cfg.get('port')} unit {cfg.get('unit_id')}"
    if "port" in cfg:
        return (
            f"{cfg.get('port')}"
            + (f" unit {cfg['unit_id']}" if "unit_id" in cfg else "")
            + (f" at {cfg['baud']} baud" if "baud" in cfg else "")
        )
    return ""


def _identity(cfg: Mapping[str, Any]) -> str:
    ident = _mapping(cfg.get("identity"))
    if not ident:
        return "simulated (no identity block)" if cfg.get("kind") == "sim" else "not checked by the rig file"
    vendor, model = ident.get("vendor"), ident.get("model")
    vendor_text = f"0x{vendor:04X}" if isinstance(vendor, int) else str(vendor)
    model_text = "of its role" if model is None else (f"0x{model:04X}" if isinstance(model, int) else str(model))
    return f"expects vendor {vendor_text}, model {model_text}, map v{ident.get('map_version')}"


def _devices(data: ReportData, events: list[dict[str, Any]], start: Mapping[str, Any]) -> None:
    rig = _mapping(start.get("rig"))
    for name in DEVICE_NAMES:
        cfg = _mapping(rig.get(name))
        data.devices.append((name, str(cfg.get("kind", "?")), _where(cfg), _identity(cfg)))
    for e in events:
        event = e.get("event")
        if event == "serve_sim":
            data.served.append(fields_text(e))
        elif event == "self_test":
            problems = e.get("problems") or []
            verdict = "passed" if e.get("ok") else "failed: " + "; ".join(map(str, problems))
            data.self_tests.append(TimelineRow(_t(e), "self_test", "", verdict, fields_text(e, ("ok", "problems"))))
        elif event == "identity" or (event != "session_start" and "identity" in e):
            data.identities.append(TimelineRow(_t(e), str(event), "", "", fields_text(e)))


def flatten(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A summary as (dotted key, value) rows: nested objects opened, lists and numbers kept whole."""
    rows: list[tuple[str, Any]] = []
    for k, v in value.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            rows.extend(flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows
