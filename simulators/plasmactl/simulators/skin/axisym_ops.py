"""The axisymmetric model's operators per crater, their factorisations, and a run's energy ledger.

Plain containers: built by the model (axisym_discrete.py) and used by the run that steps with them
(axisym.py), so that the two share one definition of each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


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
