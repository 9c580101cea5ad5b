"""What goes into and comes out of the per-spot tissue model (the model: spot.py).

The dose, the tissue and numerics parameters, and the results, apart from the solver so that callers and
the solver's parts (spot_grid, spot_model, spot_run) share them without importing the whole model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.layered1d import TissueParams
from plasmactl.simulators.skin.layered_params import check_layers

FloatArray = npt.NDArray[np.float64]


# ================================================================================================ inputs


@dataclass(frozen=True, slots=True)
class SpotDose:
    """What happened at one spot; times in seconds relative to the first pulse start.

    ``pulses``: ``(t_on, t_off, energy_j)``; ``sprays``: ``(t_open, t_close)``; ``contacts`` (optional):
    ``(t_touch, t_lift)`` intervals during which the tip touches the spot.
    """

    pulses: tuple[tuple[float, float, float], ...]
    sprays: tuple[tuple[float, float], ...]
    spot_diameter_m: float = 0.3e-3
    contacts: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        pulses = tuple((float(a), float(b), float(e)) for a, b, e in self.pulses)
        sprays = tuple((float(a), float(b)) for a, b in self.sprays)
        contacts = tuple((float(a), float(b)) for a, b in self.contacts)
        for t_on, t_off, energy in pulses:
            if not (math.isfinite(t_on) and math.isfinite(t_off) and t_off > t_on):
                raise ValueError(f"pulse ({t_on}, {t_off}): need finite times with t_off > t_on")
            if not (math.isfinite(energy) and energy >= 0.0):
                raise ValueError(f"pulse energy must be finite and >= 0, got {energy!r}")
        for what, spans in (("spray", sprays), ("contact", contacts)):
            for a, b in spans:
                if not (math.isfinite(a) and math.isfinite(b) and b >= a):
                    raise ValueError(f"{what} ({a}, {b}): need finite times with end >= start")
        if not (math.isfinite(self.spot_diameter_m) and self.spot_diameter_m > 0):
            raise ValueError("spot_diameter_m must be > 0")
        object.__setattr__(self, "pulses", pulses)
        object.__setattr__(self, "sprays", sprays)
        object.__setattr__(self, "contacts", contacts)

    @property
    def area_m2(self) -> float:
        return math.pi * self.spot_diameter_m**2 / 4.0


@dataclass(frozen=True, slots=True)
class SpotParams(TissueParams):
    """Tissue, boundaries, sublimation, damage depths and numerics of :func:`simulate_spot`; SI, C."""

    contact_h: float = 1e5  # W/(m2 K), tip touching the skin: close to a fixed surface temperature
    tip_temp_c: float = 24.0
    deposit_depth_m: float = 10e-6  # the pulse heats the top this-many metres below the current surface
    water_fraction: float = 0.7  # mass fraction of water that must be vaporised to ablate a cell
    latent_heat_j_per_kg: float = 2.26e6
    vaporisation_c: float = 100.0
    damage_depths_m: tuple[float, ...] = (50e-6, 100e-6, 200e-6)  # below the original surface
    basal_depth_m: float = 100e-6  # epidermis/dermis junction below the original surface
    initial_c: tuple[float, ...] | None = None  # one temperature per layer; None: rest state in air
    surface_cell_m: float = 1e-6
    growth: float = 1.04
    max_cell_m: float = 100e-6
    ablation_dt_s: float = 250e-6  # longest implicit step while cells vaporise (see the module doc)
    max_ablation_steps: int = 400  # per pulse segment: long, slowly ablating pulses take longer steps
    first_sample_s: float = 10e-6  # first damage sample after an event
    samples_per_decade: int = 24  # damage samples per decade of time after an event

    def __post_init__(self) -> None:
        check_layers(self.layers)
        if not (self.air_h >= 0 and self.spray_h >= 0 and self.contact_h >= 0):
            raise ValueError("heat transfer coefficients must be >= 0")
        if not (self.rho_b > 0 and self.c_b > 0):
            raise ValueError("blood rho_b and c_b must be > 0")
        total = sum(layer.thickness_m for layer in self.layers)
        if not 0 < self.deposit_depth_m <= total:
            raise ValueError("deposit_depth_m must be in (0, total thickness]")
        if not (0 < self.water_fraction <= 1 and self.latent_heat_j_per_kg > 0):
            raise ValueError("need 0 < water_fraction <= 1 and latent_heat_j_per_kg > 0")
        for d in (*self.damage_depths_m, self.basal_depth_m):
            if not 0 <= d <= total:
                raise ValueError(f"damage depth {d!r} is outside the column")
        if self.initial_c is not None and (
            len(self.initial_c) != len(self.layers) or not all(t < self.vaporisation_c for t in self.initial_c)
        ):
            raise ValueError("initial_c needs one temperature per layer, each below vaporisation_c")
        if not (self.surface_cell_m > 0 and self.growth >= 1.0 and self.max_cell_m >= self.surface_cell_m):
            raise ValueError("need surface_cell_m > 0, growth >= 1 and max_cell_m >= surface_cell_m")
        if not (self.ablation_dt_s > 0 and self.first_sample_s > 0 and self.samples_per_decade >= 1):
            raise ValueError("ablation_dt_s, first_sample_s and samples_per_decade must be > 0")
        if self.max_ablation_steps < 1:
            raise ValueError("max_ablation_steps must be >= 1")

    @property
    def total_thickness_m(self) -> float:
        return sum(layer.thickness_m for layer in self.layers)


# ================================================================================================ outputs


@dataclass(frozen=True)
class SpotResult:
    """What the spot went through (temperatures in C; Omega and CEM43 are ``inf`` where ablated)."""

    max_surface_c: float
    max_basal_c: float  # at the basal layer (epidermis/dermis junction, ~100 um below the original surface)
    basal_omega_henriques: float
    basal_omega_weaver_stoll: float
    cem43_min: float  # CEM43 at the basal layer, minutes
    ablation_depth_um: float
    omega_at_depths: dict[float, float]  # depth_m -> Henriques Omega, at SpotParams.damage_depths_m


@dataclass(frozen=True, slots=True)
class EnergyAccount:
    """Energy over the run, J over the spot area; ``deposited = sensible + latent + away`` (residual ~0)."""

    deposited_j: float  # plasma energy put into the tissue
    sensible_j: float  # rise of sum(rho c T dV), ablated cells counted at their removal
    latent_j: float  # latent heat consumed by vaporisation
    surface_out_j: float  # to the air / spray / tip through the top boundary
    bottom_out_j: float  # through the fixed-temperature bottom
    perfusion_out_j: float  # carried away by blood perfusion
    metabolic_in_j: float  # produced by metabolism

    @property
    def away_j(self) -> float:
        """Conducted and convected away: boundaries plus perfusion minus metabolism."""
        return self.surface_out_j + self.bottom_out_j + self.perfusion_out_j - self.metabolic_in_j

    @property
    def residual_j(self) -> float:
        return self.deposited_j - self.sensible_j - self.latent_j - self.away_j


@dataclass(frozen=True, slots=True)
class SpotTrace:
    """Temperatures at chosen times and depths (below the original surface), and the energy balance."""

    result: SpotResult
    times_s: FloatArray
    depths_m: FloatArray
    temps_c: FloatArray  # shape (len(times_s), len(depths_m))
    surface_c: FloatArray  # surface temperature at times_s
    energy: EnergyAccount
