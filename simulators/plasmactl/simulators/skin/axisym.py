"""Axisymmetric 2-D (r, z) Pennes model around one spot: lateral thermal spread, vaporisation and basal damage.

Physics (docs/domain.md, "Skin thermal model"), in cylindrical coordinates around the spot axis:

    rho c dT/dt = (1/r) d/dr(k r dT/dr) + d/dz(k dT/dz) + w_b rho_b c_b (T_a - T) + q_m + q_src

with the layers of :data:`~plasmactl.simulators.skin.layered1d.DEFAULT_LAYERS` stacked in depth ``z``
(``w_b`` in 1/s, SI units inside, temperatures in C at the interface). Boundaries: symmetry (zero flux)
on the axis, zero flux at ``r = r_max_m``, the core temperature held at ``z = z_max_m``, and a
convective top, ``h (T_inf - T_surface)``: still air everywhere, or the spray (``spray_h``,
``spray_temp_c``) over ``spray_radius_m`` (default: the whole surface) while a valve is open. A pulse
``(t_on, t_off, E)`` deposits ``E`` uniformly over the disk of radius ``a = spot_diameter / 2`` in the top
``deposit_depth_m`` of tissue, at the constant power ``E / (t_off - t_on)``.

Vaporisation (``AxisymParams.vaporisation``, on by default; the same physics as the 1-D spot model,
:mod:`.spot`). Every cell has a latent budget ``water_fraction * rho * latent_heat * volume``. A cell
that reaches ``vaporisation_c`` (100 C) is *pinned* there: the heat it receives beyond that goes into
its budget, irreversibly (the vapour leaves; a cell that cools keeps what it consumed). When the budget
of the top live cell of a column is used up the cell is *ablated*: its surplus goes down the column to the
next cell (sensible heat up to 100 C, then its budget, cascading), and the deposition zone of that
column moves down with the crater floor (the plasma heats the surface it touches), so the source keeps
its power and the deposited energy is unchanged. What happens to ablated cells, the simplification:

- *while a pulse is on* they stay in the (unchanged, already factorised) operator as **vapour held at
  100 C**: a boundary for the tissue around the crater, standing for the plume that fills it. This keeps
  the fast path (no refactorisation for each of the tens of cells a pulse removes), and it costs little:
  below an ablated cell the floor is itself pinned at 100 C, so the vapour only exchanges heat at the rim
  and with cells that are about to vaporise anyway. The heat it gives (or takes) is booked as
  ``vapour_in_j`` (:class:`AxisymEnergy`): 0.4 % of the pulse for the default spot (5 mJ / 5 ms on 0.3 mm),
  growing with the depth of the crater and the length of the pulse (2.5 % for 20 mJ over 20 ms, a 130 um
  crater). A plume is hotter than 100 C but a gas conducts far less than tissue; holding the crater at
  tissue conductance and 100 C overstates the heat the rim gets, so the lateral damage radius of deep,
  long-pulse craters is an upper bound (on the axis the floor is at 100 C itself: no effect there).
- *once no source is on* (the plume is gone) they are made **inert**: the operator is rebuilt without
  them (their rows decoupled: no conduction, perfusion or metabolism) and the new crater floor and walls
  exchange with the air or the spray like the original surface (``h`` in series with the half cell), as
  the new top cell does in the 1-D model. The operators of the last crater and their factorisations are
  cached on the model (``_MAX_CRATERS``), so a sweep of identical spots factorises nothing after the
  first; a new crater pays one factorisation per step size and boundary mode it meets (about 27 for a
  pulse-spray-air history, ~8 ms each on the default grid: ~0.25 s the first time a crater shape occurs,
  ~40 MB cached).

Ablation has a fluence threshold and then starts with a jump: the source is uniform over the deposit
depth and the budget per volume (nearly) so, hence the cells of the deposit zone fill their budgets
almost together and the first ablation takes most of the zone (10 um by default) at once; the 1-D model
behaves the same way (its onset is as sensitive to the step). A crater cannot be wider than the source
disk: a cell outside it has no source, and conduction from neighbours at (at most) 100 C cannot lift it
above 100 C, so it does not fill a budget (up to splitting noise); the crater radius is the spot radius
once the edge column ablates, and 0 below the threshold. With vaporisation the
crater is resolved by cells of at most ``crater_cell_m`` down to ``crater_zone_m`` (the reported depth is
the floor face, so it is quantised to that cell); deeper craters see the coarser cells below.

Ablated cells keep 100 C in the reported fields (:attr:`AxisymRun.ablated` marks them); the damage
depth is destroyed where its lower cell is ablated (Omega ``inf``). Without vaporisation nothing removes
tissue or clamps temperatures, so above 100 C every temperature (and the damage derived from it) is an
*upper bound*.

Time stepping of the vaporisation (operator splitting, first order). Each step is the linear implicit
step of the cached operator, with the source of the pinned cells taken out of it, followed by a
correction: a pinned cell gets back its share of the source and is returned to 100 C, the difference
going into (``>= 0``) its budget or, if it lost more than it received, it leaves 100 C with exactly that
loss; a cell that overshot 100 C is clamped to it and its excess enthalpy ``C (T - 100 C)`` fills its
budget; vapour cells are reset to 100 C; then columns whose top cell is used up are ablated. Every move is
an exact transfer between sensible heat, latent heat and the vapour boundary, so energy is conserved to
rounding (the test closes the budget). While any cell is pinned (or vapour is present) the steps are
backward Euler (the pair of half steps below, no Crank-Nicolson ringing against the clamp) of at most
``vaporisation_max_step_s``; without hot cells the model takes the linear fast path below unchanged.
Against 10x smaller vaporisation steps the default spot keeps its crater within one cell (2.5 um), its
basal maximum within 0.2 K and ``ln Omega`` within 1 %; on the axis of a 3 mm spot (a 1-D column) the
crater is within 6 % and the basal maximum within 0.2 K of :func:`.spot.simulate_spot` at the same fluence.

Discretisation: finite volumes on a tensor grid of annular cells. In depth the cells are fine at the
surface and grow geometrically (with vaporisation: at most ``crater_cell_m`` down to ``crater_zone_m``),
with faces on the layer boundaries, on the bottom of the deposit and on the damage depth. In radius they
are fine (``r_cell_m``, at most ``a / 10``) on the axis and around the spot edge
``[a - r_inner_margin_m, a + r_outer_margin_m]`` (a face on the edge itself), coarser in between and
growing geometrically outside. Conductances: radial ``2 pi r_f dz k / (r_c,i+1 - r_c,i)`` (exact for a
quadratic profile at the axis), vertical series (harmonic) conductance between centres; the top
conductance is ``h`` in series with the half surface cell. The semi-discrete system is

    C dT/dt = K T + b,      K symmetric (negative definite: the bottom is held),

and it is stepped with Crank-Nicolson, started after every event (pulse on/off, valve open/close) by
two backward-Euler half steps (Rannacher smoothing: no CN ringing from the jump of the source or of
the boundary). Both use the same matrix ``C/dt - K/2``, which is factorised once per (dt, boundary
mode, crater) with ``scipy.sparse.linalg.splu`` and cached on the model; models are cached per
(params, spot diameter) by :func:`axisym_model`, so a sweep of identical spots factorises nothing after
the first. Event times are rounded to ``time_quantum_s`` (energy kept exact: the power is ``E`` over
the rounded duration) and every step is ``time_quantum_s * 2**level``: after an event the steps start
at one quantum and double every ``steps_per_level`` steps up to ``max_step_s`` (a binary tail lands on
the next event), so the cost grows with the number of events, not with the simulated seconds.

Damage: the Henriques Arrhenius integral ``Omega = int A exp(-E/(R T)) dt`` (``A = 3.1e98 1/s``,
``E = 6.28e5 J/mol``, ``E/R`` computed, never rounded) is accumulated at every radius on the damage
depth (default 100 um, the basal layer; the temperature there is the flux-continuity face value of the
two cells around it, or the lower cell once the upper one is ablated). Over each (sub)step the rate is
integrated with the logarithmic mean of its end
values, ``dt (k1 - k0) / ln(k1 / k0)``: exact when ``ln k = ln A - E/(R T)`` is linear in time, i.e.
to first order in ``dT/T`` for a temperature piecewise linear in time. The trapezoid is exact only for
a linear rate and overestimates a convex exponential (by about ``d^2/12`` for ``d = ln(k1/k0)``: 8 % at
``d = 1``, i.e. a 1.4 K change at 60 C; 34 % for a 3 K ramp at 60 C, where the log-mean is off by 0.3 %).
Where Omega crosses 1 (the lateral edge, 55-65 C for a few hundred ms) the late steps are large (tens
to hundreds of ms, up to ~7 K per step), yet against a time-converged run (steps 4-100x smaller) Omega
there is within ~15 % (a 0.2 K error at 60 C) and the lateral radius within 0.2 %, because ``ln Omega``
falls steeply with ``r``; the tests check the radius, the basal maximum and ``ln Omega`` on the axis
against a run with 4x smaller steps.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from plasmactl.simulators.skin.layered1d import Layer, TissueParams

__all__ = [
    "HENRIQUES_A",
    "HENRIQUES_E_OVER_R",
    "AxisymEnergy",
    "AxisymModel",
    "AxisymParams",
    "AxisymRun",
    "LateralResult",
    "axisym_model",
    "simulate_lateral",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

R_GAS = 8.314462618  # J/(mol K)
HENRIQUES_A = 3.1e98  # 1/s
HENRIQUES_EA = 6.28e5  # J/mol
HENRIQUES_E_OVER_R = HENRIQUES_EA / R_GAS  # K; 75,531.04..., deliberately not rounded
_LN_A = math.log(HENRIQUES_A)
_KELVIN = 273.15
_FACE_TOL = 1e-9  # m: forced faces closer than this are merged
_MAX_CRATERS = 1  # crater operator sets cached per model besides the intact one (~1.5 MB per factorisation)


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
        if not self.layers:
            raise ValueError("at least one layer is needed")
        for layer in self.layers:
            if not (layer.thickness_m > 0 and layer.rho > 0 and layer.c > 0 and layer.k > 0):
                raise ValueError(f"layer {layer.name!r}: thickness, rho, c and k must be > 0")
            if not (layer.w_b >= 0 and math.isfinite(layer.q_m)):
                raise ValueError(f"layer {layer.name!r}: need w_b >= 0 (1/s) and a finite q_m")
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


# ---------------------------------------------------------------------------------------- grid


def _geometric(length: float, first: float, growth: float) -> list[float]:
    """Cell sizes filling ``length``: geometric from about ``first``, scaled to fit exactly."""
    if growth == 1.0:
        n = max(1, round(length / first))
    else:
        n = max(1, round(math.log1p(length * (growth - 1.0) / first) / math.log(growth)))
    sizes = [first * growth**i for i in range(n)]
    scale = length / sum(sizes)
    return [s * scale for s in sizes]


def _uniform(length: float, size: float) -> list[float]:
    n = max(1, math.ceil(length / size - 1e-9))
    return [length / n] * n


def _two_sided(length: float, end: float, growth: float) -> list[float]:
    """Cells of about ``end`` at both ends, growing towards the middle."""
    if length <= 2.0 * end:
        return _uniform(length, end)
    half = _geometric(0.5 * length, end, growth)
    return half + half[::-1]


def _faces(sizes: list[float], start: float = 0.0) -> FloatArray:
    return np.asarray(start + np.concatenate(([0.0], np.cumsum(sizes))), dtype=np.float64)


def _capped_geometric(length: float, first: float, growth: float, cap: float) -> list[float]:
    """Cells filling ``length``: from about ``first``, growing by ``growth`` up to ``cap``."""
    sizes: list[float] = []
    total, size = 0.0, first
    while total + size < length:
        sizes.append(size)
        total += size
        size = min(size * growth, cap)
    sizes.append(size)  # overshoots: scale everything down to fit (cells never exceed the cap)
    return [s * length / (total + size) for s in sizes]


def _radial_faces(p: AxisymParams, a: float) -> FloatArray:
    r_max, g = p.r_max_m, p.r_growth
    dr = min(p.r_cell_m, 0.1 * a)  # at the axis and on the edge
    if a >= r_max:
        faces = _faces(_geometric(r_max, dr, g))
    else:
        inner = max(0.0, a - p.r_inner_margin_m)
        outer = min(r_max, a + p.r_outer_margin_m)
        sizes = _two_sided(inner, dr, g) if inner > 0 else []
        sizes += _uniform(a - inner, dr)
        if outer > a:  # from the edge cell up to r_cell_m, then uniform through the margin
            sizes += _capped_geometric(outer - a, dr, g, max(dr, p.r_cell_m))
        if r_max > outer:
            sizes += _geometric(r_max - outer, sizes[-1] * g, g)
        faces = _faces(sizes)
    faces[-1] = r_max
    return faces


def _depth_faces(p: AxisymParams) -> FloatArray:
    z_max = p.depth_m
    forced = [0.0, z_max, p.deposit_depth_m, p.damage_depth_m]
    zone = min(p.crater_zone_m, z_max) if p.vaporisation else 0.0
    if zone > 0:
        forced.append(zone)
    acc = 0.0
    for layer in p.layers:
        acc += layer.thickness_m
        if acc < z_max:
            forced.append(acc)
    marks: list[float] = []
    for z in sorted(forced):
        if not marks or z - marks[-1] > _FACE_TOL:
            marks.append(z)
    marks[-1] = z_max
    sizes: list[float] = []
    size = p.surface_cell_m
    for lo, hi in itertools.pairwise(marks):
        if hi <= zone + _FACE_TOL:  # where a crater is expected: cells of at most crater_cell_m
            cap = max(p.crater_cell_m, p.surface_cell_m)
            cells = _capped_geometric(hi - lo, min(size, cap), p.z_growth, cap)
        else:
            cells = _geometric(hi - lo, size, p.z_growth)
        sizes.extend(cells)
        size = cells[-1] * p.z_growth
    faces = _faces(sizes)
    # Snap the forced faces exactly (cumsum rounding).
    for z in marks:
        faces[int(np.argmin(np.abs(faces - z)))] = z
    return faces


def _layer_of(p: AxisymParams, z_centres: FloatArray) -> list[Layer]:
    bounds = np.cumsum([layer.thickness_m for layer in p.layers])
    idx = np.minimum(np.searchsorted(bounds, z_centres), len(p.layers) - 1)
    return [p.layers[int(i)] for i in idx]


def _disk_overlap(faces: FloatArray, radius: float) -> FloatArray:
    """Area of each annulus inside the disk of ``radius``, m2."""
    clipped = np.minimum(faces, radius)
    return np.asarray(math.pi * (clipped[1:] ** 2 - clipped[:-1] ** 2), dtype=np.float64)


# ---------------------------------------------------------------------------------------- model


def _arrhenius_log_rate(t_c: FloatArray) -> FloatArray:
    return np.asarray(_LN_A - HENRIQUES_E_OVER_R / (t_c + _KELVIN), dtype=np.float64)


def _arrhenius_increment(lk0: FloatArray, lk1: FloatArray, dt: float) -> FloatArray:
    """``int k dt`` over a step with ``ln k`` linear in time: ``dt (k1 - k0) / ln(k1/k0)``, overflow-safe."""
    hi = np.maximum(lk0, lk1)
    d = np.abs(lk1 - lk0)
    safe = np.where(d > 1e-12, d, 1.0)
    ratio = np.where(d > 1e-12, -np.expm1(-d) / safe, 1.0 - 0.5 * d)
    return np.asarray(dt * np.exp(hi) * ratio, dtype=np.float64)


class _Factor:
    __slots__ = ("cap_dt", "dt", "lu")

    def __init__(self, lu: Any, cap_dt: FloatArray, dt: float) -> None:
        self.lu = lu
        self.cap_dt = cap_dt
        self.dt = dt


class _Ops:
    """``K`` and ``b`` per boundary mode (0 air, 1 spray) with a set of inert (ablated) cells, the terms of the
    energy account, and the cached factorisations of ``C/dt - K/2`` per (level, mode)."""

    __slots__ = (
        "b_modes",
        "exp_b",
        "exp_g",
        "factors",
        "inert",
        "inert_idx",
        "k_modes",
        "metabolic_w",
        "perf",
        "perf_ta_w",
    )

    def __init__(
        self,
        inert: BoolArray,
        k_modes: tuple[sp.csr_matrix, sp.csr_matrix],
        b_modes: tuple[FloatArray, FloatArray],
        exp_g: tuple[FloatArray, FloatArray],
        exp_b: tuple[float, float],
        perf: FloatArray,
        perf_ta_w: float,
        metabolic_w: float,
    ) -> None:
        self.inert = inert
        self.inert_idx: IntArray = np.flatnonzero(inert)  # their rows are decoupled: they keep 100 C
        self.k_modes = k_modes
        self.b_modes = b_modes
        self.exp_g = exp_g  # conductance of each cell to the ambient (air or spray), W/K
        self.exp_b = exp_b  # sum of g * T_ambient, W
        self.perf = perf  # W/K
        self.perf_ta_w = perf_ta_w  # sum(perf) * T_a, W
        self.metabolic_w = metabolic_w
        self.factors: dict[tuple[int, int], _Factor] = {}


class _Ledger:
    """Energy exchanged over a run. ``acc = int T dt`` of the temperatures that entered ``K T`` is flushed
    into the exchange terms whenever the operator or the boundary mode changes."""

    __slots__ = ("acc", "acc_t", "bottom_in", "deposited", "metabolic", "perfusion_in", "surface_in")

    def __init__(self, n: int) -> None:
        self.acc: FloatArray = np.zeros(n)
        self.acc_t = 0.0
        self.deposited = 0.0
        self.surface_in = 0.0
        self.bottom_in = 0.0
        self.perfusion_in = 0.0
        self.metabolic = 0.0

    def add(self, dt: float, temp_eff: FloatArray) -> None:
        self.acc += dt * temp_eff
        self.acc_t += dt

    def flush(self, ops: _Ops, mode: int, g_bottom: FloatArray, bottom: IntArray, t_core: float) -> None:
        if self.acc_t == 0.0:
            return
        acc, t = self.acc, self.acc_t
        self.surface_in += ops.exp_b[mode] * t - float(ops.exp_g[mode] @ acc)
        self.bottom_in += float(g_bottom @ (t_core * t - acc[bottom]))
        self.perfusion_in += ops.perf_ta_w * t - float(ops.perf @ acc)
        self.metabolic += ops.metabolic_w * t
        acc[:] = 0.0
        self.acc_t = 0.0


class _Crater:
    """Vaporisation state of one run: latent heat, pinned cells, ablated cells and the crater per column."""

    __slots__ = (
        "budget",
        "cap",
        "latent",
        "nz",
        "pinned",
        "removed",
        "top",
        "tv",
        "vapour",
        "vapour_in",
    )

    def __init__(self, cap: FloatArray, budget: FloatArray, nr: int, nz: int, tv: float) -> None:
        n = cap.size
        self.cap = cap
        self.budget = budget
        self.nz = nz
        self.tv = tv
        self.latent: FloatArray = np.zeros(n)
        self.pinned: BoolArray = np.zeros(n, dtype=np.bool_)
        self.removed: BoolArray = np.zeros(n, dtype=np.bool_)
        self.top: IntArray = np.zeros(nr, dtype=np.intp)  # first live cell of each column
        self.vapour: list[int] = []  # ablated cells still in the operator: held at tv (flat indices)
        self.vapour_in = 0.0

    @property
    def hot(self) -> bool:
        """Is anything at the vaporisation temperature (the nonlinear steps are needed)?"""
        return bool(self.vapour) or bool(self.pinned.any())

    def settle(self, temp: FloatArray, dt: float, src_w: FloatArray) -> list[int]:
        """Correct ``temp`` (in place) after a linear step of ``dt`` that left the source ``src_w`` (W per cell)
        of the pinned cells out; returns the columns whose crater deepened."""
        tv, cap = self.tv, self.cap
        if self.vapour:
            v = np.asarray(self.vapour, dtype=np.intp)
            self.vapour_in += float(cap[v] @ (tv - temp[v]))
            temp[v] = tv
        pin = np.flatnonzero(self.pinned)
        if pin.size:
            # Net heat of a pinned cell over the step: its source share minus what conduction took below 100 C.
            gain = dt * src_w[pin] - cap[pin] * (tv - temp[pin])
            leaving = gain < 0.0
            temp[pin] = np.where(leaving, tv + gain / cap[pin], tv)
            self.latent[pin] += np.where(leaving, 0.0, gain)
            if leaving.any():
                self.pinned[pin[leaving]] = False
        over = np.flatnonzero(temp > tv)
        if over.size:
            over = over[~self.removed[over]]
            self.latent[over] += cap[over] * (temp[over] - tv)
            temp[over] = tv
            self.pinned[over] = True
        tops = np.arange(self.top.size) * self.nz + self.top
        used = np.flatnonzero(self.latent[tops] >= self.budget[tops])
        for i in used:
            self._ablate(int(i), temp)
        return [int(i) for i in used]

    def _ablate(self, i: int, temp: FloatArray) -> None:
        """Remove the used-up top cells of column ``i``; each surplus goes to the cell below (as in :mod:`.spot`)."""
        tv, cap, latent, budget = self.tv, self.cap, self.latent, self.budget
        j = int(self.top[i])
        f = i * self.nz + j
        while latent[f] >= budget[f]:
            if j + 1 >= self.nz - 1:
                raise RuntimeError("the spot was ablated through the whole domain")
            surplus = float(latent[f] - budget[f])
            latent[f] = budget[f]
            self.removed[f] = True
            self.pinned[f] = False
            temp[f] = tv
            self.vapour.append(f)
            j, f = j + 1, f + 1
            if not self.pinned[f]:
                sensible = min(surplus, float(cap[f] * (tv - temp[f])))
                temp[f] += sensible / cap[f]
                surplus -= sensible
                if surplus > 0.0 or temp[f] >= tv:
                    temp[f] = tv
                    self.pinned[f] = True
            latent[f] += surplus
        self.top[i] = j


class AxisymModel:
    """Grid, operators and cached factorisations for one (params, spot diameter); see the module doc.

    Not thread-safe (the factorisation cache is filled lazily); use one model per thread.
    """

    def __init__(self, spot_diameter_m: float, params: AxisymParams | None = None) -> None:
        if not (math.isfinite(spot_diameter_m) and spot_diameter_m > 0):
            raise ValueError(f"spot_diameter_m must be finite and > 0, got {spot_diameter_m!r}")
        p = params if params is not None else AxisymParams()
        self._params = p
        self._spot_radius = 0.5 * spot_diameter_m
        rf = _radial_faces(p, self._spot_radius)
        zf = _depth_faces(p)
        nr, nz = rf.size - 1, zf.size - 1
        self._rf, self._zf = rf, zf
        self._nr, self._nz = nr, nz
        rc = 0.5 * (rf[:-1] + rf[1:])
        zc = 0.5 * (zf[:-1] + zf[1:])
        self._rc, self._zc = rc, zc
        area = np.pi * (rf[1:] ** 2 - rf[:-1] ** 2)
        dz = np.diff(zf)
        self._area, self._dz = area, dz
        lay = _layer_of(p, zc)
        k = np.array([la.k for la in lay])
        self._k_z = k
        rho = np.array([la.rho for la in lay])
        rho_c = np.array([la.rho * la.c for la in lay])
        w_b = np.array([la.w_b for la in lay])
        q_m = np.array([la.q_m for la in lay])
        vol = area[:, None] * dz[None, :]  # (nr, nz)
        self._cap: FloatArray = (vol * rho_c[None, :]).ravel()  # J/K, index i * nz + j
        self._budget: FloatArray = (vol * (p.water_fraction * p.latent_heat_j_per_kg * rho)[None, :]).ravel()  # J
        self._perf: FloatArray = (vol * (w_b * p.rho_b * p.c_b)[None, :]).ravel()  # W/K
        self._qm: FloatArray = (vol * q_m[None, :]).ravel()  # W
        idx = np.arange(nr * nz).reshape(nr, nz)
        self._idx = idx

        # Conductances (W/K). Vertical: series of the two half cells. Radial: face area over centre distance.
        gz = area[:, None] * (1.0 / (dz[:-1] / (2 * k[:-1]) + dz[1:] / (2 * k[1:])))[None, :]
        gr = (2 * np.pi * rf[1:-1] / np.diff(rc))[:, None] * (dz * k)[None, :]
        self._g_pairs = (
            np.concatenate((idx[:, :-1].ravel(), idx[:-1, :].ravel())),
            np.concatenate((idx[:, 1:].ravel(), idx[1:, :].ravel())),
            np.concatenate((gz.ravel(), gr.ravel())),
        )
        self._g_bottom: FloatArray = area * (2 * k[-1] / dz[-1])
        self._bottom: IntArray = idx[:, -1].copy()
        # Spray coverage of the top faces (fraction of each annulus) and of the wall faces (inside the radius).
        if p.spray_radius_m is None:
            self._spray_frac: FloatArray = np.ones(nr)
            self._spray_wall: BoolArray = np.ones(nr + 1, dtype=np.bool_)
        else:
            self._spray_frac = _disk_overlap(rf, p.spray_radius_m) / area
            self._spray_wall = rf <= p.spray_radius_m

        # Source per watt: uniform over the disk of radius a and the top deposit_depth_m below the crater floor.
        self._s_r: FloatArray = _disk_overlap(rf, self._spot_radius) / (np.pi * self._spot_radius**2)
        table = np.zeros((nz, nz))
        for m in range(nz):
            lo = zf[m]
            hi = min(lo + p.deposit_depth_m, zf[-1])
            overlap = np.clip(np.minimum(zf[1:], hi) - np.maximum(zf[:-1], lo), 0.0, None)
            table[m] = overlap / (hi - lo)
        self._src_table: FloatArray = table  # row m: depth weights when the column's top live cell is m
        self._src: FloatArray = self._source(np.zeros(nr, dtype=np.intp))
        self._src_fraction = float(self._src.sum())  # < 1 when the disk is wider than the domain

        # Damage depth: a face between rows jd - 1 and jd; flux-continuity face temperature.
        jd = int(np.argmin(np.abs(zf - p.damage_depth_m)))
        g_up, g_dn = 2 * k[jd - 1] / dz[jd - 1], 2 * k[jd] / dz[jd]
        self._dmg_rows = (idx[:, jd - 1], idx[:, jd])
        self._dmg_w = (g_up / (g_up + g_dn), g_dn / (g_up + g_dn))

        self._intact = self._build_ops(np.zeros(nr * nz, dtype=np.bool_))
        self._craters: OrderedDict[bytes, _Ops] = OrderedDict()
        self._vap_level = max(0, math.floor(math.log2(2.0 * p.vaporisation_max_step_s / p.time_quantum_s) + 1e-9))
        ops = self._intact
        self._t_rest: FloatArray = np.asarray(splu(ops.k_modes[0].tocsc()).solve(-ops.b_modes[0]), dtype=np.float64)

    # ------------------------------------------------------------------ introspection

    @property
    def params(self) -> AxisymParams:
        return self._params

    @property
    def spot_radius_m(self) -> float:
        return self._spot_radius

    @property
    def shape(self) -> tuple[int, int]:
        """``(nr, nz)``."""
        return self._nr, self._nz

    @property
    def r_faces_m(self) -> FloatArray:
        return self._rf.copy()

    @property
    def z_faces_m(self) -> FloatArray:
        return self._zf.copy()

    @property
    def capacity_j_per_k(self) -> FloatArray:
        """Heat capacity of each cell, J/K, shaped ``(nr, nz)``."""
        return self._cap.reshape(self._nr, self._nz).copy()

    @property
    def latent_budget_j(self) -> FloatArray:
        """Latent heat that ablates each cell, J, shaped ``(nr, nz)``."""
        return self._budget.reshape(self._nr, self._nz).copy()

    @property
    def rest_c(self) -> FloatArray:
        """The initial state: steady state in air without a source, ``(nr, nz)``."""
        return self._t_rest.reshape(self._nr, self._nz).copy()

    @property
    def cached_factorisations(self) -> int:
        return len(self._intact.factors) + sum(len(ops.factors) for ops in self._craters.values())

    def damage_row_c(self, field_c: FloatArray) -> FloatArray:
        """Temperature at the damage depth per radius, from a ``(nr, nz)`` field (face value)."""
        flat = np.asarray(field_c, dtype=np.float64).ravel()
        return self._damage_row(flat)

    def steady_state_c(self, power_w: float = 0.0, *, spray: bool = False) -> FloatArray:
        """Steady state under a constant source power over the disk (air or spray), ``(nr, nz)``, C.

        Linear: no vaporisation (above 100 C the field is an upper bound)."""
        if not math.isfinite(power_w):
            raise ValueError("power_w must be finite")
        mode = 1 if spray else 0
        ops = self._intact
        b = ops.b_modes[mode] + power_w * self._src
        temp = splu(ops.k_modes[mode].tocsc()).solve(-b)
        return np.asarray(temp, dtype=np.float64).reshape(self._nr, self._nz)

    # ------------------------------------------------------------------ running

    def run(
        self,
        pulses: Sequence[tuple[float, float, float]],
        sprays: Sequence[tuple[float, float]],
        *,
        horizon_s: float = 2.0,
        snapshot_times_s: Sequence[float] = (),
    ) -> AxisymRun:
        """Simulate from rest until ``horizon_s``; see :func:`simulate_lateral` for the arguments.

        The run starts at ``min(0, earliest event)`` in the steady state of the air mode. Snapshots are
        taken at the requested times (rounded to the time quantum).
        """
        p = self._params
        q = p.time_quantum_s
        if not (math.isfinite(horizon_s) and horizon_s > 0):
            raise ValueError(f"horizon_s must be finite and > 0, got {horizon_s!r}")

        def tick(t: float) -> int:
            return round(t / q)

        heat: list[tuple[int, int, float]] = []  # (on, off, power)
        for t_on, t_off, energy in pulses:
            if not (math.isfinite(t_on) and math.isfinite(t_off) and t_off > t_on):
                raise ValueError(f"pulse ({t_on!r}, {t_off!r}): need finite times with t_off > t_on")
            if not (math.isfinite(energy) and energy >= 0):
                raise ValueError(f"pulse energy must be finite and >= 0, got {energy!r}")
            a, b = tick(t_on), tick(t_off)
            b = max(b, a + 1)
            heat.append((a, b, energy / ((b - a) * q)))
        cool: list[tuple[int, int]] = []
        for t_open, t_close in sprays:
            if not (math.isfinite(t_open) and not math.isnan(t_close) and t_close > t_open):
                raise ValueError(f"spray ({t_open!r}, {t_close!r}): need a finite t_open < t_close")
            a = tick(t_open)
            b = tick(t_close) if math.isfinite(t_close) else tick(horizon_s) + 1
            cool.append((a, max(b, a + 1)))
        end = tick(horizon_s)
        starts = [a for a, _, _ in heat] + [a for a, _ in cool]
        start = min([0, *starts])
        if end <= start:
            raise ValueError("horizon_s must be after the start of the run")
        events = sorted({start, end} | {t for h in heat for t in h[:2]} | {t for c in cool for t in c})
        events = [t for t in events if start <= t <= end]
        snaps = {float(s): tick(s) for s in snapshot_times_s}
        for s, ts in snaps.items():
            if not start <= ts <= end:
                raise ValueError(f"snapshot time {s!r} is outside the run")
        stops = sorted(set(snaps.values()))

        n, tv = self._cap.size, p.vaporisation_c
        temp = self._t_rest.copy()
        max_temp = float(temp.max())
        row = self._damage_row(temp)
        max_basal = float(row.max())
        lk = _arrhenius_log_rate(row)
        omega = np.zeros(self._nr)
        taken: dict[int, FloatArray] = {}
        if start in stops:
            taken[start] = temp.copy()
        steps = 0
        max_level = max(0, math.floor(math.log2(p.max_step_s / q) + 1e-9))
        crater = _Crater(self._cap, self._budget, self._nr, self._nz, tv) if p.vaporisation else None
        ops = self._intact
        src = self._src
        src_sum = self._src_fraction
        ledger = _Ledger(n)
        dmg_gone: BoolArray = np.zeros(self._nr, dtype=np.bool_)  # the lower cell at the damage depth is ablated

        for seg_a, seg_b in itertools.pairwise(events):
            power = math.fsum(pw for a, b, pw in heat if a <= seg_a < b)
            mode = 1 if any(a <= seg_a < b for a, b in cool) else 0
            if crater is not None and not power:
                crater.pinned[:] = False  # without a source nothing stays at (or climbs to) 100 C
                if crater.vapour:  # the plume is gone: the crater becomes a surface
                    ops = self._crater_ops(crater)
            b_vec = ops.b_modes[mode] + power * src
            k_mode = ops.k_modes[mode]
            now, level, count, first = seg_a, 0, 0, True
            while now < seg_b:
                nxt = min([seg_b, *(s for s in stops if s > now)])
                remaining = nxt - now
                lev = min(level, remaining.bit_length() - 1)
                hot = crater is not None and crater.hot
                if hot:
                    lev = min(lev, self._vap_level)
                fac = self._factor(ops, lev, mode)
                # After an event, and while vaporising: backward-Euler half steps (same matrix as CN).
                subs = ((0.5 * fac.dt, False), (0.5 * fac.dt, False)) if first or hot else ((fac.dt, True),)
                first = False
                for dt, crank in subs:
                    b_step = b_vec
                    if crater is not None and hot:  # the pinned cells' source goes to their budget, not into K
                        b_step = b_vec - power * np.where(crater.pinned, src, 0.0)
                    rhs = fac.cap_dt * temp + (0.5 * (k_mode @ temp) + b_step if crank else 0.5 * b_step)
                    new = np.asarray(fac.lu.solve(rhs), dtype=np.float64)
                    ledger.add(dt, 0.5 * (temp + new) if crank else new)
                    ledger.deposited += power * dt * src_sum
                    if ops.inert_idx.size:  # decoupled rows: only rounding could move them
                        new[ops.inert_idx] = tv
                    temp = new
                    if crater is not None and (hot or float(temp.max()) > tv):
                        deeper = crater.settle(temp, dt, power * src)
                        hot = crater.hot
                        if deeper:
                            src = self._source(crater.top)
                            src_sum = float(src.sum())
                            b_vec = ops.b_modes[mode] + power * src
                            dmg_gone = crater.removed[self._dmg_rows[1]]
                    row = self._damage_row(temp, crater)
                    lk1 = _arrhenius_log_rate(row)
                    omega += _arrhenius_increment(lk, lk1, dt)
                    lk = lk1
                    max_temp = max(max_temp, float(temp.max()))
                    max_basal = max(max_basal, float(row.max()))
                    steps += 1
                now += 1 << lev
                if now in stops:
                    taken[now] = temp.copy()
                if lev == level:
                    count += 1
                    if count >= p.steps_per_level and level < max_level:
                        level, count = level + 1, 0
                if crater is not None and crater.vapour and not power:  # ablated without a source (rare)
                    ledger.flush(ops, mode, self._g_bottom, self._bottom, p.t_core_c)
                    ops = self._crater_ops(crater)
                    b_vec, k_mode = ops.b_modes[mode] + power * src, ops.k_modes[mode]
                    level, count, first = 0, 0, True
            ledger.flush(ops, mode, self._g_bottom, self._bottom, p.t_core_c)

        omega = np.where(dmg_gone, math.inf, omega)
        if dmg_gone.any():
            max_basal = max(max_basal, tv)
        shape = (self._nr, self._nz)
        removed = crater.removed if crater is not None else np.zeros(n, dtype=np.bool_)
        latent = crater.latent if crater is not None else np.zeros(n)
        top = crater.top if crater is not None else np.zeros(self._nr, dtype=np.intp)
        columns = np.flatnonzero(top > 0)
        account = AxisymEnergy(
            deposited_j=ledger.deposited,
            sensible_j=float(self._cap @ (temp - self._t_rest)),
            latent_j=float(latent.sum()),
            vapour_in_j=crater.vapour_in if crater is not None else 0.0,
            surface_out_j=-ledger.surface_in,
            bottom_out_j=-ledger.bottom_in,
            perfusion_out_j=-ledger.perfusion_in,
            metabolic_in_j=ledger.metabolic,
        )
        result = LateralResult(
            lateral_damage_radius_um=1e6 * self._damage_radius(omega),
            max_temperature_c=max_temp,
            max_basal_c=max_basal,
            omega_basal_axis=float(omega[0]),
            ablation_depth_um=1e6 * float(self._zf[top[0]]),
            crater_radius_um=1e6 * float(self._rf[columns[-1] + 1]) if columns.size else 0.0,
        )
        return AxisymRun(
            result=result,
            r_centres_m=self._rc.copy(),
            z_centres_m=self._zc.copy(),
            omega_damage_row=omega,
            final_c=temp.reshape(shape).copy(),
            snapshots={s: taken[ts].reshape(shape).copy() for s, ts in snaps.items()},
            deposited_j=ledger.deposited,
            steps=steps,
            t_start_s=start * q,
            energy=account,
            ablated=removed.reshape(shape).copy(),
            latent_j=latent.reshape(shape).copy(),
        )

    # ------------------------------------------------------------------ internals

    def _source(self, top: IntArray) -> FloatArray:
        """Source per watt with the deposit below each column's crater floor (``top``: first live cell)."""
        return np.asarray((self._s_r[:, None] * self._src_table[top]).ravel(), dtype=np.float64)

    def _build_ops(self, inert: BoolArray) -> _Ops:
        """Operators with the ``inert`` cells taken out; the surfaces they expose exchange with the ambient."""
        p = self._params
        nr, nz = self._nr, self._nz
        n = nr * nz
        live = ~inert
        rows, cols, vals = self._g_pairs
        keep = live[rows] & live[cols]
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        perf = self._perf * live
        qm = self._qm * live
        diag = -perf
        np.subtract.at(diag, rows, vals)
        np.subtract.at(diag, cols, vals)
        if inert[self._bottom].any():
            raise RuntimeError("the spot was ablated through the whole domain")
        diag[self._bottom] -= self._g_bottom
        b_base = perf * p.t_arterial_c + qm
        b_base[self._bottom] += self._g_bottom * p.t_core_c

        # Exposed faces of live cells: the top of the domain or below an inert cell; beside an inert cell.
        dead = inert.reshape(nr, nz)
        alive = live.reshape(nr, nz)
        k, dz, rf, rc = self._k_z, self._dz, self._rf, self._rc
        floor = alive.copy()
        floor[:, 1:] &= dead[:, :-1]
        ci, cj = np.nonzero(floor)
        face_a = [self._area[ci]]
        half_r = [dz[cj] / (2 * k[cj])]
        spray = [self._spray_frac[ci]]
        cells = [ci * nz + cj]
        for shift in (-1, 1):  # walls: a dead radial neighbour inside (-1) or outside (+1)
            wall = np.zeros_like(alive)
            if shift < 0:
                wall[1:] = alive[1:] & dead[:-1]
            else:
                wall[:-1] = alive[:-1] & dead[1:]
            wi, wj = np.nonzero(wall)
            face = wi if shift < 0 else wi + 1  # index of the radial face
            face_a.append(2 * np.pi * rf[face] * dz[wj])
            half_r.append(np.abs(rf[face] - rc[wi]) / k[wj])
            spray.append(self._spray_wall[face].astype(np.float64))
            cells.append(wi * nz + wj)
        area_f, res_f, spray_f, cell_f = (np.concatenate(x) for x in (face_a, half_r, spray, cells))

        def conductance(h: float) -> FloatArray:
            if h == 0:
                return np.zeros(area_f.size)
            return np.asarray(area_f / (1.0 / h + res_f), dtype=np.float64)

        g_air, g_spray = conductance(p.air_h), conductance(p.spray_h)
        per_mode = (
            (g_air, g_air * p.air_temp_c),
            (
                (1 - spray_f) * g_air + spray_f * g_spray,
                (1 - spray_f) * g_air * p.air_temp_c + spray_f * g_spray * p.spray_temp_c,
            ),
        )
        k_list: list[sp.csr_matrix] = []
        b_list: list[FloatArray] = []
        g_list: list[FloatArray] = []
        eb_list: list[float] = []
        all_idx = np.arange(n)
        for g_face, gb_face in per_mode:
            g_cell = np.asarray(np.bincount(cell_f, weights=g_face, minlength=n), dtype=np.float64)
            gb_cell = np.asarray(np.bincount(cell_f, weights=gb_face, minlength=n), dtype=np.float64)
            k_list.append(
                sp.csr_matrix(
                    (
                        np.concatenate((vals, vals, diag - g_cell)),
                        (np.concatenate((rows, cols, all_idx)), np.concatenate((cols, rows, all_idx))),
                    ),
                    shape=(n, n),
                )
            )
            b_list.append(b_base + gb_cell)
            g_list.append(g_cell)
            eb_list.append(float(gb_cell.sum()))
        return _Ops(
            inert.copy(),
            (k_list[0], k_list[1]),
            (b_list[0], b_list[1]),
            (g_list[0], g_list[1]),
            (eb_list[0], eb_list[1]),
            perf,
            float(perf.sum()) * p.t_arterial_c,
            float(qm.sum()),
        )

    def _crater_ops(self, crater: _Crater) -> _Ops:
        """The (cached) operators of the current crater; its ablated cells are no longer vapour."""
        crater.vapour.clear()
        if not crater.removed.any():
            return self._intact
        key = np.packbits(crater.removed).tobytes()
        ops = self._craters.get(key)
        if ops is None:
            ops = self._craters[key] = self._build_ops(crater.removed)
            if len(self._craters) > _MAX_CRATERS:
                self._craters.popitem(last=False)
        else:
            self._craters.move_to_end(key)
        return ops

    def _damage_row(self, temp: FloatArray, crater: _Crater | None = None) -> FloatArray:
        up, dn = self._dmg_rows
        wu, wd = self._dmg_w
        row = np.asarray(wu * temp[up] + wd * temp[dn], dtype=np.float64)
        if crater is not None and crater.removed[up].any():  # the face is on the crater floor: the lower cell
            row = np.where(crater.removed[up], temp[dn], row)
        return row

    def _factor(self, ops: _Ops, level: int, mode: int) -> _Factor:
        key = (level, mode)
        fac = ops.factors.get(key)
        if fac is None:
            dt = self._params.time_quantum_s * (1 << level)
            cap_dt = self._cap / dt
            m = (sp.diags(cap_dt) - 0.5 * ops.k_modes[mode]).tocsc()
            # M is symmetric positive definite (and diagonally dominant): no pivoting, no equilibration.
            lu = splu(
                m,
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.0,
                options={"Equil": False, "SymmetricMode": True},
            )
            fac = _Factor(lu, cap_dt, dt)
            ops.factors[key] = fac
        return fac

    def _damage_radius(self, omega: FloatArray) -> float:
        """Largest r with Omega >= 1 (log-linear interpolation between cell centres), m; 0 if none."""
        hit = np.nonzero(omega >= 1.0)[0]
        if hit.size == 0:
            return 0.0
        i = int(hit[-1])
        if i == self._nr - 1:
            return float(self._rf[-1])
        if math.isinf(float(omega[i])):  # ablated through the damage depth up to this column: its outer wall
            return float(self._rf[i + 1])
        l0 = math.log(float(omega[i]))
        l1 = math.log(max(float(omega[i + 1]), 1e-300))
        frac = l0 / (l0 - l1) if l0 > l1 else 0.0
        return float(self._rc[i] + frac * (self._rc[i + 1] - self._rc[i]))


@functools.lru_cache(maxsize=4)
def axisym_model(spot_diameter_m: float, params: AxisymParams | None = None) -> AxisymModel:
    """A cached :class:`AxisymModel` (with its factorisations) per (spot diameter, params)."""
    return AxisymModel(spot_diameter_m, params)


def simulate_lateral(
    pulses: Sequence[tuple[float, float, float]],
    sprays: Sequence[tuple[float, float]],
    spot_diameter_m: float,
    params: AxisymParams | None = None,
    *,
    horizon_s: float = 2.0,
) -> LateralResult:
    """Lateral spread, basal damage and (with vaporisation, the default) the crater of one spot.

    ``pulses`` are ``(t_on, t_off, energy_j)`` and ``sprays`` ``(t_open, t_close)``, in seconds relative
    to the first pulse start; the run starts at rest (air, no source) at ``min(0, earliest event)`` and
    ends at ``horizon_s``. With ``AxisymParams(vaporisation=False)`` nothing is ablated and above ~100 C
    the result is an upper bound (see ``max_temperature_c``).
    """
    model = axisym_model(float(spot_diameter_m), params if params is not None else AxisymParams())
    return model.run(pulses, sprays, horizon_s=horizon_s).result
