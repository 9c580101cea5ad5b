"""In-process simulated devices implementing the core's ports: the generator and the spray unit (the sensors
are in :mod:`plasmactl.simulators.sensors`).

Each device answers from its command history and the shared world; behaviour under a fault comes
from the world's fault schedule, so the same scenario file drives every fault kind. Every request
first passes the device's link, which a ``link/timeout`` fault silences.
"""

from __future__ import annotations

import math

from plasmactl.ports import DeviceError, PlasmaStatus, SprayStatus
from plasmactl.rig import PlasmaSim, SpraySim
from plasmactl.simulators.fastinit import plasma_status, spray_status
from plasmactl.simulators.trigger_line import TriggerLine
from plasmactl.simulators.world import PulseRecord, SimWorld, SprayRecord

MAX_ENERGY_J = 10.0  # the generator's own setpoint range
MAX_SPRAY_S = 10.0  # the spray unit's own ranges
MAX_TRIGGER_DELAY_S = 0.1


def _check_length(duration_s: float) -> None:
    if not (0 < duration_s <= MAX_SPRAY_S) or not math.isfinite(duration_s):
        raise DeviceError("spray", f"spray duration {duration_s!r} s out of range", code=3)


class SimPlasma:
    """Plasma generator: command latency, noisy delivered energy, its own hardware pulse limit, and its own
    E-stop input (the rig wires the E-stop to the generator too): pressed, the output is off at that instant
    and the generator disarmed, whatever the controller does or whether it is there at all; arm and fire are
    refused while it is pressed. The controller's interlock is the first layer, this is the second."""

    def __init__(self, world: SimWorld, cfg: PlasmaSim, *, own_watchdog: bool = True) -> None:
        self.fired_at: float | None = None  # when the latest fire command reached it
        self.w = world
        self.cfg = cfg
        # the generator's own watchdog (the second layer): no request for this long, and it switches off and
        # disarms, latching fault code 1; served, the unit's heartbeat watchdog does this instead
        self._own_watchdog_s = cfg.own_watchdog_ms / 1000.0 if own_watchdog else math.inf
        self._heard = world.clock.now()
        self.fault_code = 0
        self._linked = False  # else a request never waits on its link (see _schedule_changed)
        self._estop_wired = False  # else no E-stop can come: no lookups
        self._rng = world.rng["plasma"]
        self.energy_j = 0.0
        self.pulse_ms = 0.0
        self.energy_limit_j = 0.0  # the dose monitor: no pulse delivers more (0: not set, fire refused)
        self.armed = False
        self.count = 0
        self._pulse: PulseRecord | None = None
        self._last_done: PulseRecord | None = None
        self.line = TriggerLine.of(world, world.clock)  # its pulse-end output (wired to the spray unit or not)
        world.record.generator_state = self.state_now
        self._schedule_changed()
        world.on_schedule_change(self._schedule_changed)

    def _schedule_changed(self) -> None:
        """Which lookups a request needs; an E-stop injected during a pulse ends its output at that instant."""
        self._linked = self.w.faults.affects_link("plasma")
        self._estop_wired = self.w.faults.affects("safety")
        now = self.w.clock.now()
        if self._estop_wired and self.w.faults.find("safety", "estop", now) is not None:
            self._cut(now)
            self.armed = False

    async def _request(self) -> None:
        """A request reaches the generator (after its link): its own watchdog sees it."""
        if self._linked:
            await self.w.link("plasma")
        now = self.w.clock.now()
        self._own_watchdog(now)
        self._heard = now

    def _own_watchdog(self, now: float) -> None:
        # a pulse ends within the hardware pulse limit (< the window) after its fire request, so the only
        # thing left to switch off after a silence is the armed state
        if self.armed and now - self._heard > self._own_watchdog_s:
            self.armed = False
            self.fault_code = 1

    def _estop_pressed(self, now: float) -> bool:
        """The generator's own E-stop input: pressed now, it is disarmed (a pulse was already cut at the press)."""
        if self._estop_wired and self.w.faults.find("safety", "estop", now) is not None:
            self.armed = False
            return True
        return False

    def state_now(self) -> dict[str, bool]:
        """Armed, and emitting, right now (the simulation's ground truth, for the session's record)."""
        now = self.w.clock.now()
        self._own_watchdog(now)
        self._estop_pressed(now)
        p = self._pulse
        return {"armed": self.armed, "output_on": p is not None and p.t_on <= now < p.t_off}

    async def configure(self, energy_j: float, pulse_ms: float, energy_limit_j: float) -> None:
        await self._request()
        self.set_point(energy_j, pulse_ms)
        self.set_energy_limit(energy_limit_j)

    def set_point(self, energy_j: float, pulse_ms: float) -> None:
        """Energy and pulse length setpoints, range-checked as the generator does (DeviceError code 3)."""
        if not (0 < energy_j <= MAX_ENERGY_J) or not math.isfinite(energy_j):
            raise DeviceError("plasma", f"energy {energy_j!r} J out of range", code=3)
        if not (0 < pulse_ms <= self.cfg.hw_max_pulse_ms):
            raise DeviceError("plasma", f"pulse length {pulse_ms!r} ms out of range", code=3)
        self.energy_j, self.pulse_ms = energy_j, pulse_ms

    def set_energy_limit(self, energy_limit_j: float) -> None:
        if not (0 < energy_limit_j <= MAX_ENERGY_J) or not math.isfinite(energy_limit_j):
            raise DeviceError("plasma", f"energy limit {energy_limit_j!r} J out of range", code=3)
        self.energy_limit_j = energy_limit_j

    async def arm(self) -> None:
        await self._request()
        if self._estop_pressed(self.w.clock.now()):
            raise DeviceError("plasma", "arm refused: the generator's E-stop input is pressed", code=4)
        if self.fault_code:
            raise DeviceError("plasma", f"arm refused: fault {self.fault_code} latched", code=4)
        self.armed = True

    async def disarm(self) -> None:
        await self._request()
        self._cut(self.w.clock.now())
        self.armed = False

    async def output_off(self) -> None:
        await self._request()
        self._cut(self.w.clock.now())

    async def fire(self) -> None:
        await self._request()
        now = self.fired_at = self.w.clock.now()
        self._retire(now)
        if self._estop_pressed(now):
            raise DeviceError("plasma", "fire refused: the generator's E-stop input is pressed", code=4)
        if not self.armed:
            raise DeviceError("plasma", "fire refused: not armed", code=4)
        if self.fault_code:
            raise DeviceError("plasma", f"fire refused: fault {self.fault_code} latched", code=4)
        if self._pulse is not None:
            raise DeviceError("plasma", "fire refused: a pulse is in progress", code=6)
        if self.energy_j <= 0 or self.pulse_ms <= 0 or self.energy_limit_j <= 0:
            raise DeviceError("plasma", "fire refused: energy, pulse length and energy limit not all set", code=4)
        t_on = now + self.cfg.latency_ms / 1000.0
        hw_max_s = self.cfg.hw_max_pulse_ms / 1000.0
        length = min(self.pulse_ms / 1000.0, hw_max_s)
        stuck = self.w.faults.find("plasma", "stuck_on", t_on)
        t_off = t_on + (hw_max_s if stuck else length)
        if self._estop_wired:  # an E-stop pressed before the output would end ends it there, in the device
            t_off = max(t_on, min(t_off, self.w.faults.first_start("safety", "estop", now, t_off)))
        energy = self.energy_j * max(0.0, 1.0 + self._rng.normal(0.0, self.cfg.energy_noise_pct / 100.0))
        drift = self.w.faults.find("plasma", "energy_drift", t_on)
        if drift is not None and drift.fault.value is not None:
            energy *= drift.fault.value
        no_output = self.w.faults.find("plasma", "no_output", t_on) is not None
        if no_output:
            energy = 0.0
        self.count += 1
        # A stuck output keeps delivering at the set power until something switches it off; the dose
        # monitor ends any pulse when its energy reaches the limit, whatever the timer does.
        power = energy / length
        if power * (t_off - t_on) > self.energy_limit_j:
            t_off = t_on + self.energy_limit_j / power
        full_energy = min(power * (t_off - t_on), self.energy_limit_j)
        heat = None if no_output or t_off <= t_on else self.w.skin.heat(t_on, t_off, power)
        self._pulse = PulseRecord(
            self.count, t_on, t_off, full_energy, t_off - t_on, heat, self.energy_j, self.pulse_ms
        )
        self.w.record.pulses.append(self._pulse)
        self.line.pulse_ends_at(self.count, t_off)
        self.w.pulse_ends(self.count, t_off)
        if self.w.tissue is not None and heat is not None:
            self.w.tissue.pulse(self.count, t_on, t_off, full_energy)

    async def status(self) -> PlasmaStatus:
        await self._request()
        now = self.w.clock.now()
        self._retire(now)
        self._estop_pressed(now)
        p = self._pulse
        on = p is not None and p.t_on <= now < p.t_off
        done = self._last_done
        return plasma_status(
            t=now,
            armed=self.armed,
            output_on=on,
            energy_setpoint_j=self.energy_j,
            pulse_ms_setpoint=self.pulse_ms,
            pulse_count=self.count - (1 if p is not None and now < p.t_on else 0),
            last_energy_j=done.delivered_j() if done is not None else None,
            fault_code=self.fault_code,
            energy_limit_j=self.energy_limit_j,
        )

    def pulse_ends(self) -> tuple[int, float | None]:
        """(pulses ended so far, when the last one ended): what the generator reports on its own clock."""
        now = self.w.clock.now()
        self._retire(now)
        done = self._last_done
        return self.count - (1 if self._pulse is not None else 0), None if done is None else done.t_off

    def pulse_window(self) -> tuple[float, float] | None:
        """``(t_on, t_off)`` of the pulse in progress or about to start, else None (read-only).

        For the served generator's own protection reporting (``plasmactl.simulators.served_modbus``).
        """
        p = self._pulse
        return None if p is None else (p.t_on, p.t_off)

    def _retire(self, now: float) -> None:
        if self._pulse is not None and self._pulse.t_off <= now:
            self._last_done, self._pulse = self._pulse, None

    def _cut(self, now: float) -> None:
        p = self._pulse
        if p is None or p.t_off <= now:
            self._retire(now)
            return
        p.t_off = max(now, p.t_on)
        self.line.pulse_ends_at(p.number, p.t_off)
        if p.heat is not None:
            self.w.skin.end_heat(p.heat, p.t_off)
            if self.w.tissue is not None:
                self.w.tissue.cut_pulse(p.t_off)
        self._retire(now)


class SimSpray:
    """Cold-spray unit: valve latency, valve feedback, reservoir consumption, a flow sensor.

    Water comes out while the valve is open and the reservoir has water: a reservoir that runs dry during a
    spray (used up, or a ``reservoir_empty`` fault starting) ends the cooling of skin and tissue there, the
    flow sensor reads 0 from then on, and the record says when (``wet_until``)."""

    def __init__(self, world: SimWorld, cfg: SpraySim) -> None:
        self.w = world
        self.cfg = cfg
        self._linked = False
        self._faulted = False  # else no fault lookups at all (see _schedule_changed)
        self.count = 0
        self._used_s = 0.0  # seconds of flow by sprays already finished
        self._open = math.inf
        self._close = math.inf
        self._dry = math.inf  # when water stops coming out of the current spray (<= _close)
        self._cool: int | None = None
        self._record: SprayRecord | None = None
        self.line = TriggerLine.of(world, world.clock)  # the generator's pulse-end edges, if it is armed
        self._trigger: tuple[float, float] | None = None  # (spray length, delay) armed for the next edge
        self.trigger_count = 0  # sprays the trigger started
        self.edge_t: float | None = None  # the last edge seen, and its spray's command (the unit's own clock):
        self.triggered_t: float | None = None
        self._schedule_changed()
        world.on_schedule_change(self._schedule_changed)

    def _schedule_changed(self) -> None:
        self._linked = self.w.faults.affects_link("spray")
        self._faulted = self.w.faults.affects("spray")
        if self._faulted:
            self._replan()

    def _level(self, now: float) -> float:
        """Water left by consumption alone (a reservoir_empty fault aside)."""
        running = ((self._dry if self._dry < now else now) - self._open) if self._open < now else 0.0
        left = self.cfg.reservoir_ml - (self._used_s + (running if running > 0.0 else 0.0)) * self.cfg.flow_ml_s
        return left if left > 0.0 else 0.0

    def _reservoir(self, now: float) -> float:
        if self._faulted and self.w.faults.find("spray", "reservoir_empty", now):
            return 0.0
        return self._level(now)

    def _dry_time(self) -> float:
        """When the open spray stops giving water: its reservoir used up, or a reservoir fault starting."""
        t_open, t_close = self._open, self._close
        used_up = t_open + self._level(t_open) / self.cfg.flow_ml_s
        emptied = self.w.faults.first_start("spray", "reservoir_empty", t_open, t_close) if self._faulted else math.inf
        return min(t_close, used_up, emptied)

    def _replan(self) -> None:
        """A fault window became known (at a pulse's end, or injected): it may end the running spray's water
        earlier."""
        if self._cool is not None and self._open < self._close:
            self._run_dry_at(self._dry_time())

    def _run_dry_at(self, t: float) -> None:
        if t >= self._dry:
            return
        self._dry = t
        if self._record is not None:
            self._record.wet_until = t
        if self._cool is not None:
            self.w.skin.end_cool(self._cool, t)
            if self.w.tissue is not None:
                self.w.tissue.stop_spray(t)

    def _settle(self, now: float) -> None:
        if self._close <= now and not math.isinf(self._open):
            self._used_s += max(0.0, min(self._close, self._dry) - self._open)
            self._open = self._close = self._dry = math.inf
            self._cool = None
            self._record = None

    async def spray(self, duration_s: float) -> None:
        if self._linked:
            await self.w.link("spray")
        _check_length(duration_s)
        self.line.take_due()
        self._start(self.w.clock.now(), duration_s)

    async def arm_trigger(self, duration_s: float, delay_s: float) -> None:
        """Spray for ``duration_s`` at ``delay_s`` after the generator's next pulse-end edge (the unit's own
        timing: no request in between)."""
        if self._linked:
            await self.w.link("spray")
        _check_length(duration_s)
        if not (0.0 <= delay_s <= MAX_TRIGGER_DELAY_S) or not math.isfinite(delay_s):
            raise DeviceError("spray", f"trigger delay {delay_s!r} s out of range", code=3)
        self.line.take_due()
        self._trigger = (duration_s, delay_s)
        self.line.listen(self._edge, delay_s)

    async def disarm_trigger(self) -> None:
        if self._linked:
            await self.w.link("spray")
        self.line.take_due()
        self._trigger = None

    def _edge(self, pulse: int, t_edge: float) -> None:
        """The trigger line's edge for ``pulse`` came at ``t_edge``; now is its delay later."""
        del pulse
        self.edge_t = t_edge
        armed, self._trigger = self._trigger, None
        if armed is None:
            return
        duration_s, delay_s = armed
        self.trigger_count += 1
        self.triggered_t = t_edge + delay_s
        self._start(self.triggered_t, duration_s)

    def _start(self, now: float, duration_s: float) -> None:
        """The valve is commanded open at ``now`` for ``duration_s`` (a command, or the trigger's edge)."""
        self._stop_at(now)
        self._settle(now)
        latency = self.cfg.valve_latency_ms / 1000.0
        slow = self.w.faults.find("spray", "valve_slow", now)
        if slow is not None and slow.fault.value is not None:
            latency += slow.fault.value / 1000.0
        t_open = now + latency
        self.count += 1
        if self.w.faults.find("spray", "valve_stuck_closed", t_open):
            self.w.record.sprays.append(SprayRecord(now, None, None, False))
            return  # the command is acknowledged; the valve never moves
        self._open, self._close = t_open, t_open + duration_s
        wet = self._reservoir(t_open) > 0.0
        self._dry = self._dry_time() if wet else t_open
        self._record = SprayRecord(now, t_open, self._close, wet, self._dry if wet else None)
        self.w.record.sprays.append(self._record)
        if wet:
            self._cool = self.w.skin.cool(t_open, self._dry)
            if self.w.tissue is not None:
                self.w.tissue.spray(t_open, self._dry)

    async def stop(self) -> None:
        if self._linked:
            await self.w.link("spray")
        self.line.take_due()
        now = self.w.clock.now()
        self._stop_at(now)
        self._settle(now)

    def _stop_at(self, now: float) -> None:
        if math.isinf(self._open) or self._close <= now:
            return
        self._close = max(now, self._open)
        if self._record is not None:
            self._record.t_close = self._close
        self._run_dry_at(self._close)

    async def status(self) -> SprayStatus:
        if self._linked:
            await self.w.link("spray")
        self.line.take_due()
        now = self.w.clock.now()
        self._settle(now)
        is_open = self._open <= now < self._close
        reservoir = self._reservoir(now)
        # the flow sensor sees water only when the valve is open and water is coming out
        flowing = is_open and self._cool is not None and now < self._dry and reservoir > 0.0
        return spray_status(
            t=now,
            valve_open=is_open,
            spray_commanded=not math.isinf(self._open),
            reservoir_ml=reservoir,
            flow_ml_s=self.cfg.flow_ml_s if flowing else 0.0,
            spray_count=self.count,
            trigger_armed=self._trigger is not None,
        )
