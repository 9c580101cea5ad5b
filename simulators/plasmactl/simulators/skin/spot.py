"""Per-spot tissue model: plasma deposition, sublimation (ablation), spray/tip cooling and thermal damage.

A fractional spot (0.1-1 mm across) sits in fresh tissue with untreated bridges around it, so each spot
is simulated on its own as a 1-D layered Pennes column below the spot (docs/domain.md, "Skin thermal
model"; ``w_b`` in 1/s). Lateral conduction into the bridges is neglected: that is conservative (the
column stays hotter than the real spot) and good while the diffusion length ``sqrt(4 alpha t)`` is small
against the spot (0.1 mm after 20 ms, 0.3 mm after 0.2 s for a 0.3 mm spot); past that the damage late
in the horizon is overestimated.

Physics
-------
- Grid: finite volumes, fine at the surface (``surface_cell_m``) and growing geometrically with depth
  (``growth``, at most ``max_cell_m``), faces on the layer boundaries; series (harmonic) conductances
  between cell centres; the top boundary conductance is ``1/(1/h + dx0/(2 k0))`` and the bottom face is
  held at ``t_core_c`` (the same construction as :mod:`.layered1d`).
- Plasma pulse ``(t_on, t_off, E)``: power ``E / (t_off - t_on)`` over the spot area ``pi d^2/4``,
  deposited uniformly in the top ``deposit_depth_m`` below the **current** surface (the plasma heats the
  surface it touches, so the deposition zone follows the crater down).
- Sublimation, enthalpy method: a cell at ``vaporisation_c`` (100 C) is held there and the net heat it
  receives goes into latent heat of its water, ``water_fraction * rho * latent_heat`` per volume. The
  latent heat is consumed irreversibly (the vapour leaves): a cell that cools keeps what it consumed
  and resumes from there if reheated. When the top cell's budget is used up it is removed, its surplus
  goes to the new top cell, and the ablation depth is recorded. Depths (probes, ablation) are measured
  from the original surface. Tissue that is ablated has been destroyed: its Omega and CEM43 are
  reported as ``inf``.
- Boundaries: air (``air_h``, ``air_temp_c``) by default, spray (``spray_h``, ``spray_temp_c``) while
  the valve is open, tip contact (``contact_h`` at ``tip_temp_c``; wins over the spray) during
  ``SpotDose.contacts``.

Time integration
----------------
Between events (pulse on/off, spray open/close, contact on/off) and while nothing is at the
vaporisation temperature, the semi-discrete system ``C dT/dt = K T + b`` is linear with constant
coefficients, and it is advanced **exactly** in its modal basis: ``C^-1/2 K C^-1/2`` is symmetric
tridiagonal, ``= Q diag(mu) Q^T`` (``scipy.linalg.eigh_tridiagonal``), so ``T(t) = T_ss + C^-1/2 Q
diag(exp(mu t)) Q^T C^1/2 (T0 - T_ss)`` for any ``t``. The temperatures at the damage depths and at the
surface are evaluated at geometrically spaced times after each event (``samples_per_decade``, from
``first_sample_s``) in one matrix product, so the cost of a segment does not depend on its length: the
cost grows with the number of events, not with the simulated seconds. The eigen-decomposition depends
only on the boundary ``h`` and on how many cells have been ablated; it is cached (module level, LRU),
so a loop over identical spots pays it once.

When a cell reaches the vaporisation temperature during a pulse, the solver switches, for the rest of
that pulse, to fully implicit (backward Euler) steps of at most ``ablation_dt_s`` solved as tridiagonal
systems (LAPACK ``gtsv``: the tridiagonal case of ``scipy.linalg.solve_banded`` without its per-call
overhead): cells at 100 C are Dirichlet rows, cells that overshoot in a step join them and the step is
re-solved, and every step conserves energy to rounding (what the boundaries, perfusion and metabolism
exchanged is computed from the same solved temperatures). When the pulse ends, vaporisation stops (no
cell can stay at 100 C without a source) and the model is linear again. The default 250 us step keeps
the ablation depth, and the depth of the Omega >= 1 zone below the crater, within 1 um of 10 us steps
and the basal Omega within ~5 %; a smaller step buys accuracy at about 50 us of CPU per step. A pulse
segment takes at most ``max_ablation_steps`` steps (longer steps for pulses of seconds, which ablate
slowly), so the cost stays bounded by the number of pulses.

Damage is integrated with :mod:`.damage` over the sampled history (exact for piecewise-linear
temperatures between samples).

All inputs SI (m, s, J, W, kg), temperatures in C.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.linalg import eigh_tridiagonal, lapack

from plasmactl.simulators.skin.damage import HENRIQUES, WEAVER_STOLL, arrhenius_omega, cem43_minutes
from plasmactl.simulators.skin.layered1d import TissueParams

__all__ = [
    "EnergyAccount",
    "SpotDose",
    "SpotParams",
    "SpotResult",
    "SpotTrace",
    "simulate_spot",
    "trace_spot",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_MAX_SWITCH_ITERATIONS: Final = 4
_PIN: Final = 1e30  # diagonal of a row held at the vaporisation temperature (penalty form of Dirichlet)
_OVERSHOOT_K: Final = 1e-9  # a free cell this far above 100 C is held and the step solved again


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
        if not self.layers:
            raise ValueError("at least one layer is needed")
        for layer in self.layers:
            if not (layer.thickness_m > 0 and layer.rho > 0 and layer.c > 0 and layer.k > 0):
                raise ValueError(f"layer {layer.name!r}: thickness, rho, c and k must be > 0")
            if not (layer.w_b >= 0 and math.isfinite(layer.q_m)):
                raise ValueError(f"layer {layer.name!r}: need w_b >= 0 (1/s) and a finite q_m")
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


# ================================================================================================ grid and operators


@dataclass(frozen=True, slots=True, eq=False)
class _Grid:
    dx: FloatArray
    faces: FloatArray
    centres: FloatArray
    k: FloatArray
    cap: FloatArray  # J/(m2 K)
    perf: FloatArray  # W/(m2 K)
    qm: FloatArray  # W/m2
    g: FloatArray  # conductance between cell i and i + 1, W/(m2 K)
    g_bottom: float
    budget: FloatArray  # latent budget per cell, J/m2
    layer: npt.NDArray[np.int64]


def _layer_cells(thickness: float, first: float, growth: float, cap: float) -> list[float]:
    sizes: list[float] = []
    size, total = first, 0.0
    while total < thickness:
        sizes.append(size)
        total += size
        size = min(size * growth, cap)
    if len(sizes) > 1 and total - thickness > 0.5 * sizes[-1]:
        sizes.pop()  # fit by stretching rather than by a sliver
    scale = thickness / sum(sizes)
    return [s * scale for s in sizes]


def _build_grid(p: SpotParams) -> _Grid:
    widths: list[float] = []
    owner: list[int] = []
    size = p.surface_cell_m
    for i, layer in enumerate(p.layers):
        cells = _layer_cells(layer.thickness_m, size, p.growth, p.max_cell_m)
        widths.extend(cells)
        owner.extend([i] * len(cells))
        size = min(cells[-1] * p.growth, p.max_cell_m)
    dx = np.asarray(widths)
    lay = [p.layers[i] for i in owner]
    k = np.array([la.k for la in lay])
    rho = np.array([la.rho for la in lay])
    faces = np.concatenate(([0.0], np.cumsum(dx)))
    faces[-1] = p.total_thickness_m
    return _Grid(
        dx=dx,
        faces=faces,
        centres=0.5 * (faces[:-1] + faces[1:]),
        k=k,
        cap=rho * np.array([la.c for la in lay]) * dx,
        perf=np.array([la.w_b for la in lay]) * p.rho_b * p.c_b * dx,
        qm=np.array([la.q_m for la in lay]) * dx,
        g=1.0 / (dx[:-1] / (2.0 * k[:-1]) + dx[1:] / (2.0 * k[1:])),
        g_bottom=float(2.0 * k[-1] / dx[-1]),
        budget=p.water_fraction * rho * p.latent_heat_j_per_kg * dx,
        layer=np.asarray(owner, dtype=np.int64),
    )


class _Modes:
    """Modal basis of ``C^-1 K`` for the active cells: ``T = T_ss + to_temp @ z``, ``z' = mu z``."""

    __slots__ = ("mu", "rows", "to_modal", "to_temp")

    def __init__(self, diag: FloatArray, off: FloatArray, cap: FloatArray) -> None:
        sq = np.sqrt(cap)
        mu, q = eigh_tridiagonal(diag / cap, off / (sq[:-1] * sq[1:]))
        self.mu: FloatArray = np.asarray(mu, dtype=np.float64)
        self.to_modal: FloatArray = np.ascontiguousarray(q.T * sq[None, :])
        self.to_temp: FloatArray = np.ascontiguousarray(q / sq[:, None])
        self.rows: dict[tuple[float, ...], FloatArray] = {}  # probe rows times to_temp


class _Op:
    """``K`` (tridiagonal, symmetric) and the fixed part of ``b`` with ``m`` cells ablated and top ``h``."""

    __slots__ = (
        "_b_cache",
        "_be",
        "b_const",
        "cap",
        "diag",
        "half_r",
        "neg_diag",
        "neg_off",
        "off",
        "perf",
        "perf_ta",
        "qm_total",
        "u",
    )

    def __init__(self, p: SpotParams, gr: _Grid, m: int, h: float) -> None:
        self.cap: FloatArray = gr.cap[m:]
        self.half_r = float(gr.dx[m] / (2.0 * gr.k[m]))
        self.u = 0.0 if h == 0 else 1.0 / (1.0 / h + self.half_r)
        off = gr.g[m:]
        diag = -gr.perf[m:]
        diag[:-1] -= off
        diag[1:] -= off
        diag[0] -= self.u
        diag[-1] -= gr.g_bottom
        self.diag: FloatArray = diag
        self.off: FloatArray = off
        self.neg_off: FloatArray = -off
        self.neg_diag: FloatArray = -diag
        self.perf: FloatArray = gr.perf[m:]
        self.qm_total = float(gr.qm[m:].sum())
        self.perf_ta = float(gr.perf[m:].sum()) * p.t_arterial_c
        b = gr.perf[m:] * p.t_arterial_c + gr.qm[m:]
        b[-1] += gr.g_bottom * p.t_core_c
        self.b_const: FloatArray = b
        self._be: tuple[float, FloatArray, FloatArray] | None = None
        self._b_cache: dict[tuple[float, float], FloatArray] = {}

    def b(self, t_inf: float) -> FloatArray:
        b = self.b_const.copy()
        b[0] += self.u * t_inf
        return b

    def b_with_source(self, t_inf: float, power: float, weights: FloatArray) -> FloatArray:
        """``b`` with the pulse power (W/m2) in the deposition zone; cached, do not modify."""
        key = (t_inf, power)
        b = self._b_cache.get(key)
        if b is None:
            b = self.b(t_inf)
            b += power * weights
            if len(self._b_cache) > 32:
                self._b_cache.clear()
            self._b_cache[key] = b
        return b

    def apply(self, x: FloatArray) -> FloatArray:
        kx = self.diag * x
        kx[1:] += self.off * x[:-1]
        kx[:-1] += self.off * x[1:]
        return kx

    def steady(self, b: FloatArray) -> FloatArray:
        """``T_ss`` with ``K T_ss + b = 0``."""
        return _tridiag_solve(self.neg_off, self.neg_diag, self.neg_off, b)

    def backward_euler(self, dt: float) -> tuple[FloatArray, FloatArray]:
        """``(C/dt, C/dt - diag(K))`` for a step of ``dt``."""
        if self._be is None or self._be[0] != dt:
            c_dt = self.cap / dt
            self._be = (dt, c_dt, c_dt - self.diag)
        return self._be[1], self._be[2]


def _decay(mu: FloatArray, taus: FloatArray) -> FloatArray:
    """``exp(mu tau)`` for all modes and times; entries below exp(-60) (relative 1e-26) are set to 0."""
    arg = np.multiply.outer(mu, taus)
    out = np.zeros_like(arg)
    np.exp(arg, out=out, where=arg > -60.0)
    return out


def _tridiag_solve(lower: FloatArray, diag: FloatArray, upper: FloatArray, rhs: FloatArray) -> FloatArray:
    if diag.size == 1:
        return rhs / diag
    _, _, _, x, info = lapack.dgtsv(lower, diag, upper, rhs)
    if info != 0:
        raise np.linalg.LinAlgError(f"tridiagonal solve failed (info={info})")
    return np.asarray(x, dtype=np.float64)


class _Model:
    """What depends only on the parameters, and on (cells ablated, boundary h): built once, then cached."""

    _MAX_OPS: Final = 512  # light: a few vectors each
    _MAX_MODES: Final = 32  # an eigen-decomposition each (two n x n matrices)

    def __init__(self, p: SpotParams) -> None:
        self.p = p
        self.grid = _build_grid(p)
        self._ops: OrderedDict[tuple[int, float], _Op] = OrderedDict()
        self._modes: OrderedDict[tuple[int, float], _Modes] = OrderedDict()
        self._weights: dict[int, FloatArray] = {}
        self._probes: dict[tuple[int, tuple[float, ...]], FloatArray] = {}
        self._lock = threading.Lock()

    def op(self, m: int, h: float) -> _Op:
        key = (m, h)
        with self._lock:
            op = self._ops.get(key)
            if op is None:
                op = self._ops[key] = _Op(self.p, self.grid, m, h)
                if len(self._ops) > self._MAX_OPS:
                    self._ops.popitem(last=False)
            else:
                self._ops.move_to_end(key)
            return op

    def modes(self, m: int, h: float) -> _Modes:
        """Modal basis with ``m`` cells ablated and top ``h`` (computed outside the lock)."""
        key = (m, h)
        with self._lock:
            modes = self._modes.get(key)
            if modes is not None:
                self._modes.move_to_end(key)
                return modes
        op = self.op(m, h)
        modes = _Modes(op.diag, op.off, op.cap)
        with self._lock:
            self._modes[key] = modes
            if len(self._modes) > self._MAX_MODES:
                self._modes.popitem(last=False)
        return modes

    def weights(self, m: int) -> FloatArray:
        """Fraction of the pulse power going into each active cell: the top ``deposit_depth_m``."""
        w = self._weights.get(m)
        if w is None:
            faces = self.grid.faces
            top = faces[m]
            depth = min(self.p.deposit_depth_m, faces[-1] - top)
            overlap = np.clip(np.minimum(faces[m + 1 :], top + depth) - faces[m:-1], 0.0, None)
            w = self._weights[m] = overlap / overlap.sum()
        return w

    def probe_matrix(self, m: int, depths: tuple[float, ...]) -> FloatArray:
        key = (m, depths)
        rows = self._probes.get(key)
        if rows is None:
            if len(self._probes) > 512:
                self._probes.clear()
            rows = self._probes[key] = _probe_rows(self.grid, m, depths)
        return rows


_MODELS: OrderedDict[tuple[object, ...], _Model] = OrderedDict()
_MODELS_LOCK: Final = threading.Lock()
_MAX_MODELS: Final = 4


def _model(p: SpotParams) -> _Model:
    """The cached model for these parameters. Boundary temperatures and h, damage depths, the initial
    state and the time-stepping settings do not enter it, so sweeping them reuses the same model."""
    key: tuple[object, ...] = (
        p.layers,
        p.rho_b,
        p.c_b,
        p.t_arterial_c,
        p.t_core_c,
        p.deposit_depth_m,
        p.water_fraction,
        p.latent_heat_j_per_kg,
        p.surface_cell_m,
        p.growth,
        p.max_cell_m,
    )
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = _Model(p)
            if len(_MODELS) > _MAX_MODELS:
                _MODELS.popitem(last=False)
        else:
            _MODELS.move_to_end(key)
        return model


def _probe_rows(gr: _Grid, m: int, depths: tuple[float, ...]) -> FloatArray:
    """Rows interpolating the active-cell temperatures at absolute depths: linear within half cells, with
    the face temperature from flux continuity (so the kink at a material interface is respected).
    Ablated depths (above the current surface) read the top cell."""
    n = gr.dx.size
    rows = np.zeros((len(depths), n - m))
    half = 2.0 * gr.k / gr.dx  # conductance of a half cell
    for r, x in enumerate(depths):
        j = int(np.clip(np.searchsorted(gr.faces, x, side="right") - 1, 0, n - 1))
        if j < m or (j == m and x <= gr.centres[m]) or m == n - 1:
            rows[r, 0] = 1.0
        elif x >= gr.centres[j]:
            if j == n - 1:
                rows[r, j - m] = 1.0
                continue
            a, b = half[j], half[j + 1]
            s = (x - gr.centres[j]) / (gr.faces[j + 1] - gr.centres[j])  # 0 at the centre, 1 at the face
            rows[r, j - m] += 1.0 - s * b / (a + b)
            rows[r, j + 1 - m] += s * b / (a + b)
        else:
            a, b = half[j - 1], half[j]
            s = (x - gr.faces[j]) / (gr.centres[j] - gr.faces[j])  # 0 at the face, 1 at the centre
            rows[r, j - 1 - m] += (1.0 - s) * a / (a + b)
            rows[r, j - m] += (1.0 - s) * b / (a + b) + s
    return rows


# ================================================================================================ the run


@dataclass(slots=True)
class _Energy:
    deposited: float = 0.0
    surface_in: float = 0.0
    bottom_in: float = 0.0
    perfusion_in: float = 0.0
    metabolic: float = 0.0


@dataclass(slots=True)
class _Segment:
    start: float
    end: float
    power: float  # W/m2
    h: float
    t_inf: float


class _Run:
    def __init__(
        self, p: SpotParams, dose: SpotDose, horizon_s: float, probes: tuple[float, ...], extra_times: FloatArray
    ) -> None:
        self.p = p
        self.model = _model(p)
        self.gr = gr = self.model.grid
        n = gr.dx.size
        self.probes = probes
        self.extra_times = extra_times
        self.area = dose.area_m2
        self.m = 0
        if p.initial_c is None:
            op = self.model.op(0, p.air_h)
            self.temp: FloatArray = op.steady(op.b(p.air_temp_c))
        else:
            self.temp = np.asarray(p.initial_c, dtype=np.float64)[gr.layer]
        self.temp0 = self.temp.copy()
        self.latent: FloatArray = np.zeros(n)
        self.phase: BoolArray = np.zeros(n, dtype=np.bool_)
        self.energy = _Energy()
        self.times: list[FloatArray] = []
        self.samples: list[FloatArray] = []  # blocks of shape (k, n_probes + 1): the probes, then the surface
        self._ctx_key: tuple[int, float, float, float, float] | None = None
        self._ctx: tuple[_Op, FloatArray, FloatArray, FloatArray, FloatArray]
        self.segments = self._schedule(dose, horizon_s)
        first = self.segments[0]
        self._record(np.array([first.start]), self._probe_values(first)[None, :])

    # ------------------------------------------------------------------ schedule

    def _schedule(self, dose: SpotDose, horizon_s: float) -> list[_Segment]:
        """Constant-input segments between events, from the first event (or 0) to the horizon."""
        p = self.p
        edges = {0.0}
        for t_on, t_off, _ in dose.pulses:
            edges.update((t_on, t_off))
        for a, b in (*dose.sprays, *dose.contacts):
            edges.update((a, b))
        times = sorted(edges)
        times.append(times[-1] + horizon_s)
        segs: list[_Segment] = []
        for a, b in itertools.pairwise(times):
            if b <= a:
                continue
            power = math.fsum(e / (t_off - t_on) for t_on, t_off, e in dose.pulses if t_on <= a < t_off) / self.area
            if any(c0 <= a < c1 for c0, c1 in dose.contacts):
                h, t_inf = p.contact_h, p.tip_temp_c
            elif any(s0 <= a < s1 for s0, s1 in dose.sprays):
                h, t_inf = p.spray_h, p.spray_temp_c
            else:
                h, t_inf = p.air_h, p.air_temp_c
            segs.append(_Segment(a, b, power, h, t_inf))
        if not segs:
            segs.append(_Segment(times[0], times[0], 0.0, p.air_h, p.air_temp_c))
        return segs

    def run(self) -> None:
        tv = self.p.vaporisation_c
        for seg in self.segments:
            if seg.end <= seg.start:
                continue
            m = self.m
            if not seg.power:
                # Without a source nothing can stay at (or climb to) 100 C: vaporisation stops.
                self.phase[:] = False
                self._linear(seg)
            elif self.phase[m:].any() or self.temp[m:].max() >= tv:
                self._implicit(seg.start, seg)
            else:
                self._linear(seg)

    # ------------------------------------------------------------------ sampling

    def _record(self, times: FloatArray, values: FloatArray) -> None:
        self.times.append(times)
        self.samples.append(values)

    def _probe_values(self, seg: _Segment) -> FloatArray:
        m = self.m
        op = self.model.op(m, seg.h)
        act = self.temp[m:]
        out = np.empty(len(self.probes) + 1)
        out[:-1] = self.model.probe_matrix(m, self.probes) @ act
        out[-1] = act[0] + op.u * op.half_r * (seg.t_inf - act[0])
        return out

    def _offsets(self, start: float, duration: float) -> FloatArray:
        p = self.p
        first = min(p.first_sample_s, duration)
        span = math.log(duration / first)
        count = max(1, math.ceil(span / math.log(10.0) * p.samples_per_decade))
        taus = first * np.exp(np.arange(count + 1) * (span / count))
        taus[-1] = duration
        extra = self.extra_times
        if extra.size:
            inside = extra[(extra > start) & (extra <= start + duration)] - start
            if inside.size:
                taus = np.union1d(taus, inside)
        return np.asarray(taus, dtype=np.float64)

    # ------------------------------------------------------------------ exact linear steps

    def _hot_count(self) -> int:
        """Cells near the surface that could reach 100 C first (the deposition zone and a margin)."""
        gr, m = self.gr, self.m
        limit = gr.faces[m] + 2.0 * self.p.deposit_depth_m
        return max(3, int(np.searchsorted(gr.faces[m + 1 :], limit, side="left")) + 1)

    def _linear(self, seg: _Segment) -> None:
        """Advance exactly over the segment, or up to the last sample before a cell reaches 100 C."""
        p, m, start = self.p, self.m, seg.start
        op = self.model.op(m, seg.h)
        modes = self.model.modes(m, seg.h)
        b = op.b(seg.t_inf)
        if seg.power:
            b += seg.power * self.model.weights(m)
        tss = op.steady(b)
        z0 = modes.to_modal @ (self.temp[m:] - tss)
        taus = self._offsets(start, seg.end - start)
        keep = -1  # number of samples to keep; -1: all, nothing reaches 100 C
        if seg.power:
            # Does a cell near the surface reach 100 C? A coarse pass first, so that a pulse that starts
            # ablating at once does not pay for the samples of the whole segment.
            nh = min(self._hot_count(), tss.size)
            hot_rows = modes.to_temp[:nh] * z0
            coarse = taus[3::4] if taus.size > 8 else taus
            hot = hot_rows @ _decay(modes.mu, coarse) + tss[:nh, None]
            crossed = np.flatnonzero(hot.max(axis=0) >= p.vaporisation_c)
            if crossed.size:
                taus = taus[taus <= coarse[crossed[0]]]
            decay = _decay(modes.mu, taus)
            hot = hot_rows @ decay + tss[:nh, None]
            over = np.flatnonzero(hot.max(axis=0) >= p.vaporisation_c)
            if over.size:
                keep = int(over[0])
        else:
            decay = _decay(modes.mu, taus)
        plain = self.model.probe_matrix(m, self.probes)
        rows = modes.rows.get(self.probes)
        if rows is None:
            if len(modes.rows) > 16:
                modes.rows.clear()
            rows = modes.rows[self.probes] = np.vstack((plain @ modes.to_temp, modes.to_temp[:1]))
        values = ((rows * z0) @ decay).T
        values[:, :-1] += plain @ tss
        r = op.u * op.half_r  # surface = top cell + r (T_inf - top cell)
        values[:, -1] = (1.0 - r) * (values[:, -1] + tss[0]) + r * seg.t_inf
        if keep < 0:
            keep = taus.size
            done = True
        else:
            done = False
        if keep:
            self._record(start + taus[:keep], values[:keep])
            tau_end = float(taus[keep - 1])
            mu = modes.mu
            self.temp[m:] = tss + modes.to_temp @ (z0 * decay[:, keep - 1])
            integral = tss * tau_end + modes.to_temp @ (z0 * (np.expm1(mu * tau_end) / mu))
            self._account(seg, op, tau_end, integral)
        if not done:
            # A cell is about to reach the vaporisation temperature: hand over to the implicit steps.
            self._implicit(start + (float(taus[keep - 1]) if keep else 0.0), seg)

    def _account(self, seg: _Segment, op: _Op, dt: float, integral: FloatArray) -> None:
        """Exchanges over ``dt`` given ``integral = int T dt`` of the active cells (J/m2)."""
        p, e = self.p, self.energy
        e.deposited += seg.power * dt
        e.surface_in += op.u * (seg.t_inf * dt - float(integral[0]))
        e.bottom_in += self.gr.g_bottom * (p.t_core_c * dt - float(integral[-1]))
        e.perfusion_in += float(op.perf @ (p.t_arterial_c * dt - integral))
        e.metabolic += op.qm_total * dt

    # ------------------------------------------------------------------ implicit steps with vaporisation

    def _implicit(self, start: float, seg: _Segment) -> None:
        """Backward-Euler steps with vaporisation from ``start`` to the end of a pulse segment."""
        end = seg.end
        count = max(1, math.ceil((end - start) / self.p.ablation_dt_s * (1.0 - 1e-9)))
        count = min(count, self.p.max_ablation_steps)
        dt = (end - start) / count
        states = np.empty((count, self.gr.dx.size))  # full columns; ablated cells stay at 100 C
        surface = np.empty(count)
        for i in range(count):
            self._be_step(seg, dt)
            states[i] = self.temp
            op = self.model.op(self.m, seg.h)
            top = float(self.temp[self.m])
            surface[i] = top + op.u * op.half_r * (seg.t_inf - top)
        times = start + dt * np.arange(1, count + 1, dtype=np.float64)
        times[-1] = end
        values = np.empty((count, len(self.probes) + 1))
        # Interpolation on the full grid (ablated cells hold 100 C): the same as on the current column
        # except inside its top cell, where it leans on the crater floor above; probes in ablated tissue
        # are reported as destroyed anyway.
        values[:, :-1] = states @ self.model.probe_matrix(0, self.probes).T
        values[:, -1] = surface
        self._record(times, values)

    def _step_context(self, seg: _Segment, dt: float) -> tuple[_Op, FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(op, b, C/dt, diagonal of C/dt - K, off-diagonal of C/dt - K)`` for the current top cell."""
        key = (self.m, seg.h, seg.t_inf, seg.power, dt)
        if self._ctx_key != key:
            op = self.model.op(self.m, seg.h)
            b = op.b_with_source(seg.t_inf, seg.power, self.model.weights(self.m))
            c_dt, diag = op.backward_euler(dt)
            self._ctx = (op, b, c_dt, diag, op.neg_off)
            self._ctx_key = key
        return self._ctx

    def _be_step(self, seg: _Segment, dt: float) -> None:
        """One backward-Euler step; cells at 100 C are held there and collect latent heat.

        A held cell is a penalty row (``_PIN`` on the diagonal, ``_PIN * 100 C`` on the right): the
        solution there is 100 C to the last bit and its neighbours see an exact Dirichlet value.
        """
        m = self.m
        tv = self.p.vaporisation_c
        op, b, c_dt, diag, neg_off = self._step_context(seg, dt)
        cap = op.cap
        old = self.temp[m:]
        phase = self.phase[m:]
        rhs = c_dt * old
        rhs += b
        pinned_rhs = _PIN * tv
        for _ in range(_MAX_SWITCH_ITERATIONS):
            x = _tridiag_solve(neg_off, np.where(phase, _PIN, diag), neg_off, np.where(phase, pinned_rhs, rhs))
            over = x > tv + _OVERSHOOT_K  # free cells that went past 100 C: hold them too and solve again
            if not np.count_nonzero(over):
                break
            phase = phase | over
        else:
            over = x > tv  # still some after the last iteration: energy-neutral relabelling below
            if np.count_nonzero(over):
                self.latent[m:] += (cap * (x - tv)) * over
                x = np.where(over, tv, x)
                phase = phase | over
        # Exchanges with the boundaries, perfusion and metabolism, from the solved temperatures.
        e = self.energy
        e.deposited += seg.power * dt
        e.surface_in += op.u * (seg.t_inf - float(x[0])) * dt
        e.bottom_in += self.gr.g_bottom * (self.p.t_core_c - float(x[-1])) * dt
        e.perfusion_in += (op.perf_ta - float(op.perf @ x)) * dt
        e.metabolic += op.qm_total * dt
        if np.count_nonzero(phase):
            # Heat received by a held cell beyond what brings it to 100 C goes into latent heat; a held
            # cell that lost heat leaves 100 C with exactly that loss.
            gain = op.apply(x)
            gain += b
            gain *= dt
            gain -= cap * (tv - old)
            gain *= phase
            leaving = gain < 0.0
            if np.count_nonzero(leaving):
                phase = phase & ~leaving
                x = np.where(leaving, tv + gain / cap, x)
                gain *= phase
            self.latent[m:] += gain
        self.temp[m:] = x
        self.phase[m:] = phase
        if phase[0] and self.latent[m] >= self.gr.budget[m]:
            self._ablate()

    def _ablate(self) -> None:
        """Remove the top cell(s) whose latent budget is used up; the surplus cascades down.

        The surplus of the top cell goes to the next cell, which absorbs up to its capacity (sensible heat
        up to 100 C, then the rest of its latent budget) and is removed in turn if the surplus exceeds it,
        and so on: removed cells are exactly those whose cumulative capacity the surplus covers.
        """
        gr, m = self.gr, self.m
        tv = self.p.vaporisation_c
        surplus = float(self.latent[m] - gr.budget[m])
        self.latent[m] = gr.budget[m]
        self.phase[m] = False
        temp, latent, phase = self.temp[m + 1 :], self.latent[m + 1 :], self.phase[m + 1 :]
        capacity = gr.budget[m + 1 :] - latent + np.where(phase, 0.0, gr.cap[m + 1 :] * (tv - temp))
        covered = np.cumsum(capacity)
        stop = np.flatnonzero(covered > surplus)
        if stop.size == 0 or m + 1 + int(stop[0]) >= gr.dx.size - 1:
            raise RuntimeError("the spot was ablated through the whole column")
        k = int(stop[0])  # cells m+1 .. m+k are removed too, cell m+1+k takes the rest
        if k:
            temp[:k] = tv
            latent[:k] = gr.budget[m + 1 : m + 1 + k]
            phase[:k] = False
            surplus -= float(covered[k - 1])
        j = m + 1 + k
        if not self.phase[j]:
            sensible = min(surplus, float(gr.cap[j] * (tv - self.temp[j])))
            self.temp[j] += sensible / gr.cap[j]
            surplus -= sensible
            if surplus > 0.0 or self.temp[j] >= tv:
                self.temp[j] = tv
                self.phase[j] = True
        self.latent[j] += surplus
        self.m = j

    # ------------------------------------------------------------------ results

    def history(self) -> tuple[FloatArray, FloatArray]:
        return np.concatenate(self.times), np.concatenate(self.samples)

    def energy_account(self) -> EnergyAccount:
        gr, e, a = self.gr, self.energy, self.area
        return EnergyAccount(
            deposited_j=e.deposited * a,
            sensible_j=float(gr.cap @ (self.temp - self.temp0)) * a,
            latent_j=float(self.latent.sum()) * a,
            surface_out_j=-e.surface_in * a,
            bottom_out_j=-e.bottom_in * a,
            perfusion_out_j=-e.perfusion_in * a,
            metabolic_in_j=e.metabolic * a,
        )

    @property
    def ablation_depth_m(self) -> float:
        return float(self.gr.faces[self.m])


# ================================================================================================ public API


def _execute(
    dose: SpotDose, params: SpotParams | None, horizon_s: float, depths: Sequence[float], times: Sequence[float]
) -> tuple[_Run, SpotResult, FloatArray, FloatArray, tuple[float, ...]]:
    p = params if params is not None else SpotParams()
    if not (math.isfinite(horizon_s) and horizon_s >= 0):
        raise ValueError("horizon_s must be finite and >= 0")
    probes = tuple(dict.fromkeys((p.basal_depth_m, *p.damage_depths_m, *(float(d) for d in depths))))
    total = p.total_thickness_m
    if any(not 0.0 <= d <= total for d in probes):
        raise ValueError(f"depths must be in [0, {total}] m")
    run = _Run(p, dose, horizon_s, probes, np.asarray(sorted(times), dtype=np.float64))
    run.run()
    t_hist, values = run.history()
    index = {d: i for i, d in enumerate(probes)}
    basal = index[p.basal_depth_m]
    removed = np.asarray(probes) < run.ablation_depth_m
    # Henriques at every probe; Weaver-Stoll and CEM43 only where they are reported (the basal layer).
    omega_h = np.where(removed, math.inf, arrhenius_omega(t_hist, values[:, :-1], HENRIQUES))
    basal_gone = bool(removed[basal])
    omega_ws = math.inf if basal_gone else float(arrhenius_omega(t_hist, values[:, basal], WEAVER_STOLL))
    cem = math.inf if basal_gone else float(cem43_minutes(t_hist, values[:, basal]))
    peak = values[:, :-1].max(axis=0)
    peak = np.where(removed, np.maximum(peak, p.vaporisation_c), peak)
    result = SpotResult(
        max_surface_c=float(values[:, -1].max()),
        max_basal_c=float(peak[basal]),
        basal_omega_henriques=float(omega_h[basal]),
        basal_omega_weaver_stoll=omega_ws,
        cem43_min=cem,
        ablation_depth_um=run.ablation_depth_m * 1e6,
        omega_at_depths={d: float(omega_h[index[d]]) for d in p.damage_depths_m},
    )
    return run, result, t_hist, values, probes


def simulate_spot(dose: SpotDose, params: SpotParams | None = None, *, horizon_s: float = 2.0) -> SpotResult:
    """Simulate one spot from rest until ``horizon_s`` after its last event and report its damage."""
    _, result, _, _, _ = _execute(dose, params, horizon_s, (), ())
    return result


def trace_spot(
    dose: SpotDose,
    params: SpotParams | None = None,
    *,
    times_s: Sequence[float],
    depths_m: Sequence[float],
    horizon_s: float = 2.0,
) -> SpotTrace:
    """Like :func:`simulate_spot`, plus the temperatures at ``times_s`` x ``depths_m`` and the energy balance.

    The times are sampled exactly where the model is linear; inside implicit (vaporisation) steps they
    are interpolated linearly between steps. Times before the start read the initial state, times after
    the end the final state. A depth in ablated tissue reads the crater floor.
    """
    run, result, t_hist, values, probes = _execute(dose, params, horizon_s, depths_m, times_s)
    cols = [probes.index(float(d)) for d in depths_m]
    t_req = np.asarray(times_s, dtype=np.float64)
    temps = np.empty((t_req.size, len(cols)))
    for j, c in enumerate(cols):
        temps[:, j] = np.interp(t_req, t_hist, values[:, c])
    surface = np.interp(t_req, t_hist, values[:, -1])
    return SpotTrace(
        result=result,
        times_s=t_req,
        depths_m=np.asarray(depths_m, dtype=np.float64),
        temps_c=temps,
        surface_c=surface,
        energy=run.energy_account(),
    )
