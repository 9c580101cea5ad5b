"""How long a spray takes from its command to water seen, learned from the sprays of the session.

Two figures, kept apart because they answer different questions:

- ``lead_s``: command to the status read that showed water (the valve's latency plus the read that saw it);
  the fire guard ``window_reachable`` adds it to a pulse's own time to predict when its cooling is confirmed.
- ``first_look_s``: when the spray watch reads the unit first. Learned only from the lead it would overshoot:
  the lead includes the read that saw the water, so a first look at a fraction of it lands later, the next
  lead is longer, and on a slow bus (an 8 ms RTU read) it climbs to several times the valve's real latency.
  So the look moves earlier whenever the valve was already open at it, and later only when it found the valve
  still closed: then by a tenth, but never by more than one read (the valve opened after the look, so a look
  one read later is still within a read of the valve) and never past the lead. Without that bound a slow
  valve on a fast bus (a 3.7 ms valve, 0.2 ms reads) stepped from just before the valve to 0.4 ms past it,
  then back by 0.7x, and so on, never settling within a read of it.
"""

from __future__ import annotations

FIRST_LOOK = 0.8  # of the first lead seen
EARLIER = 0.7  # the valve was open at the first look: look this much earlier next time
LATER = 1.1  # it was still closed: a little later next time


class ValveTiming:
    """The session's valve timing: what the rig says until the first spray is seen, then as seen."""

    def __init__(self, rig_valve_s: float) -> None:
        self._rig_valve_s = rig_valve_s  # the rig's figure (a simulator's setting; 0 when unknown)
        self._lead_s: float | None = None
        self._look_s: float | None = None

    def first_look_s(self) -> float:
        """From the command to the spray watch's first read."""
        return 0.0 if self._look_s is None else self._look_s

    def lead_s(self) -> float:
        """From the command to water seen: as last seen, else the rig's valve latency."""
        return self._lead_s if self._lead_s is not None else self._rig_valve_s

    def seen_open(self, t_cmd: float, t_seen: float, at_first_look: bool, read_s: float) -> None:
        """A spray commanded at ``t_cmd`` was seen with water at ``t_seen``; ``at_first_look``: by the first
        read (it may have opened long before); ``read_s``: how long the read that saw it took."""
        lead = max(0.0, t_seen - t_cmd)
        self._lead_s = lead
        if self._look_s is None:
            self._look_s = FIRST_LOOK * lead
        elif at_first_look:
            self._look_s *= EARLIER
        else:
            step = min(self._look_s * (LATER - 1.0), max(0.0, read_s))
            self._look_s = min(self._look_s + step, FIRST_LOOK * lead)
