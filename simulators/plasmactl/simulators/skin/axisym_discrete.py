"""The discretised axisymmetric model of one spot: grid arrays, operators per crater and factorisations.

The part of :class:`~.axisym.AxisymModel` fixed by (params, spot diameter), apart from its time stepping
(``AxisymModel.run`` in axisym.py), so that each stays readable on its own.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from plasmactl.simulators.skin.axisym_crater import _Crater
from plasmactl.simulators.skin.axisym_grid import _depth_faces, _disk_overlap, _layer_of, _radial_faces
from plasmactl.simulators.skin.axisym_ops import _Factor, _Ops
from plasmactl.simulators.skin.axisym_params import AxisymParams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

_MAX_CRATERS = 1  # crater operator sets cached per model besides the intact one (~1.5 MB per factorisation)


class _DiscreteModel:
    """Grid, operators and cached factorisations for one (params, spot diameter); the run is in axisym.py."""

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
