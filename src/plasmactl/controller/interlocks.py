"""Every trip rule of the controller: pure functions over a timestamped snapshot, named by one enum.

A rule holds no state and does no I/O: it reads the :class:`~plasmactl.controller.trips.Snapshot` (each
input with the time it was taken, and the sequencing facts the timed rules need) and passes (``None``) or
returns a :class:`~plasmactl.controller.trips.Trip` naming its ``Rule``, the device and the reason. The
controller evaluates rule *sets* (guards and watch sets, :mod:`plasmactl.controller.machine`) and acts on
the first trip; what a trip latches belongs to its rule. Fail-closed: an unknown or stale input blocks emission.
"""

from __future__ import annotations

import math

from plasmactl.controller.trips import Interlock, Rule, Snapshot, Trip, all_trips, emits, first_trip, rules_of
from plasmactl.limits import Caps, Limits
from plasmactl.ports import DeviceError, SafetyState, SprayStatus

__all__ = ["Interlock", "all_trips", "emits", "first_trip", "rules_of"]  # the rule machinery, from trips

ENERGY_EPS = 1e-6  # relative: a pulse at the generator's energy limit was ended by it
VALVE_CLOSE_GRACE_S = 0.5  # a spray's valve must show closed this long after its planned end
FLOW_END_MARGIN_S = 0.001  # a status this close to a spray's earliest end may already see it closing


def _ms(seconds: float) -> str:
    return "never" if math.isinf(seconds) else f"{seconds * 1000:.0f} ms"


def _stale(s: Snapshot, rule: Rule, device: str, what: str, t: float | None) -> Trip | None:
    """The fail-closed check every guarded input shares: unknown, or older than its device's bound."""
    if t is not None and not s.now - t > s.max_age_s.get(device, math.inf):  # not s.stale(device, t), inlined
        return None
    bound = s.max_age_s.get(device, math.inf)
    return Trip(rule, f"{what} last known {_ms(s.age(t))} ago (bound {_ms(bound)})", device)


# ----------------------------------------------------------------------------- safety inputs


@emits(Rule.ESTOP, Rule.SAFETY_INPUTS_STALE)
def estop(s: Snapshot) -> Trip | None:
    """A pressed E-stop wins even on an old state; an unknown or stale state blocks emission."""
    if s.safety is not None and s.safety.estop:
        return Trip(Rule.ESTOP, "E-stop input is active", "safety")
    t = None if s.safety is None else s.safety.t
    return _stale(s, Rule.SAFETY_INPUTS_STALE, "safety", "E-stop, footswitch and tip state", t)


@emits(Rule.FOOTSWITCH_RELEASED)
def footswitch(s: Snapshot) -> Trip | None:
    if s.safety is not None and not s.safety.footswitch:
        return Trip(Rule.FOOTSWITCH_RELEASED, "footswitch released: emission paused", "safety")
    return None


@emits(Rule.TIP_OUT_OF_WINDOW, Rule.TIP_IMPLAUSIBLE)
def tip_window(s: Snapshot) -> Trip | None:
    """Out of the arc window pauses (moving between spots is normal work); an impossible reading is a fault."""
    if s.safety is None:
        return None
    d, lim = s.safety.tip_distance_mm, s.limits
    if not (0.0 <= d <= Caps.TIP_SENSOR_MAX_MM):
        reason = f"tip distance {d:g} mm outside the sensor's range [0, {Caps.TIP_SENSOR_MAX_MM:g}] mm"
        return Trip(Rule.TIP_IMPLAUSIBLE, reason, "safety")
    if not (lim.tip_min_mm <= d <= lim.tip_max_mm):
        reason = f"tip distance {d:.2f} mm outside the arc window [{lim.tip_min_mm:g}, {lim.tip_max_mm:g}] mm"
        return Trip(Rule.TIP_OUT_OF_WINDOW, reason, "safety")
    return None


# ----------------------------------------------------------------------------- skin thermometer


@emits(Rule.THERMOMETER_STALE)
def thermometer_stale(s: Snapshot) -> Trip | None:
    if s.reading is None:
        return Trip(Rule.THERMOMETER_STALE, "no skin temperature reading yet", "thermometer")
    return _stale(s, Rule.THERMOMETER_STALE, "thermometer", "skin temperature", s.reading.t)


@emits(Rule.THERMOMETER_IMPLAUSIBLE)
def thermometer_plausible(s: Snapshot) -> Trip | None:
    if s.reading is None:
        return None
    v, lim = s.reading.value_c, s.limits
    if lim.plausible_min_c <= v <= lim.plausible_max_c:
        return None
    reason = f"skin reading {v:.4g} C outside the plausible range [{lim.plausible_min_c:g}, {lim.plausible_max_c:g}] C"
    return Trip(Rule.THERMOMETER_IMPLAUSIBLE, reason, "thermometer")


@emits(Rule.THERMOMETER_STUCK)
def thermometer_stuck(s: Snapshot) -> Trip | None:
    if s.reading_moved_t is None or s.pulses_since_moved == 0:
        return None
    still_s = s.now - s.reading_moved_t
    if still_s <= s.limits.stuck_window_s:
        return None
    reason = (
        f"skin reading unchanged (within {s.limits.stuck_epsilon_c:g} C) for {still_s:.1f} s"
        f" while {s.pulses_since_moved} pulses were delivered"
    )
    return Trip(Rule.THERMOMETER_STUCK, reason, "thermometer")


@emits(Rule.SKIN_TEMP_LIMIT)
def skin_temp_before_pulse(s: Snapshot) -> Trip | None:
    if s.reading is None or s.reading.value_c < s.limits.skin_temp_max_c:
        return None
    reason = f"skin {s.reading.value_c:.2f} C is at or over the limit {s.limits.skin_temp_max_c:g} C"
    return Trip(Rule.SKIN_TEMP_LIMIT, reason, "thermometer")


@emits(Rule.SKIN_TEMP_HARD_LIMIT)
def skin_temp_hard(s: Snapshot) -> Trip | None:
    if s.reading is None or s.reading.value_c <= s.limits.hard_trip_c:
        return None
    reason = f"skin {s.reading.value_c:.2f} C exceeds the hard limit {s.limits.hard_trip_c:g} C"
    return Trip(Rule.SKIN_TEMP_HARD_LIMIT, reason, "thermometer")


# ----------------------------------------------------------------------------- spray unit


def spray_need_ml(s: Snapshot) -> float:
    """Water one spray takes: its length at the largest flow seen so far (at least the minimum flow)."""
    return s.spray_s * max(s.flow_seen_ml_s, s.limits.min_spray_flow_ml_s)


def water_on_skin(st: SprayStatus, limits: Limits) -> bool:
    """A spray counts as cooling only with the valve feedback open *and* water flowing: a measured flow at
    or above the minimum, with water left in the reservoir."""
    return st.valve_open and st.flow_ml_s >= limits.min_spray_flow_ml_s and st.reservoir_ml > 0.0


@emits(Rule.SPRAY_STATUS_STALE, Rule.RESERVOIR_LOW)
def reservoir(s: Snapshot) -> Trip | None:
    """The next pulse's spray needs water, judged on a status no older than the spray unit's bound."""
    stale = _stale(s, Rule.SPRAY_STATUS_STALE, "spray", "spray unit status", None if s.spray is None else s.spray.t)
    if stale is not None or s.spray is None:
        return stale
    needed = spray_need_ml(s)
    if s.spray.reservoir_ml >= needed:
        return None
    reason = f"reservoir {s.spray.reservoir_ml:.2f} ml is below the {needed:.3f} ml the next spray needs"
    return Trip(Rule.RESERVOIR_LOW, reason, "spray")


@emits(Rule.COOLING_NOT_CONFIRMED)
def cooling_deadline(s: Snapshot) -> Trip | None:
    """Pulses still waiting past their window: no spray was confirmed with water in time."""
    p = s.pending
    if p is None or p.confirmed or s.now <= p.window_end(s.limits):
        return None  # (a spray seen with water at the window's last instant is in time)
    what = "no spray commanded" if p.spray is None else f"spray {p.spray} not confirmed open with water flowing"
    reason = f"{what} within {s.limits.max_cooling_delay_ms:g} ms of the end of pulse {p.pulses[0]}"
    return Trip(Rule.COOLING_NOT_CONFIRMED, reason, "spray")


@emits(Rule.COOLING_WINDOW_UNREACHABLE)
def window_reachable(s: Snapshot) -> Trip | None:
    """A pulse may not go while earlier pulses wait for a spray that could then no longer reach the skin
    inside their window (the spray follows this pulse)."""
    p = s.pending
    if p is None or p.confirmed:
        return None
    late_s = s.now + s.cooling_lead_s - p.window_end(s.limits)
    if late_s <= 0.0:
        return None
    reason = (
        f"another pulse now would bring the spray for pulse {p.pulses[0]} {late_s * 1000:.1f} ms after its"
        f" {s.limits.max_cooling_delay_ms:g} ms window"
    )
    return Trip(Rule.COOLING_WINDOW_UNREACHABLE, reason, "spray")


@emits(Rule.SPRAY_FLOW_LOST)
def spray_flowing(s: Snapshot) -> Trip | None:
    """A confirmed spray keeps water on the skin until the earliest its valve may close (its command plus its
    length): the valve shut, or the water stopped, before then cut the cooling short."""
    p, st = s.pending, s.spray
    if p is None or p.t_wet is None or p.t_spray_cmd is None or st is None or water_on_skin(st, s.limits):
        return None
    if not (p.t_wet < st.t <= p.t_spray_cmd + s.spray_s - FLOW_END_MARGIN_S):
        return None
    what = "valve shut" if not st.valve_open else f"flow {st.flow_ml_s:.3g} ml/s, reservoir {st.reservoir_ml:.3g} ml"
    into = f"{(st.t - p.t_wet) * 1000:.0f} ms into its {s.spray_s * 1000:g} ms"
    return Trip(Rule.SPRAY_FLOW_LOST, f"spray {p.spray}: {what} {into}: the skin's cooling was cut short", "spray")


@emits(Rule.VALVE_NOT_CLOSED)
def valve_closed(s: Snapshot) -> Trip | None:
    p, st = s.pending, s.spray
    if p is None or p.t_spray_end is None or st is None or not st.valve_open:
        return None
    if st.t <= p.t_spray_end + VALVE_CLOSE_GRACE_S:
        return None
    return Trip(Rule.VALVE_NOT_CLOSED, f"spray {p.spray} valve still open 500 ms after its end", "spray")


# ----------------------------------------------------------------------------- plasma generator


@emits(Rule.PLASMA_STATUS_STALE)
def plasma_status_fresh(s: Snapshot) -> Trip | None:
    t = None if s.plasma is None else s.plasma.t
    return _stale(s, Rule.PLASMA_STATUS_STALE, "plasma", "generator status", t)


@emits(Rule.UNEXPECTED_OUTPUT)
def unexpected_output(s: Snapshot) -> Trip | None:
    """Output on while no pulse is in flight, judged only on a status taken after emission was last
    confirmed off (an older status may still show a pulse that has since ended)."""
    st = s.plasma
    if st is None or not st.output_on or st.t <= s.output_off_since:
        return None
    if s.pulse is not None and s.pulse.t_off is None:
        return None
    return Trip(Rule.UNEXPECTED_OUTPUT, "plasma output on while no pulse is commanded", "plasma")


@emits(Rule.PULSE_OVERRUN, Rule.PULSE_NOT_DELIVERED)
def pulse_bound(s: Snapshot) -> Trip | None:
    """At its bound a pulse must be over: still on is an overrun; off with no pulse counted, none came."""
    p, st = s.pulse, s.plasma
    # judged on a status read sent at or after the bound: one sent before it can show a pulse on that ended
    # in time (its reply late behind a busy link or host), and a pulse not yet counted that came in time
    if p is None or p.t_off is not None or st is None or st.sampled_after < p.bound:
        return None
    if st.output_on:
        on_ms, bound_ms = (st.sampled_after - p.t_cmd) * 1000, (p.bound - p.t_cmd) * 1000
        return Trip(
            Rule.PULSE_OVERRUN,
            f"pulse {p.number} still on {on_ms:.2f} ms after fire (bound {bound_ms:.2f} ms)",
            "plasma",
        )
    if st.pulse_count < p.expected_count:
        reason = f"pulse {p.number} not delivered (generator count {st.pulse_count}, expected {p.expected_count})"
        return Trip(Rule.PULSE_NOT_DELIVERED, reason, "plasma")
    return None


@emits(Rule.ENERGY_OUT_OF_TOLERANCE)
def pulse_energy(s: Snapshot) -> Trip | None:
    """Every ended pulse, cut or not: within tolerance of the set energy (a cut pulse: no more than its
    share for the time it can have been on), and never ended by the generator's energy limit."""
    p = s.pulse
    if p is None or p.t_off is None:
        return None
    set_j, tol, got = s.energy_j, s.limits.tolerance, p.energy_j
    if got is None:  # a cut pulse the generator never reported is counted as unknown by the ledger
        return (
            None
            if p.interrupted
            else Trip(Rule.ENERGY_OUT_OF_TOLERANCE, f"pulse {p.number}: no energy reported", "plasma")
        )
    where = f"pulse {p.number} delivered {got:.6f} J, set {set_j:.6f} J (tolerance {s.limits.energy_tolerance_pct:g} %)"
    if got >= s.limits.energy_limit_j(set_j) * (1.0 - ENERGY_EPS):
        return Trip(Rule.ENERGY_OUT_OF_TOLERANCE, f"{where}: ended by the generator's energy limit", "plasma")
    if p.interrupted:
        on_s = max(0.0, p.t_off - p.t_cmd)
        if got <= set_j * min(1.0, on_s / s.pulse_s) * (1.0 + tol) + set_j * ENERGY_EPS:
            return None
        return Trip(
            Rule.ENERGY_OUT_OF_TOLERANCE, f"{where}: more than {on_s * 1000:.2f} ms of emission gives", "plasma"
        )
    return None if abs(got - set_j) <= set_j * tol else Trip(Rule.ENERGY_OUT_OF_TOLERANCE, where, "plasma")


@emits(Rule.DOSE_LIMIT)
def spot_dose(s: Snapshot) -> Trip | None:
    """The next pulse may not take its spot over the plan: no more pulses than planned, and the most it can
    deliver (the generator's energy limit) must fit under the spot's planned energy x (1 + tolerance)."""
    sp = s.spot
    if sp is None:
        return None
    if sp.pulses_started >= sp.pulses_planned:
        return Trip(Rule.DOSE_LIMIT, f"spot {sp.spot} already had its {sp.pulses_planned} pulse(s)", "plasma")
    cap_j = sp.planned_j * (1.0 + s.limits.tolerance)
    worst_j = sp.delivered_j + (sp.unknown_pulses + 1) * s.limits.energy_limit_j(s.energy_j)
    if worst_j <= cap_j * (1.0 + ENERGY_EPS):
        return None
    reason = (
        f"spot {sp.spot}: {sp.delivered_j:.6f} J delivered, {sp.unknown_pulses} pulse(s) unreported; one more could"
        f" bring {worst_j:.6f} J, over its plan {sp.planned_j:.6f} J + {s.limits.energy_tolerance_pct:g} %"
    )
    return Trip(Rule.DOSE_LIMIT, reason, "plasma")


# ----------------------------------------------------------------------------- devices and session


@emits(Rule.DEVICE_FAULT)
def device_fault_codes(s: Snapshot) -> Trip | None:
    plasma, spray = s.plasma, s.spray  # (no pairs built per call: the monitor asks ten times a second)
    if plasma is not None and plasma.fault_code:
        return Trip(Rule.DEVICE_FAULT, f"plasma reports fault code {plasma.fault_code}", "plasma")
    if spray is not None and spray.fault_code:
        return Trip(Rule.DEVICE_FAULT, f"spray reports fault code {spray.fault_code}", "spray")
    return None


@emits(Rule.DEVICE_WATCHDOG)
def watchdog(s: Snapshot) -> Trip | None:
    now, last_heard = s.now, s.last_heard
    for device, limit in s.watchdog_s.items():
        heard = last_heard.get(device)
        if heard is not None and now - heard > limit:
            reason = f"{device} silent for {(now - heard) * 1000:.0f} ms (watchdog {limit * 1000:g} ms)"
            return Trip(Rule.DEVICE_WATCHDOG, reason, device)
    return None


@emits(Rule.SESSION_TIME_EXCEEDED)
def session_time(s: Snapshot) -> Trip | None:
    elapsed = s.now - s.session_start
    if elapsed <= s.limits.max_session_s:
        return None
    reason = f"session running {elapsed:.0f} s, over limits.max_session_s = {s.limits.max_session_s:g}"
    return Trip(Rule.SESSION_TIME_EXCEEDED, reason)


@emits(Rule.PAUSE_TIMEOUT)
def pause_timeout(s: Snapshot) -> Trip | None:
    if s.paused_since is None or s.now - s.paused_since <= s.limits.max_pause_s:
        return None
    return Trip(Rule.PAUSE_TIMEOUT, f"paused for over {s.limits.max_pause_s:g} s")


# ----------------------------------------------------------------------------- self-test


@emits(Rule.SELF_TEST_FAILED)
def setpoints_read_back(s: Snapshot) -> Trip | None:
    """The generator holds the plan's energy, pulse length and energy limit, and is not emitting."""
    st = s.plasma
    if st is None:
        return Trip(Rule.SELF_TEST_FAILED, "no generator status", "plasma")
    wanted = (
        ("energy", st.energy_setpoint_j, s.energy_j, "J", 1e-6),  # registers hold microjoules
        ("pulse length", st.pulse_ms_setpoint, s.pulse_s * 1000.0, "ms", 0.01),  # and 10 us units
        ("energy limit", st.energy_limit_j, s.limits.energy_limit_j(s.energy_j), "J", 1e-6),
    )
    problems = [
        f"plasma {what} read back {got:g} {unit}, set {want:g} {unit}"
        for what, got, want, unit, step in wanted
        if abs(got - want) > max(step, 1e-6 * abs(want))
    ]
    if st.output_on:
        problems.append("plasma output is on before any pulse")
    return Trip(Rule.SELF_TEST_FAILED, "; ".join(problems), "plasma") if problems else None


@emits(Rule.SELF_TEST_FAILED)
def valve_closed_at_start(s: Snapshot) -> Trip | None:
    if s.spray is not None and s.spray.valve_open:
        return Trip(Rule.SELF_TEST_FAILED, "spray valve reports open before any spray", "spray")
    return None


# ----------------------------------------------------------------------------- events without a snapshot


def command_failed(device: str, error: BaseException) -> Trip:
    """A command (not a poll) failed or went unanswered: emission cannot be trusted to follow the plan."""
    reason = str(error) if str(error).startswith(device) else f"{device}: {error}"
    answered = isinstance(error, DeviceError) and error.code is not None  # a device code: its own answer
    return Trip(Rule.DEVICE_NO_REPLY, reason, device, answered)


def safety_unanswered(age_s: float | None = None) -> Trip:
    """No answer to the read just before emission, or one older than ``Caps.FIRE_SAFETY_AGE_S``: unknown now."""
    bound = _ms(Caps.FIRE_SAFETY_AGE_S)
    how = "did not answer before emission" if age_s is None else f"read {_ms(age_s)} before the pulse (bound {bound})"
    return Trip(Rule.SAFETY_INPUTS_STALE, f"E-stop, footswitch and tip inputs {how}", "safety")


def valve_not_seen_closed(spray: int) -> Trip:  # no status answered within the grace, or it showed open
    return Trip(Rule.VALVE_NOT_CLOSED, f"spray {spray} valve not seen closed 500 ms after its end", "spray")


def cooling_missed(pulses: tuple[int, ...], reason: str) -> Trip:  # the safe state's spray did not work
    return Trip(Rule.COOLING_NOT_CONFIRMED, f"pulses {list(pulses)} not cooled: {reason}", "spray")


def estop_pressed(seen: SafetyState) -> Trip:  # seen pressed while the controller was busy: it latches
    return Trip(Rule.ESTOP, f"E-stop input was active at {seen.t:.4f} s", "safety")


def setpoints_not_held(problem: str) -> Trip:  # after a plan edit, not what it acknowledged: nothing may fire
    return Trip(Rule.DEVICE_FAULT, f"after the plan edit: {problem}", "plasma")


def controller_error(where: str, detail: str) -> Trip:
    return Trip(Rule.CONTROLLER_ERROR, f"{where}: {detail}")


def session_refused(reason: str, device: str | None = None) -> Trip:
    """The rig could not be opened (an unreachable device, a wrong identity) or failed its self-test."""
    return Trip(Rule.SELF_TEST_FAILED, reason, device)
