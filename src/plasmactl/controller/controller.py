"""The controller: one task owns the state machine and sequences pulses and sprays; helpers only post.

Helper tasks: a pulse watcher (pulse end, pulse bound), a spray watcher (valve feedback within the
cooling window, spray end), a monitor (thermometer, device heartbeats, continuous interlocks) and a
safety listener (E-stop, footswitch, tip). Any failure anywhere becomes a trip: the owner switches the
plasma off and disarms it first, cools a pulse still inside its window if the spray works, and latches.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import traceback
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from plasmactl.clock import Clock
from plasmactl.controller import interlocks as il
from plasmactl.controller.commands import (
    Abort,
    Command,
    Crash,
    Finish,
    PulseEnded,
    SafetyChanged,
    SprayConfirmed,
    SprayDone,
    SprayDue,
    Tick,
    TripCmd,
    priority,
)
from plasmactl.controller.interlocks import Trip
from plasmactl.controller.machine import ACTIVE, ControllerModel, build_machine
from plasmactl.deadline import with_timeout
from plasmactl.events import AuditLog
from plasmactl.plan import Plan
from plasmactl.ports import (
    CoolingStatus,
    CoolingUnit,
    DeviceError,
    PlasmaSource,
    PlasmaStatus,
    SafetyInputs,
    SafetyState,
    SkinReading,
    SkinThermometer,
)
from plasmactl.rig import DeviceTiming

T = TypeVar("T")
Outcome = Literal["complete", "fault", "estop", "aborted"]

PULSE_POLL_S = 0.0005  # poll period once a pulse is due to end (its end decides when the spray goes)
VALVE_POLL_S = 0.002  # poll period for valve feedback inside the cooling window
READING_LOG_S = 0.5  # 'reading' events are sampled at this period (plus any reading near the limit)
FIRST_READING_S = 1.0  # how long the self-test waits for a thermometer's first sample
SILENT_OFF_S = 0.01  # one short off attempt to a generator that has just failed to answer


class DeviceNoReply(Exception):
    def __init__(self, device: str, timeout_s: float) -> None:
        super().__init__(f"{device} did not reply within {timeout_s * 1000:g} ms")
        self.device = device


@dataclass
class Devices:
    plasma: PlasmaSource
    spray: CoolingUnit
    thermometer: SkinThermometer
    safety: SafetyInputs


@dataclass
class SessionResult:
    outcome: Outcome
    cause: str | None = None  # the rule (or reason) that ended the session early
    internal_error: bool = False
    pulses: int = 0
    sprays: int = 0  # sprays confirmed open (as summary.json counts spray_start)


@dataclass
class _Progress:
    spot: int = 0  # index into positions
    pulse_in_spot: int = 0
    pulse_no: int = 0  # 1-based number of the last pulse started
    sprays: int = 0  # sprays commanded (numbering)
    sprays_confirmed: int = 0  # sprays whose valve feedback showed open in time
    last_pulse_start: float | None = None
    spot_start: float | None = None  # first pulse start of the current spot
    uncooled: list[int] = field(default_factory=list)
    window_start: float | None = None  # end of the first uncooled pulse
    spray_commanded: int | None = None  # spray number commanded but not yet confirmed
    spraying: int | None = None  # spray number confirmed open


class Controller:
    def __init__(
        self,
        plan: Plan,
        devices: Devices,
        timing: dict[str, DeviceTiming],
        clock: Clock,
        log: AuditLog,
        *,
        safety_heartbeat_s: float = 0.2,
    ) -> None:
        self.plan = plan
        self.limits = plan.limits
        self.d = devices
        self.clock = clock
        self.log = log
        # A driver with bounded retries needs them all inside the controller's per-call timeout.
        self._timeout = {k: getattr(v, "call_budget_ms", v.timeout_ms) / 1000.0 for k, v in timing.items()}
        self._watchdog = {k: v.watchdog_ms / 1000.0 for k, v in timing.items()}
        self._poll = {k: v.poll_ms / 1000.0 for k, v in timing.items()}
        self._safety_heartbeat_s = safety_heartbeat_s
        self.model = ControllerModel()
        # State changes are logged by _trigger itself, not by a transitions callback: callbacks run
        # through asyncio.gather (a task each), which doubled the cost of a simulated session.
        self.machine = build_machine(self.model)
        self.positions = plan.spots.positions()
        self.spray_s = plan.cooling.spray_ms / 1000.0
        self.pulse_s = plan.pulse.pulse_ms / 1000.0
        self._queue: asyncio.PriorityQueue[tuple[int, int, Command]] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._p = _Progress()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last_heard: dict[str, float] = {}
        self._plasma: PlasmaStatus | None = None
        self._cooling: CoolingStatus | None = None
        self._reading: SkinReading | None = None
        self._safety: SafetyState | None = None
        self._moved_ref: tuple[float, float] | None = None  # (value, t) of the last reading that moved
        self._pulses_at_move = 0
        self._last_reading_log = -1e9
        self._tripped_rules: set[str] = set()
        self._result: SessionResult | None = None
        self._count_base = 0
        self._tick_seq = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._spray_due: asyncio.TimerHandle | None = None
        self._pause_since: float | None = None
        self._comm_errors: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        return self.model.state

    def post(self, cmd: Command) -> None:
        self._queue.put_nowait((priority(cmd), next(self._seq), cmd))

    def request_abort(self, reason: str = "operator interrupt (SIGINT)") -> None:
        self.post(Abort(reason))

    async def run(self) -> SessionResult:
        """Self-test, arm, deliver the plan; returns when complete or in a safe latched state."""
        self._start_helpers()
        try:
            await self._begin()
            while self._result is None:
                _, _, cmd = await self._queue.get()
                await self._dispatch(cmd)
        finally:
            await self._stop_helpers()
        return self._result

    async def reset(self) -> bool:
        """Operator reset of a latched fault/E-stop: permitted only when the cause is gone."""
        snap = await self._fresh_snapshot()
        causes = [t for t in (r(snap) for r in il.ARM) if t is not None]
        self.model.reset_permitted = not causes
        src = self.state
        ok = bool(await self.model.trigger("reset"))
        self.log.emit("reset", ok=ok, blocked_by=[c.rule for c in causes])
        if ok:
            self.log.emit("state", src=src, dest=self.state, trigger="reset")
            self._tripped_rules.clear()
        return ok

    # ------------------------------------------------------------------ plumbing

    async def _call(self, device: str, aw: Awaitable[T], timeout_s: float | None = None) -> T:
        limit = self._timeout[device] if timeout_s is None else timeout_s
        try:
            result = await with_timeout(aw, limit)
        except TimeoutError:
            raise DeviceNoReply(device, limit) from None
        self._last_heard[device] = self.clock.now()
        self._comm_errors.pop(device, None)
        return result

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        old = self._tasks.pop(name, None)
        if old is not None:
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._guarded(name, coro), name=name)
        task.add_done_callback(lambda _: coro.close())  # a task cancelled before it ran never awaited coro
        self._tasks[name] = task

    async def _guarded(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except (DeviceNoReply, DeviceError) as exc:
            self.post(TripCmd(Trip(il.DEVICE_NO_REPLY, f"{name}: {exc}")))
        except Exception as exc:  # noqa: BLE001 - any bug in a helper must end in the safe state, logged
            self.post(Crash(name, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))

    def _cancel(self, *names: str) -> None:
        for name in names:
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()

    def _start_helpers(self) -> None:
        self._spawn("safety", self._safety_loop())
        self._spawn("monitor", self._monitor_loop())

    async def _stop_helpers(self) -> None:
        self._cancel_timers()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _trigger(self, name: str) -> None:
        src = self.state
        if not await self.model.trigger(name):
            raise RuntimeError(f"transition {name!r} refused in state {src!r}")
        self.log.emit("state", src=src, dest=self.state, trigger=name)

    def _snapshot(self) -> il.Snapshot:
        moved_t = self._moved_ref[1] if self._moved_ref is not None else None
        return il.Snapshot(
            now=self.clock.now(),
            limits=self.limits,
            spray_s=self.spray_s,
            safety=self._safety,
            reading=self._reading,
            plasma=self._plasma,
            cooling=self._cooling,
            last_heard=self._last_heard,
            watchdog_s=self._watchdog,
            reading_moved_t=moved_t,
            pulses_since_moved=self._p.pulse_no - self._pulses_at_move,
        )

    async def _fresh_snapshot(self) -> il.Snapshot:
        self._plasma = await self._call("plasma", self.d.plasma.status())
        self._cooling = await self._call("spray", self.d.spray.status())
        await self._first_reading()
        self._safety = await self._call("safety", self.d.safety.read())
        return self._snapshot()

    def _take_reading(self, reading: SkinReading) -> None:
        previous = self._reading
        self._reading = reading
        if previous is not None and reading.t == previous.t:
            return  # the same sample again: not news (a dropped-out sensor shows up as stale)
        if self._moved_ref is None or abs(reading.value_c - self._moved_ref[0]) > self.limits.stuck_epsilon_c:
            self._moved_ref = (reading.value_c, reading.t)
            self._pulses_at_move = self._p.pulse_no
        near_limit = reading.value_c >= self.limits.skin_temp_max_c - 1.0
        if near_limit or reading.t - self._last_reading_log >= READING_LOG_S:
            self._last_reading_log = reading.t
            self.log.emit("reading", skin_c=reading.value_c, sample_t=reading.t)

    # ------------------------------------------------------------------ session phases

    async def _begin(self) -> None:
        try:
            await self._trigger("connect")
            await self._self_test()
            if self._result is not None:
                return
            await self._trigger("self_test_passed")
            await self._arm_and_go()
        except (DeviceNoReply, DeviceError) as exc:
            await self._safe_state(Trip(il.SELF_TEST_FAILED, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a startup bug ends in the safe state, logged
            await self._crash("startup", exc)

    async def _first_reading(self) -> None:
        """A thermometer that has just been powered up may have no sample yet: wait for one (bounded)."""
        give_up = self.clock.now() + FIRST_READING_S
        while True:
            try:
                self._take_reading(await self._call("thermometer", self.d.thermometer.read()))
                return
            except DeviceError:
                if self.clock.now() >= give_up:
                    raise
                await self.clock.sleep(0.05)

    async def _self_test(self) -> None:
        snap = await self._fresh_snapshot()
        problems: list[str] = []
        await self._call("plasma", self.d.plasma.configure(self.plan.pulse.energy_j, self.plan.pulse.pulse_ms))
        st = await self._call("plasma", self.d.plasma.status())
        self._plasma = st
        self._count_base = st.pulse_count
        if abs(st.energy_setpoint_j - self.plan.pulse.energy_j) > 1e-6 * max(1.0, self.plan.pulse.energy_j):
            problems.append(f"plasma energy read back {st.energy_setpoint_j:g} J, set {self.plan.pulse.energy_j:g} J")
        if abs(st.pulse_ms_setpoint - self.plan.pulse.pulse_ms) > 1e-6 * max(1.0, self.plan.pulse.pulse_ms):
            problems.append(
                f"plasma pulse length read back {st.pulse_ms_setpoint:g} ms, set {self.plan.pulse.pulse_ms:g} ms"
            )
        if st.output_on:
            problems.append("plasma output is on before any pulse")
        if snap.cooling is not None and snap.cooling.valve_open:
            problems.append("spray valve reports open before any spray")
        for rule in (il.device_fault_codes, il.thermometer_plausible):
            trip = rule(snap)
            if trip is not None:
                problems.append(trip.reason)
        sprays = self.plan.spots.count if self.plan.cooling.when == "spot" else self.plan.pulse_count
        need_ml = sprays * self.spray_s * snap.cooling.flow_ml_s if snap.cooling is not None else None
        self.log.emit(
            "self_test",
            ok=not problems,
            problems=problems,
            reservoir_ml=snap.cooling.reservoir_ml if snap.cooling else None,
            plan_needs_ml=need_ml,
            skin_c=snap.reading.value_c if snap.reading else None,
        )
        if snap.cooling is not None and need_ml is not None and snap.cooling.reservoir_ml < need_ml:
            self.log.emit(
                "warning",
                message=f"reservoir {snap.cooling.reservoir_ml:.1f} ml is less than the {need_ml:.1f} ml"
                " the plan needs: the session will stop at reservoir_low",
            )
        if problems:
            await self._safe_state(Trip(il.SELF_TEST_FAILED, "; ".join(problems)))

    async def _arm_and_go(self) -> None:
        trip = il.first_trip(il.ARM, self._snapshot())
        if trip is not None:
            await self._safe_state(trip)
            return
        await self._call("plasma", self.d.plasma.arm())
        await self._trigger("arm")
        self._schedule_tick(self.clock.now())

    def _schedule_tick(self, at: float) -> None:
        """Post a Tick at ``at`` (a timer, not a task: one per pulse adds up over a session)."""
        self._cancel_tick()
        self._tick_seq += 1
        self._tick_handle = self.clock.call_at(at, functools.partial(self.post, Tick(self._tick_seq)))

    def _cancel_timers(self) -> None:
        """Stop the sequencer's timers (the safe state cools at once; a queued command finds nothing to do)."""
        self._cancel_tick()
        if self._spray_due is not None:
            self._spray_due.cancel()
            self._spray_due = None

    def _cancel_tick(self) -> None:
        self._tick_seq += 1  # a Tick already queued is now stale
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, cmd: Command) -> None:
        try:
            if isinstance(cmd, TripCmd):
                await self._on_trip(cmd.trip)
            elif isinstance(cmd, Abort):
                await self._abort(cmd.reason)
            elif isinstance(cmd, Crash):
                await self._crash(cmd.where, RuntimeError(cmd.error))
            elif isinstance(cmd, SafetyChanged):
                await self._on_safety(cmd.state)
            elif isinstance(cmd, Finish):
                if self.state == "armed" and self._result is None:
                    await self._complete()
            elif isinstance(cmd, Tick):
                if cmd.seq == self._tick_seq:
                    await self._on_tick()
            elif isinstance(cmd, PulseEnded):
                await self._on_pulse_ended(cmd)
            elif isinstance(cmd, SprayDue):
                if self.state == "awaiting_cooling" and self._p.spray_commanded is None:
                    await self._command_spray()
            elif isinstance(cmd, SprayConfirmed):
                await self._on_spray_confirmed(cmd)
            elif isinstance(cmd, SprayDone):
                await self._on_spray_done(cmd)
        except (DeviceNoReply, DeviceError) as exc:
            await self._on_trip(Trip(il.DEVICE_NO_REPLY, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a handler bug ends in the safe state, logged
            await self._crash(f"handling {type(cmd).__name__}", exc)

    async def _on_trip(self, trip: Trip) -> None:
        if self.state in ("fault", "estop", "complete") or (self.state == "idle" and self._result):
            if trip.latch == "estop" and self.state == "fault":
                self.log.emit("interlock_trip", rule=trip.rule, reason=trip.reason, state=self.state, latch="estop")
                await self._trigger("estop_pressed")
                self.log.emit("estop", reason=trip.reason)
                self._end("estop", trip.rule)
            elif trip.rule not in self._tripped_rules:
                self._tripped_rules.add(trip.rule)
                self.log.emit("interlock_trip", rule=trip.rule, reason=trip.reason, state=self.state, latched=True)
            return
        if self.state == "paused" and trip.latch == "pause":
            return
        await self._safe_state(trip)

    async def _on_safety(self, st: SafetyState) -> None:
        snap = replace(self._snapshot(), safety=st)  # judge the change itself, not a later state
        trip = il.estop(snap)
        if trip is None and self.state in ACTIVE:
            trip = il.tip_window(snap) or il.footswitch(snap)
        if trip is not None:
            await self._on_trip(trip)
        elif st.footswitch and self.state == "paused":
            await self._resume()

    async def _on_tick(self) -> None:
        if self.state != "armed":
            return
        trip = il.first_trip(il.FIRE, self._snapshot())
        if trip is not None:
            await self._on_trip(trip)
            return
        p = self._p
        x, y = self.positions[p.spot]
        p.pulse_no += 1
        p.last_pulse_start = self.clock.now()
        if p.pulse_in_spot == 0:
            p.spot_start = p.last_pulse_start
        await self._trigger("fire")
        reading = self._reading
        self.log.emit(
            "pulse_start",
            pulse=p.pulse_no,
            spot=p.spot + 1,
            x_mm=x,
            y_mm=y,
            energy_set_j=self.plan.pulse.energy_j,
            pulse_ms=self.plan.pulse.pulse_ms,
            skin_c=reading.value_c if reading else None,
            skin_t=reading.t if reading else None,
        )
        t_cmd = self.clock.now()
        await self._call("plasma", self.d.plasma.fire())
        self._spawn("pulse", self._watch_pulse(p.pulse_no, t_cmd, self.clock.now()))

    async def _on_pulse_ended(self, cmd: PulseEnded) -> None:
        p = self._p
        if cmd.pulse != p.pulse_no or self.state != "pulsing":
            return
        last_in_spot = p.pulse_in_spot + 1 >= self.plan.pulse.pulses_per_spot
        cools_now = self.plan.cooling.when == "pulse" or last_in_spot
        early = cools_now and self.plan.cooling.delay_ms == 0 and p.spray_commanded is None
        if early:
            # The spray goes out before anything else: every moment between pulse end and valve open
            # counts, and the record, the energy check and the state change can follow it.
            await self._send_spray()
        self._record_pulse_end(cmd)
        if early:
            self._log_spray_command()
        if not cmd.interrupted and not self._energy_ok(cmd.energy_j):
            set_j = self.plan.pulse.energy_j
            got = -1.0 if cmd.energy_j is None else cmd.energy_j
            await self._on_trip(
                Trip(
                    il.ENERGY_OUT_OF_TOLERANCE,
                    f"pulse {cmd.pulse} delivered {got:.4f} J, set {set_j:.4f} J"
                    f" (tolerance {self.limits.energy_tolerance_pct:g} %)",
                )
            )
            return
        p.pulse_in_spot += 1
        if last_in_spot:
            p.spot += 1
            p.pulse_in_spot = 0
        if cools_now:
            await self._trigger("pulse_ended")
            delay_s = self.plan.cooling.delay_ms / 1000.0
            if delay_s > 0 and p.window_start is not None:
                due = SprayDue(cmd.pulse)
                self._spray_due = self.clock.call_at(p.window_start + delay_s, functools.partial(self.post, due))
            else:
                await self._command_spray()
        else:
            await self._trigger("pulse_ended_uncooled")
            self._schedule_next()

    def _record_pulse_end(self, cmd: PulseEnded) -> None:
        p = self._p
        p.uncooled.append(cmd.pulse)
        if p.window_start is None:
            p.window_start = cmd.t_end
        self.log.emit("pulse_end", pulse=cmd.pulse, energy_j=cmd.energy_j, t_end=cmd.t_end, interrupted=cmd.interrupted)

    def _energy_ok(self, energy_j: float | None) -> bool:
        if energy_j is None:
            return False
        set_j = self.plan.pulse.energy_j
        return abs(energy_j - set_j) <= set_j * self.limits.energy_tolerance_pct / 100.0

    async def _send_spray(self) -> int:
        """Command the next spray (numbered) for the pulses not cooled yet; returns its number."""
        p = self._p
        p.sprays += 1
        p.spray_commanded = p.sprays
        await self._call("spray", self.d.spray.spray(self.spray_s))
        return p.sprays

    def _log_spray_command(self) -> None:
        p = self._p
        self.log.emit(
            "spray_command", spray=p.spray_commanded, pulses=list(p.uncooled), spray_ms=self.plan.cooling.spray_ms
        )

    async def _command_spray(self) -> None:
        p = self._p
        spray = p.spray_commanded
        if spray is None:
            spray = await self._send_spray()
            self._log_spray_command()
        assert p.window_start is not None
        deadline = p.window_start + self.limits.max_cooling_delay_ms / 1000.0
        self._spawn("spray", self._watch_spray(spray, deadline))

    async def _on_spray_confirmed(self, cmd: SprayConfirmed) -> None:
        p = self._p
        if cmd.spray != p.spray_commanded or self.state != "awaiting_cooling":
            return
        self._log_spray_start(cmd)
        await self._trigger("spray_confirmed")

    def _log_spray_start(self, cmd: SprayConfirmed) -> None:
        p = self._p
        assert p.window_start is not None
        self.log.emit(
            "spray_start",
            spray=cmd.spray,
            pulses=list(p.uncooled),
            t_open=cmd.t_open,
            delay_ms=(cmd.t_open - p.window_start) * 1000.0,
        )
        p.uncooled.clear()
        p.window_start = None
        p.spray_commanded = None
        p.spraying = cmd.spray
        p.sprays_confirmed += 1

    async def _on_spray_done(self, cmd: SprayDone) -> None:
        p = self._p
        if cmd.spray != p.spraying or self.state != "cooling":
            return
        p.spraying = None
        self.log.emit("spray_end", spray=cmd.spray, t_closed=cmd.t_closed)
        await self._trigger("spray_done")
        self._schedule_next()

    def _schedule_next(self) -> None:
        p = self._p
        if p.spot >= len(self.positions):
            self.post(Finish())
            return
        now = self.clock.now()
        start = p.last_pulse_start if p.last_pulse_start is not None else now
        at = start + self.plan.pulse.interval_s
        if p.pulse_in_spot == 0 and p.spot_start is not None:  # the next pulse opens a new spot
            at = max(at, p.spot_start + self.plan.pulse.spot_interval)
        self._schedule_tick(max(now, at))

    # ------------------------------------------------------------------ watchers (helpers: they only post)

    async def _watch_pulse(self, pulse: int, t_cmd: float, t_ack: float) -> None:
        """Pulse end, or a pulse on past its bound. Times are conservative both ways over a wire: the pulse
        started after ``t_cmd`` (so its end is after t_cmd + length) and before ``t_ack`` (so a normal pulse
        is over by t_ack + bound); a status shows the device's state at some time after its request left."""
        expected = self._count_base + pulse
        bound = t_ack + self.limits.pulse_bound_s(self.plan.pulse.pulse_ms)
        await self.clock.sleep_until(t_cmd + self.pulse_s)
        while True:
            t_req = self.clock.now()
            st = await self._call("plasma", self.d.plasma.status())
            self._plasma = st
            if not st.output_on and st.pulse_count >= expected:
                t_end = t_cmd + self.pulse_s
                self.post(PulseEnded(pulse, t_end, st.last_energy_j))
                return
            if t_req >= bound:
                if st.output_on:
                    on_ms, bound_ms = (t_req - t_cmd) * 1000, (bound - t_cmd) * 1000
                    reason = f"pulse {pulse} still on {on_ms:.1f} ms after fire (bound {bound_ms:.1f} ms)"
                    self.post(TripCmd(Trip(il.PULSE_OVERRUN, reason)))
                else:
                    reason = f"pulse {pulse} not delivered (generator count {st.pulse_count}, expected {expected})"
                    self.post(TripCmd(Trip("pulse_not_delivered", reason)))
                return
            await self.clock.sleep(min(PULSE_POLL_S, max(bound - self.clock.now(), 0.0)))

    async def _valve_opened(self, deadline: float) -> CoolingStatus | None:
        """Poll the valve feedback until it shows open at or before ``deadline`` (None: it did not)."""
        while True:
            st = await self._call("spray", self.d.spray.status())
            self._cooling = st
            if st.valve_open and st.t <= deadline:
                return st
            if self.clock.now() >= deadline:
                return None
            await self.clock.sleep(min(VALVE_POLL_S, max(deadline - self.clock.now(), 0.0)))

    async def _valve_closed(self, give_up: float, poll_s: float) -> CoolingStatus | None:
        """Poll the valve feedback until it shows closed (None: still open at ``give_up``)."""
        while True:
            st = await self._call("spray", self.d.spray.status())
            self._cooling = st
            if not st.valve_open:
                return st
            if self.clock.now() > give_up:
                return None
            await self.clock.sleep(poll_s)

    async def _watch_spray(self, spray: int, deadline: float) -> None:
        opened = await self._valve_opened(deadline)
        if opened is None:
            reason = (
                f"valve feedback not open {self.limits.max_cooling_delay_ms:g} ms after the end of pulse"
                f" {self._p.uncooled[0] if self._p.uncooled else '?'} (spray {spray})"
            )
            self.post(TripCmd(Trip(il.COOLING_NOT_CONFIRMED, reason)))
            return
        self.post(SprayConfirmed(spray, opened.t))
        await self.clock.sleep_until(opened.t + self.spray_s)
        closed = await self._valve_closed(opened.t + self.spray_s + 0.5, VALVE_POLL_S)
        if closed is None:
            await self._call("spray", self.d.spray.stop())
            self.post(TripCmd(Trip("valve_not_closed", f"spray {spray} valve still open 500 ms after its end")))
            return
        self.post(SprayDone(spray, closed.t))

    async def _monitor_loop(self) -> None:
        period = min(self._poll.values())
        next_reading = 0.0
        while True:
            now = self.clock.now()
            if now >= next_reading:
                next_reading = now + self._poll["thermometer"]
                await self._poll_device("thermometer")
            for device in ("plasma", "spray"):
                # a heartbeat poll only when the pulse cycle has not heard from it for a poll period:
                # the longest silence is then poll + one monitor period, inside the watchdog
                if now - self._last_heard.get(device, -math.inf) >= self._poll[device] - 1e-9:
                    await self._poll_device(device)
            self._check_pause_timeout()
            started = self.state not in ("disconnected", "self_test")
            trip = il.first_trip(il.CONTINUOUS, self._snapshot()) if started else None
            if trip is not None and self._result is None:
                self.post(TripCmd(trip))
            output_on = self._plasma is not None and self._plasma.output_on
            if self.state == "armed" and output_on and ("pulse" not in self._tasks or self._tasks["pulse"].done()):
                self.post(TripCmd(Trip(il.UNEXPECTED_OUTPUT, "plasma output on while no pulse is commanded")))
            await self.clock.sleep(period)

    async def _poll_device(self, device: str) -> None:
        try:
            if device == "thermometer":
                self._take_reading(await self._call(device, self.d.thermometer.read()))
            elif device == "plasma":
                self._plasma = await self._call(device, self.d.plasma.status())
            else:
                self._cooling = await self._call(device, self.d.spray.status())
        except (DeviceNoReply, DeviceError) as exc:
            self._comm_error(device, exc)

    def _comm_error(self, device: str, exc: Exception) -> None:
        """A failed poll is not a trip by itself (the watchdog trips when the silence outlasts it); the
        first failure of a streak is recorded, and the streak ends with the next reply (see _call)."""
        n = self._comm_errors.get(device, 0) + 1
        self._comm_errors[device] = n
        if n == 1:
            self.log.emit("comm_error", device=device, error=str(exc))

    def _check_pause_timeout(self) -> None:
        if self.state != "paused" or self._pause_since is None:
            return
        if self.clock.now() - self._pause_since > self.limits.max_pause_s:
            self.post(TripCmd(Trip(il.PAUSE_TIMEOUT, f"paused for over {self.limits.max_pause_s:g} s")))
            self._pause_since = None

    async def _safety_loop(self) -> None:
        timeout = self._safety_heartbeat_s + self._timeout["safety"]
        previous: SafetyState | None = None
        while True:
            try:
                st = await self._call("safety", self.d.safety.wait_change(self._safety_heartbeat_s), timeout)
            except (DeviceNoReply, DeviceError) as exc:
                self._comm_error("safety", exc)
                await self.clock.sleep(self._poll["safety"])
                continue
            self._safety = st
            if previous is None or (st.estop, st.footswitch, st.tip_distance_mm) != (
                previous.estop,
                previous.footswitch,
                previous.tip_distance_mm,
            ):
                if previous is not None:
                    self.log.emit("safety_input", estop=st.estop, footswitch=st.footswitch, tip_mm=st.tip_distance_mm)
                self.post(SafetyChanged(st))
            previous = st

    # ------------------------------------------------------------------ safe state

    async def _safe_state(self, trip: Trip) -> None:
        """Plasma off and disarmed first; then cool what is inside its window; then latch."""
        state_before = self.state
        self._tripped_rules.add(trip.rule)
        self.log.emit("interlock_trip", rule=trip.rule, reason=trip.reason, state=state_before, latch=trip.latch)
        plasma_ok = await self._emission_off(trip.rule, silent=self._plasma_silent(trip))
        self._cancel_timers()
        self._cancel("pulse")
        if state_before == "pulsing":
            await self._settle_pulse(plasma_ok)
        latch_trigger = {"fault": "trip", "estop": "estop_pressed", "pause": "pause"}[trip.latch]
        await self._trigger(latch_trigger)
        if trip.latch == "estop":
            self.log.emit("estop", reason=trip.reason)
        elif trip.latch == "fault":
            self.log.emit("fault", rule=trip.rule, reason=trip.reason)
        await self._cool_pending(trip)
        if not plasma_ok:
            await self._emission_off(trip.rule, retry=True)
        if trip.latch == "pause":
            self._pause_since = self.clock.now()
            return
        self._end("estop" if trip.latch == "estop" else "fault", trip.rule)

    def _plasma_silent(self, trip: Trip) -> bool:
        """The generator has just failed to answer: the off command is still sent first, but briefly."""
        no_reply = trip.rule in (il.DEVICE_NO_REPLY, "device_watchdog") and "plasma" in trip.reason
        return no_reply or self._comm_errors.get("plasma", 0) > 0

    async def _emission_off(self, why: str, *, retry: bool = False, silent: bool = False) -> bool:
        """Output off, then disarm. If the generator does not answer, do not spend the cooling window
        waiting on it: the caller cools first and retries afterwards (the generator's own heartbeat
        watchdog is the second layer that switches a silent link's output off). A generator that has
        just been silent gets one short try (SILENT_OFF_S) instead of the full retry budget."""
        timeout = min(SILENT_OFF_S, self._timeout["plasma"]) if silent else None
        for action, call in (
            ("plasma_off", self.d.plasma.output_off),
            ("plasma_disarm", self.d.plasma.disarm),
        ):
            try:
                await self._call("plasma", call(), timeout)
                self.log.emit(action, ok=True, cause=why, retry=retry)
            except (DeviceNoReply, DeviceError) as exc:
                self.log.emit(action, ok=False, cause=why, retry=retry, error=str(exc))
                return False
        return True

    async def _settle_pulse(self, plasma_ok: bool = True) -> None:
        """A pulse was cut: wait (bounded) for the generator to report it over, and record its end."""
        p = self._p
        t_cmd = p.last_pulse_start if p.last_pulse_start is not None else self.clock.now()
        energy: float | None = None
        give_up = self.clock.now() + max(self._timeout["plasma"], 0.05)
        while plasma_ok:
            try:
                st = await self._call("plasma", self.d.plasma.status())
            except (DeviceNoReply, DeviceError):
                break
            if not st.output_on:
                energy = st.last_energy_j if st.pulse_count >= self._count_base + p.pulse_no else 0.0
                break
            if self.clock.now() > give_up:
                break
            await self.clock.sleep(PULSE_POLL_S)
        self._record_pulse_end(PulseEnded(p.pulse_no, min(t_cmd + self.pulse_s, self.clock.now()), energy, True))

    async def _cool_pending(self, trip: Trip) -> None:
        """Deliver the spray for pulses still inside their cooling window, if the spray works."""
        p = self._p
        if p.spraying is not None:
            await self._finish_running_spray()
        if not p.uncooled or p.window_start is None:
            return
        deadline = p.window_start + self.limits.max_cooling_delay_ms / 1000.0
        if trip.rule == il.COOLING_NOT_CONFIRMED or self.clock.now() > deadline:
            self.log.emit("cooling_missed", pulses=list(p.uncooled), reason="cooling window already over")
            await self._stop_spray_quietly()
            return
        try:
            spray = p.spray_commanded
            if spray is None:
                spray = await self._send_spray()
                self._log_spray_command()
            opened = await self._valve_opened(deadline)
            if opened is not None:
                self._log_spray_start(SprayConfirmed(spray, opened.t))
                await self._finish_running_spray()
                return
        except (DeviceNoReply, DeviceError) as exc:
            self.log.emit("cooling_missed", pulses=list(p.uncooled), reason=str(exc))
            return
        self.log.emit("cooling_missed", pulses=list(p.uncooled), reason="valve feedback not open within the window")
        await self._stop_spray_quietly()

    async def _finish_running_spray(self) -> None:
        p = self._p
        spray = p.spraying
        self._cancel("spray")
        if spray is None:
            return
        try:
            closed = await self._valve_closed(self.clock.now() + self.spray_s + 0.5, VALVE_POLL_S * 5)
            if closed is not None:
                self.log.emit("spray_end", spray=spray, t_closed=closed.t)
                p.spraying = None
                return
        except (DeviceNoReply, DeviceError) as exc:
            self.log.emit("comm_error", device="spray", error=str(exc))
        await self._stop_spray_quietly()
        p.spraying = None

    async def _stop_spray_quietly(self) -> None:
        self._cancel("spray")
        try:
            await self._call("spray", self.d.spray.stop())
        except (DeviceNoReply, DeviceError) as exc:
            self.log.emit("comm_error", device="spray", error=str(exc))

    async def _resume(self) -> None:
        trip = il.first_trip(il.ARM, self._snapshot())
        if trip is not None:
            return  # stay paused; the pause timeout ends the session if it never clears
        await self._call("plasma", self.d.plasma.arm())
        self._pause_since = None
        self.log.emit("resume", pulse_next=self._p.pulse_no + 1)
        await self._trigger("resume")
        self._schedule_next()

    async def _abort(self, reason: str) -> None:
        if self._result is not None:
            return
        self.log.emit("abort", reason=reason, state=self.state)
        if self.state == "disconnected":
            self._end("aborted", "operator interrupt")
            return
        plasma_ok = await self._emission_off("abort")
        self._cancel_timers()
        self._cancel("pulse")
        if self.state == "pulsing":
            await self._settle_pulse(plasma_ok)
        if self.state in ("fault", "estop"):
            self._end("aborted", "operator interrupt")
            return
        await self._trigger("abort")
        await self._cool_pending(Trip("abort", reason))
        if not plasma_ok:
            await self._emission_off("abort", retry=True)
        self._end("aborted", "operator interrupt")

    async def _complete(self) -> None:
        await self._call("plasma", self.d.plasma.disarm())
        self.log.emit("plasma_disarm", ok=True, cause="plan delivered")
        await self._trigger("disarm")
        await self._trigger("finish")
        self._end("complete", None)

    async def _crash(self, where: str, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.log.emit("controller_error", where=where, error=detail)
        try:
            if self._result is None:
                if self.state in ("fault", "estop", "complete"):
                    self._end("fault", il.CONTROLLER_ERROR)
                else:
                    await self._safe_state(Trip(il.CONTROLLER_ERROR, f"{where}: {detail}"))
        except Exception as again:  # noqa: BLE001 - the safe-state path itself failed: force off, record
            self.log.emit("controller_error", where="safe state", error=repr(again))
            await self._emission_off(il.CONTROLLER_ERROR)
            if self._result is None:
                self._end("fault", il.CONTROLLER_ERROR)
        assert self._result is not None
        self._result.internal_error = True

    def _end(self, outcome: Outcome, cause: str | None) -> None:
        if self._result is None:
            self._result = SessionResult(outcome, cause, pulses=self._p.pulse_no, sprays=self._p.sprays_confirmed)
