"""Thermal damage: Arrhenius integrals (Henriques, Weaver-Stoll) and CEM43 thermal dose.

See docs/domain.md, "Thermal damage". Temperatures are given in C and converted to kelvin inside
(``T_K = T_C + 273.15``); times are in seconds; CEM43 is returned in equivalent minutes at 43 C.

The parameter sets (Henriques 1947, Weaver-Stoll 1969) and the burn thresholds are in
:mod:`.damage_params`; the closed-form integration along piecewise-linear histories (exact whatever the
spacing of the samples: the rate is too steep for trapezoids) is in :mod:`.damage_kernels`.

CEM43: ``int R^(43 - T) dt / 60`` with ``R = 0.5`` at or above 43 C and ``0.25`` below.

All functions are vectorised with numpy over any trailing shape (e.g. several depths at once); time is
the first axis of a history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.damage_kernels import _arrhenius_totals, _cem43_total, _Table
from plasmactl.simulators.skin.damage_params import (
    CEM43_REFERENCE_C,
    HENRIQUES,
    OMEGA_FIRST_DEGREE,
    OMEGA_SECOND_DEGREE,
    OMEGA_THIRD_DEGREE,
    R_GAS,
    WEAVER_STOLL,
    ZERO_C_IN_K,
    ArrheniusBand,
    ArrheniusParams,
)

__all__ = [
    "CEM43_REFERENCE_C",
    "HENRIQUES",
    "OMEGA_FIRST_DEGREE",
    "OMEGA_SECOND_DEGREE",
    "OMEGA_THIRD_DEGREE",
    "R_GAS",
    "WEAVER_STOLL",
    "ZERO_C_IN_K",
    "ArrheniusBand",
    "ArrheniusParams",
    "DamageTracker",
    "arrhenius_omega",
    "arrhenius_rate",
    "burn_degree",
    "cem43_minutes",
    "cem43_rate",
    "time_to_omega",
]

FloatArray = npt.NDArray[np.float64]


# ---------------------------------------------------------------------------------------------- rates


def _kelvin(temps_c: npt.ArrayLike) -> FloatArray:
    t = np.asarray(temps_c, dtype=np.float64) + ZERO_C_IN_K
    if np.any(t <= 0.0):
        raise ValueError("temperatures must be above absolute zero")
    return t


def arrhenius_rate(temps_c: npt.ArrayLike, params: ArrheniusParams = HENRIQUES) -> FloatArray:
    """Damage rate ``dOmega/dt`` (1/s) at the given temperatures (C)."""
    t_c = np.asarray(temps_c, dtype=np.float64)
    t_k = _kelvin(t_c)
    out = np.zeros_like(t_k)
    for band in params.bands:
        inside = (t_c >= band.t_min_c) & (t_c < band.t_max_c)
        out = np.where(inside, band.a_per_s * np.exp(-band.e_over_r_k / t_k), out)
    return out


def time_to_omega(temp_c: float, params: ArrheniusParams = HENRIQUES, omega: float = 1.0) -> float:
    """Isothermal time (s) to reach ``omega`` at ``temp_c``; ``inf`` where the rate is 0."""
    rate = float(arrhenius_rate(temp_c, params))
    return math.inf if rate == 0.0 else omega / rate


def cem43_rate(temps_c: npt.ArrayLike) -> FloatArray:
    """Equivalent minutes at 43 C per minute of exposure: ``R^(43 - T)``."""
    t = np.asarray(temps_c, dtype=np.float64)
    r = np.where(t >= CEM43_REFERENCE_C, 0.5, 0.25)
    return np.asarray(np.power(r, CEM43_REFERENCE_C - t), dtype=np.float64)


def burn_degree(omega: float) -> int:
    """0 (none), 1, 2 or 3 from the Henriques thresholds 0.53, 1 and 1e4."""
    if omega >= OMEGA_THIRD_DEGREE:
        return 3
    if omega >= OMEGA_SECOND_DEGREE:
        return 2
    if omega >= OMEGA_FIRST_DEGREE:
        return 1
    return 0


def _history(times_s: npt.ArrayLike, temps_c: npt.ArrayLike) -> tuple[FloatArray, FloatArray, tuple[int, ...]]:
    """Validated ``(dt (k, 1), temps (k + 1, m), trailing shape)``."""
    t = np.asarray(times_s, dtype=np.float64)
    temp = np.asarray(temps_c, dtype=np.float64)
    if t.ndim != 1 or temp.shape[:1] != t.shape:
        raise ValueError("times_s must be 1-D and temps_c must have the times on its first axis")
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite")
    dt = np.diff(t)
    if np.any(dt < 0.0):
        raise ValueError("times must be non-decreasing")
    _kelvin(temp)
    return dt[:, None], temp.reshape(t.size, -1), temp.shape[1:]


def arrhenius_omega(times_s: npt.ArrayLike, temps_c: npt.ArrayLike, params: ArrheniusParams = HENRIQUES) -> FloatArray:
    """Omega over a sampled history, exact for temperatures linear in time between samples.

    ``times_s`` has shape ``(k,)``, ``temps_c`` shape ``(k, ...)``; the result has shape ``(...)``.
    """
    dt, temps, shape = _history(times_s, temps_c)
    if dt.size == 0:
        return np.zeros(shape)
    totals = _arrhenius_totals(dt, temps, _Table.of(params))
    return np.asarray(totals.sum(axis=0).reshape(shape), dtype=np.float64)


def cem43_minutes(times_s: npt.ArrayLike, temps_c: npt.ArrayLike) -> FloatArray:
    """CEM43 (equivalent minutes) over a sampled history, exact for piecewise-linear temperatures."""
    dt, temps, shape = _history(times_s, temps_c)
    if dt.size == 0:
        return np.zeros(shape)
    return _cem43_total(dt, temps).reshape(shape)


# ---------------------------------------------------------------------------------------------- tracker


_TRACKED: Final = _Table.of(HENRIQUES, WEAVER_STOLL)


class DamageTracker:
    """Accumulates Omega (Henriques and Weaver-Stoll), CEM43 and the peak temperature at fixed depths.

    Feed it successive samples ``update(t, temps)`` with ``temps`` of shape ``(n_depths,)``, or blocks
    ``update(times, temps)`` with shapes ``(k,)`` and ``(k, n_depths)`` (one call per block is much
    cheaper than one per sample); times must not decrease. Only the last sample and the running sums are
    kept (O(1) memory in the length of the history). The first sample starts the history; between
    samples the temperature is linear in time (see :mod:`.damage_kernels`).
    """

    __slots__ = ("_cem", "_depths", "_last_t", "_last_temp", "_max", "_omega_h", "_omega_ws")

    def __init__(self, depths_m: Sequence[float] | npt.ArrayLike) -> None:
        depths = np.asarray(depths_m, dtype=np.float64).reshape(-1)
        if depths.size == 0 or not np.all(np.isfinite(depths)) or np.any(depths < 0):
            raise ValueError("need at least one finite depth >= 0")
        n = depths.size
        self._depths: FloatArray = depths
        self._omega_h: FloatArray = np.zeros(n)
        self._omega_ws: FloatArray = np.zeros(n)
        self._cem: FloatArray = np.zeros(n)
        self._max: FloatArray = np.full(n, -math.inf)
        self._last_t: float | None = None
        self._last_temp: FloatArray = np.full(n, math.nan)

    @property
    def depths_m(self) -> FloatArray:
        return self._depths.copy()

    @property
    def time_s(self) -> float | None:
        """Time of the last sample, or None before the first."""
        return self._last_t

    @property
    def omega_henriques(self) -> FloatArray:
        return self._omega_h.copy()

    @property
    def omega_weaver_stoll(self) -> FloatArray:
        return self._omega_ws.copy()

    @property
    def cem43_min(self) -> FloatArray:
        return self._cem.copy()

    @property
    def max_c(self) -> FloatArray:
        """Highest sampled temperature at each depth (C); -inf before the first sample."""
        return self._max.copy()

    def update(self, t_s: float | npt.ArrayLike, temps_c: npt.ArrayLike) -> None:
        n = self._depths.size
        t = np.asarray(t_s, dtype=np.float64).reshape(-1)
        temp = np.asarray(temps_c, dtype=np.float64).reshape(t.size, n)
        if not np.all(np.isfinite(t)):
            raise ValueError("times must be finite")
        _kelvin(temp)
        if self._last_t is not None:
            t = np.concatenate(([self._last_t], t))
            temp = np.concatenate((self._last_temp[None, :], temp))
        dt = np.diff(t)
        if np.any(dt < 0.0):
            raise ValueError("times must not decrease")
        self._max = np.maximum(self._max, temp.max(axis=0))
        if dt.size:
            dt2 = dt[:, None]
            henriques, weaver_stoll = _TRACKED.per_set(_arrhenius_totals(dt2, temp, _TRACKED), 2)
            self._omega_h = self._omega_h + henriques
            self._omega_ws = self._omega_ws + weaver_stoll
            self._cem = self._cem + _cem43_total(dt2, temp)
        self._last_t = float(t[-1])
        self._last_temp = temp[-1].copy()
