"""The ``SkinModel`` port: what the simulated rig needs from a skin thermal model.

This is a port (in the ports-and-adapters sense) so that the rest of the simulator - the simulated
handpiece, the simulated spray valve, the simulated IR thermometer - depends only on this small
interface and never on a particular model. The first adapter is the fast layered 1-D conduction
model (:class:`plasmactl.simulators.skin.layered1d.Layered1DSkin`); a later issue replaces it with
full physics behind the same port without touching its users.

Conventions shared by every adapter:

* Times are seconds on the session clock. The model has a current time (:attr:`SkinModel.time`);
  queries move it forward and must never go backwards (``ValueError``). Schedules may start in the
  future but never before the current time.
* Heat sources and sprays are intervals ``[t_start, t_end)``; ``t_end`` may be ``math.inf`` and be
  truncated later with ``end_heat`` / ``end_cool``. Sources and sprays may overlap (powers add; any
  number of overlapping sprays is the same as one spray).
* A heat source's power is spread uniformly over the model's field area (the treated patch, which is
  also the thermometer's field of view).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["SkinModel"]


@runtime_checkable
class SkinModel(Protocol):
    """A skin thermal model driven by heat pulses and sprays and queried at increasing times."""

    def heat(self, t_start: float, t_end: float, power_w: float) -> int:
        """Schedule a surface heat source of ``power_w`` watts over the field area on ``[t_start, t_end)``.

        ``t_end`` may be ``math.inf``. Returns a handle for :meth:`end_heat`.
        """
        ...

    def end_heat(self, handle: int, t: float) -> None:
        """Truncate the heat source ``handle`` at ``t`` (``t`` >= the current model time)."""
        ...

    def cool(self, t_start: float, t_end: float) -> int:
        """Schedule a spray on ``[t_start, t_end)`` (``t_end`` may be ``math.inf``); returns a handle."""
        ...

    def end_cool(self, handle: int, t: float) -> None:
        """Truncate the spray ``handle`` at ``t`` (``t`` >= the current model time)."""
        ...

    def surface_c(self, t: float) -> float:
        """Surface temperature in C at ``t``; ``t`` must not be before the current model time."""
        ...

    def temperature_at_c(self, depth_m: float, t: float) -> float:
        """Temperature in C at ``depth_m`` below the surface at ``t`` (same time rule as ``surface_c``)."""
        ...

    @property
    def time(self) -> float:
        """The model's current time (the last time it was advanced to or queried at)."""
        ...
