"""The layered skin's parameters and its finite-volume grid (the model itself: layered1d.py).

Layers, their thermal and perfusion properties, the field the source is spread over, and the grid: fine at
the surface, geometric growth with depth, faces on the layer boundaries (see docs/domain.md, "Skin thermal
model").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Layer:
    """One tissue layer; SI units."""

    name: str
    thickness_m: float
    rho: float  # kg/m3
    c: float  # J/(kg K)
    k: float  # W/(m K)
    w_b: float = 0.0  # blood perfusion, 1/s
    q_m: float = 0.0  # metabolic heat, W/m3


def check_layers(layers: tuple[Layer, ...]) -> None:
    """The checks every model's parameters make of their layers (ValueError naming the layer)."""
    if not layers:
        raise ValueError("at least one layer is needed")
    for layer in layers:
        if not (layer.thickness_m > 0 and layer.rho > 0 and layer.c > 0 and layer.k > 0):
            raise ValueError(f"layer {layer.name!r}: thickness, rho, c and k must be > 0")
        if not (layer.w_b >= 0 and math.isfinite(layer.q_m)):
            raise ValueError(f"layer {layer.name!r}: need w_b >= 0 (1/s) and a finite q_m")


DEFAULT_LAYERS: Final[tuple[Layer, ...]] = (
    Layer("stratum corneum", 20e-6, 1150.0, 3600.0, 0.2, 0.0, 0.0),
    Layer("viable epidermis", 80e-6, 1200.0, 3590.0, 0.24, 0.0, 2000.0),
    Layer("dermis", 1.8e-3, 1150.0, 3500.0, 0.5, 0.00125, 300.0),
    Layer("subcutaneous fat", 3e-3, 900.0, 2400.0, 0.18, 0.00125, 5.0),
)


@dataclass(frozen=True, slots=True)
class TissueParams:
    """What every skin model shares: the layers (docs/domain.md), blood, and the two surface boundaries."""

    layers: tuple[Layer, ...] = DEFAULT_LAYERS
    rho_b: float = 1060.0  # blood density, kg/m3
    c_b: float = 3770.0  # blood specific heat, J/(kg K)
    t_arterial_c: float = 37.0
    t_core_c: float = 37.0  # fixed temperature at the bottom of the last layer
    air_h: float = 8.7  # W/(m2 K), convection + radiation to still air
    air_temp_c: float = 24.0
    spray_h: float = 2500.0  # W/(m2 K), water mist (docs/domain.md: sweep 500-5000)
    spray_temp_c: float = 8.0


@dataclass(frozen=True, slots=True)
class SkinParams(TissueParams):
    """Parameters of :class:`Layered1DSkin`; SI units, temperatures in C."""

    field_diameter_m: float = 6e-3  # the heated patch / thermometer field of view
    deposit_depth_m: float = 20e-6  # heat goes uniformly into the top this-many metres
    surface_cell_m: float = 2e-6  # size of the first cell below the surface (before fitting)
    growth: float = 1.1  # geometric growth of the cell size with depth

    def __post_init__(self) -> None:
        check_layers(self.layers)
        if not (self.air_h >= 0 and self.spray_h >= 0):
            raise ValueError("heat transfer coefficients must be >= 0")
        if not (self.rho_b > 0 and self.c_b > 0):
            raise ValueError("blood rho_b and c_b must be > 0")
        if not self.field_diameter_m > 0:
            raise ValueError("field_diameter_m must be > 0")
        if not 0 < self.deposit_depth_m <= self.total_thickness_m:
            raise ValueError("deposit_depth_m must be in (0, total thickness]")
        if not (self.surface_cell_m > 0 and self.growth >= 1.0):
            raise ValueError("surface_cell_m must be > 0 and growth >= 1")

    @property
    def total_thickness_m(self) -> float:
        return sum(layer.thickness_m for layer in self.layers)

    @property
    def field_area_m2(self) -> float:
        return math.pi * self.field_diameter_m**2 / 4.0


def _layer_cells(thickness: float, first: float, growth: float) -> list[float]:
    """Cell sizes filling ``thickness``: geometric from about ``first``, scaled to fit exactly."""
    if growth == 1.0:
        n = max(1, round(thickness / first))
    else:
        n = max(1, round(math.log1p(thickness * (growth - 1.0) / first) / math.log(growth)))
    sizes = [first * growth**i for i in range(n)]
    scale = thickness / sum(sizes)
    return [s * scale for s in sizes]


def _build_grid(params: SkinParams) -> tuple[FloatArray, list[int]]:
    """Cell widths (m) and the layer index of each cell; faces fall on the layer boundaries."""
    widths: list[float] = []
    owner: list[int] = []
    size = params.surface_cell_m
    for i, layer in enumerate(params.layers):
        cells = _layer_cells(layer.thickness_m, size, params.growth)
        widths.extend(cells)
        owner.extend([i] * len(cells))
        size = cells[-1] * params.growth
    return np.asarray(widths, dtype=np.float64), owner
