"""The self-test before anything is armed: every device answers, the generator holds the plan's setpoints
and energy limit and is not emitting, the valve is closed, the inputs are known and plausible.

Any problem refuses the session (``self_test_failed``, with every problem named); an E-stop pressed at
start ends it as ``estop``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plasmactl.controller import interlocks as il
from plasmactl.controller import machine
from plasmactl.controller.trips import Rule, Trip
from plasmactl.ports import DeviceError

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

FIRST_READING_S = 1.0  # how long the self-test waits for a thermometer's first sample
FIRST_READING_POLL_S = 0.05


async def run(c: Controller) -> Trip | None:
    calls, plan = c.calls, c.plan
    try:
        await calls.plasma_status()
        await calls.spray_status()
        await calls.safety()
        await _first_reading(c)
        limit = c.limits.energy_limit_j(plan.pulse.energy_j)
        await calls.command("plasma", lambda: c.d.plasma.configure(plan.pulse.energy_j, plan.pulse.pulse_ms, limit))
        st = await calls.plasma_status()
    except DeviceError as exc:
        return il.session_refused(str(exc), exc.device)
    c.cycle.count_base = st.pulse_count
    snap = c.snapshot()
    trips = il.all_trips(machine.SELF_TEST, snap)
    spray_st = snap.spray
    sprays = plan.spots.count if plan.cooling.when == "spot" else plan.pulse_count
    need_ml = sprays * il.spray_need_ml(snap)
    c.log.emit(
        "self_test",
        ok=not trips,
        problems=[t.reason for t in trips],
        reservoir_ml=None if spray_st is None else spray_st.reservoir_ml,
        plan_needs_ml=need_ml,
        skin_c=None if snap.reading is None else snap.reading.value_c,
        pulse_count=st.pulse_count,
        energy_limit_j=st.energy_limit_j,
    )
    if spray_st is not None and spray_st.reservoir_ml < need_ml:
        c.log.emit(
            "warning",
            message=f"reservoir {spray_st.reservoir_ml:.3g} ml is less than the {need_ml:.3g} ml the plan needs at"
            " the minimum flow: the session will stop at reservoir_low",
        )
    estop = next((t for t in trips if t.rule == Rule.ESTOP), None)
    if estop is not None or not trips:
        return estop
    return il.session_refused("; ".join(t.reason for t in trips), trips[0].device)


async def _first_reading(c: Controller) -> None:
    """A thermometer that has just been powered up may have no sample yet: wait for one (bounded)."""
    give_up = c.clock.now() + FIRST_READING_S
    while True:
        try:
            reading, new = await c.calls.reading()
        except DeviceError:
            if c.clock.now() >= give_up:
                raise
            await c.clock.sleep(FIRST_READING_POLL_S)
        else:
            if new:
                c.reading_taken(reading)
            return
