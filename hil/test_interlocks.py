"""Every interlock of the rule enum tripped on the rig under test, through the fault injector (the served
simulators' control channel, or the operator on a real bench), and the safe state checked: plasma off first,
the rule and the reason in the record, no pulse while latched. A rule that no wire fault can trip is listed
in ``NOT_INJECTABLE`` with the reason (and the test that covers it elsewhere); a rule in neither fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from plasmactl import invariants
from plasmactl.controller.trips import LATCH, Rule
from plasmactl.faults import Fault, FaultScenario
from plasmactl.hil_runner import HilRun, HilRunner, Measurements, Trigger
from plasmactl.plan import Plan
from plasmactl.rig import Rig


def _f(device: str, kind: str, **kw: Any) -> Fault:
    return Fault.model_validate({"device": device, "kind": kind, "at_s": 0.0, **kw})


@dataclass(frozen=True)
class Case:
    """Inject ``fault`` at the ``nth`` record ``at`` (clear it ``clear_s`` later); ``limits`` tighten the plan."""

    fault: Fault
    at: str | None = "pulse_end"  # None: in the session's fault file, from its start
    nth: int = 2
    clear_s: float | None = None
    limits: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    also: tuple[Rule, ...] = ()  # rules that may trip first for the same cause (recorded, not a failure)


CASES: dict[Rule, Case] = {
    Rule.ESTOP: Case(_f("safety", "estop"), at="pulse_start"),
    # pauses go in between pulses (after a spray): on a shared RTU bus, a pause's safe state during a pulse's
    # cooling window competes with that spray's confirmation (a missed window then latches a fault, safely)
    Rule.SAFETY_INPUTS_STALE: Case(_f("link", "timeout", target="safety"), at="spray_end", clear_s=0.3),  # < watchdog
    Rule.FOOTSWITCH_RELEASED: Case(_f("safety", "footswitch_release", duration_s=1.0), at="spray_end"),
    Rule.TIP_OUT_OF_WINDOW: Case(_f("safety", "tip_lift", value=5.0, duration_s=1.0), at="spray_end"),
    # over a wire the distance register cannot go below 0: a reading past the sensor's 50 mm range instead
    Rule.TIP_IMPLAUSIBLE: Case(_f("safety", "tip_lift", value=60.0)),
    Rule.THERMOMETER_STALE: Case(_f("thermometer", "dropout")),
    Rule.THERMOMETER_IMPLAUSIBLE: Case(_f("thermometer", "stuck", value=90.0)),
    Rule.THERMOMETER_STUCK: Case(_f("thermometer", "stuck"), limits={"stuck_window_s": 1.0}),
    Rule.SKIN_TEMP_LIMIT: Case(_f("thermometer", "stuck", value=40.5)),
    Rule.SKIN_TEMP_HARD_LIMIT: Case(_f("thermometer", "stuck", value=46.0)),
    # the next pulse due just past the spray status's staleness bound, before the spray's watchdog (see below)
    Rule.SPRAY_STATUS_STALE: Case(_f("link", "timeout", target="spray"), at="spray_end"),
    Rule.RESERVOIR_LOW: Case(_f("spray", "reservoir_empty"), at="spray_end"),
    Rule.PLASMA_STATUS_STALE: Case(_f("link", "timeout", target="plasma"), at="spray_end"),
    # the generator's own heartbeat watchdog latches its fault code 1 while its link is silent; back, it says so
    Rule.DEVICE_FAULT: Case(
        _f("link", "timeout", target="plasma"), at="spray_end", clear_s=0.34, also=(Rule.PLASMA_STATUS_STALE,)
    ),
    Rule.DEVICE_WATCHDOG: Case(_f("link", "corrupt", target="plasma"), at="spray_start"),
    Rule.DEVICE_NO_REPLY: Case(_f("link", "delay", target="plasma", value=30.0), at="pulse_start"),
    # a pause makes the session outlast its limit (the plan needs ~3.2 s of its 4)
    Rule.SESSION_TIME_EXCEEDED: Case(
        _f("safety", "footswitch_release", duration_s=2.0), at="spray_end", limits={"max_session_s": 4.0}
    ),
    Rule.ENERGY_OUT_OF_TOLERANCE: Case(_f("plasma", "energy_drift", value=2.0)),
    Rule.COOLING_NOT_CONFIRMED: Case(_f("spray", "valve_stuck_closed")),
    Rule.SPRAY_FLOW_LOST: Case(_f("spray", "reservoir_empty"), at="spray_start"),
    Rule.PAUSE_TIMEOUT: Case(
        _f("safety", "footswitch_release", duration_s=5.0), at="spray_end", limits={"max_pause_s": 1.0}
    ),
    Rule.SELF_TEST_FAILED: Case(_f("thermometer", "stuck", value=90.0), at=None),  # from the start: a file
}

# the generator's heartbeat window (300 ms) must pass before the controller's watchdog (500 ms) does: on a
# loaded host the controller's may come first (a device_watchdog fault instead, as safe)
# on one shared RTU bus a silent spray unit's timeouts also delay the safety reads: the safety inputs may go
# stale first (a pause, then a device_watchdog fault: as safe). Every case gets a second try on a wire rig;
# every try that is set aside must still hold every safety invariant on its record.
ATTEMPTS = {Rule.DEVICE_FAULT: 3, Rule.SPRAY_STATUS_STALE: 3}
DEFAULT_ATTEMPTS = 2

NOT_INJECTABLE: dict[Rule, str] = {
    Rule.DOSE_LIMIT: "the ledger never fires a pulse a spot is not owed, so no device fault reaches the dose guard"
    " (tests/test_ledger.py and the campaigns show it holds)",
    Rule.UNEXPECTED_OUTPUT: "no wire fault turns the output on outside a pulse: a stuck output keeps a pulse on, which"
    " the energy and overrun checks end (tests/test_interlocks.py drives it with a faulty status)",
    Rule.PULSE_OVERRUN: "the generator's dose monitor ends a stuck pulse at its energy limit before the overrun bound"
    " over a wire, so the trip is energy_out_of_tolerance (tests/test_safety_classes.py, class 6, in-process)",
    Rule.PULSE_NOT_DELIVERED: "a served generator always counts a fired pulse (no_output delivers 0 J, an energy trip);"
    " a count that does not move is a device defect (tests/test_interlocks.py)",
    Rule.COOLING_WINDOW_UNREACHABLE: "the guard acts on the valve latency an earlier spray showed; a slower valve shows"
    " itself first as a missed window (cooling_not_confirmed) (tests/test_interlocks.py)",
    Rule.VALVE_NOT_CLOSED: "no fault kind holds the valve open (tests/test_interlocks.py: a valve status that stays"
    " open)",
    Rule.CONTROLLER_ERROR: "a software defect, not a device fault (tests/test_controller.py injects one)",
}


def test_every_rule_has_a_hil_case_or_a_reason() -> None:
    missing = [str(r) for r in Rule if r not in CASES and r not in NOT_INJECTABLE]
    both = [str(r) for r in Rule if r in CASES and r in NOT_INJECTABLE]
    assert not missing, f"rules with no HIL test and no reason: {missing}"
    assert not both, f"rules both tested and listed as not injectable: {both}"


def _plan(base: Plan, case: Case, rig: Rig | None = None, rule: Rule | None = None) -> Plan:
    data = base.model_dump(mode="json")
    if rule == Rule.SPRAY_STATUS_STALE and rig is not None:
        # the spray unit silent from a spray's end: the next pulse's guard must come after its status is stale
        # (the rig's bound) and before the device watchdog calls the silence a fault
        stale_s = rig.max_age_s("spray", base.limits.reading_max_age_ms)
        watchdog_s = rig.timing("spray").watchdog_ms / 1000.0
        spray_end_s = base.cooling.spray_ms / 1000.0 + 0.03  # after its pulse's start: valve latency and all
        interval_s = spray_end_s + stale_s + 0.5 * (watchdog_s - stale_s)
        data["pulse"] = {**data["pulse"], "interval_s": round(interval_s, 3)}
    data["limits"] = {**data["limits"], **case.limits}
    for section, fields in case.plan.items():
        data[section] = {**data[section], **fields}
    return Plan.model_validate(data)


def _check_safe_state(run: HilRun, rule: Rule) -> dict[str, Any]:
    """The trip of ``rule`` is in the record with its reason; plasma off is the first action after the first
    trip that found emission possible; no pulse starts while latched."""
    trips = [e for e in run.events if e["event"] == "interlock_trip"]
    mine = [t for t in trips if t["rule"] == rule]
    assert mine, f"no {rule} trip; trips: {[t['rule'] for t in trips]}; end: {run.events[-1]}"
    assert mine[0]["reason"], mine[0]
    first = next(i for i, e in enumerate(run.events) if e["event"] == "interlock_trip" and not e.get("latched"))
    actions = ("plasma_off", "plasma_disarm", "plasma_arm", "spray_command", "pulse_start")
    after = next((e for e in run.events[first + 1 :] if e["event"] in actions), None)
    if run.events[first].get("state") != "disconnected":
        assert after is not None and after["event"] == "plasma_off", after
    latched_at = next((float(e["t"]) for e in trips if e["latch"] != "pause"), None)
    if latched_at is not None:
        late = [e for e in run.all("pulse_start") if float(e["t"]) > latched_at]
        assert not late, f"pulses after the latch at {latched_at}: {late}"
    return mine[0]


@pytest.mark.parametrize("rule", sorted(CASES, key=str), ids=str)
def test_interlock_trips_on_the_rig(
    rule: Rule, hil_runner: HilRunner, hil_plan: Plan, hil_measure: Measurements
) -> None:
    case = CASES[rule]
    if case.at is None:
        run = hil_runner.run(plan=_plan(hil_plan, case), faults=FaultScenario(fault=[case.fault]))
        _check_safe_state(run, rule)
        return
    attempts = ATTEMPTS.get(rule, 1 if hil_runner.virtual else DEFAULT_ATTEMPTS)
    for attempt in range(1, attempts + 1):  # a race by nature is tried again before it counts as failed
        trigger = Trigger(case.at, case.fault, nth=case.nth, clear_after_s=case.clear_s)
        run = hil_runner.run(plan=_plan(hil_plan, case, hil_runner.rig, rule), triggers=[trigger])
        if rule in run.trips() or not trigger.injectable or attempt == attempts:
            break
        broken = invariants.check(run.events, summary=run.summary)
        assert not broken, f"{run.out_dir}: a try set aside broke safety invariants: {broken}"
        hil_measure.add("tries_set_aside", 1.0)
    if not trigger.injectable:
        hil_measure.not_verified.append(f"{rule}: {trigger.error}")
        pytest.skip(f"not verified on this rig: {trigger.error}")
    assert trigger.error is None, f"the injection went wrong: {trigger.error}"
    assert trigger.fired_at is not None, f"the moment {case.at} #{case.nth} never came"
    trip = _check_safe_state(run, rule)
    hil_measure.add("trip_after_injection_ms", 1000.0 * (float(trip["t"]) - trigger.fired_at))
    if LATCH.get(rule) == "pause" and (case.clear_s or case.fault.duration_s or 99.0) < 2.0:
        assert run.first("resume") is not None, "the pause never resumed once its cause was gone"
