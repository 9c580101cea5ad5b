"""Tests for the interlock rules (src/plasmactl/controller/interlocks.py).

Every rule passes on a healthy snapshot and trips, with its exact rule name and a reason carrying the
numbers, on a bad one; the boundaries are where the docstrings and the domain put them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from plasmactl.controller import interlocks as il
from plasmactl.controller.interlocks import Snapshot, Trip
from plasmactl.limits import Caps, Limits
from plasmactl.ports import CoolingStatus, PlasmaStatus, SafetyState, SkinReading

NOW = 100.0
LIMITS = Limits()  # skin 40 C (hard 43 C), reading age 500 ms, tip [0.2, 1.5] mm, stuck window 10 s

ALL_RULES: tuple[il.Interlock, ...] = (
    il.estop,
    il.footswitch,
    il.tip_window,
    il.thermometer_stale,
    il.thermometer_plausible,
    il.thermometer_stuck,
    il.skin_temp_before_pulse,
    il.skin_temp_hard,
    il.reservoir,
    il.device_fault_codes,
    il.watchdog,
    il.session_time,
)


def healthy(**changes: Any) -> Snapshot:
    """A snapshot in which nothing trips; ``changes`` replace fields."""
    snap = Snapshot(
        now=NOW,
        limits=LIMITS,
        spray_s=0.15,
        safety=SafetyState(t=NOW, estop=False, footswitch=True, tip_distance_mm=0.5),
        reading=SkinReading(t=NOW - 0.1, value_c=33.0),
        plasma=PlasmaStatus(
            t=NOW,
            armed=True,
            output_on=False,
            energy_setpoint_j=0.06,
            pulse_ms_setpoint=5.0,
            pulse_count=3,
            last_energy_j=0.06,
        ),
        cooling=CoolingStatus(
            t=NOW, valve_open=False, spray_commanded=False, reservoir_ml=500.0, flow_ml_s=0.5, spray_count=3
        ),
        last_heard={"plasma": NOW - 0.1, "spray": NOW - 0.2, "thermometer": NOW - 0.05, "safety": NOW},
        watchdog_s={"plasma": 0.5, "spray": 0.5, "thermometer": 0.5, "safety": 0.5},
        reading_moved_t=NOW - 2.0,
        pulses_since_moved=2,
        session_start=0.0,
    )
    return dataclasses.replace(snap, **changes)


def safety(**changes: Any) -> SafetyState:
    state = healthy().safety
    assert state is not None
    return dataclasses.replace(state, **changes)


def reading(value_c: float = 33.0, t: float = NOW - 0.1) -> SkinReading:
    return SkinReading(t=t, value_c=value_c)


def cooling(**changes: Any) -> CoolingStatus:
    status = healthy().cooling
    assert status is not None
    return dataclasses.replace(status, **changes)


def plasma(**changes: Any) -> PlasmaStatus:
    status = healthy().plasma
    assert status is not None
    return dataclasses.replace(status, **changes)


def tripped(rule: il.Interlock, snap: Snapshot) -> Trip:
    trip = rule(snap)
    assert trip is not None, f"{rule.__name__} did not trip"
    assert isinstance(trip, Trip)
    return trip


# ------------------------------------------------------------------------------------------ healthy


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.__name__)
def test_every_rule_passes_on_a_healthy_snapshot(rule: il.Interlock) -> None:
    assert rule(healthy()) is None


@pytest.mark.parametrize("rules", [il.ARM, il.FIRE, il.CONTINUOUS], ids=["ARM", "FIRE", "CONTINUOUS"])
def test_rule_sets_pass_on_a_healthy_snapshot(rules: tuple[il.Interlock, ...]) -> None:
    assert il.first_trip(rules, healthy()) is None


# ------------------------------------------------------------------------------------------ each rule


def test_estop() -> None:
    trip = tripped(il.estop, healthy(safety=safety(estop=True)))
    assert trip == Trip("estop", "E-stop input is active", "estop")


def test_footswitch() -> None:
    trip = tripped(il.footswitch, healthy(safety=safety(footswitch=False)))
    assert trip.rule == "footswitch_released"
    assert trip.latch == "pause"
    assert "released" in trip.reason


@pytest.mark.parametrize("distance", [LIMITS.tip_min_mm, LIMITS.tip_max_mm, 0.5, 1.0])
def test_tip_inside_window_including_edges_passes(distance: float) -> None:
    assert il.tip_window(healthy(safety=safety(tip_distance_mm=distance))) is None


@pytest.mark.parametrize(
    "distance",
    [
        0.0,
        0.1,
        math.nextafter(LIMITS.tip_min_mm, -math.inf),
        math.nextafter(LIMITS.tip_max_mm, math.inf),
        4.0,
    ],
)
def test_tip_outside_window_trips(distance: float) -> None:
    trip = tripped(il.tip_window, healthy(safety=safety(tip_distance_mm=distance)))
    assert trip.rule == "tip_out_of_window"
    assert trip.latch == "fault"
    assert f"{distance:.2f} mm" in trip.reason
    assert "[0.2, 1.5] mm" in trip.reason


def test_thermometer_stale_without_reading() -> None:
    trip = tripped(il.thermometer_stale, healthy(reading=None))
    assert trip.rule == "thermometer_stale"
    assert "no skin temperature reading" in trip.reason


def test_thermometer_stale_boundary() -> None:
    limit_s = LIMITS.reading_max_age_ms / 1000.0  # 0.5 s: NOW - 0.5 is exact in binary
    assert il.thermometer_stale(healthy(reading=reading(t=NOW - limit_s))) is None
    trip = tripped(il.thermometer_stale, healthy(reading=reading(t=math.nextafter(NOW - limit_s, 0.0))))
    assert trip.rule == "thermometer_stale"
    trip = tripped(il.thermometer_stale, healthy(reading=reading(t=NOW - 1.25)))
    assert trip.reason == "last skin reading is 1250 ms old (limit 500 ms)"


def test_thermometer_stale_uses_tightened_limit() -> None:
    lim = Limits(reading_max_age_ms=100.0)
    assert il.thermometer_stale(healthy(limits=lim, reading=reading(t=NOW - 0.1))) is None
    trip = tripped(il.thermometer_stale, healthy(limits=lim, reading=reading(t=NOW - 0.2)))
    assert "(limit 100 ms)" in trip.reason


@pytest.mark.parametrize("value", [LIMITS.plausible_min_c, LIMITS.plausible_max_c, 20.0])
def test_thermometer_plausible_edges_pass(value: float) -> None:
    assert il.thermometer_plausible(healthy(reading=reading(value))) is None


@pytest.mark.parametrize("value", [2.0, math.nextafter(5.0, 0.0), math.nextafter(50.0, 100.0), 80.0])
def test_thermometer_implausible_trips(value: float) -> None:
    trip = tripped(il.thermometer_plausible, healthy(reading=reading(value)))
    assert trip.rule == "thermometer_implausible"
    assert f"{value:.2f} C" in trip.reason
    assert "[5, 50] C" in trip.reason


def test_thermometer_plausible_without_reading_passes() -> None:
    # a missing reading is the stale rule's business
    assert il.thermometer_plausible(healthy(reading=None)) is None


def test_thermometer_stuck_needs_pulses_since_the_last_movement() -> None:
    long_still = {"reading_moved_t": NOW - 60.0}
    assert il.thermometer_stuck(healthy(**long_still, pulses_since_moved=0)) is None
    trip = tripped(il.thermometer_stuck, healthy(**long_still, pulses_since_moved=5))
    assert trip.rule == "thermometer_stuck"
    assert "for 60.0 s" in trip.reason
    assert "5 pulses" in trip.reason
    assert f"{LIMITS.stuck_epsilon_c:g} C" in trip.reason


def test_thermometer_stuck_window_boundary() -> None:
    window = LIMITS.stuck_window_s  # 10 s
    assert il.thermometer_stuck(healthy(reading_moved_t=NOW - window, pulses_since_moved=9)) is None
    moved = math.nextafter(NOW - window, 0.0)
    assert tripped(il.thermometer_stuck, healthy(reading_moved_t=moved, pulses_since_moved=9))


def test_thermometer_stuck_never_moved_passes() -> None:
    assert il.thermometer_stuck(healthy(reading_moved_t=None, pulses_since_moved=100)) is None


def test_skin_temp_before_pulse_trips_at_the_limit() -> None:
    limit = LIMITS.skin_temp_max_c
    assert il.skin_temp_before_pulse(healthy(reading=reading(math.nextafter(limit, 0.0)))) is None
    trip = tripped(il.skin_temp_before_pulse, healthy(reading=reading(limit)))
    assert trip.rule == "skin_temp_limit"
    assert trip.reason == "skin 40.00 C is at or over the limit 40 C"
    trip = tripped(il.skin_temp_before_pulse, healthy(reading=reading(41.5)))
    assert "41.50 C" in trip.reason


def test_skin_temp_before_pulse_uses_the_plan_limit() -> None:
    lim = Limits(skin_temp_max_c=38.0)
    assert il.skin_temp_before_pulse(healthy(limits=lim, reading=reading(37.9))) is None
    trip = tripped(il.skin_temp_before_pulse, healthy(limits=lim, reading=reading(38.0)))
    assert "limit 38 C" in trip.reason


def test_skin_temp_hard_only_strictly_above_limit_plus_margin() -> None:
    hard = LIMITS.skin_temp_max_c + Caps.HARD_TRIP_MARGIN_C  # 43 C
    assert LIMITS.hard_trip_c == hard
    for value in (LIMITS.skin_temp_max_c, 42.0, hard):
        assert il.skin_temp_hard(healthy(reading=reading(value))) is None, value
    trip = tripped(il.skin_temp_hard, healthy(reading=reading(math.nextafter(hard, math.inf))))
    assert trip.rule == "skin_temp_hard_limit"
    trip = tripped(il.skin_temp_hard, healthy(reading=reading(45.25)))
    assert trip.reason == "skin 45.25 C exceeds the hard limit 43 C"


def test_skin_rules_without_reading_pass() -> None:
    assert il.skin_temp_before_pulse(healthy(reading=None)) is None
    assert il.skin_temp_hard(healthy(reading=None)) is None


def test_reservoir_boundary() -> None:
    flow, spray = 0.5, 0.25
    needed = flow * spray  # 0.125 ml, exact in binary
    snap = healthy(spray_s=spray, cooling=cooling(flow_ml_s=flow, reservoir_ml=needed))
    assert il.reservoir(snap) is None
    below = healthy(spray_s=spray, cooling=cooling(flow_ml_s=flow, reservoir_ml=math.nextafter(needed, 0.0)))
    assert tripped(il.reservoir, below).rule == "reservoir_low"


def test_reservoir_low_reason() -> None:
    trip = tripped(il.reservoir, healthy(spray_s=0.2, cooling=cooling(flow_ml_s=0.5, reservoir_ml=0.05)))
    assert trip.rule == "reservoir_low"
    assert trip.latch == "fault"
    assert trip.reason == "reservoir 0.05 ml is below the 0.10 ml the next spray needs"


def test_reservoir_unknown_trips() -> None:
    trip = tripped(il.reservoir, healthy(cooling=None))
    assert trip == Trip("reservoir_low", "reservoir level unknown")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"plasma": plasma(fault_code=7)}, "plasma reports fault code 7"),
        ({"cooling": cooling(fault_code=3)}, "spray reports fault code 3"),
        ({"plasma": plasma(fault_code=7), "cooling": cooling(fault_code=3)}, "plasma reports fault code 7"),
    ],
)
def test_device_fault_codes(changes: dict[str, Any], reason: str) -> None:
    trip = tripped(il.device_fault_codes, healthy(**changes))
    assert trip.rule == "device_fault"
    assert trip.reason == reason


def test_device_fault_codes_without_status_passes() -> None:
    assert il.device_fault_codes(healthy(plasma=None, cooling=None)) is None


def test_watchdog() -> None:
    heard = {"plasma": NOW - 1.0, "spray": NOW, "thermometer": NOW, "safety": NOW}
    trip = tripped(il.watchdog, healthy(last_heard=heard))
    assert trip.rule == "device_watchdog"
    assert trip.reason == "plasma silent for 1000 ms (watchdog 500 ms)"


def test_watchdog_boundary() -> None:
    heard = {"plasma": NOW - 0.5}
    assert il.watchdog(healthy(last_heard=heard, watchdog_s={"plasma": 0.5})) is None
    heard = {"plasma": math.nextafter(NOW - 0.5, 0.0)}
    assert tripped(il.watchdog, healthy(last_heard=heard, watchdog_s={"plasma": 0.5}))


def test_watchdog_per_device_limit() -> None:
    heard = {"plasma": NOW - 0.3, "thermometer": NOW - 0.3}
    limits = {"plasma": 0.5, "thermometer": 0.2}
    trip = tripped(il.watchdog, healthy(last_heard=heard, watchdog_s=limits))
    assert trip.reason == "thermometer silent for 300 ms (watchdog 200 ms)"


def test_session_time() -> None:
    limit = LIMITS.max_session_s
    assert il.session_time(healthy(now=limit, session_start=0.0)) is None
    assert il.session_time(healthy(now=1000.0 + limit, session_start=1000.0)) is None
    trip = tripped(il.session_time, healthy(now=limit + 1.0, session_start=0.0))
    assert trip.rule == "session_time_exceeded"
    assert trip.reason == "session running 3601 s, over limits.max_session_s = 3600"


# ----------------------------------------------------------------------------------- rule sets


def test_first_trip_is_estop_when_everything_trips() -> None:
    bad = healthy(
        safety=SafetyState(t=NOW, estop=True, footswitch=False, tip_distance_mm=5.0),
        reading=SkinReading(t=NOW - 5.0, value_c=80.0),
        cooling=cooling(reservoir_ml=0.0, fault_code=9),
        plasma=plasma(fault_code=9),
        last_heard={"plasma": 0.0},
        reading_moved_t=0.0,
        pulses_since_moved=10,
        session_start=NOW - 4000.0,
    )
    for rules in (il.ARM, il.FIRE, il.CONTINUOUS):
        trip = il.first_trip(rules, bad)
        assert trip is not None
        assert trip.rule == "estop"
        assert trip.latch == "estop"


def test_first_trip_follows_fire_declaration_order() -> None:
    """Remove the causes one by one: each time the next rule of FIRE, in order, is the one reported."""
    snap = healthy(
        safety=SafetyState(t=NOW, estop=True, footswitch=False, tip_distance_mm=5.0),
        reading=SkinReading(t=NOW - 5.0, value_c=80.0),
        cooling=cooling(reservoir_ml=0.0, fault_code=9),
        last_heard={"plasma": 0.0},
        reading_moved_t=0.0,
        pulses_since_moved=10,
        session_start=NOW - 4000.0,
    )
    fixes: list[tuple[str, dict[str, Any]]] = [
        ("estop", {"safety": SafetyState(t=NOW, estop=False, footswitch=False, tip_distance_mm=5.0)}),
        ("footswitch_released", {"safety": SafetyState(t=NOW, estop=False, footswitch=True, tip_distance_mm=5.0)}),
        ("tip_out_of_window", {"safety": safety()}),
        ("thermometer_stale", {"reading": reading(80.0, t=NOW)}),
        ("thermometer_implausible", {"reading": reading(45.0, t=NOW)}),
        ("skin_temp_hard_limit", {"reading": reading(41.0, t=NOW)}),
        ("skin_temp_limit", {"reading": reading(33.0, t=NOW)}),
        ("thermometer_stuck", {"pulses_since_moved": 0}),
        ("reservoir_low", {"cooling": cooling(fault_code=9)}),
        ("device_fault", {"cooling": cooling()}),
        ("device_watchdog", {"last_heard": {"plasma": NOW}}),
        ("session_time_exceeded", {"session_start": 0.0}),
    ]
    assert len(fixes) == len(il.FIRE)
    for (expected, fix), rule in zip(fixes, il.FIRE, strict=True):
        trip = il.first_trip(il.FIRE, snap)
        assert trip is not None and trip.rule == expected
        assert tripped(rule, snap).rule == expected
        snap = dataclasses.replace(snap, **fix)
    assert il.first_trip(il.FIRE, snap) is None


def test_fire_order_specifics() -> None:
    # footswitch up and skin over the limit: the footswitch (pause) comes first
    snap = healthy(safety=safety(footswitch=False), reading=reading(41.0))
    trip = il.first_trip(il.FIRE, snap)
    assert trip is not None and trip.rule == "footswitch_released"
    # skin over the hard limit: the hard rule is named rather than the before-pulse one
    trip = il.first_trip(il.FIRE, healthy(reading=reading(44.0)))
    assert trip is not None and trip.rule == "skin_temp_hard_limit"
    trip = il.first_trip(il.FIRE, healthy(reading=reading(40.0)))
    assert trip is not None and trip.rule == "skin_temp_limit"
    trip = il.first_trip(il.FIRE, healthy(cooling=cooling(reservoir_ml=0.01)))
    assert trip is not None and trip.rule == "reservoir_low"


def test_first_trip_of_empty_rules_is_none() -> None:
    assert il.first_trip((), healthy(safety=safety(estop=True))) is None


def test_rule_set_membership() -> None:
    assert il.FIRE[0] is il.estop
    assert il.ARM[0] is il.estop
    assert il.CONTINUOUS[0] is il.estop
    for rule in (il.footswitch, il.reservoir, il.skin_temp_before_pulse):
        assert rule in il.FIRE, rule.__name__
    assert il.reservoir in il.ARM
    assert il.skin_temp_before_pulse in il.ARM
    for rule in (il.skin_temp_hard, il.watchdog):
        assert rule in il.CONTINUOUS, rule.__name__
    # a sustained over-temperature stops the session at any time; a warm skin only holds the next pulse
    assert il.skin_temp_before_pulse not in il.CONTINUOUS
    # every rule is used somewhere, and none twice in a set
    used = set(il.ARM) | set(il.FIRE) | set(il.CONTINUOUS)
    assert used == set(ALL_RULES)
    for rules in (il.ARM, il.FIRE, il.CONTINUOUS):
        assert len(set(rules)) == len(rules)


def test_rules_are_pure() -> None:
    snap = healthy(reading=reading(41.0), safety=safety(footswitch=False))
    first = [rule(snap) for rule in ALL_RULES]
    second = [rule(snap) for rule in ALL_RULES]
    assert first == second
    assert snap == healthy(reading=reading(41.0), safety=safety(footswitch=False))
