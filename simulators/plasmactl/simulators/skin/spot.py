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

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.damage import HENRIQUES, WEAVER_STOLL, arrhenius_omega, cem43_minutes
from plasmactl.simulators.skin.spot_run import _Run
from plasmactl.simulators.skin.spot_types import EnergyAccount, SpotDose, SpotParams, SpotResult, SpotTrace

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
