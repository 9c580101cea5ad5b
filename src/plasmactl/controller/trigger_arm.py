"""Arming the spray unit on the generator's pulse-end trigger line (contract v2, ``spray.trigger_line``).

The unit, once armed, starts the spray by itself at the set delay after the next pulse's end: it must be
armed before that pulse fires and after the pulse before it has ended (an arm during a pulse would spray on
that pulse's end). Two moments qualify:

- **ahead**: right after a spot's uncooled pulse is seen over, in the gap before the spot's next pulse is due,
  so that the write is not one more exchange between the spot's pulses (on a shared RTU bus each costs some
  8 ms of the cooling window). A failure there is only recorded: the tick arms again.
- **before the fire checks**, at the tick, unless the same tick was armed ahead. A failed arm there means no
  pulse now: it is tried again a spray poll period later, and after ``ARM_ATTEMPTS`` in a row it is the spray
  unit's command failure (a trip).

Anything between an ahead arm and its tick (a pause, a trip, a reset) starts a new tick, which arms again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.controller import interlocks as il
from plasmactl.controller import machine
from plasmactl.controller.trips import Trip
from plasmactl.ports import DeviceError

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

ARM_ATTEMPTS = 3  # ticks in a row whose trigger arm failed before it is the spray unit's command failure


class TriggerArm:
    """Which pulse the unit is armed for, and the arm commands."""

    def __init__(self, c: Controller) -> None:
        self.c = c
        self.pulse: int | None = None  # the pulse whose end the armed unit sprays on (cleared once recorded)
        self._failures = 0
        self._ahead: tuple[int, int] | None = None  # (pulse, tick sequence) armed in the gap before that tick

    async def _arm(self, window_end: float) -> DeviceError | None:
        c = self.c
        try:
            with c.calls.within(window_end), bus_priority.at(BusPriority.PULSE):  # one of the pulse's checks
                await c.calls.command("spray", lambda: c.d.spray.arm_trigger(c.spray_s, c.plan.cooling.delay_ms / 1e3))
        except DeviceError as exc:
            return exc
        return None

    async def ahead(self, number: int, window_end: float, tick_seq: int) -> None:
        """Arm for pulse ``number`` now, for the tick numbered ``tick_seq``."""
        exc = await self._arm(window_end)
        if exc is not None:
            self.c.log.emit("comm_error", device="spray", error=str(exc), attempt=0, command="arm_trigger")
            return
        self.pulse, self._ahead = number, (number, tick_seq)

    async def before_fire(self, number: int, window_end: float, tick_seq: int) -> bool | Trip:
        """At the tick of pulse ``number``: True when the unit is armed for it (now, or ahead for this very
        tick); False: not armed, no pulse now (try again later); a Trip: the arm failed for good, or the fire
        guards name a cause."""
        ahead, self._ahead = self._ahead, None
        if ahead == (number, tick_seq) and self.pulse == number:
            return True
        exc = await self._arm(window_end)
        if exc is None:
            self._failures = 0
            self.pulse = number
            return True
        c = self.c
        self._failures += 1
        c.log.emit("comm_error", device="spray", error=str(exc), attempt=self._failures, command="arm_trigger")
        trip = il.first_trip(machine.GUARDS[machine.GUARD_OF["fire"]], c.snapshot())
        if trip is None and self._failures >= ARM_ATTEMPTS:
            trip = il.command_failed("spray", exc)
        return False if trip is None else trip
