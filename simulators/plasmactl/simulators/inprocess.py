"""Builds the in-process simulated rig: one world (skin, faults, seeded randomness), four devices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plasmactl.clock import Clock
from plasmactl.faults import FaultScenario
from plasmactl.ports import Devices
from plasmactl.rig import PlasmaSim, Rig, SafetySim, Skin, SpraySim, ThermometerSim
from plasmactl.simulators.devices import SimPlasma, SimSpray
from plasmactl.simulators.sensors import SimSafety, SimThermometer
from plasmactl.simulators.skin.from_rig import tissue_fields
from plasmactl.simulators.skin.layered1d import Layered1DSkin, SkinParams
from plasmactl.simulators.world import SimWorld

Emit = Callable[[dict[str, Any]], None]


def patch_skin(skin: Skin, clock: Clock) -> Layered1DSkin:
    """The skin patch the thermometer sees, with the rig's ``[skin]`` settings (served simulators too)."""
    params = SkinParams(field_diameter_m=skin.field_diameter_mm / 1000.0, **tissue_fields(skin))
    return Layered1DSkin(params, start_time=clock.now())


def build_world(
    rig: Rig,
    scenario: FaultScenario,
    seed: int,
    clock: Clock,
    *,
    spot_diameter_m: float = 0.3e-3,
    emit_tissue: Emit | None = None,
) -> SimWorld:
    skin = rig.skin
    world = SimWorld(clock, patch_skin(skin, clock), scenario, seed)
    if skin.tissue:
        from plasmactl.simulators.tissue import TissueRecorder

        world.tissue = TissueRecorder(skin, spot_diameter_m, emit_tissue)
    return world


def sim_configs(rig: Rig) -> tuple[PlasmaSim, SpraySim, ThermometerSim, SafetySim]:
    """The simulator settings of a rig: its own for simulated devices, the defaults for a device the rig
    puts on a wire (the served simulators stand in for it)."""
    p, s, t, f = rig.plasma, rig.spray, rig.thermometer, rig.safety
    return (
        p if isinstance(p, PlasmaSim) else PlasmaSim(),
        s if isinstance(s, SpraySim) else SpraySim(),
        t if isinstance(t, ThermometerSim) else ThermometerSim(),
        f if isinstance(f, SafetySim) else SafetySim(),
    )


def build_devices(
    rig: Rig,
    scenario: FaultScenario,
    seed: int,
    clock: Clock,
    *,
    spot_diameter_m: float = 0.3e-3,
    emit_tissue: Emit | None = None,
) -> tuple[Devices, SimWorld]:
    plasma, spray, thermometer, safety = sim_configs(rig)
    world = build_world(rig, scenario, seed, clock, spot_diameter_m=spot_diameter_m, emit_tissue=emit_tissue)
    devices = Devices(
        plasma=SimPlasma(world, plasma),
        spray=SimSpray(world, spray),
        thermometer=SimThermometer(world, thermometer),
        safety=SimSafety(world, safety),
    )
    return devices, world


def tissue_summary(world: SimWorld) -> dict[str, Any] | None:
    """The session's tissue results (closing the last spot), or None when the physics is off."""
    from plasmactl.simulators.tissue import TissueRecorder

    return world.tissue.finish() if isinstance(world.tissue, TissueRecorder) else None
