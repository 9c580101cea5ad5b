"""What goes into and comes out of the axisymmetric spot model (the model: axisym.py).

Parameters (tissue, vaporisation, grid and time-step controls) and results, apart from the solver so that
the solver's parts and its callers share them; the physics they stand for is in axisym.py's module doc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.axisym_damage import _KELVIN
from plasmactl.simulators.skin.layered1d import TissueParams
from plasmactl.simulators.skin.layered_params import check_layers

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class AxisymParams(TissueParams):
    """Parameters of the axisymmetric model (t_core_c is held at z = z_max); SI units, temperatures in C."""

    spray_radius_m: float | None = None  # None: the spray covers the whole surface
    deposit_depth_m: float = 10e-6  # the pulse heats the top this-many metres of the disk (below the crater floor)
    damage_depth_m: float = 100e-6  # where Omega and the lateral damage radius are evaluated (basal layer)
    r_max_m: float = 3e-3  # radial extent (zero flux there)
    z_max_m: float | None = None  # depth of the held bottom; None: the whole layer stack
    # Vaporisation (as in the 1-D spot model): False gives the linear model (temperatures unbounded).
    vaporisation: bool = True
    vaporisation_c: float = 100.0
    water_fraction: float = 0.7  # mass fraction of water that must be vaporised to ablate a cell
    latent_heat_j_per_kg: float = 2.26e6
    vaporisation_max_step_s: float = 2.5e-4  # longest (backward-Euler) step while a cell is at 100 C
    crater_cell_m: float = 2.5e-6  # with vaporisation, cells are at most this thick down to crater_zone_m ...
    crater_zone_m: float = 50e-6  # ... (the crater depth is resolved to a cell; 0: no refinement)
    # Grid controls.
    surface_cell_m: float = 1e-6  # first cell below the surface (before fitting)
    z_growth: float = 1.2  # geometric growth of the cell size with depth
    r_cell_m: float = 20e-6  # radial cell on the axis and around the spot edge (at most a / 10)
    r_inner_margin_m: float = 50e-6  # fine radial cells on [a - this, a] ...
    r_outer_margin_m: float = 400e-6  # ... and on [a, a + this]
    r_growth: float = 1.15  # geometric growth of the radial cell size away from the fine zones
    # Time-step controls.
    time_quantum_s: float = 2e-5  # event times are rounded to this; it is also the first step after an event
    max_step_s: float = 1.0
    steps_per_level: int = 2  # the step doubles after this many steps

    def __post_init__(self) -> None:
        check_layers(self.layers)
        if not (self.rho_b > 0 and self.c_b > 0):
            raise ValueError("blood rho_b and c_b must be > 0")
        if not (self.air_h >= 0 and self.spray_h >= 0 and math.isfinite(self.air_h + self.spray_h)):
            raise ValueError("heat transfer coefficients must be finite and >= 0")
        temps = (self.t_arterial_c, self.t_core_c, self.air_temp_c, self.spray_temp_c)
        if not all(math.isfinite(t) and t > -_KELVIN for t in temps):
            raise ValueError("temperatures must be finite and above absolute zero")
        if not (math.isfinite(self.vaporisation_c) and self.vaporisation_c > max(temps)):
            raise ValueError("vaporisation_c must be finite and above the boundary and blood temperatures")
        if not (0 < self.water_fraction <= 1 and math.isfinite(self.latent_heat_j_per_kg)):
            raise ValueError("need 0 < water_fraction <= 1 and a finite latent_heat_j_per_kg")
        if not (self.latent_heat_j_per_kg > 0 and self.vaporisation_max_step_s > 0):
            raise ValueError("latent_heat_j_per_kg and vaporisation_max_step_s must be > 0")
        if not (self.crater_cell_m > 0 and self.crater_zone_m >= 0):
            raise ValueError("need crater_cell_m > 0 and crater_zone_m >= 0")
        if self.spray_radius_m is not None and not self.spray_radius_m > 0:
            raise ValueError("spray_radius_m must be > 0 (or None for the whole surface)")
        if not (math.isfinite(self.r_max_m) and self.r_max_m > 0):
            raise ValueError("r_max_m must be > 0")
        total = sum(layer.thickness_m for layer in self.layers)
        if self.z_max_m is not None and not 0 < self.z_max_m <= total:
            raise ValueError(f"z_max_m must be in (0, {total}] (the layer stack)")
        z_max = self.depth_m
        if not 0 < self.deposit_depth_m <= z_max:
            raise ValueError("deposit_depth_m must be in (0, z_max]")
        if not 0 < self.damage_depth_m < z_max:
            raise ValueError("damage_depth_m must be in (0, z_max)")
        if not (self.surface_cell_m > 0 and self.r_cell_m > 0 and self.z_growth >= 1 and self.r_growth >= 1):
            raise ValueError("cell sizes must be > 0 and growths >= 1")
        if not (self.r_inner_margin_m >= 0 and self.r_outer_margin_m >= 0):
            raise ValueError("radial margins must be >= 0")
        if not (self.time_quantum_s > 0 and self.max_step_s >= self.time_quantum_s and self.steps_per_level >= 1):
            raise ValueError("need time_quantum_s > 0, max_step_s >= time_quantum_s and steps_per_level >= 1")

    @property
    def depth_m(self) -> float:
        """Depth of the held bottom, m."""
        if self.z_max_m is not None:
            return self.z_max_m
        return sum(layer.thickness_m for layer in self.layers)


@dataclass(frozen=True, slots=True)
class LateralResult:
    """What one spot does laterally, at the damage (basal) depth and, with vaporisation, to the surface."""

    lateral_damage_radius_um: float  # largest r at the damage depth where Henriques Omega >= 1 (0 if none)
    max_temperature_c: float  # over all cells and times; <= vaporisation_c with vaporisation, else unbounded
    max_basal_c: float  # max over r and time of T at the damage depth
    omega_basal_axis: float  # Henriques Omega on the axis at the damage depth (inf if ablated through)
    ablation_depth_um: float = 0.0  # crater depth on the axis (a cell face: quantised to the depth grid)
    crater_radius_um: float = 0.0  # outer face of the outermost column with an ablated cell (0 if none)


@dataclass(frozen=True, slots=True)
class AxisymEnergy:
    """Energy over a run, J: ``deposited = sensible + latent + away`` (``residual_j`` is rounding)."""

    deposited_j: float = 0.0  # source energy that entered the domain
    sensible_j: float = 0.0  # rise of sum(C T) from rest, ablated cells at the 100 C they were removed at
    latent_j: float = 0.0  # latent heat consumed by vaporisation
    vapour_in_j: float = 0.0  # given by the vapour held at 100 C in the crater while a pulse is on
    surface_out_j: float = 0.0  # to the air / spray through the top, the crater floor and walls
    bottom_out_j: float = 0.0  # through the held bottom
    perfusion_out_j: float = 0.0  # carried away by blood perfusion
    metabolic_in_j: float = 0.0  # produced by metabolism

    @property
    def away_j(self) -> float:
        """Net heat out through the boundaries and perfusion (the vapour counts as a boundary)."""
        return self.surface_out_j + self.bottom_out_j + self.perfusion_out_j - self.metabolic_in_j - self.vapour_in_j

    @property
    def residual_j(self) -> float:
        return self.deposited_j - self.sensible_j - self.latent_j - self.away_j


def _empty_mask() -> BoolArray:
    return np.zeros((0, 0), dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class AxisymRun:
    """Everything a run produced (for verification and plots); temperatures in C, arrays copies."""

    result: LateralResult
    r_centres_m: FloatArray  # (nr,)
    z_centres_m: FloatArray  # (nz,)
    omega_damage_row: FloatArray  # (nr,) Henriques Omega at the damage depth, per radius (inf where ablated)
    final_c: FloatArray  # (nr, nz) cell temperatures at the horizon (ablated cells: at 100 C)
    snapshots: dict[float, FloatArray] = field(default_factory=dict)  # requested time -> (nr, nz)
    deposited_j: float = 0.0  # source energy that entered the domain
    steps: int = 0  # linear solves
    t_start_s: float = 0.0  # where the run started (the earliest event, or 0), in the caller's clock
    energy: AxisymEnergy = field(default_factory=AxisymEnergy)
    ablated: BoolArray = field(default_factory=_empty_mask)  # (nr, nz) cells removed by vaporisation
    latent_j: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (nr, nz) latent heat consumed
