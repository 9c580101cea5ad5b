"""The per-spot model's operators, their modal bases and the cache that shares them between spots.

Everything here depends only on the parameters and on (cells ablated, boundary h), so it is built once
and reused across identical spots (see spot.py, "Time integration"); the time stepping is in spot_run.py.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.linalg import eigh_tridiagonal, lapack

from plasmactl.simulators.skin.spot_grid import _build_grid, _Grid, _probe_rows
from plasmactl.simulators.skin.spot_types import SpotParams

FloatArray = npt.NDArray[np.float64]


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
