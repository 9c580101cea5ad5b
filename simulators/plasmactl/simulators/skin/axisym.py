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

Damage: the Henriques Arrhenius integral on the damage depth (see :mod:`.axisym_damage`).

The parts: parameters and results in :mod:`.axisym_params`, the grid in :mod:`.axisym_grid`, the
operators and their factorisations in :mod:`.axisym_discrete` (and :mod:`.axisym_ops`), the vaporisation
state in :mod:`.axisym_crater`; the time stepping of a run is here.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.axisym_crater import _Crater
from plasmactl.simulators.skin.axisym_damage import HENRIQUES_A, HENRIQUES_E_OVER_R
from plasmactl.simulators.skin.axisym_damage import _arrhenius_increment as _arrhenius_increment
from plasmactl.simulators.skin.axisym_damage import _arrhenius_log_rate as _arrhenius_log_rate
from plasmactl.simulators.skin.axisym_discrete import _DiscreteModel
from plasmactl.simulators.skin.axisym_ops import _Ledger
from plasmactl.simulators.skin.axisym_params import AxisymEnergy, AxisymParams, AxisymRun, LateralResult

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


class AxisymModel(_DiscreteModel):
    """Grid, operators and cached factorisations for one (params, spot diameter); see the module doc.

    Not thread-safe (the factorisation cache is filled lazily); use one model per thread.
    """

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
