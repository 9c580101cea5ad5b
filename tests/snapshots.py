"""Hand-made snapshots for the rule tests: a healthy one, and its parts to change."""

from __future__ import annotations

import dataclasses
from typing import Any

from plasmactl.controller.trips import Snapshot
from plasmactl.limits import Limits
from plasmactl.ports import PlasmaStatus, SafetyState, SkinReading, SprayStatus

NOW = 100.0
LIMITS = Limits()  # skin 40 C (hard 43 C), reading age 500 ms, tip [0.2, 1.5] mm, stuck window 10 s
ENERGY_J = 0.005
MAX_AGE = {"plasma": 0.3, "spray": 0.3, "thermometer": 0.5, "safety": 0.35}


def healthy(**changes: Any) -> Snapshot:
    """A snapshot in which nothing trips; ``changes`` replace fields."""
    snap = Snapshot(
        now=NOW,
        limits=LIMITS,
        energy_j=ENERGY_J,
        pulse_s=0.005,
        spray_s=0.15,
        safety=SafetyState(t=NOW, estop=False, footswitch=True, tip_distance_mm=0.5),
        reading=SkinReading(t=NOW - 0.1, value_c=33.0),
        plasma=PlasmaStatus(
            t=NOW,
            armed=True,
            output_on=False,
            energy_setpoint_j=ENERGY_J,
            pulse_ms_setpoint=5.0,
            pulse_count=3,
            last_energy_j=ENERGY_J,
            energy_limit_j=ENERGY_J * 1.2,
        ),
        spray=SprayStatus(
            t=NOW, valve_open=False, spray_commanded=False, reservoir_ml=500.0, flow_ml_s=0.0, spray_count=3
        ),
        max_age_s=MAX_AGE,
        last_heard={"plasma": NOW - 0.1, "spray": NOW - 0.2, "thermometer": NOW - 0.05, "safety": NOW},
        watchdog_s={"plasma": 0.5, "spray": 0.5, "thermometer": 0.5, "safety": 0.5},
        reading_moved_t=NOW - 2.0,
        pulses_since_moved=2,
        session_start=0.0,
        flow_seen_ml_s=0.5,
    )
    return snap._replace(**changes)


def safety(**changes: Any) -> SafetyState:
    state = healthy().safety
    assert state is not None
    return dataclasses.replace(state, **changes)


def reading(value_c: float = 33.0, t: float = NOW - 0.1) -> SkinReading:
    return SkinReading(t=t, value_c=value_c)


def spray_status(**changes: Any) -> SprayStatus:
    status = healthy().spray
    assert status is not None
    return dataclasses.replace(status, **changes)


def plasma(**changes: Any) -> PlasmaStatus:
    status = healthy().plasma
    assert status is not None
    return dataclasses.replace(status, **changes)
