"""The safety invariants of a session, checked from its record alone (and, for simulated rigs, against what
the simulated devices report they physically did).

This is what a safety assessor checks after a session, and what the generative fault campaigns check after
every one of thousands: no emission while latched, paused or on an input that was stale or tripping; every
pulse cooled in time with water on the skin, or a trip inside its window and a ``cooling_missed`` naming
it; ``plasma_off`` the first action after every trip; no spot over its plan; one ``pulse_end`` per
``pulse_start``; ``summary.json`` equal to what the log says; the exit code matching the outcome.

:func:`check` returns ``{invariant: [messages]}`` (empty when every invariant holds). It reads plain dicts
(the parsed lines of ``events.jsonl``, ``summary.json``, ``simulator.json``) so it can judge any run,
including one from another version of the software. With ``until`` it judges a session still running, as
its record stands at clock time ``until``: what only the rest of the session can settle (its end, the pulse
in flight, a cooling window or a trip's safe state still under way) is left for later.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from plasmactl.invariants_outcome import EXIT_CODES, outcome_and_record

Event = Mapping[str, Any]
Violations = dict[str, list[str]]

__all__ = ["EXIT_CODES", "Record", "check"]

EPS_S = 1e-6  # times in the log are rounded to the nanosecond
EPS_J = 1e-9
ACTIONS = frozenset(
    {"plasma_off", "plasma_disarm", "plasma_arm", "spray_command", "spray_start", "spray_end", "pulse_start"}
)
# on a real clock (a loaded host, a call in flight) a missed window trips this late at most
REAL_CLOCK_DETECTION_S = 0.050
# a session judged while it runs: what a trip's safe state has to record (cooling_missed, plasma_off) is
# judged once this much clock time has passed after it (the safe state's calls, each within its budget)
SETTLE_S = 2.0
RESERVOIR_GRACE_S = 0.005  # the spray unit's status is read just before a pulse: a reservoir dry since then


def check(
    events: Sequence[Event],
    *,
    summary: Mapping[str, Any] | None = None,
    simulator: Mapping[str, Any] | None = None,
    exit_code: int | None = None,
    output: str = "",
    until: float | None = None,
) -> Violations:
    v: Violations = defaultdict(list)
    if not events or events[0].get("event") != "session_start":
        v["log_integrity"].append("the log does not start with session_start")
        return dict(v)
    ctx = Record(events, until)
    _integrity(ctx, v)
    _emission(ctx, v)
    _cooling(ctx, v)
    _trip_actions(ctx, v)
    _energy_and_dose(ctx, v)
    _edits(ctx, v)
    outcome_and_record(ctx, v, summary, exit_code, output)
    if simulator is not None:
        from plasmactl.invariants_sim import against_simulator

        against_simulator(ctx, v, simulator)
    return {k: msgs for k, msgs in v.items() if msgs}


class Record:
    """The log, indexed the way the checks read it."""

    def __init__(self, events: Sequence[Event], until: float | None = None) -> None:
        self.events = events
        self.until = until  # None: the whole session; else the clock time of a running session's record
        start = events[0]
        self.start = start
        self.limits: Mapping[str, Any] = start.get("limits", {})
        plan = start.get("plan", {})
        pulse = plan.get("pulse", {})
        self.energy_j = float(pulse.get("energy_j", 0.0))
        self.pps = int(pulse.get("pulses_per_spot", 1))
        self.interval_s = float(pulse.get("interval_s", 0.0))
        self.pulse_s = float(pulse.get("pulse_ms", 0.0)) / 1000.0
        self.tol = float(self.limits.get("energy_tolerance_pct", 20.0)) / 100.0
        self.window_s = float(self.limits.get("max_cooling_delay_ms", 100.0)) / 1000.0
        self.max_age_s = {k: float(ms) / 1000.0 for k, ms in start.get("max_age_ms", {}).items()}
        # how late after a window's end its trip may be logged: none in virtual time with in-process devices;
        # on the real clock (devices on wires) a deadline's timer and the owner's turn add milliseconds
        rig = start.get("rig") or {}
        kinds = {str((rig.get(d) or {}).get("kind", "sim")) for d in ("plasma", "spray", "thermometer", "safety")}
        self.detection_s = 0.0 if kinds == {"sim"} else REAL_CLOCK_DETECTION_S
        self.starts: dict[int, Event] = {}
        self.ends: dict[int, Event] = {}
        self.dup_starts: list[int] = []
        self.dup_ends: list[int] = []
        for e in events:
            name = e.get("event")
            if name == "pulse_start":
                (self.dup_starts if e["pulse"] in self.starts else []).append(e["pulse"])
                self.starts.setdefault(e["pulse"], e)
            elif name == "pulse_end":
                (self.dup_ends if e["pulse"] in self.ends else []).append(e["pulse"])
                self.ends.setdefault(e["pulse"], e)
        self.trips = [e for e in events if e.get("event") == "interlock_trip"]
        self.sprays = [e for e in events if e.get("event") == "spray_start"]
        self.commands = [e for e in events if e.get("event") == "spray_command"]
        self.missed: dict[int, list[Event]] = defaultdict(list)
        for e in events:
            if e.get("event") == "cooling_missed":
                for p in e.get("pulses", []):
                    self.missed[int(p)].append(e)
        ends = [e for e in events if e.get("event") == "session_end"]
        self.end: Event | None = ends[-1] if ends else None
        self.n_session_ends = len(ends)

    def settings(self, n: int) -> tuple[float, float]:
        """The energy (J) and length (s) pulse ``n`` was set to, as its ``pulse_start`` says (else the plan's)."""
        s = self.starts.get(n, {})
        set_j, set_ms = s.get("energy_set_j"), s.get("pulse_ms")
        return (
            float(set_j) if isinstance(set_j, int | float) else self.energy_j,
            float(set_ms) / 1000.0 if isinstance(set_ms, int | float) else self.pulse_s,
        )

    def per_spot(self) -> dict[int, list[int]]:
        """The pulses started on each spot, in order."""
        out: dict[int, list[int]] = defaultdict(list)
        for n in sorted(self.starts):
            out[int(self.starts[n]["spot"])].append(n)
        return out

    @property
    def running(self) -> bool:
        """The record of a session still running (judged at ``until``)."""
        return self.until is not None and self.end is None

    def settled(self, t: float) -> bool:
        """Whatever follows from a moment ``t`` is in the record (the session ended, or it is long enough ago)."""
        return not self.running or t + SETTLE_S < float(self.until or 0.0)


def _integrity(ctx: Record, v: Violations) -> None:
    events = ctx.events
    in_flight = max(ctx.starts, default=None) if ctx.running else None
    if ctx.end is None:
        if not ctx.running:
            v["log_integrity"].append("no session_end")
    elif events[-1] is not ctx.end:
        v["log_integrity"].append("events after session_end")
    if ctx.n_session_ends > 1:
        v["log_integrity"].append(f"{ctx.n_session_ends} session_end events")
    for a, b in itertools.pairwise(events):
        if float(b["t"]) < float(a["t"]) - EPS_S:
            v["log_integrity"].append(f"time goes backwards: {a['event']} at {a['t']} then {b['event']} at {b['t']}")
            break
    for n in ctx.dup_starts:
        v["record_pulses"].append(f"pulse {n} has two pulse_start")
    for n in ctx.dup_ends:
        v["record_pulses"].append(f"pulse {n} has two pulse_end")
    for n in ctx.starts.keys() - ctx.ends.keys() - {in_flight}:
        v["record_pulses"].append(f"pulse {n} has a pulse_start but no pulse_end")
    for n in ctx.ends.keys() - ctx.starts.keys():
        v["record_pulses"].append(f"pulse {n} has a pulse_end but no pulse_start")
    for s in ctx.sprays + ctx.commands:
        pulses = s.get("pulses", [])
        if len(pulses) != len(set(pulses)):
            v["record_sprays"].append(f"{s['event']} {s.get('spray')} lists a pulse twice: {pulses}")


def _emission(ctx: Record, v: Violations) -> None:
    """No pulse while latched or paused, or on a stale or tripping input; no pause longer than its limit."""
    latched: float | None = None
    paused: float | None = None
    lim = ctx.limits
    pause_limit = float(lim.get("max_pause_s", math.inf)) + ctx.detection_s + EPS_S
    overlong: float | None = None  # the pause already reported as too long
    failed: dict[str, float] = {}  # each device's latest logged failure (the first of each streak is logged)
    for e in ctx.events:
        name = e.get("event")
        if name == "comm_error" and isinstance(e.get("device"), str):
            failed[e["device"]] = float(e["t"])
        if paused is not None and latched is None and paused != overlong and float(e["t"]) > paused + pause_limit:
            v["pause_too_long"].append(
                f"paused since {paused:.4f}, still paused at {float(e['t']):.4f} ({e.get('event')}), over"
                f" limits.max_pause_s = {lim.get('max_pause_s')}"
            )
            overlong = paused
        if name in ("interlock_trip", "fault", "estop"):
            if e.get("latch") == "pause":
                paused = float(e["t"]) if paused is None else paused
            else:
                latched = float(e["t"]) if latched is None else latched
        elif name == "reset" and e.get("ok"):
            latched = None
        elif name == "resume":
            paused = None
        elif name == "pulse_start":
            n, t = e["pulse"], float(e["t"])
            if latched is not None:
                v["pulse_while_latched"].append(f"pulse {n} at {t:.4f}, latched since {latched:.4f}")
            if paused is not None:
                v["pulse_while_paused"].append(f"pulse {n} at {t:.4f}, paused since {paused:.4f}")
            skin = e.get("skin_c")
            if not isinstance(skin, int | float):
                v["pulse_on_unknown_input"].append(f"pulse {n}: no skin reading")
            elif not (lim.get("plausible_min_c", -math.inf) <= skin <= lim.get("plausible_max_c", math.inf)):
                v["pulse_on_tripping_input"].append(f"pulse {n}: skin {skin:.4g} C implausible")
            elif skin >= lim.get("skin_temp_max_c", math.inf):
                v["pulse_on_tripping_input"].append(f"pulse {n}: skin {skin:.2f} C at or over the limit")
            bounds = {"skin_t": "thermometer", "safety_t": "safety", "plasma_t": "plasma", "spray_t": "spray"}
            for field, device in bounds.items():
                if field not in e and device != "thermometer" and not ctx.max_age_s:
                    continue  # a log from before inputs carried their times
                bound = ctx.max_age_s.get(device, float(lim.get("reading_max_age_ms", 500.0)) / 1000.0)
                taken = e.get(field)
                if not isinstance(taken, int | float):
                    v["pulse_on_unknown_input"].append(f"pulse {n}: no {device} status")
                elif t - taken > bound + EPS_S:
                    v["pulse_on_stale_input"].append(f"pulse {n}: {device} {1000 * (t - taken):.0f} ms old")
                elif device != "thermometer" and failed.get(device, -math.inf) > taken:
                    # fired on a status older than a poll that got no answer: the input was unknown then (a
                    # reading's time is its sample's, which may precede a failed read it came after: not judged)
                    v["pulse_on_unanswered_input"].append(
                        f"pulse {n}: {device} status of {taken:.4f}, its poll at {failed[device]:.4f} unanswered"
                    )
            if isinstance(e.get("reservoir_ml"), int | float) and e["reservoir_ml"] <= 0.0:
                v["pulse_on_tripping_input"].append(f"pulse {n}: reservoir empty")
            previous = ctx.starts.get(n - 1)
            if previous is not None and t - float(previous["t"]) < ctx.interval_s - EPS_S:
                v["pulse_interval_short"].append(
                    f"pulse {n} {1000 * (t - float(previous['t'])):.1f} ms after pulse {n - 1}"
                )


def _trips_between(ctx: Record, t0: float, t1: float) -> list[Event]:
    return [tr for tr in ctx.trips if t0 - EPS_S <= float(tr["t"]) <= t1 + EPS_S]


def _cooling(ctx: Record, v: Violations) -> None:
    """Every pulse cooled within the window with water confirmed; or a trip inside it and cooling_missed."""
    min_flow = float(ctx.limits.get("min_spray_flow_ml_s", 0.0))
    first_spray: dict[int, Event] = {}
    for s in ctx.sprays:
        for n in s.get("pulses", []):
            first_spray.setdefault(n, s)
    commanded_for = {n for c in ctx.commands + ctx.sprays for n in c.get("pulses", [])}
    for n, end in sorted(ctx.ends.items()):
        start = ctx.starts.get(n)
        t_end = float(end.get("t_end", end["t"]))
        window_end = t_end + ctx.window_s
        spray = first_spray.get(n)
        if spray is not None:
            delay = float(spray.get("t_open", spray["t"])) - t_end
            if delay > ctx.window_s + EPS_S or float(spray.get("delay_ms", 0.0)) > ctx.window_s * 1000 + 1e-3:
                v["cooling_late_accepted"].append(f"pulse {n}: spray {spray.get('spray')} {delay * 1000:.1f} ms late")
            if "flow_ml_s" in spray and float(spray["flow_ml_s"]) < min_flow:
                v["cooling_without_water"].append(f"pulse {n}: spray {spray.get('spray')} flow {spray['flow_ml_s']}")
            if float(spray["t"]) < float(end["t"]) - EPS_S:
                v["record_sprays"].append(f"pulse {n}: spray_start before its pulse_end")
            continue
        if not ctx.settled(window_end + ctx.detection_s):
            continue
        t0 = float(start["t"]) if start is not None else t_end
        tripped = _trips_between(ctx, t0, window_end + ctx.detection_s)
        if not tripped:
            v["uncooled_without_trip"].append(f"pulse {n} (end {t_end:.4f}) not cooled and no trip inside its window")
        if n not in ctx.missed:
            v["uncooled_not_recorded"].append(f"pulse {n} not cooled and no cooling_missed names it")
    for n, end in sorted(ctx.ends.items()):
        if n in commanded_for:
            continue
        start = ctx.starts.get(n)
        t0 = float(start["t"]) if start is not None else float(end["t"])
        window_end = float(end.get("t_end", end["t"])) + ctx.window_s
        if not ctx.settled(window_end + ctx.detection_s):
            continue
        if not (_trips_between(ctx, t0, window_end + ctx.detection_s) and n in ctx.missed):
            v["spray_never_commanded"].append(f"pulse {n} never had a spray commanded, and no trip inside its window")


def _trip_actions(ctx: Record, v: Violations) -> None:
    """plasma_off is the first action after every trip (and abort) that found emission possible."""
    events = ctx.events
    for i, e in enumerate(events):
        name = e.get("event")
        if not (name == "abort" or (name == "interlock_trip" and not e.get("latched"))):
            continue
        if e.get("state") == "disconnected" and name == "interlock_trip":
            continue  # refused before any device was opened
        first = next((x for x in events[i + 1 :] if x.get("event") in ACTIONS), None)
        what = e.get("rule", "abort")
        if first is None and not ctx.settled(float(e["t"])):
            continue
        if first is None or first.get("event") != "plasma_off":
            v["plasma_off_not_first"].append(f"{what} at {e['t']}: first action {first and first.get('event')}")
    if ctx.running:
        return  # the last off and disarm are the end's
    offs = [e for e in events if e.get("event") == "plasma_off"]
    unconfirmed = any(e.get("event") == "emission_unconfirmed" for e in events)
    if offs and not offs[-1].get("ok") and not unconfirmed:
        v["plasma_off_unconfirmed_silently"].append("the last plasma_off failed and the record does not say so")
    arms = [i for i, e in enumerate(events) if e.get("event") == "plasma_arm"]
    if arms:
        after = events[arms[-1] + 1 :]
        if not any(e.get("event") == "plasma_disarm" for e in after):
            v["left_armed"].append("no plasma_disarm after the last plasma_arm")


def _energy_and_dose(ctx: Record, v: Violations) -> None:
    ordered = sorted(ctx.starts)
    for n, end in sorted(ctx.ends.items()):
        got = end.get("energy_j")
        set_j, pulse_s = ctx.settings(n)
        out = isinstance(got, int | float) and (
            got >= set_j * (1 + ctx.tol) * (1 - 1e-6)
            or (not end.get("interrupted") and abs(got - set_j) > set_j * ctx.tol + EPS_J)
        )
        out = out or (got is None and not end.get("interrupted"))
        start = ctx.starts.get(n)
        if isinstance(got, int | float) and end.get("interrupted") and start is not None and pulse_s > 0:
            on_s = float(end.get("t_off", end["t"])) - float(start["t"])  # an upper bound on its emission
            out = out or got > set_j * min(1.0, on_s / pulse_s) * (1 + ctx.tol) + 1e-6 * set_j
        if not out:
            continue
        later = [p for p in ordered if p > n]
        horizon = float(ctx.starts[later[0]]["t"]) if later else math.inf
        if not later and not ctx.settled(float(end["t"])):
            continue
        if not _trips_between(ctx, float(end["t"]), horizon):
            v["energy_not_tripped"].append(f"pulse {n} delivered {got} J (set {set_j}) and no trip followed")
    for spot, pulses in sorted(ctx.per_spot().items()):
        energy = sum(
            float(ctx.ends[p]["energy_j"])
            for p in pulses
            if isinstance(ctx.ends.get(p, {}).get("energy_j"), int | float)
        )
        planned_j = ctx.pps * ctx.settings(pulses[0])[0]
        if len(pulses) > ctx.pps:
            v["dose_over"].append(f"spot {spot}: {len(pulses)} pulses, plan {ctx.pps}")
        if energy > planned_j * (1 + ctx.tol) * (1 + 1e-6) + EPS_J:
            v["dose_over"].append(f"spot {spot}: {energy:.6f} J, plan {planned_j:.6f} J + {ctx.tol:.0%}")


def _edits(ctx: Record, v: Violations) -> None:
    """A plan edit applied only while paused and between spots; every pulse set as the plan in force says."""
    state = "disconnected"
    in_spot = 0  # pulses of the current spot started (by the log)
    energy_j, pulse_s = ctx.energy_j, ctx.pulse_s
    for e in ctx.events:
        name = e.get("event")
        if name == "state":
            state = str(e.get("dest"))
        elif name == "plan_edit" and e.get("ok"):
            if state != "paused" or in_spot:
                where = f"spot part-way ({in_spot} of {ctx.pps} pulses)" if in_spot else f"state {state}"
                v["edit_not_between_pulses"].append(f"plan edit applied at {e['t']} in {where}")
            energy_j, pulse_s = _edited(e, energy_j, pulse_s)
        elif name == "pulse_start":
            in_spot = (in_spot + 1) % ctx.pps
            n = e["pulse"]
            set_j, set_ms = e.get("energy_set_j", energy_j), e.get("pulse_ms", pulse_s * 1000.0)
            if not (_same(set_j, energy_j) and _same(set_ms, pulse_s * 1000.0)):
                v["pulse_not_as_planned"].append(
                    f"pulse {n}: set {set_j} J / {set_ms} ms, the plan in force {energy_j} J / {pulse_s * 1000.0} ms"
                )


def _edited(e: Event, energy_j: float, pulse_s: float) -> tuple[float, float]:
    pulse = (e.get("plan") or {}).get("pulse") or {}
    return float(pulse.get("energy_j", energy_j)), float(pulse.get("pulse_ms", pulse_s * 1000.0)) / 1000.0


def _same(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and abs(float(a) - b) <= 1e-9 * max(1.0, abs(b))
