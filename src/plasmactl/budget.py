"""What a plan on a rig can meet: the earliest a spray can put water on the skin after the pulses it cools.

A spray covers the pulses since the last one; its window runs from the end of the first of them. The water
cannot come earlier than the last of those pulses' end (a spot's pulses go ``interval_s`` apart), plus the
time to see that pulse over (one status read on the rig's link), plus the plan's deliberate delay, plus the
valve's latency (known for a simulated spray unit; a real one's is learned at the first spray, so here it
counts as 0 and the controller's own rule guards the rest). A plan whose earliest water is already outside
the window is refused: every spray would miss it, with pulses fired into it.
"""

from __future__ import annotations

from dataclasses import dataclass

from plasmactl.plan import Plan
from plasmactl.rig import Rig


@dataclass(frozen=True)
class CoolingBudget:
    earliest_water_ms: float  # after the end of the first pulse a spray covers
    window_ms: float
    valve_known: bool

    @property
    def margin_ms(self) -> float:
        return self.window_ms - self.earliest_water_ms


def cooling_budget(plan: Plan, rig: Rig) -> CoolingBudget:
    p, c = plan.pulse, plan.cooling
    group_ms = (p.pulses_per_spot - 1) * p.interval_s * 1000.0 if c.when == "spot" else 0.0
    detect_ms = rig.pulse_latencies_s().detect_s * 1000.0
    after_ms = max(group_ms + detect_ms, c.delay_ms)  # the deliberate delay counts from the window's start
    valve_ms = rig.valve_latency_s() * 1000.0
    return CoolingBudget(after_ms + valve_ms, plan.limits.max_cooling_delay_ms, valve_ms > 0)


def budget_problems(plan: Plan, rig: Rig) -> list[str]:
    """What makes this plan on this rig fail by itself, with no fault: named with the numbers."""
    problems: list[str] = []
    b = cooling_budget(plan, rig)
    if b.margin_ms <= 0:
        what = "valve latency included" if b.valve_known else "the valve's latency not yet included"
        problems.append(
            f"the earliest a spray can put water on the skin is {b.earliest_water_ms:.1f} ms after the end of the"
            f" first pulse it cools ({what}), not inside limits.max_cooling_delay_ms = {b.window_ms:g}: every"
            " spray would miss its window; cool after every pulse, shorten pulse.interval_s or cooling.delay_ms"
        )
    oldest_ms = reading_age_ms(rig)
    bound_ms = rig.max_age_s("thermometer", plan.limits.reading_max_age_ms) * 1000.0
    if oldest_ms >= bound_ms:
        problems.append(
            f"a skin reading can be {oldest_ms:g} ms old when the monitor reads it (sample period, latency, poll"
            f" and one call), not below its bound {bound_ms:g} ms (limits.reading_max_age_ms or"
            " thermometer.max_age_ms): the session would stop at thermometer_stale with a healthy sensor"
        )
    return problems


def reading_age_ms(rig: Rig) -> float:
    """The oldest a healthy thermometer's latest sample can be just before the monitor's next read."""
    t = rig.thermometer
    sample_ms = getattr(t, "sample_ms", 0.0) + getattr(t, "latency_ms", 0.0)
    return sample_ms + t.poll_ms + t.call_budget_ms
