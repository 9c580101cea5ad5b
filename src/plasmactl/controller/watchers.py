"""The helper tasks: they poll the devices and post what they see to the owner; they never act.

- the pulse watch: the pulse's end, or the pulse still on (or never emitted) at its bound;
- the spray watch: the valve open with water flowing inside the cooling window, then closed again;
- the monitor: the thermometer and the device heartbeats at their poll periods, the continuous rules;
- the safety listener: every change of the E-stop, footswitch and tip inputs, at once.

Each watch judges with the rule sets of :mod:`plasmactl.controller.interlocks` on a fresh snapshot and
posts the first trip; what to do about it is the owner's business.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.controller import interlocks as il
from plasmactl.controller import machine
from plasmactl.controller.machine import ACTIVE
from plasmactl.controller.messages import PulseOver, Recheck, SafetyChanged, SprayConfirmed, SprayDone, TripCmd
from plasmactl.controller.trips import PulseFacts, Trip
from plasmactl.ports import DeviceError, SafetyState, SprayStatus

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

PULSE_POLL_S = 0.0005  # poll period once a pulse is due to end (its end decides when the spray goes)
VALVE_POLL_S = 0.002  # poll period for valve feedback inside the cooling window
CLOSE_POLL_S = 0.01  # poll period for the valve closing after a spray
FLOW_POLL_S = 0.02  # poll period for the flow while a confirmed spray runs


async def watch_pulse(c: Controller, facts: PulseFacts, earliest_start_s: float) -> None:
    """Poll from the pulse's earliest possible end (emission starting the moment its command arrived) until
    it shows over, or its bound passes. Reads go ``PULSE_POLL_S`` apart from send to send; a wait shorter
    than the clock can time (a real loop's timers are 1 ms coarse) is not slept: the next read goes at once,
    so on a wire the end is seen one round trip after it, not a timer tick later. For the same reason the
    first read goes one timer tick early (a timer may fire that late)."""
    bus_priority.for_this_task(BusPriority.PULSE)
    clock, calls = c.clock, c.calls
    await clock.sleep_until(facts.t_cmd + earliest_start_s + c.pulse_s - clock.timer_resolution_s)
    while True:
        sent = clock.now()
        st = await calls.plasma_status()  # no reply during a pulse: the guard turns it into a trip
        if not st.output_on and st.pulse_count >= facts.expected_count:
            c.post(PulseOver(facts.number, st))
            return
        trip = il.first_trip(machine.PULSE_WATCH, c.snapshot())
        if trip is not None:
            c.post(TripCmd(trip))
            return
        now = clock.now()
        rest = sent + PULSE_POLL_S - now
        if now < facts.bound:
            rest = min(rest, facts.bound - now)
        await clock.sleep(rest if rest > clock.timer_resolution_s else 0.0)


async def valve_wet(c: Controller, t_cmd: float, deadline: float) -> SprayStatus | None:
    """Poll the spray unit commanded at ``t_cmd`` until its valve shows open with water flowing, at the latest
    by ``deadline`` (None: it did not); what is seen teaches the valve's timing. A poll that fails is retried
    while the window lasts."""
    clock = c.clock
    first_poll = t_cmd + c.valve.first_look_s()
    if first_poll > clock.now():
        await clock.sleep_until(min(first_poll, deadline))
    first = True
    while True:
        sent = clock.now()
        with c.calls.within(deadline):  # a poll in flight at the window's end gives up there: the miss is known
            st = await spray_status_or_none(c)
        if st is not None and il.water_on_skin(st, c.limits) and st.t <= deadline:
            c.valve.seen_open(t_cmd, st.t, first, clock.now() - sent)
            return st
        first = first and st is None  # a failed poll saw nothing: the next one is still the first look
        now = clock.now()
        if now >= deadline:
            return None
        await clock.sleep(min(VALVE_POLL_S, deadline - now))


async def valve_shut(c: Controller, give_up: float) -> SprayStatus | None:
    """Poll until the valve shows closed (None: still open, or no answer, at ``give_up``)."""
    clock = c.clock
    while True:
        st = await spray_status_or_none(c)
        if st is not None and not st.valve_open:
            return st
        if clock.now() > give_up:
            return None
        await clock.sleep(CLOSE_POLL_S)


async def flow_lost(c: Controller, t_cmd: float) -> Trip | None:
    """Read the flow of a confirmed spray until the earliest its valve may close (``t_cmd`` + its length):
    the first status without water on the skin is the trip (None: it kept flowing)."""
    clock = c.clock
    stop = t_cmd + c.spray_s - il.FLOW_END_MARGIN_S
    while True:
        at = clock.now() + FLOW_POLL_S
        if at > stop:
            return None
        await clock.sleep_until(at)
        if await spray_status_or_none(c) is not None:
            trip = il.first_trip(machine.FLOW_WATCH, c.snapshot())
            if trip is not None:
                return trip


async def spray_status_or_none(c: Controller) -> SprayStatus | None:
    """A spray unit poll whose failure is recorded and answered with None (the caller's deadline decides)."""
    try:
        return await c.calls.spray_status()
    except DeviceError as exc:
        c.calls.comm_error("spray", exc)
        return None


async def watch_spray(c: Controller, spray: int, t_cmd: float, deadline: float) -> None:
    """The spray's confirmation inside the window, then its end."""
    bus_priority.for_this_task(BusPriority.COOLING)
    st = await valve_wet(c, t_cmd, deadline)
    if st is None:
        trip = il.cooling_deadline(c.snapshot())
        if trip is not None:  # None only when the owner has meanwhile resolved the cooling itself
            c.post(TripCmd(trip))
        return
    c.post(SprayConfirmed(spray, st))
    lost = await flow_lost(c, t_cmd)
    if lost is not None:
        c.post(TripCmd(lost))
        return
    end = st.t + c.spray_s
    await c.clock.sleep_until(end)
    closed = await valve_shut(c, end + il.VALVE_CLOSE_GRACE_S)
    if closed is None:  # still open, or no answer: either way not seen closed (fail closed)
        c.post(TripCmd(il.first_trip(machine.COOLING_WATCH, c.snapshot()) or il.valve_not_seen_closed(spray)))
        return
    c.post(SprayDone(spray, closed.t))


async def monitor(c: Controller) -> None:
    """Thermometer and heartbeats at their periods; the continuous rules; a recheck while paused.

    The rules are judged once a period on a fixed schedule, and again after every call that failed: a silent
    device's call takes its whole budget (45 ms on the TCP rigs), and judging only after the polls stretched
    the period by them (a silent E-stop input judged 320 ms after its last answer on a 195 ms bound)."""
    bus_priority.for_this_task(BusPriority.ROUTINE)
    clock, calls, know = c.clock, c.calls, c.know
    period = c.poll_s["thermometer"]  # the loop's period: a reading each turn
    due = clock.now()
    while True:
        now = clock.now()
        try:
            reading, new = await calls.reading()
        except DeviceError as exc:
            calls.comm_error("thermometer", exc)
            _judge(c, recheck=False)
        else:
            if new:
                c.reading_taken(reading)
        for device in ("plasma", "spray"):
            # a heartbeat poll only when the pulse cycle has not heard from it for a poll period, and not while
            # a cooling chain holds routine requests back (the poll would wait out its budget; the chain's own
            # exchanges are news from the device, and the hold is short: the rig's watchdog check counts it)
            if (
                now - know.last_heard.get(device, -math.inf) >= c.poll_s[device] - 1e-9
                and not bus_priority.routine_held()
                and not await calls.poll(device)
            ):
                _judge(c, recheck=False)
        _judge(c, recheck=True)
        # the period is not stretched by the calls' own time; a turn that overran it (silent devices on a slow
        # link) waits for the next slot: the loop never polls back to back
        due += period
        while due <= clock.now():
            due += period
        await clock.sleep_until(due)


def _judge(c: Controller, recheck: bool) -> None:
    """The continuous rules on a fresh snapshot: the first trip posted; while paused, a cause that only
    pauses is no news (look past it for one that latches), and ``recheck`` asks the owner to try a resume."""
    state = c.state
    if state in ("disconnected", "self_test") or c.ended:
        return
    rules = machine.CONTINUOUS_ACTIVE if state in ACTIVE else machine.CONTINUOUS
    skip = ("pause",) if state == "paused" else ()
    trip = il.first_trip(rules, c.snapshot(), skip_latch=skip)
    if trip is not None:
        c.post(TripCmd(trip))
    elif recheck and state == "paused":
        c.post(Recheck())


async def listen_safety(c: Controller) -> None:
    """Every change of the safety inputs, posted at once (E-stop first in the owner's queue)."""
    bus_priority.for_this_task(BusPriority.SAFETY)
    calls = c.calls
    previous: SafetyState | None = None
    while True:
        try:
            st = await calls.safety_change(c.safety_heartbeat_s)
        except DeviceError as exc:
            calls.comm_error("safety", exc)
            await c.clock.sleep(c.poll_s["safety"])
            continue
        if previous is None or (st.estop, st.footswitch, st.tip_distance_mm) != (
            previous.estop,
            previous.footswitch,
            previous.tip_distance_mm,
        ):
            if previous is not None:
                c.log.emit("safety_input", estop=st.estop, footswitch=st.footswitch, tip_mm=st.tip_distance_mm)
            c.post(SafetyChanged(st))
        previous = st
