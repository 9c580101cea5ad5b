"""The controller: one task owns the state machine and commands emission; it takes messages in priority order.

The owner runs the sequencer (when the next pulse goes, when its spray goes, when the plan is done) and
handles every message the helpers post (:mod:`~plasmactl.controller.watchers`). Each guarded transition
is taken only on a snapshot refreshed for it, and the machine re-checks the guard itself. Anything that
goes wrong becomes a trip, and every trip (and every abort) goes through the one safe-state sequence of
:mod:`~plasmactl.controller.safe_state`: plasma off and disarmed first, then cooling for what is inside its
window, then the latch.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from plasmactl import gc_policy
from plasmactl.clock import Clock
from plasmactl.controller import edits, machine, safe_state, self_test, watchers
from plasmactl.controller import interlocks as il
from plasmactl.controller.cycle import PulseCycle
from plasmactl.controller.knowledge import DeviceCalls, Knowledge
from plasmactl.controller.ledger import DoseLedger
from plasmactl.controller.machine import ACTIVE, GUARDS, LATCHED, ControllerModel, TransitionRefused, build_machine
from plasmactl.controller.messages import (
    Abort,
    Changes,
    Crash,
    Deadline,
    Edit,
    EditResult,
    Finish,
    Inbox,
    Message,
    PulseOver,
    Recheck,
    SafetyChanged,
    SprayConfirmed,
    SprayDone,
    SprayDue,
    Start,
    Tick,
    TripCmd,
)
from plasmactl.controller.trips import Rule, Snapshot, Trip
from plasmactl.controller.valve_timing import ValveTiming
from plasmactl.events import AuditLog
from plasmactl.plan import Plan
from plasmactl.ports import DeviceError, Devices, Outcome, SafetyState, SessionResult, SkinReading
from plasmactl.rig import DEVICES, Rig

READING_LOG_S = 0.5  # 'reading' events are sampled at this period (plus any reading near the limit)


class Controller:
    def __init__(self, plan: Plan, devices: Devices, rig: Rig, clock: Clock, log: AuditLog) -> None:
        self.plan = plan
        self.rig = rig
        self.limits = plan.limits
        self.d = devices
        self.clock = clock
        self.log = log
        self.pulse_s = plan.pulse.pulse_ms / 1000.0
        self.spray_s = plan.cooling.spray_ms / 1000.0
        timing = {d: rig.timing(d) for d in DEVICES}
        self.poll_s = {d: t.poll_ms / 1000.0 for d, t in timing.items()}
        self.safety_heartbeat_s = rig.refresh_period_ms("safety") / 1000.0
        self.latencies = rig.pulse_latencies_s()
        max_age = {d: rig.max_age_s(d, self.limits.reading_max_age_ms) for d in DEVICES}
        watchdog = {d: t.watchdog_ms / 1000.0 for d, t in timing.items()}
        self.know = Knowledge(self.limits, plan.pulse.energy_j, self.pulse_s, self.spray_s, max_age, watchdog)
        self.calls = DeviceCalls(
            devices, {d: t.call_budget_ms / 1000.0 for d, t in timing.items()}, clock, self.know, log
        )
        self.ledger = DoseLedger(
            plan.spots.count, plan.pulse.pulses_per_spot, plan.pulse.energy_j, self.limits.tolerance
        )
        self.cycle = PulseCycle(self)
        self.model = ControllerModel()
        self.machine = build_machine(self.model)
        self.result: SessionResult | None = None
        self._inbox = Inbox()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.tripped: set[Rule] = set()  # rules already recorded while latched
        self._last_reading_log = -1e9
        self.valve = ValveTiming(rig.valve_latency_s())

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        return self.model.state

    @property
    def ended(self) -> bool:
        return self.result is not None

    def post(self, msg: Message) -> None:
        self._inbox.post(msg)

    def request_abort(self, reason: str = "operator interrupt (SIGINT)", signal: str | None = None) -> None:
        self.post(Abort(reason, signal))

    def request_edit(self, changes: Changes, reply: Callable[[EditResult], None] | None = None) -> None:
        """Ask for a plan edit (section -> field -> value); ``reply`` is told whether it was applied."""
        if self.result is not None and reply is not None:
            reply(_ended(changes))
            return
        self.post(Edit(changes, reply))

    async def edit(self, changes: Changes) -> EditResult:
        """:meth:`request_edit`, awaited (from a task other than the controller's own)."""
        done: asyncio.Future[EditResult] = asyncio.get_running_loop().create_future()
        self.request_edit(changes, lambda r: None if done.done() else done.set_result(r))
        return await done

    async def run(self) -> SessionResult:
        """Self-test, arm, deliver the plan; returns when the plan is done or in a safe latched state."""
        self.post(Start())
        self.spawn("safety", watchers.listen_safety(self))
        self.spawn("monitor", watchers.monitor(self))
        try:
            with gc_policy.quiet_collector(realtime=not self.clock.virtual):
                while self.result is None:
                    msg = await self._inbox.get()
                    await self._dispatch(msg)
        finally:
            await self._stop_helpers()
            for left in self._inbox.drain():  # an edit asked for as the session ended is told so
                if isinstance(left, Edit) and left.reply is not None:
                    left.reply(_ended(left.changes))
        return self.result

    async def reset(self) -> bool:
        """Operator reset of a latched fault/E-stop: permitted only when every cause is gone."""
        answered = await self.calls.refresh(DEVICES)
        snap = self.snapshot()
        blocked = [str(t.rule) for t in il.all_trips(GUARDS["RESET"], snap)]
        if not answered:  # fail closed: not on an older state of the inputs, however recent
            blocked.insert(0, str(il.safety_unanswered().rule))
            self.log.emit("reset", ok=False, blocked_by=blocked)
            return False
        try:
            src, dest = self.model.go("reset", snap)
        except TransitionRefused:
            self.log.emit("reset", ok=False, blocked_by=blocked)
            return False
        self.log.emit("reset", ok=True, blocked_by=[])
        self.log.emit("state", src=src, dest=dest, trigger="reset")
        self.tripped.clear()
        self.know.estop_seen = None  # released, as the guard just saw: a later fault is not an E-stop
        return True

    # ------------------------------------------------------------------ shared with the other modules

    def snapshot(self) -> Snapshot:
        return self.know.snapshot(self.clock.now())

    def go(self, trigger: str, snapshot: Snapshot | None = None) -> None:
        """Take a transition of the table (guarded ones on ``snapshot``) and record it."""
        src, dest = self.model.go(trigger, snapshot)
        self.log.emit("state", src=src, dest=dest, trigger=trigger)

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self.cancel(name)
        task = asyncio.get_running_loop().create_task(self._guarded(name, coro), name=name)
        task.add_done_callback(lambda _: coro.close())  # a task cancelled before it ran never awaited coro
        self._tasks[name] = task

    def cancel(self, *names: str) -> None:
        for name in names:
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()

    def end(self, outcome: Outcome, cause: str | None, signal: str | None = None) -> None:
        if self.result is None:
            started = self.know.pulses_started
            confirmed = self.cycle.sprays_confirmed
            self.result = SessionResult(outcome, cause, pulses=started, sprays=confirmed, signal=signal)

    def reading_taken(self, reading: SkinReading) -> None:
        near_limit = reading.value_c >= self.limits.skin_temp_max_c - 1.0
        if near_limit or reading.t - self._last_reading_log >= READING_LOG_S:
            self._last_reading_log = reading.t
            self.log.emit("reading", skin_c=reading.value_c, sample_t=reading.t)

    # ------------------------------------------------------------------ plumbing

    async def _guarded(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except DeviceError as exc:
            self.post(TripCmd(il.command_failed(exc.device, exc)))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any bug in a helper ends in the safe state, logged
            self.post(Crash(name, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))

    async def _stop_helpers(self) -> None:
        self.cycle.cancel_timers()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def schedule(self, at: float, msg: Message) -> asyncio.TimerHandle:
        """Post ``msg`` at clock time ``at`` (a timer, not a task: one per pulse adds up over a session)."""
        return self.clock.call_at(at, functools.partial(self.post, msg))

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, msg: Message) -> None:
        try:
            if isinstance(msg, TripCmd):
                await self.on_trip(msg.trip)
            elif isinstance(msg, Abort):
                await safe_state.abort(self, msg.reason, msg.signal)
            elif isinstance(msg, Crash):
                await self._crash(msg.where, msg.error)
            elif isinstance(msg, SafetyChanged):
                await self._on_safety(msg.state)
            elif isinstance(msg, Deadline):
                trip = il.first_trip(machine.DEADLINES, self.snapshot())
                if trip is not None and self.state not in LATCHED:
                    await self.on_trip(trip)
            elif isinstance(msg, Recheck):
                await self._try_resume()
            elif isinstance(msg, Start):
                await self._start()
            elif isinstance(msg, Edit):
                await edits.apply(self, msg)
            elif isinstance(msg, Tick):
                await self.cycle.on_tick(msg.seq)
            elif isinstance(msg, Finish):
                await self.cycle.on_finish()
            elif isinstance(msg, PulseOver):
                await self.cycle.on_pulse_over(msg.pulse, msg.status)
            elif isinstance(msg, SprayDue):
                await self.cycle.on_spray_due(msg.pulse)
            elif isinstance(msg, SprayConfirmed):
                self.cycle.on_spray_confirmed(msg.spray, msg.status)
            elif isinstance(msg, SprayDone):
                self.cycle.on_spray_done(msg.spray, msg.t_closed)
        except DeviceError as exc:
            await self.on_trip(il.command_failed(exc.device, exc))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a handler bug ends in the safe state, logged
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            await self._crash(f"handling {type(msg).__name__}", detail)

    async def on_trip(self, trip: Trip) -> None:
        """Act on a trip according to its latch and the state the controller is in."""
        if self.result is not None:
            return
        state = self.state
        if state in LATCHED:
            if trip.latch == "estop" and state == "fault":
                self._record_latched(trip, force=True)
                self.go("estop_pressed")
                self.log.emit("estop", reason=trip.reason)
                self.end("estop", trip.rule)
            else:
                self._record_latched(trip)
            return
        if trip.latch == "pause":
            if state == "paused":
                self._record_latched(trip)
                return
            if state == "disconnected":
                return  # nothing to pause before the session has started
            if state == "self_test":
                trip = il.session_refused(trip.reason, trip.device)  # an input unknown at self-test fails it
        await safe_state.enter(self, trip)

    def record_trip(self, trip: Trip, *, latched: bool = False, latch: str | None = None) -> None:
        """The ``interlock_trip`` record; ``latched`` when emission was already latched off (nothing to do)."""
        fields: dict[str, object] = {"latched": True} if latched else {}
        self.log.emit(
            "interlock_trip",
            rule=trip.rule,
            reason=trip.reason,
            device=trip.device,
            state=self.state,
            latch=latch or trip.latch,
            **fields,
        )

    def _record_latched(self, trip: Trip, *, force: bool = False) -> None:
        """A trip while emission is already latched off: recorded (once per rule), nothing to do."""
        if force or trip.rule not in self.tripped:
            self.tripped.add(trip.rule)
            self.record_trip(trip, latched=True)

    async def _crash(self, where: str, detail: str) -> None:
        self.log.emit("controller_error", where=where, error=detail)
        trip = il.controller_error(where, detail.splitlines()[0] if detail else where)
        try:
            if self.result is None:
                if self.state in (*LATCHED, "complete"):
                    self.end("fault", Rule.CONTROLLER_ERROR)
                else:
                    await safe_state.enter(self, trip)
        except Exception as again:  # noqa: BLE001 - the safe-state path itself failed: force off, record
            self.log.emit("controller_error", where="safe state", error=repr(again))
            await safe_state.emission_off(self, Rule.CONTROLLER_ERROR)
            self.end("fault", Rule.CONTROLLER_ERROR)
        assert self.result is not None
        self.result.internal_error = True

    # ------------------------------------------------------------------ session phases

    async def _start(self) -> None:
        if self.result is not None:
            return
        self.go("connect")
        trip = await self_test.run(self)
        if trip is not None:
            await self.on_trip(trip)
            return
        self.go("self_test_passed")
        await self.arm("arm")

    async def arm(self, trigger: str) -> None:
        """``arm`` (from idle) or ``resume`` (from paused): guard on a fresh snapshot, arm the generator,
        schedule the next pulse. A failing guard pauses (its cause may go) or trips."""
        if not await self.calls.refresh(DEVICES):
            trip = il.safety_unanswered()
            if self.state != "paused":
                await self.on_trip(trip)
            return
        snap = self.snapshot()
        try:
            self.go(trigger, snap)
        except TransitionRefused as refused:
            trip = refused.trip if refused.trip is not None else il.controller_error(trigger, str(refused))
            if not (trip.latch == "pause" and self.state == "paused"):
                await self.on_trip(trip)
            return
        if trigger == "resume":
            self.know.paused_since = None
            self.tripped.clear()
            self.log.emit("resume", pulse_next=self.know.pulses_started + 1)
        await self.calls.command("plasma", self.d.plasma.arm)
        self.log.emit("plasma_arm", ok=True)
        self.cycle.schedule_next()

    async def _on_safety(self, seen: SafetyState) -> None:
        """Judge the change that was seen and the inputs as they are now: a momentary E-stop press latches
        even if it is released by the time this message is taken (the owner may have been busy)."""
        state = self.state
        trip: Trip | None = None
        for safety in (seen, self.know.safety):
            snap = self.snapshot()._replace(safety=safety)
            trip = il.estop(snap)
            if trip is not None and trip.rule == Rule.SAFETY_INPUTS_STALE:
                trip = None  # the monitor judges silence; a change just arrived
            if trip is None and state in ACTIVE:
                trip = il.footswitch(snap) or il.tip_window(snap)
            if trip is None and state in ("idle", "paused"):
                trip = il.tip_window(snap)
                trip = trip if trip is not None and trip.latch != "pause" else None
            if trip is not None:
                break
        if trip is not None:
            await self.on_trip(trip)
        elif state == "paused":
            await self._try_resume()

    async def _try_resume(self) -> None:
        """While paused: resume once the pause's cause is gone. A stale input gets a fresh poll first; a
        fault-type guard failure (say, the reservoir ran dry meanwhile) ends the pause as a fault."""
        if self.state != "paused" or self.result is not None:
            return
        first = il.first_trip(GUARDS["RESUME"], self.snapshot())
        if first is not None and first.latch == "pause" and first.rule not in STALE_RULES:
            return
        await self.arm("resume")


STALE_RULES = frozenset({Rule.SAFETY_INPUTS_STALE, Rule.SPRAY_STATUS_STALE, Rule.PLASMA_STATUS_STALE})


def _ended(changes: Changes) -> EditResult:
    return EditResult(False, "the session has ended", edits.plain(changes))
