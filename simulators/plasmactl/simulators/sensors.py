"""In-process simulated sensors implementing the core's ports: the skin thermometer and the operator-side
safety inputs (E-stop, footswitch, tip distance), both answering from the shared world and its faults."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator

from plasmactl.ports import SafetyState, SkinReading
from plasmactl.rig import SafetySim, ThermometerSim
from plasmactl.simulators.fastinit import safety_state, skin_reading
from plasmactl.simulators.world import SimWorld

# A virtual-time jump can land one float ulp short of the timer it wakes for.
_TIME_EPS = 1e-9
# Noise is drawn this many at a time: the same floats in the same order as one draw per sample (the
# stream is the thermometer's alone), without a generator call per sample.
NOISE_BLOCK = 256


class SimThermometer:
    """IR skin thermometer: fixed sample period, first-order lag, noise, reporting latency."""

    BACKFILL = 16  # samples recomputed after a long gap (the lag has forgotten anything older)

    def __init__(self, world: SimWorld, cfg: ThermometerSim) -> None:
        self.w = world
        self.cfg = cfg
        self._linked = self._faulted = False
        self._schedule_changed()
        world.on_schedule_change(self._schedule_changed)
        self._rng = world.rng["thermometer"]
        self._noise: Iterator[float] = iter(())
        self._noise_c = cfg.noise_c
        self._latency_s = cfg.latency_ms / 1000.0
        self._period = cfg.sample_ms / 1000.0
        tau = cfg.time_constant_ms / 1000.0
        self._lag = 1.0 if tau <= 0 else 1.0 - math.exp(-self._period / tau)  # first-order lag per sample
        self._k = -1  # index of the last computed sample
        self._filtered = self._rest()
        self._last = SkinReading(-self._period, self._filtered)
        # the world's clock and skin are its for good: read once, not twice through the world per sample
        self._now, self._skin = world.clock.now, world.skin

    def _schedule_changed(self) -> None:
        self._linked = self.w.faults.affects_link("thermometer")
        self._faulted = self.w.faults.affects("thermometer")

    def _rest(self) -> float:
        """The sensor has been running before the session: its past samples read the skin at rest."""
        return self.w.skin.surface_c(self.w.skin.time)

    def _sample(self, k: int, now: float) -> SkinReading:
        t = k * self._period
        skin = self._skin
        # k * period may lie an ulp after now (6 * 0.1): the skin is never read ahead of the clock, or a pulse
        # starting now could no longer heat it (max(min(t, now), skin.time), without the two calls)
        at, skin_t = (t if t < now else now), skin.time
        true_c = skin.surface_c(at if at > skin_t else skin_t)
        self._filtered += self._lag * (true_c - self._filtered)
        # = rng.normal(0.0, noise_c), the same draw and the same float, without its argument handling
        z = next(self._noise, None)
        if z is None:
            self._noise = iter(self._rng.standard_normal(NOISE_BLOCK).tolist())
            z = next(self._noise)
        value = self._filtered + (0.0 + self._noise_c * z)
        return skin_reading(t=t, value_c=value)

    async def read(self) -> SkinReading:
        if self._linked:
            await self.w.link("thermometer")
        now = self._now()
        k_now = math.floor((now - self._latency_s) / self._period + 1e-9)
        last_k = self._k
        if k_now > last_k:
            if k_now == last_k + 1 and not self._faulted:  # the common case: one new sample, no faults
                self._last = self._sample(k_now, now)
            else:
                for k in range(max(last_k + 1, k_now - self.BACKFILL), k_now + 1):
                    fresh = self._sample(k, now)
                    self._last = self._apply_faults(fresh) if self._faulted else fresh
            self._k = k_now
        return self._last

    def _apply_faults(self, fresh: SkinReading) -> SkinReading:
        if not self._faulted:
            return fresh
        if self.w.faults.find("thermometer", "dropout", fresh.t):
            return self._last  # no new samples: the last one ages
        stuck = self.w.faults.find("thermometer", "stuck", fresh.t)
        if stuck is not None:
            value = stuck.fault.value if stuck.fault.value is not None else self._last.value_c
            return skin_reading(t=fresh.t, value_c=value)
        offset = self.w.faults.find("thermometer", "offset", fresh.t)
        if offset is not None and offset.fault.value is not None:
            return skin_reading(t=fresh.t, value_c=fresh.value_c + offset.fault.value)
        return fresh


class SimSafety:
    """E-stop, footswitch and tip distance; changes only when a fault starts or ends."""

    LIFTED_MM = 5.0

    def __init__(self, world: SimWorld, cfg: SafetySim) -> None:
        self.w = world
        self.cfg = cfg
        self._linked = self._faulted = False
        self._waiter: asyncio.Future[None] | None = None
        self._last: tuple[bool, bool, float] | None = None  # the inputs as last handed out
        self.poke()
        world.on_schedule_change(self.poke)

    def _state(self, now: float) -> SafetyState:
        if not self._faulted:
            return safety_state(t=now, estop=False, footswitch=True, tip_distance_mm=self.cfg.tip_distance_mm)
        f = self.w.faults
        tip = f.find("safety", "tip_lift", now)
        tip_mm = self.cfg.tip_distance_mm
        if tip is not None:
            tip_mm = tip.fault.value if tip.fault.value is not None else self.LIFTED_MM
        return safety_state(
            t=now,
            estop=f.find("safety", "estop", now) is not None,
            footswitch=f.find("safety", "footswitch_release", now) is None,
            tip_distance_mm=tip_mm,
        )

    def _inputs_at(self, now: float) -> tuple[bool, bool, float]:
        """``_inputs(self._state(now))``; without a safety fault they never change (no state is built)."""
        return _inputs(self._state(now)) if self._faulted else (False, True, self.cfg.tip_distance_mm)

    async def read(self) -> SafetyState:
        if self._linked:
            await self.w.link("safety")
        return self._given(self._state(self.w.clock.now()))

    def _given(self, st: SafetyState) -> SafetyState:
        self._last = (st.estop, st.footswitch, st.tip_distance_mm)  # = _inputs(st), without the call
        return st

    async def wait_change(self, timeout_s: float) -> SafetyState:
        if self._linked:
            await self.w.link("safety")
        clock = self.w.clock
        deadline = clock.now() + timeout_s
        before = self._last  # a change since the last state handed out is news at once
        while before is None or self._inputs_at(clock.now()) == before:
            wake = min(deadline, self.w.faults.boundaries_after(clock.now(), ("safety",)))
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = fut
            handle = clock.call_at(wake, _resolver(fut))
            try:
                await fut
            finally:
                handle.cancel()
                self._waiter = None
            if clock.now() >= wake - _TIME_EPS:
                break  # otherwise the fault schedule changed: look again (a change returns at once)
        if self._linked:
            await self.w.link("safety")
        return self._given(self._state(clock.now()))

    def poke(self) -> None:
        """The fault schedule changed (a fault tied to a pulse got its start time, or one was injected)."""
        self._linked = self.w.faults.affects_link("safety")
        self._faulted = self.w.faults.affects("safety")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _inputs(st: SafetyState) -> tuple[bool, bool, float]:
    return st.estop, st.footswitch, st.tip_distance_mm


def _resolver(fut: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve
