"""What the controller knows, and the one way it learns it: device calls that record every reply.

:class:`Knowledge` holds the latest status of each device with the time it was taken, when each device was
last heard, and the sequencing facts the timed rules read; :meth:`Knowledge.snapshot` turns it into the
immutable :class:`~plasmactl.controller.trips.Snapshot` the interlocks judge. :class:`DeviceCalls` is the
only code that awaits a device: each call has the controller's per-device time budget, and every status
or reading that comes back is recorded before the caller sees it, so no part of the controller can act
on a reply that the guards have not seen.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import TypeVar

from plasmactl.clock import Clock
from plasmactl.controller.trips import CoolingFacts, PulseFacts, Snapshot, SpotFacts
from plasmactl.deadline import SUSPENDED, first_step, rest_within
from plasmactl.events import AuditLog
from plasmactl.limits import Caps, Limits
from plasmactl.ports import (
    DeviceError,
    DeviceNoReply,
    Devices,
    PlasmaStatus,
    SafetyState,
    SkinReading,
    SprayStatus,
)

T = TypeVar("T")
_WINDOW_END: contextvars.ContextVar[float] = contextvars.ContextVar("window_end", default=math.inf)
DEVICE_NAMES = ("plasma", "spray", "thermometer", "safety")
REFRESH_ORDER = ("thermometer", "plasma", "spray", "safety")
# Knowledge.snapshot fills a Snapshot by position: it must be told if the fields ever change.
_SNAPSHOT_FIELDS = """now limits energy_j pulse_s spray_s safety reading plasma spray max_age_s last_heard watchdog_s
    reading_moved_t pulses_since_moved session_start flow_seen_ml_s pulse pending spot paused_since output_off_since
    cooling_lead_s"""
if Snapshot._fields != tuple(_SNAPSHOT_FIELDS.split()):
    raise TypeError("Snapshot's fields changed: update Knowledge.snapshot, which fills them by position")
_new_snapshot = tuple.__new__  # Snapshot._make less its frame and its length check (the check above holds)


class Knowledge:
    """The latest of everything, each with its time; the facts of the pulse cycle the rules need."""

    def __init__(
        self,
        limits: Limits,
        energy_j: float,
        pulse_s: float,
        spray_s: float,
        max_age_s: Mapping[str, float],
        watchdog_s: Mapping[str, float],
    ) -> None:
        missing = set(DEVICE_NAMES) - set(max_age_s)
        if missing:
            raise ValueError(f"no staleness bound for {sorted(missing)}")  # fail closed: every input has one
        self.limits = limits
        self.energy_j, self.pulse_s, self.spray_s = energy_j, pulse_s, spray_s
        self.max_age_s = dict(max_age_s)
        self.watchdog_s = dict(watchdog_s)
        self.plasma: PlasmaStatus | None = None
        self.spray: SprayStatus | None = None
        self.reading: SkinReading | None = None
        self.safety: SafetyState | None = None
        self.last_heard: dict[str, float] = {}
        self.flow_seen_ml_s = 0.0
        self.pulse: PulseFacts | None = None
        self.pending: CoolingFacts | None = None
        self.spot: SpotFacts | None = None
        self.paused_since: float | None = None
        self.output_off_since = -math.inf
        self.off_sent_t: float | None = None  # the last output-off command was sent then
        self.estop_seen: SafetyState | None = None  # the first state that showed the E-stop pressed
        self.cooling_lead_s = 0.0  # see Snapshot.cooling_lead_s; kept by the controller
        self.pulses_started = 0
        self._moved: tuple[float, float] | None = None  # (value, t) of the last reading that moved
        self._pulses_at_move = 0

    def take_reading(self, reading: SkinReading) -> bool:
        """Record a sample; True when it is a new one (the same sample again is no news: a dropped-out
        sensor shows up as stale)."""
        previous, self.reading = self.reading, reading
        if previous is not None and reading.t == previous.t:
            return False
        if self._moved is None or abs(reading.value_c - self._moved[0]) > self.limits.stuck_epsilon_c:
            self._moved = (reading.value_c, reading.t)
            self._pulses_at_move = self.pulses_started
        return True

    def take_safety(self, st: SafetyState) -> SafetyState:
        """Record the safety inputs; an E-stop seen pressed, however briefly, is remembered until a reset. A
        read sent before the one already recorded (two reads in flight) does not replace the newer state."""
        if self.safety is None or st.t >= self.safety.t:
            self.safety = st
        if st.estop and self.estop_seen is None:
            self.estop_seen = st
        return st

    def snapshot(self, now: float) -> Snapshot:
        # Positional, every field in Snapshot's order (tens of thousands per session; keywords cost 3x).
        moved = self._moved
        return _new_snapshot(
            Snapshot,
            (
                now,
                self.limits,
                self.energy_j,
                self.pulse_s,
                self.spray_s,
                self.safety,
                self.reading,
                self.plasma,
                self.spray,
                self.max_age_s,
                self.last_heard,
                self.watchdog_s,
                None if moved is None else moved[1],  # reading_moved_t
                self.pulses_started - self._pulses_at_move,  # pulses_since_moved
                0.0,  # session_start
                self.flow_seen_ml_s,
                self.pulse,
                self.pending,
                self.spot,
                self.paused_since,
                self.output_off_since,
                self.cooling_lead_s,
            ),
        )


SAFETY_REUSE_S = Caps.FIRE_SAFETY_AGE_S / 2  # a safety read this recent stands for a new one before emission


class _Within(AbstractContextManager[None]):
    """``DeviceCalls.within``'s block: a class, not a generator (several per pulse, one per valve poll)."""

    __slots__ = ("_end", "_token")

    def __init__(self, t_end: float) -> None:
        self._end = t_end

    def __enter__(self) -> None:
        self._token = _WINDOW_END.set(min(self._end, _WINDOW_END.get()))

    def __exit__(self, *exc: object) -> None:
        _WINDOW_END.reset(self._token)


class DeviceCalls:
    """Every device call the controller makes, with its budget; replies are recorded in ``know``."""

    def __init__(
        self, devices: Devices, budget_s: Mapping[str, float], clock: Clock, know: Knowledge, log: AuditLog
    ) -> None:
        self.d = devices
        self.budget_s = dict(budget_s)
        self.clock = clock
        self.know = know
        self.log = log
        self._errors: dict[str, int] = {}  # failed polls in the current streak, per device

    def within(self, t_end: float) -> AbstractContextManager[None]:
        """Calls made (by this task) inside the block end by ``t_end`` at the latest: a cooling window's end,
        which the owner must be free to act on (a call that would run past it fails as unanswered)."""
        return _Within(t_end)

    async def call(
        self, device: str, aw: Awaitable[T], timeout_s: float | None = None, meanwhile: Callable[[], None] | None = None
    ) -> T:
        """``aw`` within the device's budget (or ``timeout_s``), and the window's end; ``meanwhile`` is called
        once, as soon as its first step has run, whatever that step's outcome (a request is on the wire, or
        the call is already over)."""
        limit = self.budget_s[device] if timeout_s is None else timeout_s
        window_end = _WINDOW_END.get()
        if window_end != math.inf:
            limit = min(limit, max(0.0, window_end - self.clock.now()))
        try:
            # with_timeout's two halves, inline: most calls complete at their first step, without a timer
            try:
                result, first, it = first_step(aw)
            except BaseException:
                if meanwhile is not None:
                    meanwhile()  # the call ended at its first step: ``meanwhile`` still runs, before the error
                raise
            try:
                if meanwhile is not None:
                    meanwhile()
            finally:  # whatever ``meanwhile`` does, the request in flight is seen to its end
                if result is SUSPENDED:
                    result = await rest_within(it, first, limit)
        except TimeoutError:
            raise DeviceNoReply(device, limit) from None
        self.know.last_heard[device] = self.clock.now()
        if self._errors.get(device):
            self._errors[device] = 0
        return result

    def silent(self, device: str) -> bool:
        """The device's last poll failed (and nothing has answered since)."""
        return self._errors.get(device, 0) > 0

    async def plasma_status(self) -> PlasmaStatus:
        st = await self.call("plasma", self.d.plasma.status())
        self.know.plasma = st
        return st

    async def spray_status(self) -> SprayStatus:
        st = await self.call("spray", self.d.spray.status())
        self.know.spray = st
        if st.valve_open and st.flow_ml_s > self.know.flow_seen_ml_s:
            self.know.flow_seen_ml_s = st.flow_ml_s
        return st

    async def reading(self) -> tuple[SkinReading, bool]:
        r = await self.call("thermometer", self.d.thermometer.read())
        return r, self.know.take_reading(r)

    async def safety(self) -> SafetyState:
        return self.know.take_safety(await self.call("safety", self.d.safety.read()))

    async def safety_change(self, heartbeat_s: float) -> SafetyState:
        budget = heartbeat_s + self.budget_s["safety"]
        return self.know.take_safety(await self.call("safety", self.d.safety.wait_change(heartbeat_s), budget))

    async def command(
        self,
        device: str,
        fn: Callable[[], Awaitable[None]],
        timeout_s: float | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        """A command (arm, fire, off, spray, ...): a failure raises, for the caller to turn into a trip."""
        await self.call(device, fn(), timeout_s, meanwhile)

    async def poll(self, device: str) -> bool:
        """A status poll whose failure is not a trip by itself (the staleness bounds and the watchdog
        judge the silence): the first failure of a streak is recorded, the streak ends with a reply."""
        try:
            if device == "plasma":
                await self.plasma_status()
            elif device == "spray":
                await self.spray_status()
            elif device == "thermometer":
                await self.reading()
            else:
                await self.safety()
        except DeviceError as exc:
            self.comm_error(device, exc)
            return False
        return True

    def comm_error(self, device: str, exc: Exception) -> None:
        n = self._errors.get(device, 0) + 1
        self._errors[device] = n
        if n == 1:
            self.log.emit("comm_error", device=device, error=str(exc))

    async def refresh(self, devices: tuple[str, ...], by_age: tuple[str, ...] = ("plasma", "thermometer")) -> bool:
        """Before emission (or a resume, or a reset): poll the safety inputs (unless read within
        ``SAFETY_REUSE_S``) and the spray unit now (emission is decided on the E-stop and on the water for
        its spray as they are, not as they were at the last poll), and the devices in ``by_age`` when their
        latest status is older than half its bound or their latest poll failed (the pulse cycle and the monitor
        keep those recent; a thermometer read gives its latest sample).
        False when the safety inputs did not answer: the caller must not emit on an older state of them."""
        know = self.know
        safety_ok = True
        for device in sorted(devices, key=REFRESH_ORDER.index):  # the E-stop read last: nearest the decision
            if device in by_age and device != "safety":
                latest = {"plasma": know.plasma, "spray": know.spray, "thermometer": know.reading}[device]
                if latest is None or self.silent(device) or self.clock.now() - latest.t > 0.5 * know.max_age_s[device]:
                    await self.poll(device)
            elif device == "safety":
                # a read sent within SAFETY_REUSE_S (the listener's, most often) is as good as a new one: the
                # fire rule takes reads up to twice that age, and a new one would only hold the bus again
                st = know.safety
                reuse = st is not None and not self.silent("safety") and self.clock.now() - st.t <= SAFETY_REUSE_S
                safety_ok = True if reuse else await self.poll("safety")
            else:
                await self.poll(device)
        return safety_ok
