"""Builds the in-process simulated rig: one world (skin, faults, seeded randomness), four devices."""

from __future__ import annotations

from plasmactl.simulators.devices import SimPlasma, SimSafety, SimSpray, SimThermometer
from plasmactl.simulators.skin.layered1d import Layered1DSkin, SkinParams
from plasmactl.simulators.world import SimWorld

from plasmactl.clock import Clock
from plasmactl.controller.controller import Devices
from plasmactl.faults import FaultScenario
from plasmactl.rig import Rig


def build_world(rig: Rig, scenario: FaultScenario, seed: int, clock: Clock) -> SimWorld:
    params = SkinParams(field_diameter_m=rig.skin.field_diameter_mm / 1000.0)
    skin = Layered1DSkin(params, start_time=clock.now())
    return SimWorld(clock, skin, scenario, seed)


def build_devices(rig: Rig, scenario: FaultScenario, seed: int, clock: Clock) -> tuple[Devices, SimWorld]:
    world = build_world(rig, scenario, seed, clock)
    devices = Devices(
        plasma=SimPlasma(world, rig.plasma),
        spray=SimSpray(world, rig.spray),
        thermometer=SimThermometer(world, rig.thermometer),
        safety=SimSafety(world, rig.safety),
    )
    return devices, world
