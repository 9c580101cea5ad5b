"""Closed-form damage integrals over linear segments of a temperature history, for damage.py.

Split out of damage.py because the numerics (continued fraction, cancellation-free short segments, band
clipping) are a job of their own; damage.py validates the history and exposes the results.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

from plasmactl.simulators.skin.damage_params import CEM43_REFERENCE_C, ZERO_C_IN_K, ArrheniusParams

FloatArray = npt.NDArray[np.float64]

_U_SERIES: Final = 30.0  # continued fraction for u >= this, scipy's exp1 below
_CF_DEPTH: Final = 8
_D_SMALL: Final = 0.01  # |u0 - u1| below which the midpoint form replaces the G difference


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
