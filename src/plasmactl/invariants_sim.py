"""The safety invariants against what the simulated devices report they physically did (``simulator.json``):
no emission the log does not show, none decided during a fault that blocks it, emission cut at once when an
unsafe input comes during a pulse, no spot over its plan by the generator's own account, every cooling the
log claims matched by water on the skin in time, and the generator left disarmed and off.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from plasmactl.invariants import EPS_J, EPS_S, RESERVOIR_GRACE_S, Record, Violations

BLOCKING_SAFETY = ("estop", "footswitch_release")
DARK_LINK = ("timeout", "disconnect", "corrupt", "garbage")  # a link that answers nothing usable
REACTION_S = 0.010  # emission off within 10 ms of an E-stop, footswitch release or lifted tip
FLOW_DETECT_S = 0.025  # a spray's flow is read every 20 ms while it runs (plus one read)
VALVE_CLOSE_GRACE_S = 0.5
# the newest safety read a pulse may be decided on (the controller's own bound, restated here so the checker
# does not take it from the code it checks)
FIRE_SAFETY_AGE_S = 0.020


def against_simulator(ctx: Record, v: Violations, sim: Mapping[str, Any]) -> None:
    """What the simulated devices did: no emission the log does not show, none during a blocking fault, no
    spot over its plan, every cooling claim matched by water on the skin in time."""
    pulses = list(sim.get("pulses", []))
    sprays = list(sim.get("sprays", []))
    generator = sim.get("generator")
    unconfirmed = any(e.get("event") == "emission_unconfirmed" for e in ctx.events)
    if ctx.running:
        generator = None  # left on or armed: judged at the end
    if isinstance(generator, Mapping) and (generator.get("output_on") or (generator.get("armed") and not unconfirmed)):
        # armed is excused only where the record says the generator never acknowledged off (a dead link: the
        # generator's own watchdog is then the layer that disarms it); emitting never is
        v["sim_generator_left_on"].append(f"the generator was left {dict(generator)} when the session ended")
    if len(pulses) > len(ctx.starts):
        v["sim_emission_unlogged"].append(
            f"the generator emitted {len(pulses)} pulses, the log started {len(ctx.starts)}"
        )
    t_end_session = float(ctx.end["t"]) if ctx.end is not None else math.inf
    for p in pulses:
        if float(p["t_off"]) > t_end_session + EPS_S:
            v["sim_output_on_at_end"].append(f"pulse {p['number']} still on after the session ended")
    by_number = {int(p["number"]): p for p in pulses}
    faults = sim.get("faults", [])
    per_spot: dict[int, float] = defaultdict(float)
    for n, s in ctx.starts.items():
        p = by_number.get(n)
        if p is None:
            # not in the generator's own record: its FIRE never arrived, nothing was emitted; with a record of
            # fault windows only, the pulse's end is judged as the log has it
            end = ctx.ends.get(n, s)
            t_off = float(s["t"]) if "pulses" in sim else float(end.get("t_off", end["t"]))
            _blocking_faults(ctx, v, n, float(s["t"]), t_off, faults)
            continue
        per_spot[int(s["spot"])] += float(p["energy_j"])
        set_j, set_s = ctx.settings(n)
        if "set_j" in p and not (_close(p["set_j"], set_j, 1e-6) and _close(p["set_ms"], set_s * 1000.0, 0.01)):
            v["sim_setpoint_mismatch"].append(
                f"pulse {n}: the generator fired at {p['set_j']} J / {p['set_ms']} ms, the log says"
                f" {set_j} J / {set_s * 1000.0} ms"
            )
        logged = ctx.ends.get(n, {}).get("energy_j")
        # the generator reports in microjoules over a wire (its register's unit)
        if isinstance(logged, int | float) and abs(logged - float(p["energy_j"])) > max(1.01e-6, 1e-6 * logged):
            v["sim_energy_mismatch"].append(f"pulse {n}: log {logged} J, generator {p['energy_j']} J")
        t_off = float(p["t_off"]) if ctx.until is None else min(float(p["t_off"]), ctx.until)  # still on then
        _blocking_faults(ctx, v, n, float(s["t"]), t_off, faults)
    spots = ctx.per_spot()
    for spot, energy in sorted(per_spot.items()):
        cap = ctx.pps * ctx.settings(spots[spot][0])[0] * (1 + ctx.tol)
        if energy > cap * (1 + 1e-6) + EPS_J:
            v["sim_dose_over"].append(f"spot {spot}: the generator delivered {energy:.6f} J, plan cap {cap:.6f} J")
    for claim in ctx.sprays if "sprays" in sim else ():
        listed = [by_number.get(int(n)) for n in claim.get("pulses", [])]
        first = next((p for p in listed if p is not None), None)
        t_claim = float(claim.get("t_open", claim["t"]))
        wet = [
            s
            for s in sprays
            if s.get("wet")
            and s.get("t_open") is not None
            and float(s["t_open"]) <= t_claim + EPS_S
            and (s.get("t_close") is None or float(s["t_close"]) > t_claim - EPS_S)
        ]
        if not wet:
            v["phantom_cooling"].append(
                f"spray {claim.get('spray')} claimed open with water at {t_claim:.4f}; the unit was not"
            )
        elif first is not None and float(wet[0]["t_open"]) - float(first["t_off"]) > ctx.window_s + EPS_S:
            late = 1000 * (float(wet[0]["t_open"]) - float(first["t_off"]))
            v["phantom_cooling"].append(f"spray {claim.get('spray')}: water on the skin {late:.1f} ms after the pulse")
        else:
            _ran_dry(ctx, v, claim, wet[0])
    _estop_pressed(ctx, v, faults)


def _ran_dry(ctx: Record, v: Violations, claim: Mapping[str, Any], spray: Mapping[str, Any]) -> None:
    """A claimed spray whose water stopped before its valve closed (the reservoir ran dry) is reported by a
    trip while it runs: the skin's cooling was cut short."""
    wet_until, t_close = spray.get("wet_until"), spray.get("t_close")
    if wet_until is None or t_close is None:
        return
    t_dry, t_shut = float(wet_until), float(t_close)
    if not ctx.settled(t_shut + VALVE_CLOSE_GRACE_S + ctx.detection_s):
        return
    if t_shut - t_dry <= FLOW_DETECT_S + ctx.detection_s:
        return  # dry in its last moment, after the last flow reading
    if not any(t_dry - EPS_S <= float(t["t"]) <= t_shut + VALVE_CLOSE_GRACE_S + ctx.detection_s for t in ctx.trips):
        v["dry_spray_unreported"].append(
            f"spray {claim.get('spray')} ran dry {1000 * (t_shut - t_dry):.0f} ms before its valve closed"
            f" ({t_dry:.4f}); no trip reports it"
        )


def _estop_pressed(ctx: Record, v: Violations, faults: Any) -> None:
    """An E-stop pressed while the session runs ends it as ``estop`` (not a fault or an abort before it),
    on wires when the press lasts longer than the safety inputs' refresh period."""
    if ctx.end is None:
        return
    t_end = float(ctx.end["t"])
    refresh = 0.0 if ctx.detection_s == 0.0 else ctx.max_age_s.get("safety", 0.0) + ctx.detection_s
    t_abort = min((float(e["t"]) for e in ctx.events if e.get("event") == "abort"), default=math.inf)
    # the E-stop can be seen only while the safety inputs answer: on the in-process rig every link fault is
    # silence, on wires a delayed link still answers
    dark_kinds = DARK_LINK if ctx.detection_s > 0.0 else (*DARK_LINK, "delay")
    dark = sorted(
        (float(f["start"]), math.inf if f.get("end") is None else float(f["end"]))
        for f in faults
        if f.get("device") == "link" and f.get("target") == "safety" and f.get("kind") in dark_kinds
        if f.get("start") is not None
    )
    for f in faults:
        if f.get("device") != "safety" or f.get("kind") != "estop" or f.get("start") is None:
            continue
        s0 = float(f["start"])
        s1 = math.inf if f.get("end") is None else float(f["end"])
        # (an abort the same instant as the press went first: the log rounds its time to the nanosecond)
        if s1 - s0 <= refresh or not (float(ctx.start["t"]) <= s0 < t_end) or t_abort <= s0 + refresh + EPS_S:
            continue
        # a link that answered during the press for less than the inputs' staleness bound may not have been read
        if dark and _longest_answer(dark, s0, min(s1, t_end)) <= max(refresh, ctx.max_age_s.get("safety", 0.5)):
            continue  # the safety link was silent for (nearly) all of the press the session saw
        if _estop_latched_at(ctx, s0):
            continue  # pressed again while the session was already latched in estop by an earlier press
        if not any(t.get("rule") == "estop" and float(t["t"]) >= s0 - EPS_S for t in ctx.trips):
            v["estop_not_latched"].append(
                f"E-stop pressed at {s0:.4f} for {'ever' if math.isinf(s1) else f'{1000 * (s1 - s0):.0f} ms'}:"
                f" the session ended {ctx.end.get('outcome')} with no estop trip"
            )


def _estop_latched_at(ctx: Record, t: float) -> bool:
    """The session was latched in ``estop`` at ``t`` (an estop trip before it, no accepted reset since)."""
    latched = False
    for e in ctx.events:
        if float(e["t"]) > t:
            break
        if e.get("event") == "interlock_trip" and e.get("rule") == "estop":
            latched = True
        elif e.get("event") == "reset" and e.get("ok"):
            latched = False
    return latched


def _longest_answer(dark: list[tuple[float, float]], t0: float, t1: float) -> float:
    """The longest stretch of [t0, t1) not covered by the (sorted) dark windows."""
    longest, at = 0.0, t0
    for d0, d1 in dark:
        if d0 > at:
            longest = max(longest, min(d0, t1) - at)
        at = max(at, d1)
        if at >= t1:
            return longest
    return max(longest, t1 - at)


def _blocking_faults(ctx: Record, v: Violations, n: int, t_decided: float, t_off: float, faults: Any) -> None:
    """No pulse decided while a fault that blocks emission was active (an unsafe input, the safety inputs
    silent, a dry reservoir once the spray unit's status bound has passed), and emission cut within
    ``REACTION_S`` when an unsafe input came during a pulse."""
    lim = ctx.limits
    # on wires the safety inputs are read before the decision: a read sent at safety_t may not see a fault
    # that came after it; the controller fires only on a read sent at most FIRE_SAFETY_AGE_S before
    sent = ctx.starts[n].get("safety_t") if ctx.detection_s > 0.0 else None
    read_s = t_decided - float(sent) if isinstance(sent, int | float) else 0.0
    for f in faults:
        start, end = f.get("start"), f.get("end")
        if start is None:
            continue
        s0, s1 = float(start), math.inf if end is None else float(end)
        kind, device, value = f.get("kind"), f.get("device"), f.get("value")
        tip_out = kind == "tip_lift" and not (
            lim.get("tip_min_mm", 0.2) <= (5.0 if value is None else value) <= lim.get("tip_max_mm", 1.5)
        )
        unsafe = (device == "safety" and kind in BLOCKING_SAFETY) or tip_out
        dark = device == "link" and f.get("target") == "safety" and kind in DARK_LINK
        if unsafe or dark:  # a fault after the read was sent, on a read recent enough, was not seen in time
            grace = read_s if read_s <= FIRE_SAFETY_AGE_S + EPS_S else 0.0
        elif kind == "reservoir_empty":  # a pulse may go on a spray unit status within its bound
            grace = ctx.max_age_s.get("spray", RESERVOIR_GRACE_S) + ctx.detection_s
        else:
            grace = 0.0
        if (unsafe or dark or kind == "reservoir_empty") and s0 + grace + EPS_S < t_decided < s1 - EPS_S:
            v["pulse_during_blocking_fault"].append(
                f"pulse {n} decided at {t_decided:.4f} during {device}/{kind} [{s0:.4f}, {s1:.4f})"
                + (f" on safety inputs read from {float(sent):.4f}" if sent is not None else "")
            )
        # a pulse decided on a read older than the fault goes off within the reaction time of both
        if unsafe and t_decided - grace < s0 < t_off and t_off - max(s0, t_decided) > REACTION_S + EPS_S:
            v["emission_not_cut"].append(f"pulse {n} on {1000 * (t_off - s0):.1f} ms after {device}/{kind} at {s0:.4f}")


def _close(a: Any, b: float, step: float) -> bool:
    """Setpoints as the generator holds them (a wire rounds to its register's unit: 1 uJ, 10 us)."""
    return isinstance(a, int | float) and abs(float(a) - b) <= max(1.01 * step, 1e-6 * abs(b))
