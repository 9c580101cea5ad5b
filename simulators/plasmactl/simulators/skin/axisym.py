"""Axisymmetric 2-D (r, z) Pennes model around one spot: lateral thermal spread and basal damage.

Physics (DOMAIN.md, "Skin thermal model"), in cylindrical coordinates around the spot axis:

    rho c dT/dt = (1/r) d/dr(k r dT/dr) + d/dz(k dT/dz) + w_b rho_b c_b (T_a - T) + q_m + q_src

with the layers of :data:`~plasmactl.simulators.skin.layered1d.DEFAULT_LAYERS` stacked in depth ``z``
(``w_b`` in 1/s, SI units inside, temperatures in C at the interface). Boundaries: symmetry (zero flux)
on the axis, zero flux at ``r = r_max_m``, the core temperature held at ``z = z_max_m``, and a
convective top, ``h (T_inf - T_surface)``: still air everywhere, or the spray (``spray_h``,
``spray_temp_c``) over ``spray_radius_m`` (default: the whole surface) while a valve is open. A pulse
``(t_on, t_off, E)`` deposits ``E`` uniformly over the disk of radius ``a = spot_diameter / 2`` in the top
``deposit_depth_m`` of tissue, at the constant power ``E / (t_off - t_on)``.

**No ablation.** Nothing here removes tissue or clamps temperatures: a focused pulse that the 1-D spot
model would partly sublimate stays in the tissue here, so above about 100 C every temperature (and the
damage derived from it) is an *upper bound*. :attr:`LateralResult.max_temperature_c` tells the caller
whether that regime was reached.

Discretisation: finite volumes on a tensor grid of annular cells. In depth the cells are fine at the
surface and grow geometrically, with faces on the layer boundaries, on the bottom of the deposit and on
the damage depth. In radius they are fine (``r_cell_m``, at most ``a / 10``) on the axis and around the spot edge
``[a - r_inner_margin_m, a + r_outer_margin_m]`` (a face on the edge itself), coarser in between and
growing geometrically outside. Conductances: radial ``2 pi r_f dz k / (r_c,i+1 - r_c,i)`` (exact for a
quadratic profile at the axis), vertical series (harmonic) conductance between centres; the top
conductance is ``h`` in series with the half surface cell. The semi-discrete system is

    C dT/dt = K T + b,      K symmetric (negative definite: the bottom is held),

and it is stepped with Crank-Nicolson, started after every event (pulse on/off, valve open/close) by
two backward-Euler half steps (Rannacher smoothing: no CN ringing from the jump of the source or of
the boundary). Both use the same matrix ``C/dt - K/2``, which is factorised once per (dt, boundary
mode) with ``scipy.sparse.linalg.splu`` and cached on the model; models are cached per
(params, spot diameter) by :func:`axisym_model`, so a sweep of identical spots factorises nothing after
the first. Event times are rounded to ``time_quantum_s`` (energy kept exact: the power is ``E`` over
the rounded duration) and every step is ``time_quantum_s * 2**level``: after an event the steps start
at one quantum and double every ``steps_per_level`` steps up to ``max_step_s`` (a binary tail lands on
the next event), so the cost grows with the number of events, not with the simulated seconds.

Damage: the Henriques Arrhenius integral ``Omega = int A exp(-E/(R T)) dt`` (``A = 3.1e98 1/s``,
``E = 6.28e5 J/mol``, ``E/R`` computed, never rounded) is accumulated at every radius on the damage
depth (default 100 um, the basal layer; the temperature there is the flux-continuity face value of the
two cells around it). Over each (sub)step the rate is integrated with the logarithmic mean of its end
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from plasmactl.simulators.skin.layered1d import DEFAULT_LAYERS, Layer
from scipy.sparse.linalg import splu

__all__ = [
    "HENRIQUES_A",
    "HENRIQUES_E_OVER_R",
    "AxisymModel",
    "AxisymParams",
    "AxisymRun",
    "LateralResult",
    "axisym_model",
    "simulate_lateral",
]

FloatArray = npt.NDArray[np.float64]

R_GAS = 8.314462618  # J/(mol K)
HENRIQUES_A = 3.1e98  # 1/s
HENRIQUES_EA = 6.28e5  # J/mol
HENRIQUES_E_OVER_R = HENRIQUES_EA / R_GAS  # K; 75,531.04..., deliberately not rounded
_LN_A = math.log(HENRIQUES_A)
_KELVIN = 273.15
_FACE_TOL = 1e-9  # m: forced faces closer than this are merged


@dataclass(frozen=True, slots=True)
class AxisymParams:
    """Parameters of the axisymmetric model; SI units, temperatures in C."""

    layers: tuple[Layer, ...] = DEFAULT_LAYERS
    rho_b: float = 1060.0  # blood density, kg/m3
    c_b: float = 3770.0  # blood specific heat, J/(kg K)
    t_arterial_c: float = 37.0
    t_core_c: float = 37.0  # held at z = z_max
    air_h: float = 8.7  # W/(m2 K), convection + radiation to still air
    air_temp_c: float = 24.0
    spray_h: float = 2500.0  # W/(m2 K), water mist
    spray_temp_c: float = 8.0
    spray_radius_m: float | None = None  # None: the spray covers the whole surface
    deposit_depth_m: float = 10e-6  # the pulse heats the top this-many metres of the disk
    damage_depth_m: float = 100e-6  # where Omega and the lateral damage radius are evaluated (basal layer)
    r_max_m: float = 3e-3  # radial extent (zero flux there)
    z_max_m: float | None = None  # depth of the held bottom; None: the whole layer stack
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
    """What one spot does laterally and at the damage (basal) depth."""

    lateral_damage_radius_um: float  # largest r at the damage depth where Henriques Omega >= 1 (0 if none)
    max_temperature_c: float  # over all cells and times; above ~100 C everything is an upper bound (no ablation)
    max_basal_c: float  # max over r and time of T at the damage depth
    omega_basal_axis: float  # Henriques Omega on the axis at the damage depth


@dataclass(frozen=True, slots=True)
class AxisymRun:
    """Everything a run produced (for verification and plots); temperatures in C, arrays copies."""

    result: LateralResult
    r_centres_m: FloatArray  # (nr,)
    z_centres_m: FloatArray  # (nz,)
    omega_damage_row: FloatArray  # (nr,) Henriques Omega at the damage depth, per radius
    final_c: FloatArray  # (nr, nz) cell temperatures at the horizon
    snapshots: dict[float, FloatArray] = field(default_factory=dict)  # requested time -> (nr, nz)
    deposited_j: float = 0.0  # source energy that entered the domain
    steps: int = 0  # linear solves
    t_start_s: float = 0.0  # where the run started (the earliest event, or 0), in the caller's clock


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
        lay = _layer_of(p, zc)
        k = np.array([la.k for la in lay])
        rho_c = np.array([la.rho * la.c for la in lay])
        w_b = np.array([la.w_b for la in lay])
        q_m = np.array([la.q_m for la in lay])
        vol = area[:, None] * dz[None, :]  # (nr, nz)
        self._cap: FloatArray = (vol * rho_c[None, :]).ravel()  # J/K, index i * nz + j
        perf = (vol * (w_b * p.rho_b * p.c_b)[None, :]).ravel()  # W/K
        n = nr * nz
        idx = np.arange(n).reshape(nr, nz)

        # Conductances (W/K). Vertical: series of the two half cells. Radial: face area over centre distance.
        gz = area[:, None] * (1.0 / (dz[:-1] / (2 * k[:-1]) + dz[1:] / (2 * k[1:])))[None, :]
        gr = (2 * np.pi * rf[1:-1] / np.diff(rc))[:, None] * (dz * k)[None, :]
        g_bottom = area * (2 * k[-1] / dz[-1])
        rows = np.concatenate((idx[:, :-1].ravel(), idx[:-1, :].ravel()))
        cols = np.concatenate((idx[:, 1:].ravel(), idx[1:, :].ravel()))
        vals = np.concatenate((gz.ravel(), gr.ravel()))
        diag = -perf
        np.subtract.at(diag, rows, vals)
        np.subtract.at(diag, cols, vals)
        diag[idx[:, -1]] -= g_bottom
        self._k_base = sp.csr_matrix(
            (
                np.concatenate((vals, vals, diag)),
                (np.concatenate((rows, cols, idx.ravel())), np.concatenate((cols, rows, idx.ravel()))),
            ),
            shape=(n, n),
        )
        b_base = perf * p.t_arterial_c + (vol * q_m[None, :]).ravel()
        b_base[idx[:, -1]] += g_bottom * p.t_core_c
        self._b_base: FloatArray = b_base

        # Top boundary per mode (0 air, 1 spray): per-column conductance and driving term.
        half_r0 = dz[0] / (2 * k[0])

        def series(h: float) -> float:
            return 0.0 if h == 0 else 1.0 / (1.0 / h + half_r0)

        u_air, u_spray = series(p.air_h), series(p.spray_h)
        spray_area = area if p.spray_radius_m is None else _disk_overlap(rf, p.spray_radius_m)
        air_area = area - spray_area
        self._top_g = (area * u_air, air_area * u_air + spray_area * u_spray)
        self._top_idx = idx[:, 0]
        top_b = (
            area * u_air * p.air_temp_c,
            air_area * u_air * p.air_temp_c + spray_area * u_spray * p.spray_temp_c,
        )
        self._top_b: tuple[FloatArray, FloatArray] = (np.zeros(n), np.zeros(n))
        for full, top in zip(self._top_b, top_b, strict=True):
            full[self._top_idx] = top
        self._k_modes = tuple(
            (self._k_base + sp.csr_matrix((-g, (self._top_idx, self._top_idx)), shape=(n, n))).tocsr()
            for g in self._top_g
        )

        # Source per watt: uniform over the disk of radius a and the top deposit_depth_m.
        s_r = _disk_overlap(rf, self._spot_radius) / (np.pi * self._spot_radius**2)
        s_z = np.clip(np.minimum(zf[1:], p.deposit_depth_m) - zf[:-1], 0.0, None) / p.deposit_depth_m
        self._src: FloatArray = (s_r[:, None] * s_z[None, :]).ravel()
        self._src_fraction = float(self._src.sum())  # < 1 when the disk is wider than the domain

        # Damage depth: a face between rows jd - 1 and jd; flux-continuity face temperature.
        jd = int(np.argmin(np.abs(zf - p.damage_depth_m)))
        g_up, g_dn = 2 * k[jd - 1] / dz[jd - 1], 2 * k[jd] / dz[jd]
        self._dmg_rows = (idx[:, jd - 1], idx[:, jd])
        self._dmg_w = (g_up / (g_up + g_dn), g_dn / (g_up + g_dn))

        self._factors: dict[tuple[int, int], _Factor] = {}
        k_air = self._k_modes[0].tocsc()
        self._t_rest: FloatArray = np.asarray(splu(k_air).solve(-(b_base + self._top_b[0])), dtype=np.float64)

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
    def rest_c(self) -> FloatArray:
        """The initial state: steady state in air without a source, ``(nr, nz)``."""
        return self._t_rest.reshape(self._nr, self._nz).copy()

    @property
    def cached_factorisations(self) -> int:
        return len(self._factors)

    def damage_row_c(self, field_c: FloatArray) -> FloatArray:
        """Temperature at the damage depth per radius, from a ``(nr, nz)`` field (face value)."""
        flat = np.asarray(field_c, dtype=np.float64).ravel()
        return self._damage_row(flat)

    def steady_state_c(self, power_w: float = 0.0, *, spray: bool = False) -> FloatArray:
        """Steady state under a constant source power over the disk (air or spray), ``(nr, nz)``, C."""
        if not math.isfinite(power_w):
            raise ValueError("power_w must be finite")
        mode = 1 if spray else 0
        b = self._b_base + self._top_b[mode] + power_w * self._src
        temp = splu(self._k_modes[mode].tocsc()).solve(-b)
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

        temp = self._t_rest.copy()
        max_temp = float(temp.max())
        row = self._damage_row(temp)
        max_basal = float(row.max())
        lk = _arrhenius_log_rate(row)
        omega = np.zeros(self._nr)
        taken: dict[int, FloatArray] = {}
        if start in stops:
            taken[start] = temp.copy()
        deposited = 0.0
        steps = 0
        max_level = max(0, math.floor(math.log2(p.max_step_s / q) + 1e-9))

        for seg_a, seg_b in itertools.pairwise(events):
            power = math.fsum(pw for a, b, pw in heat if a <= seg_a < b)
            mode = 1 if any(a <= seg_a < b for a, b in cool) else 0
            b_vec = self._b_base + self._top_b[mode] + power * self._src
            k_mode = self._k_modes[mode]
            deposited += power * (seg_b - seg_a) * q * self._src_fraction
            now, level, count, first = seg_a, 0, 0, True
            while now < seg_b:
                nxt = min([seg_b, *(s for s in stops if s > now)])
                remaining = nxt - now
                lev = min(level, remaining.bit_length() - 1)
                fac = self._factor(lev, mode)
                # Rannacher start after an event: two backward-Euler half steps (same matrix as CN).
                subs = ((0.5 * fac.dt, False), (0.5 * fac.dt, False)) if first else ((fac.dt, True),)
                first = False
                for dt, crank in subs:
                    rhs = fac.cap_dt * temp + (0.5 * (k_mode @ temp) + b_vec if crank else 0.5 * b_vec)
                    temp = np.asarray(fac.lu.solve(rhs), dtype=np.float64)
                    row = self._damage_row(temp)
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

        result = LateralResult(
            lateral_damage_radius_um=1e6 * self._damage_radius(omega),
            max_temperature_c=max_temp,
            max_basal_c=max_basal,
            omega_basal_axis=float(omega[0]),
        )
        shape = (self._nr, self._nz)
        return AxisymRun(
            result=result,
            r_centres_m=self._rc.copy(),
            z_centres_m=self._zc.copy(),
            omega_damage_row=omega,
            final_c=temp.reshape(shape).copy(),
            snapshots={s: taken[ts].reshape(shape).copy() for s, ts in snaps.items()},
            deposited_j=deposited,
            steps=steps,
            t_start_s=start * q,
        )

    # ------------------------------------------------------------------ internals

    def _damage_row(self, temp: FloatArray) -> FloatArray:
        up, dn = self._dmg_rows
        wu, wd = self._dmg_w
        return np.asarray(wu * temp[up] + wd * temp[dn], dtype=np.float64)

    def _factor(self, level: int, mode: int) -> _Factor:
        key = (level, mode)
        fac = self._factors.get(key)
        if fac is None:
            dt = self._params.time_quantum_s * (1 << level)
            cap_dt = self._cap / dt
            m = (sp.diags(cap_dt) - 0.5 * self._k_modes[mode]).tocsc()
            # M is symmetric positive definite (and diagonally dominant): no pivoting, no equilibration.
            lu = splu(
                m,
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.0,
                options={"Equil": False, "SymmetricMode": True},
            )
            fac = _Factor(lu, cap_dt, dt)
            self._factors[key] = fac
        return fac

    def _damage_radius(self, omega: FloatArray) -> float:
        """Largest r with Omega >= 1 (log-linear interpolation between cell centres), m; 0 if none."""
        hit = np.nonzero(omega >= 1.0)[0]
        if hit.size == 0:
            return 0.0
        i = int(hit[-1])
        if i == self._nr - 1:
            return float(self._rf[-1])
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
    """Lateral spread and basal damage of one spot.

    ``pulses`` are ``(t_on, t_off, energy_j)`` and ``sprays`` ``(t_open, t_close)``, in seconds relative
    to the first pulse start; the run starts at rest (air, no source) at ``min(0, earliest event)`` and
    ends at ``horizon_s``. No ablation: above ~100 C the result is an upper bound (see
    ``max_temperature_c``).
    """
    model = axisym_model(float(spot_diameter_m), params if params is not None else AxisymParams())
    return model.run(pulses, sprays, horizon_s=horizon_s).result
