"""The pulse-end trigger line: the generator's output-off edge, wired to the spray unit's trigger input.

Real cryogen-spray devices time the spurt in hardware relative to the pulse, not by a software round trip.
Here the generator announces each pulse's planned end when it fires and the earlier end when the pulse is
cut; the line delivers one edge per pulse, at the moment the output actually went off, to whoever listens
(the spray unit). Delivery is exact in the world's time: a clock timer at the edge's time plus the
listener's delay, and every listener entry point first takes what is due (``take_due``), so a read just
after an edge never sees the world as it was before it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from plasmactl.clock import Clock

_LINES: weakref.WeakKeyDictionary[object, TriggerLine] = weakref.WeakKeyDictionary()


@dataclass
class _Edge:
    pulse: int
    t: float  # when the output goes (went) off
    handle: asyncio.TimerHandle | None = None


class TriggerLine:
    """One line per simulated world; at most one listener (the spray unit) with its own delay."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._edge: _Edge | None = None  # the next edge: the pulse in progress
        self._listener: Callable[[int, float], None] | None = None
        self._delay_s = 0.0
        self.edges = 0  # edges delivered

    @classmethod
    def of(cls, world: object, clock: Clock) -> TriggerLine:
        """The line of ``world`` (made on first use: the generator and the spray unit of a world share it)."""
        line = _LINES.get(world)
        if line is None:
            line = _LINES[world] = cls(clock)
        return line

    def listen(self, listener: Callable[[int, float], None], delay_s: float) -> None:
        """``listener(pulse, t_edge)`` is called ``delay_s`` after each edge (in the world's time)."""
        self._listener, self._delay_s = listener, delay_s
        if self._edge is not None:
            self._arm(self._edge)

    def pulse_ends_at(self, pulse: int, t_off: float) -> None:
        """The generator: pulse ``pulse``'s output goes off at ``t_off`` (planned at fire, earlier when cut)."""
        edge = self._edge
        if edge is not None and edge.pulse != pulse:
            self._deliver()  # an earlier pulse's edge not yet delivered (cannot be later than this one)
            edge = None
        if edge is None:
            edge = self._edge = _Edge(pulse, t_off)
        elif t_off < edge.t:
            edge.t = t_off
        self._arm(edge)

    def take_due(self) -> None:
        """Deliver an edge whose time (plus the listener's delay) has come; idempotent."""
        edge = self._edge
        if edge is not None and edge.t + self._delay_s <= self.clock.now():
            self._deliver()

    def _arm(self, edge: _Edge) -> None:
        if edge.handle is not None:
            edge.handle.cancel()
            edge.handle = None
        if self._listener is not None:  # nobody listening: the edge waits for one, or for the next pulse
            edge.handle = self.clock.call_at(edge.t + self._delay_s, self.take_due)

    def _deliver(self) -> None:
        edge, self._edge = self._edge, None
        if edge is None:
            return
        if edge.handle is not None:
            edge.handle.cancel()
        self.edges += 1
        if self._listener is not None:
            self._listener(edge.pulse, edge.t)
