"""Thermal damage: Arrhenius integrals (Henriques, Weaver-Stoll) and CEM43 thermal dose.

See docs/domain.md, "Thermal damage". Temperatures are given in C and converted to kelvin inside
(``T_K = T_C + 273.15``); times are in seconds; CEM43 is returned in equivalent minutes at 43 C.

Arrhenius damage integral ``Omega = int A exp(-(E/R) / T) dt``:

- :data:`HENRIQUES` (1947): ``A = 3.1e98 1/s``, ``Ea = 6.28e5 J/mol``. ``E/R`` is computed as
  ``Ea / R`` with ``R = 8.314462618 J/(mol K)`` (75,531.04 K; with R rounded to 8.314 it would be 75,535 K)
  and never rounded: rounding it to 75,000 K moves the 44 C threshold time five-fold.
- :data:`WEAVER_STOLL` (1969), piecewise: ``44 <= T < 50 C``: ``A = 2.185e124``, ``E/R = 93,534.9 K``;
  ``T >= 50 C``: ``A = 1.823e51``, ``E/R = 39,109.8 K``. **Convention: the rate is 0 below 44 C** (the
  fit starts at 44 C; the 44-50 C rate at 44 C is 1.8e-4 1/s, i.e. Omega = 1 after 1.5 h, so the cut-off
  is below any burn of interest). The two bands do not meet exactly at 50 C (0.043 vs 0.050 1/s); the
  published values are kept as they are.

Thresholds (Henriques): Omega 0.53 first degree, 1 second degree, 1e4 third degree.

CEM43: ``int R^(43 - T) dt / 60`` with ``R = 0.5`` at or above 43 C and ``0.25`` below.

Integration over a sampled history: between two samples the temperature is taken as **linear in
time**, and the integral of the rate along that line is computed in closed form, i.e. the result is
exact (to ~1e-11 relative) for a piecewise-linear history, whatever the spacing of the samples. This
matters because the rate is so steep: at 60 C the Henriques rate grows by 7 % per 0.1 K, so over a
5 K step the trapezoidal rule overestimates by 80 % and the midpoint rule underestimates by 35 %. Closed
form, for ``u = (E/R) / T`` and ``dT/dt`` constant:

    int exp(-B/T) dt = dt/(T1 - T0) * B * (G(B/T1) - G(B/T0)),    G(u) = int_u^inf exp(-s)/s^2 ds
                                                                    = exp(-u)/u - E1(u).

``G`` is evaluated as ``exp(-u) h(u) / u`` with ``h(u) = 1 - u e^u E1(u) = (1 - R)/(u + 1 - R)`` and
``R`` from the classical continued fraction of ``E1`` (backward recurrence, 8 levels; relative error
< 1e-15 for ``u >= 30``, i.e. any tissue temperature: ``u > 100`` below 100 C for every set here), and
from ``scipy.special.exp1`` for ``u < 30``. When the two ends are close (``|u0 - u1| < 0.01``) the
difference of ``G`` would cancel, so the interval is integrated instead by the midpoint rule in ``u``
with its exact second-order correction, ``d e^{-um}/um^2 (1 + d^2/24 (1 + 4/um + 6/um^2))``, whose
remaining error is ``d^4/1920 < 1e-11``. Piecewise parameter sets (and the two CEM43 bases) are
handled by clipping each linear segment to the band: the part of the segment inside a band is again
linear, and its duration is ``dt * (T1c - T0c)/(T1 - T0)``. CEM43 along a linear segment is an
exponential in time and integrates exactly with ``exprel``.

All functions are vectorised with numpy over any trailing shape (e.g. several depths at once); time is
the first axis of a history.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

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

R_GAS: Final = 8.314462618  # J/(mol K), CODATA 2018 (exact SI value)
ZERO_C_IN_K: Final = 273.15
CEM43_REFERENCE_C: Final = 43.0

OMEGA_FIRST_DEGREE: Final = 0.53
OMEGA_SECOND_DEGREE: Final = 1.0
OMEGA_THIRD_DEGREE: Final = 1e4

_U_SERIES: Final = 30.0  # continued fraction for u >= this, scipy's exp1 below
_CF_DEPTH: Final = 8
_D_SMALL: Final = 0.01  # |u0 - u1| below which the midpoint form replaces the G difference


@dataclass(frozen=True, slots=True)
class ArrheniusBand:
    """``rate = a_per_s * exp(-e_over_r_k / T_K)`` for ``t_min_c <= T < t_max_c`` (C)."""

    a_per_s: float
    e_over_r_k: float
    t_min_c: float = -math.inf
    t_max_c: float = math.inf

    def __post_init__(self) -> None:
        if not (self.a_per_s > 0 and math.isfinite(self.a_per_s) and self.e_over_r_k > 0):
            raise ValueError("need a finite A > 0 and E/R > 0")
        if not self.t_min_c < self.t_max_c:
            raise ValueError("need t_min_c < t_max_c")

    @classmethod
    def from_activation_energy(
        cls, a_per_s: float, ea_j_per_mol: float, t_min_c: float = -math.inf, t_max_c: float = math.inf
    ) -> ArrheniusBand:
        """A band from the activation energy: ``E/R = Ea / R_GAS``, unrounded."""
        return cls(a_per_s, ea_j_per_mol / R_GAS, t_min_c, t_max_c)


@dataclass(frozen=True, slots=True)
class ArrheniusParams:
    """A named Arrhenius parameter set: non-overlapping bands in increasing temperature; rate 0 outside."""

    name: str
    bands: tuple[ArrheniusBand, ...]

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError("at least one band is needed")
        for lo, hi in itertools.pairwise(self.bands):
            if hi.t_min_c < lo.t_max_c:
                raise ValueError("bands must be sorted and must not overlap")


HENRIQUES: Final = ArrheniusParams("Henriques 1947", (ArrheniusBand.from_activation_energy(3.1e98, 6.28e5),))
WEAVER_STOLL: Final = ArrheniusParams(
    "Weaver-Stoll 1969",
    (
        ArrheniusBand(2.185e124, 93534.9, 44.0, 50.0),
        ArrheniusBand(1.823e51, 39109.8, 50.0, math.inf),
    ),
)


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


# ---------------------------------------------------------------------------------------------- kernels
#
# The kernels work on a whole history at once: ``temps`` of shape (k + 1, m) (k linear segments, m depths)
# against a table of nb bands of shape (nb, 1, 1), and return per-band totals of shape (nb, m). Values at
# the samples (the clipped temperature, u, G) are computed once and shared by the two segments that meet
# there; every operation is one numpy call over all bands, segments and depths.

_CF_SQUARES: Final = tuple(float(j * j) for j in range(_CF_DEPTH, 0, -1))
_CF_OFFSETS: Final = tuple(float(2 * j + 1) for j in range(_CF_DEPTH, 0, -1))


@dataclass(frozen=True, slots=True)
class _Table:
    """Bands stacked along a leading axis, each column shaped (nb, 1, 1)."""

    a: FloatArray
    b: FloatArray
    lo: FloatArray
    hi: FloatArray
    owners: tuple[int, ...]  # index of the parameter set of each band

    @staticmethod
    def of(*sets: ArrheniusParams) -> _Table:
        bands = [(band, i) for i, ps in enumerate(sets) for band in ps.bands]

        def col(values: list[float]) -> FloatArray:
            return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)

        return _Table(
            col([bd.a_per_s for bd, _ in bands]),
            col([bd.e_over_r_k for bd, _ in bands]),
            col([bd.t_min_c for bd, _ in bands]),
            col([bd.t_max_c for bd, _ in bands]),
            tuple(i for _, i in bands),
        )

    def per_set(self, band_totals: FloatArray, n_sets: int) -> list[FloatArray]:
        out = [np.zeros(band_totals.shape[1:]) for _ in range(n_sets)]
        for row, owner in enumerate(self.owners):
            out[owner] = out[owner] + band_totals[row]
        return out


_TRACKED: Final = _Table.of(HENRIQUES, WEAVER_STOLL)
_CEM_KAPPA: Final = np.array([math.log(4.0), math.log(2.0)]).reshape(-1, 1, 1)  # R = 0.25 below 43 C, 0.5 at/above
_CEM_LO: Final = np.array([-math.inf, CEM43_REFERENCE_C]).reshape(-1, 1, 1)
_CEM_HI: Final = np.array([CEM43_REFERENCE_C, math.inf]).reshape(-1, 1, 1)


def _g(u: FloatArray) -> FloatArray:
    """``G(u) = int_u^inf exp(-s)/s^2 ds`` for u > 0 (elementwise)."""
    big = np.maximum(u, _U_SERIES)
    r = np.zeros_like(big)
    for sq, off in zip(_CF_SQUARES, _CF_OFFSETS, strict=True):
        r = sq / ((big + off) - r)
    g: FloatArray = np.exp(-big) * ((1.0 - r) / (big + 1.0 - r)) / big
    small = u < _U_SERIES
    if np.any(small):
        us = np.where(small, u, 1.0)
        g = np.where(small, np.exp(-us) / us - special.exp1(us), g)
    return g


def _time_in_band(
    dt: FloatArray, temps: FloatArray, clipped: FloatArray, lo: FloatArray, hi: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Raw rise of each segment and the time it spends in ``[lo, hi)`` (linear in time in between)."""
    rise = temps[1:] - temps[:-1]
    flat = rise == 0.0
    t0 = temps[:-1]
    inside = (t0 >= lo) & (t0 < hi)
    frac = np.where(flat, inside, (clipped[:, 1:] - clipped[:, :-1]) / np.where(flat, 1.0, rise))
    return rise, dt * frac


def _arrhenius_totals(dt: FloatArray, temps: FloatArray, table: _Table) -> FloatArray:
    """Omega per band over the history: shape (nb, m). ``dt`` has shape (k, 1), ``temps`` (k + 1, m)."""
    clipped = np.minimum(np.maximum(temps, table.lo), table.hi)
    kel = clipped + ZERO_C_IN_K
    b = table.b
    u = b / kel
    u0, u1 = u[:, :-1], u[:, 1:]
    rise, dt_band = _time_in_band(dt, temps, clipped, table.lo, table.hi)
    d = np.abs(u0 - u1)
    um = 0.5 * (u0 + u1)
    inv = 1.0 / um
    # Close ends: midpoint rule in u plus its exact second-order term (error d^4/1920).
    inc = (table.a * (b * b)) * dt_band * (inv * inv / (kel[:, :-1] * kel[:, 1:])) * np.exp(-um)
    inc = inc * (1.0 + (d * d) * (1.0 / 24.0) * (1.0 + inv * (4.0 + 6.0 * inv)))
    far = d >= _D_SMALL
    if np.any(far):
        g = _g(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            exact = (table.a * b) * (g[:, 1:] - g[:, :-1]) * (dt / np.where(rise == 0.0, 1.0, rise))
        inc = np.where(far, exact, inc)
    return np.asarray(inc.sum(axis=1), dtype=np.float64)


def _cem43_total(dt: FloatArray, temps: FloatArray) -> FloatArray:
    """CEM43 minutes over the history: shape (m,)."""
    clipped = np.minimum(np.maximum(temps, _CEM_LO), _CEM_HI)
    _, dt_band = _time_in_band(dt, temps, clipped, _CEM_LO, _CEM_HI)
    c0 = clipped[:, :-1]
    inc = dt_band * np.exp(_CEM_KAPPA * (c0 - CEM43_REFERENCE_C)) * special.exprel(_CEM_KAPPA * (clipped[:, 1:] - c0))
    return np.asarray(inc.sum(axis=(0, 1)) / 60.0, dtype=np.float64)


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


class DamageTracker:
    """Accumulates Omega (Henriques and Weaver-Stoll), CEM43 and the peak temperature at fixed depths.

    Feed it successive samples ``update(t, temps)`` with ``temps`` of shape ``(n_depths,)``, or blocks
    ``update(times, temps)`` with shapes ``(k,)`` and ``(k, n_depths)`` (one call per block is much
    cheaper than one per sample); times must not decrease. Only the last sample and the running sums are
    kept (O(1) memory in the length of the history). The first sample starts the history; between
    samples the temperature is linear in time (see the module doc).
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
