"""The spray's own steps in the pulse cycle: commanding it (sent again, bounded, after a communication error
while its window lasts), recording a spray the trigger line started, watching it, and recording it seen wet.

The owner takes them (from :class:`~plasmactl.controller.cycle.PulseCycle`, which they are a part of, and from
the safe state, which confirms the spray of a pulse that ended in a trip).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.controller import watchers
from plasmactl.controller.trigger_arm import TriggerArm
from plasmactl.controller.trips import CoolingFacts
from plasmactl.ports import DeviceError, SprayStatus

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

SPRAY_ATTEMPTS = 3  # a spray command that fails is sent again while its cooling window lasts


class SpraySteps:
    """The spray half of the pulse cycle; the state it keeps is the cycle's own."""

    c: Controller
    sprays: int  # sprays commanded (numbering)
    sprays_confirmed: int
    trigger: TriggerArm
    last_end: float  # the earliest the latest pulse can have ended

    async def send_spray(self, meanwhile: Callable[[], None] | None = None) -> tuple[int, float]:
        """Command the spray for the pulses waiting; sent again (bounded) after a communication error while
        the window lasts. ``meanwhile`` is called once, as soon as the first command is on its way (or as it
        ends, whatever its fate). Returns (spray number, command time); raises when it could not be sent."""
        c = self.c
        pend = c.know.pending
        assert pend is not None
        deadline = pend.window_end(c.limits)
        for attempt in range(1, SPRAY_ATTEMPTS + 1):
            t_cmd = c.clock.now()
            first = meanwhile if attempt == 1 else None  # the call runs it once, whatever the attempt's fate
            try:
                with c.calls.within(deadline), bus_priority.at(BusPriority.COOLING):
                    await c.calls.command("spray", lambda: c.d.spray.spray(c.spray_s), meanwhile=first)
                break
            except DeviceError as exc:
                c.log.emit("comm_error", device="spray", error=str(exc), attempt=attempt)
                if attempt == SPRAY_ATTEMPTS or c.clock.now() + c.calls.budget_s["spray"] > deadline:
                    raise
        return self._spray_commanded(pend, t_cmd, attempt=attempt)

    def _spray_commanded(self, pend: CoolingFacts, t_cmd: float, **how: object) -> tuple[int, float]:
        """Number the spray commanded at ``t_cmd`` for the pulses ``pend`` waiting, and record it."""
        c = self.c
        self.sprays += 1
        c.know.pending = replace(pend, spray=self.sprays, t_spray_cmd=t_cmd)
        c.log.emit(
            "spray_command", spray=self.sprays, pulses=list(pend.pulses), spray_ms=c.plan.cooling.spray_ms, **how
        )
        return self.sprays, t_cmd

    def spray_by_trigger(self, delay_s: float) -> tuple[int, float]:
        """Record the spray the trigger line started for the pulses waiting: commanded (by the unit itself)
        at the earliest the triggering pulse - the last of them, just ended - can have ended, plus the delay
        (not the window's start: for a spot's pulses that is the first one's end, and the valve's latency
        learned from it would count the spot's pulses). Confirmed by its feedback as any spray."""
        c = self.c
        pend = c.know.pending
        assert pend is not None
        self.trigger.pulse = None
        t_cmd = max(pend.window_start, self.last_end) + delay_s
        return self._spray_commanded(pend, t_cmd, attempt=0, timed_by="trigger_line")

    def watch_spray(self, spray: int, t_cmd: float) -> None:
        c = self.c
        pend = c.know.pending
        assert pend is not None
        deadline = pend.window_end(c.limits)
        c.spawn("spray", watchers.watch_spray(c, spray, t_cmd, deadline))

    def confirm_spray(self, spray: int, st: SprayStatus) -> None:
        """Record a spray seen open with water inside the window (the cycle's and the safe state's path)."""
        c = self.c
        pend = c.know.pending
        assert pend is not None
        delay_ms = (st.t - pend.window_start) * 1000.0
        c.log.emit(
            "spray_start",
            spray=spray,
            pulses=list(pend.pulses),
            t_open=st.t,
            delay_ms=delay_ms,
            flow_ml_s=st.flow_ml_s,
            reservoir_ml=st.reservoir_ml,
        )
        c.ledger.cooled(pend.pulses, delay_ms)
        bus_priority.release_routine()  # the water is seen: the chain is over
        self.sprays_confirmed += 1
        c.know.pending = replace(pend, confirmed=True, t_spray_end=st.t + c.spray_s, t_wet=st.t)
