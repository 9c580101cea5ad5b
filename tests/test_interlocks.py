"""Tests for the interlock rules (src/plasmactl/controller/interlocks.py).

Every rule passes on a healthy snapshot and trips, with its exact rule name, latch and a reason carrying
the numbers, on a bad one; the boundaries are where the docstrings put them. Unknown and stale inputs
trip (fail closed). Every rule the controller can emit is in the Rule enum and in a rule set.
"""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from plasmactl.controller import interlocks as il
from plasmactl.controller import machine
from plasmactl.controller.machine import GUARDS
from plasmactl.controller.trips import LATCH, CoolingFacts, PulseFacts, Rule, Snapshot, SpotFacts, Trip
from plasmactl.limits import Caps, Limits
from snapshots import ENERGY_J, LIMITS, MAX_AGE, NOW, healthy, plasma, reading, safety, spray_status

CONTROLLER = Path(__file__).resolve().parents[1] / "src" / "plasmactl" / "controller"
SETS: dict[str, tuple[il.Interlock, ...]] = {
    **{f"guard {k}": v for k, v in GUARDS.items()},
    "self_test": machine.SELF_TEST,
    "continuous": machine.CONTINUOUS,
    "continuous_active": machine.CONTINUOUS_ACTIVE,
    "pulse_watch": machine.PULSE_WATCH,
    "pulse_end": machine.PULSE_END,
    "cooling_watch": machine.COOLING_WATCH,
}
ALL_RULES = tuple(dict.fromkeys(fn for fns in SETS.values() for fn in fns))


def tripped(rule: il.Interlock, snap: Snapshot) -> Trip:
    trip = rule(snap)
    assert trip is not None, f"{getattr(rule, '__name__', rule)} did not trip"
    assert isinstance(trip, Trip) and isinstance(trip.rule, Rule)
    return trip


# ------------------------------------------------------------------------------------------ registry


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.__name__)
def test_every_rule_passes_on_a_healthy_snapshot(rule: il.Interlock) -> None:
    assert rule(healthy()) is None


@pytest.mark.parametrize("name", sorted(SETS))
def test_rule_sets_pass_on_a_healthy_snapshot(name: str) -> None:
    assert il.first_trip(SETS[name], healthy()) is None


def test_every_rule_is_in_a_set_or_an_event_and_every_set_rule_declares_its_rules() -> None:
    declared = {r for fn in ALL_RULES for r in il.rules_of(fn)}
    assert all(il.rules_of(fn) for fn in ALL_RULES), "a rule function without @emits"
    assert declared | set(machine.EVENT_RULES) == set(Rule), set(Rule) - declared - set(machine.EVENT_RULES)


def test_every_rule_function_of_the_module_is_used_by_a_set() -> None:
    functions = {
        name
        for name, obj in vars(il).items()
        if callable(obj) and il.rules_of(obj) and getattr(obj, "__module__", "") == il.__name__
    }
    assert functions == {fn.__name__ for fn in ALL_RULES}


def _trips_built_in(path: Path) -> list[str]:
    """What each Trip(...) in a source file is built with: a Rule member, or a name (a parameter)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Trip" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Attribute) and getattr(arg.value, "id", None) == "Rule":
                names.append(arg.attr)
            else:
                names.append(ast.unparse(arg))
    return names


def test_trips_are_built_only_in_interlocks_and_only_of_enum_rules() -> None:
    for path in sorted(CONTROLLER.glob("*.py")):
        if path.name not in ("interlocks.py", "trips.py"):
            assert _trips_built_in(path) == [], path.name
    built = _trips_built_in(CONTROLLER / "interlocks.py")
    assert {b for b in built if b not in Rule.__members__} == {"rule"}  # the fail-closed helper's parameter
    in_sets = {r.name for fn in ALL_RULES for r in il.rules_of(fn)} | {r.name for r in machine.EVENT_RULES}
    assert {b for b in built if b in Rule.__members__} <= in_sets


def test_latches() -> None:
    assert {r for r, latch in LATCH.items() if latch == "pause"} == {
        Rule.SAFETY_INPUTS_STALE,
        Rule.FOOTSWITCH_RELEASED,
        Rule.TIP_OUT_OF_WINDOW,
        Rule.SPRAY_STATUS_STALE,
        Rule.PLASMA_STATUS_STALE,
    }
    assert LATCH[Rule.ESTOP] == "estop"
    assert Trip(Rule.TIP_IMPLAUSIBLE, "x").latch == "fault"
    assert Trip(Rule.COOLING_NOT_CONFIRMED, "x").latch == "fault"


def test_rule_names_are_the_log_strings() -> None:
    assert str(Rule.ESTOP) == "estop" and Rule("cooling_not_confirmed") is Rule.COOLING_NOT_CONFIRMED
    assert len({str(r) for r in Rule}) == len(Rule)


def test_rules_are_pure() -> None:
    snap = healthy(reading=reading(41.0), safety=safety(footswitch=False))
    assert [rule(snap) for rule in ALL_RULES] == [rule(snap) for rule in ALL_RULES]
    assert snap == healthy(reading=reading(41.0), safety=safety(footswitch=False))


# ------------------------------------------------------------------------------------------ safety inputs


def test_estop() -> None:
    trip = tripped(il.estop, healthy(safety=safety(estop=True)))
    assert trip == Trip(Rule.ESTOP, "E-stop input is active", "safety") and trip.latch == "estop"


def test_a_pressed_estop_wins_even_on_a_stale_state() -> None:
    trip = tripped(il.estop, healthy(safety=safety(estop=True, t=NOW - 10.0)))
    assert trip.rule == Rule.ESTOP


@pytest.mark.parametrize("state", [None, "stale"])
def test_unknown_or_stale_safety_inputs_block_emission(state: str | None) -> None:
    snap = healthy(safety=None if state is None else safety(t=NOW - 0.36))
    trip = tripped(il.estop, snap)
    assert trip.rule == Rule.SAFETY_INPUTS_STALE and trip.latch == "pause" and trip.device == "safety"
    assert "bound 350 ms" in trip.reason
    for guard in ("ARM", "FIRE", "RESUME", "RESET"):
        first = il.first_trip(GUARDS[guard], snap)
        assert first is not None and first.rule == Rule.SAFETY_INPUTS_STALE, guard


def test_safety_staleness_boundary() -> None:
    assert il.estop(healthy(safety=safety(t=NOW - MAX_AGE["safety"]))) is None
    assert tripped(il.estop, healthy(safety=safety(t=math.nextafter(NOW - MAX_AGE["safety"], 0.0))))


def test_footswitch() -> None:
    trip = tripped(il.footswitch, healthy(safety=safety(footswitch=False)))
    assert trip.rule == Rule.FOOTSWITCH_RELEASED and trip.latch == "pause"


@pytest.mark.parametrize("distance", [LIMITS.tip_min_mm, LIMITS.tip_max_mm, 0.5, 1.0])
def test_tip_inside_window_including_edges_passes(distance: float) -> None:
    assert il.tip_window(healthy(safety=safety(tip_distance_mm=distance))) is None


@pytest.mark.parametrize(
    "distance", [0.0, 0.1, math.nextafter(LIMITS.tip_min_mm, -1), math.nextafter(LIMITS.tip_max_mm, 9), 4.0, 50.0]
)
def test_tip_outside_the_window_pauses(distance: float) -> None:
    trip = tripped(il.tip_window, healthy(safety=safety(tip_distance_mm=distance)))
    assert trip.rule == Rule.TIP_OUT_OF_WINDOW and trip.latch == "pause"
    assert f"{distance:.2f} mm" in trip.reason and "[0.2, 1.5] mm" in trip.reason


@pytest.mark.parametrize("distance", [-0.01, math.nextafter(Caps.TIP_SENSOR_MAX_MM, 99), 80.0, math.nan, math.inf])
def test_an_impossible_tip_reading_is_a_sensor_fault(distance: float) -> None:
    trip = tripped(il.tip_window, healthy(safety=safety(tip_distance_mm=distance)))
    assert trip.rule == Rule.TIP_IMPLAUSIBLE and trip.latch == "fault"


# ------------------------------------------------------------------------------------------ thermometer


@pytest.mark.hazard("H4")
def test_thermometer_stale_without_reading() -> None:
    assert tripped(il.thermometer_stale, healthy(reading=None)).reason == "no skin temperature reading yet"


def test_thermometer_stale_boundary() -> None:
    limit_s = MAX_AGE["thermometer"]
    assert il.thermometer_stale(healthy(reading=reading(t=NOW - limit_s))) is None
    trip = tripped(il.thermometer_stale, healthy(reading=reading(t=math.nextafter(NOW - limit_s, 0.0))))
    assert trip.rule == Rule.THERMOMETER_STALE and trip.latch == "fault"
    trip = tripped(il.thermometer_stale, healthy(reading=reading(t=NOW - 1.25)))
    assert trip.reason == "skin temperature last known 1250 ms ago (bound 500 ms)"


@pytest.mark.parametrize("value", [LIMITS.plausible_min_c, LIMITS.plausible_max_c, 20.0])
def test_thermometer_plausible_edges_pass(value: float) -> None:
    assert il.thermometer_plausible(healthy(reading=reading(value))) is None


@pytest.mark.hazard("H4")
@pytest.mark.parametrize("value", [2.0, math.nextafter(5.0, 0.0), math.nextafter(50.0, 100.0), 80.0, math.nan])
def test_thermometer_implausible_trips(value: float) -> None:
    trip = tripped(il.thermometer_plausible, healthy(reading=reading(value)))
    assert trip.rule == Rule.THERMOMETER_IMPLAUSIBLE and "[5, 50] C" in trip.reason


@pytest.mark.hazard("H4")
def test_thermometer_stuck_needs_pulses_since_the_last_movement() -> None:
    assert il.thermometer_stuck(healthy(reading_moved_t=NOW - 60.0, pulses_since_moved=0)) is None
    trip = tripped(il.thermometer_stuck, healthy(reading_moved_t=NOW - 60.0, pulses_since_moved=5))
    assert "for 60.0 s" in trip.reason and "5 pulses" in trip.reason
    window = LIMITS.stuck_window_s
    assert il.thermometer_stuck(healthy(reading_moved_t=NOW - window, pulses_since_moved=9)) is None
    assert tripped(
        il.thermometer_stuck, healthy(reading_moved_t=math.nextafter(NOW - window, 0.0), pulses_since_moved=9)
    )


@pytest.mark.hazard("H4")
def test_skin_temperature_rules() -> None:
    limit, hard = LIMITS.skin_temp_max_c, LIMITS.hard_trip_c
    assert hard == limit + Caps.HARD_TRIP_MARGIN_C
    assert il.skin_temp_before_pulse(healthy(reading=reading(math.nextafter(limit, 0.0)))) is None
    assert (
        tripped(il.skin_temp_before_pulse, healthy(reading=reading(limit))).reason
        == "skin 40.00 C is at or over the limit 40 C"
    )
    for value in (limit, 42.0, hard):
        assert il.skin_temp_hard(healthy(reading=reading(value))) is None
    assert (
        tripped(il.skin_temp_hard, healthy(reading=reading(45.25))).reason == "skin 45.25 C exceeds the hard limit 43 C"
    )
    lim = Limits(skin_temp_max_c=38.0)
    assert "limit 38 C" in tripped(il.skin_temp_before_pulse, healthy(limits=lim, reading=reading(38.0))).reason


# ------------------------------------------------------------------------------------------ spray unit


def test_reservoir_needs_the_next_spray_at_the_largest_flow_seen() -> None:
    needed = 0.5 * 0.25  # flow seen 0.5 ml/s, spray 0.25 s: 0.125 ml, exact in binary
    assert il.reservoir(healthy(spray_s=0.25, spray=spray_status(reservoir_ml=needed))) is None
    trip = tripped(il.reservoir, healthy(spray_s=0.25, spray=spray_status(reservoir_ml=math.nextafter(needed, 0.0))))
    assert trip.rule == Rule.RESERVOIR_LOW and trip.latch == "fault"
    # before any spray was seen, the minimum flow sets the need
    snap = healthy(spray_s=1.0, flow_seen_ml_s=0.0, spray=spray_status(reservoir_ml=LIMITS.min_spray_flow_ml_s * 0.99))
    assert tripped(il.reservoir, snap).rule == Rule.RESERVOIR_LOW


@pytest.mark.parametrize("cooling_status", ["none", "stale"])
def test_an_unknown_or_stale_spray_unit_blocks_emission(cooling_status: str) -> None:
    snap = healthy(spray=None if cooling_status == "none" else spray_status(t=NOW - 0.31))
    trip = tripped(il.reservoir, snap)
    assert trip.rule == Rule.SPRAY_STATUS_STALE and trip.latch == "pause"


@pytest.mark.parametrize(
    ("changes", "wet"),
    [
        ({"valve_open": True, "flow_ml_s": 0.5}, True),
        ({"valve_open": True, "flow_ml_s": LIMITS.min_spray_flow_ml_s}, True),
        ({"valve_open": True, "flow_ml_s": 0.0}, False),  # the valve open, no water: a dry reservoir
        ({"valve_open": True, "flow_ml_s": 0.5, "reservoir_ml": 0.0}, False),
        ({"valve_open": False, "flow_ml_s": 0.5}, False),
    ],
)
@pytest.mark.hazard("H1")
def test_water_on_skin_needs_feedback_and_flow(changes: dict[str, Any], wet: bool) -> None:
    assert il.water_on_skin(spray_status(**changes), LIMITS) is wet


def test_cooling_deadline() -> None:
    pend = CoolingFacts((7,), window_start=NOW - 0.1, spray=3)
    deadline = pend.window_start + 0.1
    # the window's last instant is still in time (a spray seen with water then is confirmed, not missed)
    assert il.cooling_deadline(healthy(pending=pend, now=deadline)) is None
    trip = tripped(il.cooling_deadline, healthy(pending=pend, now=math.nextafter(deadline, math.inf)))
    assert trip.rule == Rule.COOLING_NOT_CONFIRMED and "spray 3" in trip.reason and "pulse 7" in trip.reason
    assert il.cooling_deadline(healthy(pending=CoolingFacts((7,), NOW - 0.1, 3, True), now=NOW + 1.0)) is None
    assert "no spray commanded" in tripped(il.cooling_deadline, healthy(pending=CoolingFacts((7,), NOW - 1.0))).reason


@pytest.mark.hazard("H1")
def test_window_reachable_refuses_a_pulse_that_would_bring_the_spray_late() -> None:
    """With spot cooling the spray follows the spot's last pulse: another pulse now, with the spray's lead
    (fire, pulse, the valve as last seen), must still bring water inside the first pulse's window."""
    pend = CoolingFacts((5,), window_start=NOW - 0.030)  # the window ends at NOW + 0.070
    assert il.window_reachable(healthy(pending=pend, cooling_lead_s=0.070)) is None  # exactly at its end
    trip = tripped(il.window_reachable, healthy(pending=pend, cooling_lead_s=0.071))
    assert trip.rule == Rule.COOLING_WINDOW_UNREACHABLE and "pulse 5" in trip.reason and "1.0 ms after" in trip.reason
    assert il.window_reachable(healthy(pending=replace(pend, confirmed=True), cooling_lead_s=1.0)) is None
    assert il.window_reachable(healthy(pending=None, cooling_lead_s=1.0)) is None


@pytest.mark.hazard("H10")
def test_valve_must_close_after_its_spray() -> None:
    pend = CoolingFacts((1,), NOW - 1.0, spray=2, confirmed=True, t_spray_end=NOW - il.VALVE_CLOSE_GRACE_S)
    assert il.valve_closed(healthy(pending=pend, spray=spray_status(valve_open=True))) is None
    late = CoolingFacts((1,), NOW - 1.0, spray=2, confirmed=True, t_spray_end=NOW - 0.6)
    assert (
        tripped(il.valve_closed, healthy(pending=late, spray=spray_status(valve_open=True))).rule
        == Rule.VALVE_NOT_CLOSED
    )
    assert il.valve_closed(healthy(pending=late, spray=spray_status(valve_open=False))) is None


# ------------------------------------------------------------------------------------------ generator


def test_plasma_status_must_be_fresh() -> None:
    assert tripped(il.plasma_status_fresh, healthy(plasma=None)).rule == Rule.PLASMA_STATUS_STALE
    assert tripped(il.plasma_status_fresh, healthy(plasma=plasma(t=NOW - 0.31))).latch == "pause"


@pytest.mark.hazard("H5")
def test_unexpected_output_is_judged_on_a_status_after_the_last_off() -> None:
    on = plasma(output_on=True, t=NOW)
    assert tripped(il.unexpected_output, healthy(plasma=on)).rule == Rule.UNEXPECTED_OUTPUT
    assert il.unexpected_output(healthy(plasma=on, output_off_since=NOW)) is None  # the status predates the off
    in_flight = PulseFacts(4, 4, NOW - 0.002, NOW + 0.01, 4)
    assert il.unexpected_output(healthy(plasma=on, pulse=in_flight)) is None
    paused = healthy(plasma=on, output_off_since=NOW - 0.5, paused_since=NOW - 0.5)
    assert il.first_trip(machine.CONTINUOUS, paused, skip_latch=("pause",)).rule == Rule.UNEXPECTED_OUTPUT  # type: ignore[union-attr]
    assert il.first_trip(GUARDS["RESUME"], paused).rule == Rule.UNEXPECTED_OUTPUT  # type: ignore[union-attr]


def test_a_spray_must_keep_flowing_until_its_earliest_end() -> None:
    wet = spray_status(valve_open=True, flow_ml_s=0.5, t=NOW)
    dry = spray_status(valve_open=True, flow_ml_s=0.0, t=NOW)
    shut = spray_status(valve_open=False, flow_ml_s=0.0, t=NOW)
    running = CoolingFacts((3,), NOW - 0.1, 3, True, NOW + 0.06, t_spray_cmd=NOW - 0.09, t_wet=NOW - 0.07)
    assert il.spray_flowing(healthy(spray=wet, pending=running)) is None
    assert tripped(il.spray_flowing, healthy(spray=dry, pending=running)).rule == Rule.SPRAY_FLOW_LOST
    assert "valve shut" in tripped(il.spray_flowing, healthy(spray=shut, pending=running)).reason
    # the valve may close from command + length on; a status from the confirmation itself is no news
    closing = CoolingFacts((3,), NOW - 0.2, 3, True, NOW, t_spray_cmd=NOW - 0.15 + 0.0005, t_wet=NOW - 0.15)
    assert il.spray_flowing(healthy(spray=shut, pending=closing)) is None
    at_wet = CoolingFacts((3,), NOW - 0.1, 3, True, NOW + 0.15, t_spray_cmd=NOW - 0.02, t_wet=NOW)
    assert il.spray_flowing(healthy(spray=dry, pending=at_wet)) is None
    unconfirmed = CoolingFacts((3,), NOW - 0.05, 3, t_spray_cmd=NOW - 0.04)
    assert il.spray_flowing(healthy(spray=dry, pending=unconfirmed)) is None


@pytest.mark.hazard("H8")
def test_pulse_bound() -> None:
    p = PulseFacts(4, 4, t_cmd=NOW - 0.01, bound=NOW - 0.001, expected_count=4)
    assert tripped(il.pulse_bound, healthy(pulse=p, plasma=plasma(output_on=True))).rule == Rule.PULSE_OVERRUN
    assert tripped(il.pulse_bound, healthy(pulse=p, plasma=plasma(pulse_count=3))).rule == Rule.PULSE_NOT_DELIVERED
    assert il.pulse_bound(healthy(pulse=p, plasma=plasma(pulse_count=4))) is None
    early = healthy(pulse=p, plasma=plasma(output_on=True, t=NOW - 0.002))  # a status from before the bound
    assert il.pulse_bound(early) is None


def _ended(energy: float | None, *, cut: bool = False, on_s: float = 0.0055) -> Snapshot:
    p = PulseFacts(2, 2, NOW - 0.01, NOW, 2, interrupted=cut, t_off=NOW - 0.01 + on_s, energy_j=energy)
    return healthy(pulse=p)


@pytest.mark.parametrize("factor", [0.8, 0.95, 1.0, 1.19])
def test_a_pulse_within_tolerance_passes(factor: float) -> None:
    assert il.pulse_energy(_ended(ENERGY_J * factor)) is None


@pytest.mark.parametrize("factor", [0.0, 0.79, 1.2, 1.21, 3.0])
def test_a_pulse_out_of_tolerance_or_at_the_energy_limit_trips(factor: float) -> None:
    assert tripped(il.pulse_energy, _ended(ENERGY_J * factor)).rule == Rule.ENERGY_OUT_OF_TOLERANCE


def test_no_energy_reported_trips_unless_cut() -> None:
    assert tripped(il.pulse_energy, _ended(None)).rule == Rule.ENERGY_OUT_OF_TOLERANCE
    assert il.pulse_energy(_ended(None, cut=True)) is None  # counted as unknown by the ledger


def test_a_cut_pulse_is_judged_on_its_share() -> None:
    # on for at most 2 ms of a 5 ms pulse: up to 40 % x 1.2 of the set energy
    assert il.pulse_energy(_ended(ENERGY_J * 0.4, cut=True, on_s=0.002)) is None
    assert il.pulse_energy(_ended(ENERGY_J * 0.47, cut=True, on_s=0.002)) is None
    trip = tripped(il.pulse_energy, _ended(ENERGY_J * 0.5, cut=True, on_s=0.002))
    assert "2.00 ms" in trip.reason


@pytest.mark.hazard("H6")
def test_spot_dose() -> None:
    planned = 2 * ENERGY_J
    assert il.spot_dose(healthy(spot=SpotFacts(3, 1, 2, ENERGY_J, 0, planned))) is None
    assert tripped(il.spot_dose, healthy(spot=SpotFacts(3, 2, 2, planned, 0, planned))).rule == Rule.DOSE_LIMIT
    # a first pulse that delivered more than its share: one more could take the spot over its plan
    assert tripped(il.spot_dose, healthy(spot=SpotFacts(3, 1, 2, ENERGY_J * 1.3, 0, planned)))
    # an unreported pulse counts as the most it could have been (the generator's energy limit)
    assert il.spot_dose(healthy(spot=SpotFacts(3, 2, 3, 0.0, 2, 3 * ENERGY_J))) is None
    assert tripped(il.spot_dose, healthy(spot=SpotFacts(3, 2, 3, 1.5 * ENERGY_J, 1, 3 * ENERGY_J)))


# ------------------------------------------------------------------------------------------ devices, session


def test_device_fault_codes_name_the_device() -> None:
    assert tripped(il.device_fault_codes, healthy(plasma=plasma(fault_code=7))).device == "plasma"
    assert (
        tripped(il.device_fault_codes, healthy(spray=spray_status(fault_code=3))).reason == "spray reports fault code 3"
    )


@pytest.mark.hazard("H7")
def test_watchdog() -> None:
    heard = {"plasma": NOW - 1.0, "spray": NOW, "thermometer": NOW, "safety": NOW}
    trip = tripped(il.watchdog, healthy(last_heard=heard))
    assert trip.reason == "plasma silent for 1000 ms (watchdog 500 ms)" and trip.device == "plasma"
    assert il.watchdog(healthy(last_heard={"plasma": NOW - 0.5}, watchdog_s={"plasma": 0.5})) is None


@pytest.mark.hazard("H9")
def test_session_time_and_pause_timeout() -> None:
    assert il.session_time(healthy(now=LIMITS.max_session_s)) is None
    assert tripped(il.session_time, healthy(now=LIMITS.max_session_s + 1.0)).rule == Rule.SESSION_TIME_EXCEEDED
    assert il.pause_timeout(healthy(paused_since=NOW - LIMITS.max_pause_s)) is None
    assert tripped(il.pause_timeout, healthy(paused_since=NOW - LIMITS.max_pause_s - 0.1)).rule == Rule.PAUSE_TIMEOUT


def test_self_test_rules() -> None:
    assert tripped(il.setpoints_read_back, healthy(plasma=plasma(energy_limit_j=0.0))).rule == Rule.SELF_TEST_FAILED
    assert "energy read back" in tripped(il.setpoints_read_back, healthy(plasma=plasma(energy_setpoint_j=0.05))).reason
    assert "output is on" in tripped(il.setpoints_read_back, healthy(plasma=plasma(output_on=True))).reason
    # a register's resolution is not a mismatch
    assert il.setpoints_read_back(healthy(plasma=plasma(energy_setpoint_j=ENERGY_J + 5e-7))) is None
    assert tripped(il.valve_closed_at_start, healthy(spray=spray_status(valve_open=True))).device == "spray"


# ------------------------------------------------------------------------------------------ rule sets


def test_fire_reports_causes_in_their_order() -> None:
    """Remove the causes one by one: each time the next cause, in the guard's order, is the one reported."""
    snap = healthy(
        safety=safety(estop=True, footswitch=False, tip_distance_mm=5.0),
        reading=reading(80.0, t=NOW - 5.0),
        spray=spray_status(reservoir_ml=0.0, fault_code=9),
        last_heard={"plasma": 0.0},
        reading_moved_t=0.0,
        pulses_since_moved=10,
        session_start=NOW - 4000.0,
    )
    fixes: list[tuple[Rule, dict[str, Any]]] = [
        (Rule.ESTOP, {"safety": safety(footswitch=False, tip_distance_mm=5.0)}),
        (Rule.FOOTSWITCH_RELEASED, {"safety": safety(tip_distance_mm=5.0)}),
        (Rule.TIP_OUT_OF_WINDOW, {"safety": safety()}),
        (Rule.THERMOMETER_STALE, {"reading": reading(80.0, t=NOW)}),
        (Rule.THERMOMETER_IMPLAUSIBLE, {"reading": reading(45.0, t=NOW)}),
        (Rule.SKIN_TEMP_HARD_LIMIT, {"reading": reading(41.0, t=NOW)}),
        (Rule.SKIN_TEMP_LIMIT, {"reading": reading(33.0, t=NOW)}),
        (Rule.RESERVOIR_LOW, {"spray": spray_status(fault_code=9)}),
        (Rule.DEVICE_FAULT, {"spray": spray_status()}),
        (Rule.DEVICE_WATCHDOG, {"last_heard": {"plasma": NOW}}),
        (Rule.SESSION_TIME_EXCEEDED, {"session_start": 0.0}),
        (Rule.THERMOMETER_STUCK, {"pulses_since_moved": 0}),
    ]
    for expected, fix in fixes:
        trip = il.first_trip(GUARDS["FIRE"], snap)
        assert trip is not None and trip.rule == expected
        snap = snap._replace(**fix)
    assert il.first_trip(GUARDS["FIRE"], snap) is None


def test_first_trip_can_look_past_pauses() -> None:
    snap = healthy(safety=safety(footswitch=False), last_heard={"plasma": 0.0})
    first = il.first_trip(machine.CONTINUOUS_ACTIVE, snap)
    assert first is not None and first.rule == Rule.DEVICE_WATCHDOG  # the footswitch is last in the set
    snap = healthy(safety=None, last_heard={"plasma": 0.0})
    assert il.first_trip(machine.CONTINUOUS, snap).rule == Rule.SAFETY_INPUTS_STALE  # type: ignore[union-attr]
    beyond = il.first_trip(machine.CONTINUOUS, snap, skip_latch=("pause",))
    assert beyond is not None and beyond.rule == Rule.DEVICE_WATCHDOG


def test_guard_membership() -> None:
    for guard in GUARDS.values():
        assert guard[0] is il.estop and len(set(guard)) == len(guard)
    assert il.footswitch in GUARDS["FIRE"] and il.footswitch in GUARDS["RESUME"]
    assert il.footswitch not in GUARDS["ARM"]  # arming waits for nothing: the first pulse does
    assert il.spot_dose in GUARDS["FIRE"] and il.unexpected_output in GUARDS["FIRE"]
    for rule in (il.reservoir, il.plasma_status_fresh, il.tip_window, il.thermometer_stale, il.unexpected_output):
        assert all(rule in g for g in GUARDS.values())
    # output on with no pulse in flight is a fault in every state, paused and idle too (found by an adversary)
    assert il.unexpected_output in machine.CONTINUOUS
    # a warm skin holds the next pulse; a hot one stops the session at any time
    assert il.skin_temp_before_pulse not in machine.CONTINUOUS and il.skin_temp_hard in machine.CONTINUOUS
