"""The simulated world the devices share: the clock, the skin, the seeded randomness and the fault schedule.

Device state is computed lazily from command times (a pulse fired at t is on during [t+latency,
t+latency+length)), so simulated devices cost nothing while nobody asks them anything: the session's
cost grows with the number of requests, not with session seconds.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from plasmactl.clock import Clock
from plasmactl.faults import Fault, FaultScenario
from plasmactl.simulators.skin.port import SkinModel

DEVICE_STREAMS = ("plasma", "spray", "thermometer", "safety")


@dataclass
class PulseRecord:
    """A pulse as the generator emitted it (``t_off`` moves earlier when the pulse is cut)."""

    number: int
    t_on: float
    t_off: float
    energy_j: float  # energy of the full pulse; a cut pulse delivers its fraction
    length_s: float
    heat: int | None  # skin heat-source handle
    set_j: float = 0.0  # the energy and pulse length setpoints the generator fired it with
    set_ms: float = 0.0

    def delivered_j(self) -> float:
        if self.length_s <= 0 or self.energy_j <= 0:
            return 0.0
        return self.energy_j * min(1.0, max(0.0, (self.t_off - self.t_on) / self.length_s))


@dataclass
class SprayRecord:
    """A spray as the unit delivered it: commanded at ``t_cmd``, valve open over [t_open, t_close) (None:
    it never opened), ``wet``: water came out (the reservoir was not dry when the valve opened), and until
    ``wet_until`` (before ``t_close`` when the reservoir ran dry during the spray; None: never wet)."""

    t_cmd: float
    t_open: float | None
    t_close: float | None
    wet: bool
    wet_until: float | None = None


@dataclass
class SimRecord:
    """What the simulated devices physically did: the ground truth a session's record is checked against."""

    pulses: list[PulseRecord] = field(default_factory=list)
    sprays: list[SprayRecord] = field(default_factory=list)
    # the generator's state now (armed, emitting), set by the generator model
    generator_state: Callable[[], dict[str, bool]] | None = None

    def as_json(self, faults: FaultSchedule) -> dict[str, object]:
        generator = None if self.generator_state is None else self.generator_state()
        return {
            "generator": generator,
            "pulses": [
                {
                    "number": p.number,
                    "t_on": p.t_on,
                    "t_off": p.t_off,
                    "energy_j": p.delivered_j(),
                    "set_j": p.set_j,
                    "set_ms": p.set_ms,
                }
                for p in self.pulses
            ],
            "sprays": [
                {"t_cmd": s.t_cmd, "t_open": s.t_open, "t_close": s.t_close, "wet": s.wet, "wet_until": s.wet_until}
                for s in self.sprays
            ],
            "faults": [
                {
                    "device": a.fault.device,
                    "kind": a.fault.kind,
                    "target": a.fault.target,
                    "value": a.fault.value,
                    "start": None if math.isinf(a.start) else a.start,
                    "end": None if math.isinf(a.end) else a.end,
                }
                for a in faults.items
            ],
        }


class TissueSink(Protocol):
    """Where the devices report what they physically did to the skin (see tissue.TissueRecorder)."""

    def pulse(self, number: int, t_on: float, t_off: float, energy_j: float) -> None: ...
    def cut_pulse(self, t: float) -> None: ...
    def spray(self, t_open: float, t_close: float) -> None: ...
    def stop_spray(self, t: float) -> None: ...


@dataclass
class ActiveFault:
    """A fault with its window resolved to session times (start is inf until its pulse has happened)."""

    fault: Fault
    start: float
    end: float

    @classmethod
    def starting(cls, fault: Fault, start: float) -> ActiveFault:
        """The fault's window from ``start`` (inf: not known yet) for its duration (none: to the end)."""
        end = start + fault.duration_s if fault.duration_s is not None else math.inf
        return cls(fault, start, end)

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


class FaultSchedule:
    """When each fault of a scenario is active; ``after_pulses`` faults resolve as pulses end."""

    def __init__(self, scenario: FaultScenario) -> None:
        self.items = [ActiveFault.starting(f, f.at_s if f.at_s is not None else math.inf) for f in scenario.fault]
        # Which devices any fault concerns (a pending fault only gets its times later; an injected one is
        # added), so a device without one can skip the lookups.
        self._devices: frozenset[str] = frozenset()
        self._links: frozenset[str | None] = frozenset()
        self._index()

    def affects(self, device: str) -> bool:
        """Whether some fault of the scenario is of ``device`` itself (not of its link)."""
        return device in self._devices

    def affects_link(self, device: str) -> bool:
        """Whether some link fault of the scenario targets ``device``."""
        return device in self._links

    def add(self, fault: Fault, start: float) -> int:
        """A fault injected while the session runs, active from ``start``; its handle for :meth:`end`."""
        self.items.append(ActiveFault.starting(fault, start))
        self._index()
        return len(self.items) - 1

    def end(self, handle: int, t: float) -> bool:
        """End fault ``handle`` at ``t`` (it stays in the record with its window); False if it had already."""
        item = self.items[handle]
        if item.end <= t:
            return False
        self.items[handle] = ActiveFault(item.fault, min(item.start, t), t)
        return True

    def _index(self) -> None:
        self._devices = frozenset(item.fault.device for item in self.items)
        self._links = frozenset(item.fault.target for item in self.items if item.fault.device == "link")

    def pulse_ends(self, pulse: int, t_end: float) -> bool:
        """Resolve faults waiting for the end of pulse number ``pulse``; True if any did."""
        changed = False
        for i, item in enumerate(self.items):
            if item.fault.after_pulses == pulse and math.isinf(item.start):
                self.items[i] = ActiveFault.starting(item.fault, t_end)
                changed = True
        return changed

    def find(self, device: str, kind: str, t: float) -> ActiveFault | None:
        """The last-declared active fault of this device and kind (later entries win)."""
        found: ActiveFault | None = None
        for item in self.items:
            if item.fault.device == device and item.fault.kind == kind and item.active(t):
                found = item
        return found

    def first_start(self, device: str, kind: str, t0: float, t1: float) -> float:
        """The earliest start in [t0, t1) of a fault of this device and kind (inf: none known)."""
        return min(
            (i.start for i in self.items if i.fault.device == device and i.fault.kind == kind and t0 <= i.start < t1),
            default=math.inf,
        )

    def link_down(self, target: str, t: float) -> ActiveFault | None:
        for item in self.items:
            if item.fault.device == "link" and item.fault.target == target and item.active(t):
                return item
        return None

    def boundaries_after(self, t: float, devices: tuple[str, ...]) -> float:
        """The next start or end of a fault affecting one of ``devices`` after ``t`` (inf if none known)."""
        best = math.inf
        for item in self.items:
            if item.fault.affected not in devices:
                continue
            for edge in (item.start, item.end):
                if t < edge < best:
                    best = edge
        return best


class SimWorld:
    """Shared by the simulated devices of one session."""

    def __init__(self, clock: Clock, skin: SkinModel, scenario: FaultScenario, seed: int) -> None:
        self.clock = clock
        self.skin = skin
        self.faults = FaultSchedule(scenario)
        streams = np.random.SeedSequence(seed).spawn(len(DEVICE_STREAMS))
        self.rng = {name: np.random.default_rng(s) for name, s in zip(DEVICE_STREAMS, streams, strict=True)}
        self._on_change: list[Callable[[], None]] = []
        self._link_waiters: set[asyncio.Future[None]] = set()
        self.tissue: TissueSink | None = None  # per-spot physics, when the rig asks for it
        self.record = SimRecord()

    def record_json(self) -> dict[str, object]:
        """What the devices physically did, with the fault windows (``simulator.json``)."""
        return self.record.as_json(self.faults)

    def on_schedule_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the fault schedule changes (a device waiting on a change re-plans, a
        device that skipped fault lookups looks again)."""
        self._on_change.append(callback)

    def pulse_ends(self, pulse: int, t_end: float) -> None:
        if self.faults.pulse_ends(pulse, t_end):
            self._changed()

    def inject(self, fault: Fault) -> int:
        """Start ``fault`` now, whatever its ``at_s``/``after_pulses`` say (for its ``duration_s``, else until
        :meth:`clear`): the run-time injection of tests and the served control channel. Returns its handle."""
        handle = self.faults.add(fault, self.clock.now())
        self._changed()
        return handle

    def clear(self, handle: int) -> bool:
        """End the fault ``handle`` (an index of ``faults.items``) now; False if it was not active any more."""
        if not 0 <= handle < len(self.faults.items):
            raise IndexError(f"no fault {handle}: {len(self.faults.items)} known")
        ended = self.faults.end(handle, self.clock.now())
        if ended:
            self._changed()
        return ended

    def _changed(self) -> None:
        for callback in self._on_change:
            callback()
        waiters, self._link_waiters = self._link_waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def link(self, device: str) -> None:
        """A request to ``device`` passes its link; while a link fault is active it does not return (until
        the fault ends, or is cleared)."""
        loop = asyncio.get_running_loop()
        while True:
            down = self.faults.link_down(device, self.clock.now())
            if down is None:
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._link_waiters.add(fut)
            handle = None if math.isinf(down.end) else self.clock.call_at(down.end, functools.partial(_wake, fut))
            try:
                await fut  # silence; the caller's timeout ends it, or the fault's end, or a schedule change
            finally:
                self._link_waiters.discard(fut)
                if handle is not None:
                    handle.cancel()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
