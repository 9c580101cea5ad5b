"""The sequencer of the owner task: when the next pulse goes, where, and when its spray goes.

Each step is taken by the owner on a message (a tick, the pulse seen over, the spray confirmed or done).
The pulse cycle's bookkeeping lives in the controller's :class:`~plasmactl.controller.knowledge.Knowledge`
(the pulse in flight, the pulses waiting for cooling) so the rules judge exactly what the sequencer acts
on, and in the :class:`~plasmactl.controller.ledger.DoseLedger` (what each spot received).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.controller import interlocks as il
from plasmactl.controller import machine, watchers
from plasmactl.controller.machine import TransitionRefused
from plasmactl.controller.messages import Deadline, Finish, SprayDue, Tick
from plasmactl.controller.spray_steps import SpraySteps
from plasmactl.controller.trigger_arm import TriggerArm
from plasmactl.controller.trips import CoolingFacts, PulseFacts, Rule
from plasmactl.limits import Caps
from plasmactl.ports import PlasmaStatus, SprayStatus
from plasmactl.rig import DEVICES

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

DEADLINE_AFTER_S = 1e-7  # the deadline's timer goes just after the window's last instant (which is in time)
FIRE_SAFETY_READS = 3  # reads of the safety inputs before a pulse until one is recent enough to fire on


class PulseCycle(SpraySteps):
    """The pulse cycle of one session (the spray's own steps are in :class:`SpraySteps`)."""

    def __init__(self, c: Controller) -> None:
        self.c = c
        plan = c.plan
        self.positions = plan.spots.positions()
        self.pulses_per_spot = plan.pulse.pulses_per_spot
        self.spot_idx = 0  # the spot the next pulse goes to (0-based)
        self.pulse_in_spot = 0  # pulses started on that spot
        self.last_pulse_start: float | None = None
        self.spot_start: float | None = None  # first pulse start of the current spot
        self.count_base = 0  # the generator's pulse count before the session's first pulse
        self.sprays = 0  # sprays commanded (numbering)
        self.sprays_confirmed = 0
        self.trigger = TriggerArm(c)  # the pulse-end trigger line (hardware-timed spray), when wired
        self.last_end = 0.0  # the earliest the latest pulse can have ended (its end_pulse's t_end)
        self._tick_seq = 0
        self._tick: asyncio.TimerHandle | None = None
        self._spray_due: asyncio.TimerHandle | None = None
        # From the fire command's acknowledgement (the generator had it by then), how long a normal pulse may
        # still run: its own fire latency, its length, and seeing it over. A fire that waited on a busy link
        # or host moves the bound with it (never earlier than the bound set before the command, at most by the
        # call's budget; the generator's energy limit still holds the dose of a stuck-on output).
        self._bound_after_ack_s = 0.0
        self.replan()

    def replan(self) -> None:
        """What follows from the plan's pulse length (at the start, and after a plan edit)."""
        c = self.c
        lat = c.latencies
        own_fire_s = max(0.0, lat.usual_fire_s - lat.off_s)
        self._bound_after_ack_s = c.limits.pulse_bound_s(c.plan.pulse.pulse_ms, own_fire_s, lat.off_s, lat.detect_s)

    def pulse_bound_ms(self) -> float:
        """The overrun bound from the fire command, as ``session_start`` records it."""
        lat = self.c.latencies
        return self.c.limits.pulse_bound_s(self.c.plan.pulse.pulse_ms, lat.fire_s, lat.off_s, lat.detect_s) * 1000.0

    # ------------------------------------------------------------------ timing

    def schedule_next(self) -> None:
        c = self.c
        if self.spot_idx >= len(self.positions):
            c.post(Finish())
            return
        now = c.clock.now()
        at = now if self.last_pulse_start is None else self.last_pulse_start + c.plan.pulse.interval_s
        if self.pulse_in_spot == 0 and self.spot_start is not None:  # the next pulse opens a new spot
            at = max(at, self.spot_start + c.plan.pulse.spot_interval)
        self.cancel_timers()
        self._tick = c.schedule(max(now, at), Tick(self._tick_seq))

    def cancel_timers(self) -> None:
        """Stop the sequencer's timers (a tick already queued is now stale and dropped)."""
        self._tick_seq += 1
        for handle in (self._tick, self._spray_due):
            if handle is not None:
                handle.cancel()
        self._tick = self._spray_due = None

    # ------------------------------------------------------------------ pulse

    def _tick_again(self, after_s: float) -> None:
        """The pulse not fired now: its tick again ``after_s`` later (the same sequence, nothing else pending)."""
        self.cancel_timers()
        self._tick = self.c.schedule(self.c.clock.now() + after_s, Tick(self._tick_seq))

    async def on_tick(self, seq: int) -> None:
        c = self.c
        if seq != self._tick_seq or c.state != "armed" or c.result is not None:
            return
        bus_priority.hold_routine(bus_priority.ROUTINE_HOLD_MAX_S)  # a cooling chain opens (or goes on) here
        # a spot's water was checked before its first pulse; its spray follows its last one (the plan keeps
        # a spot's pulses inside one cooling window): later pulses of the spot spare the link that read
        by_age = ("plasma", "thermometer", "spray") if self.pulse_in_spot > 0 else ("plasma", "thermometer")
        # the spray unit armed first, so that the safety inputs are read last, nearest the decision
        if c.rig.trigger_line and self.cools_now(c.know.pulses_started + 1):
            armed = await self.trigger.before_fire(c.know.pulses_started + 1, self.window_end(), seq)
            if armed is not True:
                if armed is not False:
                    await c.on_trip(armed)
                elif c.state == "armed" and c.result is None:  # a spray poll period later (the staleness
                    self._tick_again(c.poll_s["spray"])  # guards judge a unit that stays silent)
                return
        with c.calls.within(self.window_end()), bus_priority.at(BusPriority.PULSE):
            safety_answered = await c.calls.refresh(DEVICES, by_age)
            for _ in range(FIRE_SAFETY_READS - 1):  # a read that came back late (a busy bus or host): read again
                if not safety_answered or self.safety_age() <= Caps.FIRE_SAFETY_AGE_S:
                    break
                safety_answered = await c.calls.poll("safety")
        if not safety_answered or self.safety_age() > Caps.FIRE_SAFETY_AGE_S:
            await c.on_trip(il.safety_unanswered(None if not safety_answered else self.safety_age()))
            return
        silent = [d for d in DEVICES if c.calls.silent(d)]
        if silent:  # its latest poll got no answer: what it said before is no ground to fire on (a glitch
            # holds the pulse a poll period; a device that stays silent trips its staleness guard, then as now)
            trip = il.first_trip(machine.GUARDS["FIRE"], c.snapshot())
            if trip is not None:
                await c.on_trip(trip)
                return
            c.log.emit("fire_held", devices=silent)
            self._tick_again(min(c.poll_s[d] for d in silent))
            return
        spot = self.spot_idx + 1
        c.know.spot = c.ledger.facts(spot)
        c.know.cooling_lead_s = self.cooling_lead_s()
        try:
            c.go("fire", c.snapshot())
        except TransitionRefused as refused:
            await c.on_trip(refused.trip if refused.trip is not None else il.controller_error("fire", str(refused)))
            return
        know = c.know
        number = know.pulses_started + 1
        now = c.clock.now()
        if self.pulse_in_spot == 0:
            self.spot_start = now
        self.last_pulse_start = now
        lat = c.latencies
        bound = now + c.limits.pulse_bound_s(c.plan.pulse.pulse_ms, lat.fire_s, lat.off_s, lat.detect_s)
        facts = PulseFacts(number, spot, now, bound, self.count_base + number)
        know.pulse, know.pulses_started = facts, number
        c.ledger.pulse_started(number, spot)
        x, y = self.positions[self.spot_idx]
        self.pulse_in_spot += 1
        if self.pulse_in_spot >= self.pulses_per_spot:  # a cut pulse is never fired again: the spot moves on
            self.spot_idx, self.pulse_in_spot = self.spot_idx + 1, 0
        r, st_s, pl, co = know.reading, know.safety, know.plasma, know.spray
        c.log.emit(
            "pulse_start",
            pulse=number,
            spot=spot,
            x_mm=x,
            y_mm=y,
            energy_set_j=c.plan.pulse.energy_j,
            pulse_ms=c.plan.pulse.pulse_ms,
            skin_c=None if r is None else r.value_c,
            skin_t=None if r is None else r.t,
            safety_t=None if st_s is None else st_s.t,
            plasma_t=None if pl is None else pl.t,
            spray_t=None if co is None else co.t,
            reservoir_ml=None if co is None else co.reservoir_ml,
        )
        with c.calls.within(self.window_end()), bus_priority.at(BusPriority.PULSE):
            await c.calls.command("plasma", c.d.plasma.fire)
        sent = c.d.plasma.fired_at  # the command waited for its turn on the link: emission came after that
        if sent is not None and sent > facts.t_cmd and know.pulse is facts:
            facts = know.pulse = replace(facts, t_cmd=sent)
        late_bound = c.clock.now() + self._bound_after_ack_s
        if late_bound > facts.bound and know.pulse is facts:
            facts = replace(facts, bound=late_bound)
            know.pulse = facts
        # the first look goes when a pulse that started the moment its command arrived would be over
        c.spawn("pulse", watchers.watch_pulse(c, facts, c.latencies.earliest_start_s))

    def safety_age(self) -> float:
        """How old the safety inputs are now, from the moment their latest read was sent."""
        st = self.c.know.safety
        return math.inf if st is None else self.c.clock.now() - st.t

    def cooling_lead_s(self) -> float:
        """From firing now to the earliest water seen after the pulse, then the spray's way to water (as last
        seen, else as the rig says): on the software path from the pulse seen over (the usual fire latency,
        its length, one status read) or the plan's delay from the window's start, whichever is later; on the
        trigger line from the pulse's own end plus the delay (the unit does not wait to be told)."""
        c = self.c
        lat, now = c.latencies, c.clock.now()
        pend = c.know.pending
        delay_s = c.plan.cooling.delay_ms / 1000.0
        if c.rig.trigger_line:
            end_s = lat.usual_fire_s + c.pulse_s
            return max(end_s, pend.window_start - now if pend is not None else 0.0) + delay_s + c.valve.lead_s()
        seen_over_s = lat.usual_fire_s + c.pulse_s + lat.detect_s
        if pend is not None and delay_s > 0:
            seen_over_s = max(seen_over_s, pend.window_start + delay_s - now)
        return seen_over_s + c.valve.lead_s()

    def window_end(self) -> float:
        """The end of the cooling window pulses are waiting in (inf when none is): no call runs past it."""
        pend = self.c.know.pending
        if pend is None or pend.confirmed:
            return math.inf
        return pend.window_end(self.c.limits)

    def cools_now(self, number: int) -> bool:
        """Whether the spray goes after pulse ``number`` (after every pulse, or after a spot's last)."""
        return self.c.plan.cooling.when == "pulse" or number % self.pulses_per_spot == 0

    def end_pulse(self, t_end: float, t_off: float, energy_j: float | None, interrupted: bool) -> None:
        """Record the end of the pulse in flight: the ledger, the cooling it is owed, the log."""
        self.pulse_ended(t_end, t_off, energy_j, interrupted)()

    def pulse_ended(self, t_end: float, t_off: float, energy_j: float | None, interrupted: bool) -> Callable[[], None]:
        """The end of the pulse in flight, in the facts the rules and the spray command read (the pulse's end,
        the cooling it is owed, its deadline); returns the rest of its record (the ledger, the log), which the
        software cooling path writes once the spray command is on its way (it is not on the way to water)."""
        c, know = self.c, self.c.know
        p = know.pulse
        assert p is not None and p.t_off is None
        know.pulse = replace(p, t_off=t_off, energy_j=energy_j, interrupted=interrupted)
        self.last_end = t_end
        know.output_off_since = max(know.output_off_since, t_off)
        pend = know.pending
        if pend is None:
            know.pending = CoolingFacts((p.number,), t_end)
            # the window's end is a deadline on the clock, whatever the spray watch is waiting for
            c.schedule(t_end + c.limits.cooling_window_s + DEADLINE_AFTER_S, Deadline())
        elif p.number not in pend.pulses:
            know.pending = replace(pend, pulses=(*pend.pulses, p.number))

        def record() -> None:
            c.ledger.pulse_ended(p.number, energy_j, interrupted)
            c.log.emit(
                "pulse_end", pulse=p.number, energy_j=energy_j, t_end=t_end, t_off=t_off, interrupted=interrupted
            )

        return record

    def earliest_end(self, t_cmd: float, energy_j: float | None, cut_at: float | None = None) -> float:
        """The earliest the pulse can have ended (the cooling window starts there: conservative). A pulse
        that delivered less than its share, or was ended by the generator's energy limit, may have ended
        at any time after its command."""
        c = self.c
        set_j = c.plan.pulse.energy_j
        full = t_cmd + c.pulse_s if cut_at is None else min(t_cmd + c.pulse_s, cut_at)
        if energy_j is None or energy_j >= c.limits.energy_limit_j(set_j) * (1 - il.ENERGY_EPS):
            return t_cmd
        if cut_at is None and energy_j < set_j * (1 - c.limits.tolerance):
            return t_cmd
        return full

    async def on_pulse_over(self, number: int, st: PlasmaStatus) -> None:
        c = self.c
        p = c.know.pulse
        if p is None or p.number != number or p.t_off is not None or c.state != "pulsing":
            return
        record = self.pulse_ended(self.earliest_end(p.t_cmd, st.last_energy_j), st.t, st.last_energy_j, False)
        cools = self.cools_now(number)
        delay_s = c.plan.cooling.delay_ms / 1000.0
        spray: tuple[int, float] | None = None
        if cools and self.trigger.pulse != number and delay_s == 0:
            # first: every moment between pulse end and valve open counts; the pulse's record is written
            # while the command is on its way (before the spray's own record, whatever the command's fate)
            spray = await self.send_spray(record)
        else:
            record()
            if cools and self.trigger.pulse == number:
                spray = self.spray_by_trigger(delay_s)  # the unit started it on the pulse's end, by itself
        trip = il.first_trip(machine.PULSE_END, c.snapshot())
        if trip is not None:
            await c.on_trip(trip)  # the safe state confirms the spray just sent, or sends one
            return
        if not cools:
            c.go("pulse_ended_uncooled")
            if c.know.pending is None:
                bus_priority.release_routine()  # no window open: the chain ends with this pulse
            self.schedule_next()
            if c.rig.trigger_line and self.cools_now(number + 1) and self._tick is not None:
                await self.trigger.ahead(number + 1, self.window_end(), self._tick_seq)
            return
        c.go("pulse_ended")
        pend = c.know.pending
        assert pend is not None
        if spray is not None:
            self.watch_spray(*spray)
        else:
            self._spray_due = c.schedule(pend.window_start + delay_s, SprayDue(number))

    # ------------------------------------------------------------------ spray

    async def on_spray_due(self, number: int) -> None:
        c = self.c
        pend = c.know.pending
        if c.state != "awaiting_cooling" or pend is None or pend.spray is not None or number not in pend.pulses:
            return
        self.watch_spray(*(await self.send_spray()))

    def on_spray_confirmed(self, spray: int, st: SprayStatus) -> None:
        c = self.c
        pend = c.know.pending
        if pend is None or pend.spray != spray or pend.confirmed or c.state != "awaiting_cooling":
            return
        self.confirm_spray(spray, st)
        c.go("spray_confirmed")

    def on_spray_done(self, spray: int, t_closed: float) -> None:
        c = self.c
        pend = c.know.pending
        if pend is None or pend.spray != spray or c.state != "cooling":
            return
        c.log.emit("spray_end", spray=spray, t_closed=t_closed)
        c.know.pending = None
        c.go("spray_done")
        self.schedule_next()

    # ------------------------------------------------------------------ the end of the plan

    def delivered(self) -> bool:
        """Nothing left to fire and nothing owed: every spot had its pulses (a cut one is never fired again),
        the last pulse is over and its cooling done. Only then may a pause end the session as finished."""
        know = self.c.know
        settled = know.pulse is None or know.pulse.t_off is not None
        return self.spot_idx >= len(self.positions) and know.pending is None and settled

    async def on_finish(self) -> None:
        """The plan's end: from ``armed``, or from ``paused`` once it is :meth:`delivered` (the footswitch lifted
        at the end is the usual way to stop). Either way the generator is disarmed and seen off first."""
        c = self.c
        paused = c.state == "paused"
        ended = self.delivered() if paused else c.state == "armed" and self.spot_idx >= len(self.positions)
        if c.result is not None or not ended:
            return
        await c.calls.command("plasma", c.d.plasma.disarm)
        c.log.emit("plasma_disarm", ok=True, cause="plan delivered")
        # the plan ends on a generator seen off: its output reported on after the disarm is a fault
        await c.calls.plasma_status()  # no answer: a command failure, the safe state (dispatch)
        stuck = il.unexpected_output(c.snapshot())
        if stuck is not None:
            await c.on_trip(stuck)
            return
        # the E-stop as the plan ends: a press in its last moment (the owner may not have yielded since) latches
        answered = await c.calls.poll("safety")
        trip = il.estop(c.snapshot()) if answered else None
        if trip is not None and trip.rule == Rule.ESTOP:
            await c.on_trip(trip)
            return
        if paused:
            if not answered:  # fail closed: a pause ends finished only on an E-stop seen released
                return  # (still paused: it resumes or times out as any pause does)
            c.go("finish")
        else:
            c.go("disarm")
            c.go("finish")
        ledger = c.ledger.summary()
        short = ledger["spots_under_dosed"] + ledger["spots_over_dosed"] + ledger["spots_not_started"]
        if short:
            c.end("incomplete", f"{short} of {ledger['spots_planned']} spots not delivered as planned")
        else:
            c.end("complete", None)
