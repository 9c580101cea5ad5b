"""The one safe-state sequence, shared by every trip and by abort.

1. plasma output off (the first action after any trip, logged with its outcome);
2. the pulse in flight settled: its end and delivered energy recorded (once), its energy judged;
3. the latch (fault, E-stop, or pause);
4. cooling for the pulses still inside their window, if the spray works (a running spray is let finish);
   a pulse whose cooling is missed is recorded as such and is always a latched fault, also during a pause;
5. the generator disarmed (after the cooling: on a slow shared link the spray's confirmation goes first);
   a generator that did not answer is asked again once the spray is no longer waiting on the owner.

A pause with the plan delivered (nothing left to fire, its last cooling done) then ends the session as the
plan's end does (:meth:`PulseCycle.on_finish`), not at the pause's limit.

A generator that has just gone silent gets one short off attempt first (its own heartbeat watchdog is
the second layer that switches a lost link's output off): the cooling window must not be spent on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.controller import interlocks as il
from plasmactl.controller import machine, watchers
from plasmactl.controller.cycle import DEADLINE_AFTER_S
from plasmactl.controller.machine import LATCHED
from plasmactl.controller.messages import Deadline, Finish
from plasmactl.controller.trips import Rule, Trip
from plasmactl.ports import DeviceError

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

SILENT_OFF_S = 0.01  # one short off attempt to a generator that has just failed to answer
CONFIRM_OFF_S = 2.0  # how long a generator that did not acknowledge off is asked again (every 100 ms)
CONFIRM_OFF_PERIOD_S = 0.1
SETTLE_MIN_S = 0.05  # how long a cut pulse's end is awaited at least
LATCH_TRIGGER = {"fault": "trip", "estop": "estop_pressed", "pause": "pause"}


async def enter(c: Controller, trip: Trip) -> None:
    t_trip = c.clock.now()
    silent = _generator_silent(c, trip)
    with c.log.sync_after():  # the trip is written first, but its fsync waits until the off command has gone
        c.record_trip(trip)
        c.tripped.add(trip.rule)  # the same cause seen again while latched is no news
        off_ok = await emission_off(c, trip.rule, silent=silent, only="off")
    c.cycle.cancel_timers()
    c.cancel("pulse")
    follow = await settle_pulse(c, off_ok)
    c.go(LATCH_TRIGGER[trip.latch])
    if trip.latch == "estop":
        c.log.emit("estop", reason=trip.reason)
    elif trip.latch == "fault":
        c.log.emit("fault", rule=trip.rule, reason=trip.reason)
    disarm = _Disarm(c, trip.rule, silent, off_ok)
    missed = await cool_pending(c, trip.reason if trip.rule == Rule.COOLING_NOT_CONFIRMED else None, disarm)
    await off_for_sure(c, trip.rule, await disarm())
    follow = follow or missed
    if trip.latch != "estop" and (trip.latch == "fault" or follow is not None):
        await _look_for_estop(c)
    if trip.latch == "pause":
        if follow is None:
            c.know.paused_since = t_trip  # the pause runs from its trip (its timeout is a timer, not a poll)
            c.schedule(t_trip + c.limits.max_pause_s + DEADLINE_AFTER_S, Deadline())
            if c.cycle.delivered():  # the plan's end with the footswitch up: finish, as a normal end does
                c.post(Finish())
            return
        # a cut pulse out of tolerance, or cooling missed: the pause becomes a latched fault
        if follow is not missed:  # a missed cooling's trip is recorded as soon as it is known
            c.record_trip(follow, latched=True, latch="fault")
        c.go("trip")
        c.log.emit("fault", rule=follow.rule, reason=follow.reason)
        _end_fault(c, follow.rule)
        return
    if follow is not None and follow.rule != trip.rule and follow is not missed:
        c.record_trip(follow, latched=True, latch="fault")
    if trip.latch == "estop":
        c.end("estop", trip.rule)
    else:
        _end_fault(c, trip.rule)


def _end_fault(c: Controller, rule: Rule) -> None:
    """End latched in ``fault``, unless the E-stop was pressed while the safe state ran (its message waits
    behind this one): then it latches ``estop``."""
    if c.know.estop_seen is None:
        c.end("fault", rule)
        return
    _latch_estop(c)


def _latch_estop(c: Controller) -> None:
    assert c.know.estop_seen is not None
    estop = il.estop_pressed(c.know.estop_seen)
    c.record_trip(estop, latched=True)
    c.go("estop_pressed")
    c.log.emit("estop", reason=estop.reason)
    c.end("estop", estop.rule)


async def _look_for_estop(c: Controller) -> None:
    """Before a session ends as a fault, the E-stop once more: a press that came with the fault (the generator
    refusing to arm or fire because of it) ends it as ``estop``, even when the owner never yielded to the
    safety listener in between."""
    if c.know.estop_seen is not None:
        return
    try:
        await c.calls.safety()
    except DeviceError as exc:  # the safety link is down: the fault stands (recorded, nothing to act on)
        c.log.emit("comm_error", device="safety", error=str(exc))


async def abort(c: Controller, reason: str, signal: str | None) -> None:
    """The operator's stop: the same sequence, ending in ``idle`` and the outcome ``aborted``."""
    if c.result is not None:
        return
    c.log.emit("abort", reason=reason, state=c.state, signal=signal)
    off_ok = await emission_off(c, "abort", only="off")
    c.cycle.cancel_timers()
    c.cancel("pulse")
    cut = await settle_pulse(c, off_ok)
    if cut is not None:  # the pulse the abort cut was out of tolerance: recorded; the session still ends aborted
        c.record_trip(cut, latched=True, latch="fault")
        c.tripped.add(cut.rule)
    if c.state not in (*LATCHED, "disconnected", "complete"):
        c.go("abort")
    disarm = _Disarm(c, "abort", False, off_ok)
    await cool_pending(c, None, disarm)  # a missed cooling is recorded; the session still ends aborted
    await off_for_sure(c, "abort", await disarm())
    await _look_for_estop(c)
    if c.know.estop_seen is not None and c.state != "estop":
        # the E-stop pressed while the abort ran (or waited behind the owner's work): it latches all the same
        _latch_estop(c)
        return
    c.end("aborted", "operator interrupt", signal)


def _generator_silent(c: Controller, trip: Trip) -> bool:
    lost = (
        trip.device == "plasma"
        and not trip.answered
        and trip.rule
        in (
            Rule.DEVICE_NO_REPLY,
            Rule.DEVICE_WATCHDOG,
            Rule.PLASMA_STATUS_STALE,
        )
    )
    return lost or c.calls.silent("plasma")


async def emission_off(
    c: Controller,
    why: str,
    *,
    retry: bool = False,
    silent: bool = False,
    only: Literal["off", "disarm"] | None = None,
) -> bool:
    """Output off, then disarm; True when both were acknowledged. On the first attempt a failed off skips
    the disarm (the caller cools first and comes back); a retry tries both and logs both. A trip sends the
    off alone first (``only="off"``) and the disarm once its cooling is seen to (``only="disarm"``): on a slow
    shared link the spray's confirmation must not wait behind it, and a controller that tripped fires nothing."""
    timeout = min(SILENT_OFF_S, c.calls.budget_s["plasma"]) if silent else None
    plasma = c.d.plasma
    ok = True
    off, disarm = ("plasma_off", plasma.output_off), ("plasma_disarm", plasma.disarm)
    steps = {None: (off, disarm), "off": (off,), "disarm": (disarm,)}[only]
    if only != "disarm":
        c.know.off_sent_t = c.clock.now()
    for action, fn in steps:
        if not ok and not retry:
            break
        try:
            with bus_priority.at(BusPriority.EMISSION_OFF):
                await c.calls.command("plasma", fn, timeout)
        except DeviceError as exc:
            c.log.emit(action, ok=False, cause=why, retry=retry, error=str(exc))
            ok = False
            continue
        c.log.emit(action, ok=True, cause=why, retry=retry)
        if action == "plasma_off":
            c.know.output_off_since = max(c.know.output_off_since, c.clock.now())
    return ok


async def confirm_off(c: Controller, why: str) -> bool:
    """Off and disarm again, then (quietly, for ``CONFIRM_OFF_S``) until the generator acknowledges both; a
    generator that never does is recorded as such (its own heartbeat watchdog is then the last layer)."""
    if await emission_off(c, why, retry=True):
        return True
    give_up = c.clock.now() + CONFIRM_OFF_S
    while c.clock.now() < give_up:
        await c.clock.sleep(CONFIRM_OFF_PERIOD_S)
        try:
            with bus_priority.at(BusPriority.EMISSION_OFF):
                await c.calls.command("plasma", c.d.plasma.output_off)
                c.know.output_off_since = max(c.know.output_off_since, c.clock.now())
                await c.calls.command("plasma", c.d.plasma.disarm)
        except DeviceError as exc:
            if await _seen_off(c, why, exc):
                return True
            continue
        c.log.emit("plasma_off", ok=True, cause=why, retry=True)
        c.log.emit("plasma_disarm", ok=True, cause=why, retry=True)
        return True
    c.log.emit("emission_unconfirmed", cause=why, after_s=CONFIRM_OFF_S, reason="the generator did not acknowledge off")
    return False


async def _seen_off(c: Controller, why: str, refused: DeviceError) -> bool:
    """Off or disarm refused: the generator's own watchdog may have turned it off (and let its lease go, so it
    refuses our writes). Its status showing output off and disarmed is the safe state seen (``seen_off``)."""
    try:
        with bus_priority.at(BusPriority.EMISSION_OFF):
            st = await c.calls.plasma_status()
    except DeviceError:
        return False
    if st.output_on or st.armed:
        return False
    c.know.output_off_since = max(c.know.output_off_since, st.t)
    for action in ("plasma_off", "plasma_disarm"):
        c.log.emit(action, ok=True, cause=why, retry=True, seen_off=True, error=str(refused))
    return True


async def off_for_sure(c: Controller, why: str, acknowledged: bool) -> bool:
    """The safe state is a generator *seen* off: after the acknowledged off and disarm (else after asking
    again, ``confirm_off``) its status is read back; output still reported on is asked off again and read
    once more, and what is still not seen off is recorded as ``emission_unconfirmed`` (an acknowledged write
    alone claimed the safe state while the generator reported its output on)."""
    if not acknowledged and not await confirm_off(c, why):
        return False  # recorded by confirm_off
    for attempt in (1, 2):
        try:
            with bus_priority.at(BusPriority.EMISSION_OFF):
                st = await c.calls.plasma_status()
        except DeviceError as exc:
            c.log.emit("emission_unconfirmed", cause=why, reason=f"no status from the generator after off ({exc})")
            return False
        if not st.output_on:
            return True
        if attempt == 1:
            await confirm_off(c, why)
    c.log.emit("emission_unconfirmed", cause=why, reason="the generator reports its output on after off and disarm")
    return False


async def settle_pulse(c: Controller, off_ok: bool) -> Trip | None:
    """A pulse in flight was cut: wait (bounded) for the generator to show it over, record its end once,
    and judge its energy (the returned trip, if any)."""
    know = c.know
    p = know.pulse
    if p is None or p.t_off is not None:
        return None
    clock = c.clock
    cut_at = know.off_sent_t if know.off_sent_t is not None and know.off_sent_t >= p.t_cmd else clock.now()
    energy: float | None = None
    t_off = clock.now()
    give_up = clock.now() + max(c.calls.budget_s["plasma"], SETTLE_MIN_S)
    while off_ok:
        try:
            with bus_priority.at(BusPriority.PULSE):
                st = await c.calls.plasma_status()
        except DeviceError:
            break
        if not st.output_on:
            energy = st.last_energy_j if st.pulse_count >= p.expected_count else 0.0
            t_off = st.t
            break
        if clock.now() > give_up:
            break
        await clock.sleep(watchers.PULSE_POLL_S)
    set_j, tol = c.plan.pulse.energy_j, c.limits.tolerance
    whole = energy is not None and t_off - p.t_cmd >= c.pulse_s and abs(energy - set_j) <= set_j * tol
    # a pulse that had run its full length and dose before the cut is a complete pulse
    t_end = c.cycle.earliest_end(p.t_cmd, energy, None if whole else cut_at)
    c.cycle.end_pulse(t_end, t_off, energy, not whole)
    return il.first_trip(machine.PULSE_END, c.snapshot())


class _Disarm:
    """The trip's disarm, sent once, as soon as the cooling no longer needs the link first (its confirmation
    seen, or known missed, or nothing to cool); ``await disarm()`` returns whether the generator is off and
    disarmed as acknowledged (False: the off or the disarm failed)."""

    def __init__(self, c: Controller, why: str, silent: bool, off_ok: bool) -> None:
        self.c, self.why, self.silent = c, why, silent
        self.ok = off_ok
        self._sent = not off_ok  # a failed off: confirm_off sends both again

    async def __call__(self) -> bool:
        if not self._sent:
            self._sent = True
            self.ok = await emission_off(self.c, self.why, silent=self.silent, only="disarm")
        return self.ok


async def cool_pending(c: Controller, missed_reason: str | None, disarm: _Disarm) -> Trip | None:
    """Deliver the spray for the pulses still inside their window; the trip if it could not (cooling missed,
    or the water lost during the spray), already recorded as a latched fault (a missed cooling's when the
    miss is known). ``disarm`` goes once the spray's confirmation is settled (seen or missed), before the spray
    runs out."""
    with bus_priority.at(BusPriority.COOLING):
        found = await _cool_pending(c, missed_reason, disarm)
    if found is not None and found.rule != Rule.COOLING_NOT_CONFIRMED:
        _record_once(c, found)  # the flow lost while the spray ran
    return found


def _record_once(c: Controller, trip: Trip) -> None:
    if trip.rule not in c.tripped:  # (the trip being handled may be this rule's own)
        c.record_trip(trip, latched=True, latch="fault")
        c.tripped.add(trip.rule)


async def _cool_pending(c: Controller, missed_reason: str | None, disarm: _Disarm) -> Trip | None:
    know, cycle = c.know, c.cycle
    pend = know.pending
    if pend is None:
        await disarm()
        return None
    c.cancel("spray")
    if pend.confirmed:
        await disarm()
        return await _finish_spray(c)
    deadline = pend.window_end(c.limits)
    if missed_reason is None and c.clock.now() <= deadline:
        try:
            if pend.spray is not None:
                spray, t_cmd = pend.spray, c.clock.now()
            elif cycle.trigger.pulse in pend.pulses:  # the spray unit starts it on the pulse's end, by itself
                spray, t_cmd = cycle.spray_by_trigger(c.plan.cooling.delay_ms / 1000.0)
            else:
                spray, t_cmd = await cycle.send_spray()
            st = await watchers.valve_wet(c, t_cmd, deadline)
        except DeviceError as exc:
            missed_reason = str(exc)
        else:
            if st is not None:
                cycle.confirm_spray(spray, st)
                await disarm()
                return await _finish_spray(c)
            missed_reason = "valve not seen open with water flowing within the window"
    reason = missed_reason or "cooling window already over"
    c.log.emit("cooling_missed", pulses=list(pend.pulses), reason=reason)
    missed = il.cooling_missed(pend.pulses, reason)
    # its trip is recorded now, inside the window if the miss is known then, not after the calls below
    _record_once(c, missed)
    know.pending = None
    await disarm()
    await _late_spray(c, pend.spray)
    return missed


async def _late_spray(c: Controller, spray: int | None) -> None:
    """A spray that came too late for the window still cools the skin: one that flows now runs its length
    and is seen closed (else stopped); any other is stopped."""
    st = None if spray is None else await watchers.spray_status_or_none(c)
    if st is None or not il.water_on_skin(st, c.limits):
        await _stop_spray(c)
        return
    await _spray_to_end(c, spray, st.t + c.spray_s, late=True)


async def _finish_spray(c: Controller) -> Trip | None:
    """Let a confirmed spray run to its end, water flowing, and see the valve close (else stop it); the
    flow lost on the way is the returned trip."""
    pend = c.know.pending
    assert pend is not None and pend.t_spray_end is not None
    lost = None if pend.t_spray_cmd is None else await watchers.flow_lost(c, pend.t_spray_cmd)
    if lost is not None:
        c.know.pending = None
        await _stop_spray(c)
        c.log.emit("spray_end", spray=pend.spray, t_closed=None, stopped=True)
        return lost
    await _spray_to_end(c, pend.spray, pend.t_spray_end)
    return None


async def _spray_to_end(c: Controller, spray: int | None, end: float, *, late: bool = False) -> None:
    """Let a spray run to ``end`` and see its valve close within the grace (else stop it); then its record."""
    await c.clock.sleep_until(max(c.clock.now(), end))
    closed = await watchers.valve_shut(c, end + il.VALVE_CLOSE_GRACE_S)
    c.know.pending = None
    if closed is None:
        await _stop_spray(c)
    t_closed = None if closed is None else closed.t
    c.log.emit("spray_end", spray=spray, t_closed=t_closed, stopped=closed is None, **({"late": True} if late else {}))


async def _stop_spray(c: Controller) -> None:
    try:
        await c.calls.command("spray", c.d.spray.stop)
    except DeviceError as exc:
        c.log.emit("comm_error", device="spray", error=str(exc))
