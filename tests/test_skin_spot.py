"""Tests of the per-spot tissue model: closed forms, burn data, sublimation, cooling, cost."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import erf, erfc

import plasmactl.simulators.skin.spot as spot_module
from plasmactl.simulators.skin.damage import HENRIQUES, time_to_omega
from plasmactl.simulators.skin.layered1d import DEFAULT_LAYERS, Layer, Layered1DSkin, SkinParams
from plasmactl.simulators.skin.spot import (
    SpotDose,
    SpotParams,
    SpotResult,
    SpotTrace,
    simulate_spot,
    trace_spot,
)

# Homogeneous slab for the closed forms: alpha = 1.25e-7 m2/s, effusivity e = sqrt(k rho c) = 1414.
K, RHO, C = 0.5, 1000.0, 4000.0
ALPHA = K / (RHO * C)
EFF = math.sqrt(K * RHO * C)
T_I = 37.0
SPOT_D = 0.3e-3
AREA = math.pi * SPOT_D**2 / 4.0


def slab(
    thickness_m: float = 10e-3, w_b: float = 0.0, cell: float = 0.5e-6, growth: float = 1.04, **kw: float
) -> SpotParams:
    """A homogeneous slab at T_I, adiabatic in air, bottom (and blood) at T_I, heat into the first cell."""
    return SpotParams(
        layers=(Layer("slab", thickness_m, RHO, C, K, w_b, 0.0),),
        air_h=0.0,
        t_core_c=T_I,
        t_arterial_c=T_I,
        initial_c=(T_I,),
        surface_cell_m=cell,
        growth=growth,
        deposit_depth_m=cell,
        damage_depths_m=(),
        basal_depth_m=100e-6,
        **kw,  # type: ignore[arg-type]
    )


def within(rise: float, exact: float) -> bool:
    """The accuracy asked for: 0.5 % of the temperature rise, or 0.05 K."""
    return bool(abs(rise - exact) <= max(0.005 * abs(exact), 0.05))


def flux_exact(q: float, x: float, t: float) -> float:
    eta = x / (2.0 * math.sqrt(ALPHA * t))
    return (2.0 * q / K) * math.sqrt(ALPHA * t / math.pi) * math.exp(-eta * eta) - (q * x / K) * float(erfc(eta))


def flux_trace(params: SpotParams, q: float, times: list[float], depths: list[float]) -> SpotTrace:
    end = max(times)
    dose = SpotDose(((0.0, end, q * AREA * end),), (), spot_diameter_m=SPOT_D)
    return trace_spot(dose, params, times_s=times, depths_m=depths, horizon_s=0.0)


# ---------------------------------------------------------------- closed forms (docs/domain.md)


def test_constant_surface_flux_at_the_surface_and_at_depth() -> None:
    q = 1e4  # W/m2: 8 K after 1 s, far from vaporisation
    times, depths = [0.01, 0.1, 1.0], [0.0, 50e-6, 200e-6, 500e-6]
    tr = flux_trace(slab(), q, times, depths)
    assert tr.result.ablation_depth_um == 0.0
    for i, t in enumerate(times):
        surface = 2.0 * q * math.sqrt(t) / (math.sqrt(math.pi) * EFF)
        assert within(tr.surface_c[i] - T_I, surface), (t, tr.surface_c[i] - T_I, surface)
        for j, x in enumerate(depths):
            assert within(tr.temps_c[i, j] - T_I, flux_exact(q, x, t)), (t, x)


def test_sudden_surface_temperature() -> None:
    t_s = T_I + 20.0  # a huge h holds the surface at the spray temperature
    params = slab(spray_h=1e9, spray_temp_c=t_s)
    times, depths = [0.01, 0.1, 1.0], [0.0, 20e-6, 100e-6, 300e-6]
    tr = trace_spot(SpotDose((), ((0.0, 10.0),)), params, times_s=times, depths_m=depths, horizon_s=0.0)
    for i, t in enumerate(times):
        assert tr.surface_c[i] == pytest.approx(t_s, abs=1e-3)
        for j, x in enumerate(depths):
            exact = (t_s - T_I) * (1.0 - erf(x / (2.0 * math.sqrt(ALPHA * t))))
            assert within(tr.temps_c[i, j] - T_I, exact), (t, x, tr.temps_c[i, j] - T_I, exact)


def test_convective_surface() -> None:
    h, t_inf = 2500.0, 8.0
    params = slab(spray_h=h, spray_temp_c=t_inf)
    times, depths = [0.1, 1.0], [0.0, 50e-6, 200e-6, 500e-6]
    tr = trace_spot(SpotDose((), ((0.0, 10.0),)), params, times_s=times, depths_m=depths, horizon_s=0.0)
    for i, t in enumerate(times):
        for j, x in enumerate(depths):
            eta = x / (2.0 * math.sqrt(ALPHA * t))
            beta = h * math.sqrt(ALPHA * t) / K
            theta = erfc(eta) - math.exp(h * x / K + beta * beta) * erfc(eta + beta)
            assert within(tr.temps_c[i, j] - T_I, (t_inf - T_I) * theta), (t, x)


def test_pennes_surface_step_with_perfusion() -> None:
    w_b, step = 0.02, 10.0
    params = slab(50e-3, w_b=w_b, spray_h=1e9, spray_temp_c=T_I + step)
    beta = w_b * params.rho_b * params.c_b / (RHO * C)
    m = math.sqrt(beta / ALPHA)
    times, depths = [1.0, 10.0, 50.0], [0.5e-3, 1e-3, 2e-3]
    tr = trace_spot(SpotDose((), ((0.0, 100.0),)), params, times_s=times, depths_m=depths, horizon_s=0.0)
    for i, t in enumerate(times):
        for j, x in enumerate(depths):
            eta, sb = x / (2.0 * math.sqrt(ALPHA * t)), math.sqrt(beta * t)
            exact = step / 2.0 * (math.exp(-m * x) * erfc(eta - sb) + math.exp(m * x) * erfc(eta + sb))
            assert within(tr.temps_c[i, j] - T_I, exact), (t, x, tr.temps_c[i, j] - T_I, exact)


def test_two_half_spaces_in_contact_meet_at_the_effusivity_weighted_mean() -> None:
    # Tissue-like (e1 = 1,414) over metal-like (e2 = 14,142), no source, 60 C above 20 C: the interface
    # jumps to (e1 T1 + e2 T2)/(e1 + e2) = 23.636 C and stays there. The tissue layer is 100 um thick
    # (its adiabatic top is out of reach until ~5 ms: erfc(100 um / sqrt(4 alpha t)) < 1e-5 at 2 ms).
    k2, rho2, c2 = 50.0, 8000.0, 500.0
    e1, e2 = EFF, math.sqrt(k2 * rho2 * c2)
    t1, t2 = 60.0, 20.0
    params = SpotParams(
        layers=(Layer("tissue", 100e-6, RHO, C, K), Layer("metal", 5e-3, rho2, c2, k2)),
        air_h=0.0,
        t_core_c=t2,
        t_arterial_c=t2,
        initial_c=(t1, t2),
        surface_cell_m=0.25e-6,
        growth=1.02,
        damage_depths_m=(),
    )
    expected = (e1 * t1 + e2 * t2) / (e1 + e2)
    assert expected == pytest.approx(23.636, abs=1e-3)
    times = [0.2e-3, 0.5e-3, 1e-3, 2e-3]
    tr = trace_spot(SpotDose((), ()), params, times_s=times, depths_m=[100e-6], horizon_s=2e-3)
    for i in range(len(times)):
        assert within(tr.temps_c[i, 0] - t2, expected - t2), (times[i], tr.temps_c[i, 0], expected)
    assert np.ptp(tr.temps_c[:, 0]) < 0.05  # constant in time


def test_grid_convergence() -> None:
    # Constant surface flux, error over several depths and times: it falls at every refinement of the
    # grid (size of the first cell and growth factor). Time is exact here (modal steps).
    q = 1e4
    times, depths = [0.01, 0.1, 1.0], [0.0, 50e-6, 200e-6]
    errors = []
    for cell, growth in ((4e-6, 1.32), (2e-6, 1.16), (1e-6, 1.08), (0.5e-6, 1.04)):
        tr = flux_trace(slab(cell=cell, growth=growth), q, times, depths)
        err = max(
            abs(tr.temps_c[i, j] - T_I - flux_exact(q, x, t)) / flux_exact(q, 0.0, t)
            for i, t in enumerate(times)
            for j, x in enumerate(depths)
        )
        errors.append(err)
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.01


def test_implicit_step_convergence_while_ablating() -> None:
    # The implicit steps (only used while cells vaporise): temperatures just below the crater floor
    # 1 ms after an ablating pulse (28 um crater) converge as the step is refined.
    dose = SpotDose(((0.0, 5e-3, 5e-3),), ())
    times, depths = [6e-3], [40e-6, 45e-6]

    def run(dt: float) -> SpotTrace:
        return trace_spot(dose, SpotParams(ablation_dt_s=dt), times_s=times, depths_m=depths, horizon_s=0.01)

    ref = run(5e-6)
    errors = []
    for dt in (1e-3, 250e-6, 62.5e-6, 15.625e-6):
        tr = run(dt)
        errors.append(float(np.abs(tr.temps_c - ref.temps_c).max()))
        if dt <= 250e-6:
            assert tr.result.ablation_depth_um == pytest.approx(ref.result.ablation_depth_um, abs=1e-9)
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[1] < 2.0  # K, at the default step


def test_agrees_with_the_session_model_when_nothing_vaporises() -> None:
    # Cross-check against Layered1DSkin (an independent exact solver) configured on the same spot, grid
    # and deposition depth: 0.2 mJ in 5 ms (surface 72 C), spray 17 ms after the pulse for 150 ms.
    skin = Layered1DSkin(SkinParams(field_diameter_m=SPOT_D, deposit_depth_m=10e-6, surface_cell_m=1e-6, growth=1.04))
    energy = 0.2e-3
    skin.heat(0.0, 5e-3, energy / 5e-3)
    skin.cool(22e-3, 172e-3)
    times = [1e-3, 5e-3, 10e-3, 30e-3, 0.1, 0.3, 1.0]
    tr = trace_spot(SpotDose(((0.0, 5e-3, energy),), ((22e-3, 172e-3),)), times_s=times, depths_m=[50e-6, 100e-6])
    for i, t in enumerate(times):
        assert tr.surface_c[i] == pytest.approx(skin.surface_c(t), abs=1e-3)
        assert tr.temps_c[i, 0] == pytest.approx(skin.temperature_at_c(50e-6, t), abs=1e-3)
        # At the epidermis/dermis interface Layered1DSkin interpolates linearly across the kink.
        assert tr.temps_c[i, 1] == pytest.approx(skin.temperature_at_c(100e-6, t), abs=0.06)


def test_spray_before_the_pulse_is_simulated_from_its_start() -> None:
    dose = SpotDose(((0.0, 5e-3, 0.2e-3),), ((-0.1, 0.0),))
    tr = trace_spot(dose, times_s=[-0.1, -0.05, 0.0], depths_m=[0.0])
    plain = simulate_spot(SpotDose(((0.0, 5e-3, 0.2e-3),), ()))
    assert tr.surface_c[1] < tr.surface_c[0] - 5.0  # the mist cools the surface before the pulse
    assert tr.result.max_surface_c < plain.max_surface_c


# ---------------------------------------------------------------- energy balance


def test_energy_balance_without_ablation() -> None:
    dose = SpotDose(((0.0, 5e-3, 0.2e-3),), ((22e-3, 172e-3),))
    tr = trace_spot(dose, SpotParams(), times_s=[0.1], depths_m=[0.0])
    e = tr.energy
    assert 60.0 < tr.result.max_surface_c < 100.0
    assert e.latent_j == 0.0
    assert e.residual_j == pytest.approx(0.0, abs=1e-9 * e.deposited_j)
    assert e.surface_out_j > 0.0  # the spray took heat out


# ---------------------------------------------------------------- sublimation


def test_high_energy_pulse_ablates_and_the_energy_balance_closes() -> None:
    depths = []
    for energy in (2e-3, 5e-3, 10e-3, 20e-3, 60e-3):
        dose = SpotDose(((0.0, 5e-3, energy),), ((22e-3, 172e-3),))
        tr = trace_spot(dose, SpotParams(), times_s=[5e-3], depths_m=[0.0])
        e = tr.energy
        assert e.deposited_j == pytest.approx(energy, rel=1e-12)
        # deposited = sensible rise + latent consumed + conducted/convected away, within 1 % (it is exact)
        assert abs(e.deposited_j - (e.sensible_j + e.latent_j + e.away_j)) < 0.01 * e.deposited_j
        assert abs(e.residual_j) < 1e-9 * e.deposited_j
        assert e.latent_j > 0.0
        assert tr.result.max_surface_c == pytest.approx(100.0, abs=0.01)
        depths.append(tr.result.ablation_depth_um)
    assert all(a < b for a, b in itertools.pairwise(depths)), depths
    # The deep crater is set by energy: E / (A (rho c (100 - T0) + f rho L)) with the epidermis
    # (1,200 kg/m3, 3,590 J/kg/K, 0.7 x 2.26 MJ/kg): 8.49e5 J/m2 / 2.18e9 J/m3 = 389 um for 60 mJ.
    p = SpotParams()
    rho, c = 1200.0, 3590.0
    estimate = 60e-3 / AREA / (rho * c * (100.0 - 35.3) + p.water_fraction * rho * p.latent_heat_j_per_kg) * 1e6
    assert depths[-1] == pytest.approx(estimate, rel=0.05)
    print(f"\nablation depth (5 ms pulses, 0.3 mm spot): {dict(zip((2, 5, 10, 20, 60), depths, strict=True))} um")


def test_ablated_tissue_is_reported_destroyed() -> None:
    r = simulate_spot(SpotDose(((0.0, 5e-3, 60e-3),), ((22e-3, 172e-3),)))
    assert r.ablation_depth_um > 200.0
    assert r.basal_omega_henriques == math.inf
    assert r.basal_omega_weaver_stoll == math.inf
    assert r.cem43_min == math.inf
    assert r.max_basal_c >= 100.0
    assert r.omega_at_depths == {50e-6: math.inf, 100e-6: math.inf, 200e-6: math.inf}


# ---------------------------------------------------------------- burn data (through the conduction model)

# Moritz and Henriques (1947): the skin surface held at T (hot water), Henriques Omega = 1 at the
# basal layer (transepidermal necrosis, docs/domain.md). The model: default layers (20 um stratum corneum +
# 80 um viable epidermis, basal layer at 100 um), rest state in air (surface 35.3 C), surface held by
# h = 1e9, then back to air; the exposure time is the shortest one whose final Omega (after cooling)
# reaches 1.
#
# Model numbers (seconds): 70 C 1.54, 60 C 10.4, 55 C 60, 52 C 341, 50 C 1,335, 44 C 99,000 (27.5 h).
# Checked: perfusion in 1/s (switching it off changes < 2 %), E/R = Ea/R unrounded, kelvin inside.
# The ranges, and why:
# - Epidermal thickness: basal layer at 80 instead of 100 um -> 1.09 s at 70 C, 8.5 s at 60 C (-30 % to
#   -10 %); 50-150 um of epidermis is normal, so a factor ~1.5 either way at the high temperatures,
#   where the heating of the basal layer takes a good part of the exposure.
# - The end point: Moritz and Henriques scored complete transepidermal necrosis on pigs and humans,
#   in steps of exposure time (1, 2, 3, 5 s; minutes; hours) with an initial skin temperature that
#   varied; "about 1 s", "about 30 s" are read off that step grid, i.e. a factor ~2.
# - The parameter set itself: Henriques's A, E give Omega = 1 at 55 C after 29.6 s and at 44 C after
#   24 h *isothermally* (test_skin_damage.py), so no conduction model can do shorter at 44 C; the
#   published ~6 h at 44 C is reached only with E/R rounded down (75,000 K -> 4.5 h). This is why the
#   low end is "hours" with a wide range.
MORITZ_HENRIQUES = [
    # surface C, published (docs/domain.md), accepted range of the model (s)
    (70.0, "about 1 s at 68-70 C", 0.4, 3.0),
    (60.0, "seconds at 60 C", 2.0, 20.0),
    (55.0, "about 30 s at 55 C", 12.0, 100.0),
    (52.0, "minutes at 49-52 C", 60.0, 1200.0),
    (50.0, "minutes at 49-52 C", 120.0, 3600.0),
    (44.0, "hours at 44 C", 3600.0, 48 * 3600.0),
]


def _scald_omega(surface_c: float, exposure_s: float) -> SpotResult:
    params = SpotParams(spray_h=1e9, spray_temp_c=surface_c)
    return simulate_spot(SpotDose((), ((0.0, exposure_s),)), params, horizon_s=max(10.0, 0.1 * exposure_s))


@pytest.mark.parametrize(("surface_c", "published", "low_s", "high_s"), MORITZ_HENRIQUES)
def test_moritz_henriques_scald_times(surface_c: float, published: str, low_s: float, high_s: float) -> None:
    def log_omega(log_t: float) -> float:
        return math.log(_scald_omega(surface_c, math.exp(log_t)).basal_omega_henriques)

    t_burn = math.exp(brentq(log_omega, math.log(1e-2), math.log(1e6), xtol=1e-3))
    print(f"\nMoritz-Henriques {surface_c:.0f} C: model {t_burn:.4g} s (published: {published})")
    assert low_s <= t_burn <= high_s
    # Through conduction the basal layer lags the surface: never shorter than isothermal at the surface.
    assert t_burn > time_to_omega(surface_c, HENRIQUES)


# Stoll (second-degree burn, blister) for a constant absorbed surface flux applied for t, Weaver-Stoll
# Omega = 1 at the basal layer. Model: 0.86 s at 50 kW/m2, 4.19 s at 16 kW/m2, 8.58 s at 9.8 kW/m2
# (basal layer at 80 um: 0.75, 3.9, 8.2 s). Weaver and Stoll fitted their coefficients to this very
# curve with a conduction model of their own, so the agreement should be close; the remaining
# differences are the skin model (their homogeneous skin vs our layers and 100 um basal depth: -13 %
# to -5 % at 80 um) and reading the curve (the three points are rounded: "1, 5, 10 s"). Accepted:
# within 35 % of the published times.
STOLL = [(50e3, 1.0), (16e3, 5.0), (9.8e3, 10.0)]


@pytest.mark.parametrize(("flux", "published_s"), STOLL)
def test_stoll_second_degree_curve(flux: float, published_s: float) -> None:
    def burn(t: float) -> SpotResult:
        return simulate_spot(SpotDose(((0.0, t, flux * AREA * t),), ()), horizon_s=10.0)

    def log_omega(log_t: float) -> float:
        return math.log(max(burn(math.exp(log_t)).basal_omega_weaver_stoll, 1e-300))  # 0 below 44 C

    bracket = (math.log(0.3 * published_s), math.log(2.0 * published_s))
    t_blister = math.exp(brentq(log_omega, *bracket, xtol=1e-3))
    at_threshold = burn(t_blister)
    assert at_threshold.ablation_depth_um == 0.0 and at_threshold.max_surface_c < 100.0  # a pure conduction burn
    print(f"\nStoll {flux / 1e3:.1f} kW/m2: model {t_blister:.3g} s (published ~{published_s:g} s)")
    assert 0.65 * published_s <= t_blister <= 1.35 * published_s


# ---------------------------------------------------------------- spray timing

END_S = 2.5  # every run of a sweep ends at the same absolute time, so the damage is comparable


def _cooled(pulse_s: float, energy_j: float, delay_s: float | None) -> SpotResult:
    sprays = () if delay_s is None else ((pulse_s + delay_s, pulse_s + delay_s + 0.15),)
    last = pulse_s if delay_s is None else pulse_s + delay_s + 0.15
    return simulate_spot(SpotDose(((0.0, pulse_s, energy_j),), sprays), horizon_s=END_S - last)


@pytest.mark.parametrize(("pulse_s", "energy_j"), [(5e-3, 4e-3), (50e-3, 12e-3)])
def test_basal_damage_never_decreases_as_the_spray_comes_later(pulse_s: float, energy_j: float) -> None:
    # Tolerance 1e-5 relative: the temperatures are exact, the damage is integrated exactly between
    # samples taken 24 per decade after each event, which leaves a sampling error of ~1e-3 that moves a
    # little with the sample grid (it depends on the event times): a few 1e-6 once the spray no longer
    # matters (1e-7 at 96 samples per decade).
    omegas = [_cooled(pulse_s, energy_j, d * 1e-3).basal_omega_henriques for d in range(0, 201, 10)]
    none = _cooled(pulse_s, energy_j, None).basal_omega_henriques
    for a, b in itertools.pairwise(omegas):
        assert b >= a * (1.0 - 1e-5)
    assert omegas[-1] <= none * (1.0 + 1e-5)
    assert omegas[0] < 0.6 * none  # and spraying at once does reduce it


def test_where_the_cooling_delay_stops_mattering() -> None:
    # An epidermis-scale pulse near the second-degree threshold at the basal layer: 12 mJ in 50 ms on
    # 0.3 mm (70 um crater, basal peak 67 C, basal Omega 0.75 without spray). A 150 ms spray starting
    # `delay` after the pulse: beyond which delay is the basal Omega within 1 % of no spray at all?
    pulse_s, energy_j = 50e-3, 12e-3
    none = _cooled(pulse_s, energy_j, None).basal_omega_henriques
    assert 0.3 < none < 1.5
    delays = [d * 1e-3 for d in range(0, 101, 5)]
    change = [1.0 - _cooled(pulse_s, energy_j, d).basal_omega_henriques / none for d in delays]
    stops = next(d for d, c in zip(delays, change, strict=True) if c < 0.01)
    print(f"\ncooling stops mattering (basal Omega within 1 % of no spray) {stops * 1e3:.0f} ms after the pulse")
    print(
        "  delay ms: relative reduction "
        + ", ".join(f"{d * 1e3:.0f}: {c:.3%}" for d, c in zip(delays, change, strict=True))
    )
    assert change[0] > 0.3  # spraying at once does matter
    assert 0.01 <= stops <= 0.06  # tens of milliseconds (docs/domain.md: L^2/alpha of the epidermis)
    assert all(c < 0.01 for d, c in zip(delays, change, strict=True) if d >= stops)


# ---------------------------------------------------------------- API, validation, cost


def test_result_fields_and_depths() -> None:
    params = SpotParams(damage_depths_m=(30e-6, 150e-6))
    r = simulate_spot(SpotDose(((0.0, 5e-3, 1e-3),), ((22e-3, 172e-3),)), params)
    assert set(r.omega_at_depths) == {30e-6, 150e-6}
    assert r.omega_at_depths[30e-6] > r.omega_at_depths[150e-6] > 0.0
    assert 35.0 < r.max_basal_c < r.max_surface_c <= 100.0
    assert r.basal_omega_henriques > 0.0 and r.cem43_min > 0.0


def test_rest_without_events_stays_at_rest() -> None:
    r = simulate_spot(SpotDose((), ()), horizon_s=5.0)
    tr = trace_spot(SpotDose((), ()), times_s=[0.0, 5.0], depths_m=[0.0, 100e-6], horizon_s=5.0)
    assert 33.0 < r.max_surface_c < 36.0
    np.testing.assert_allclose(tr.temps_c[0], tr.temps_c[1], atol=1e-9)
    assert r.ablation_depth_um == 0.0


def test_tip_contact_cools_like_a_fixed_surface() -> None:
    params = SpotParams(tip_temp_c=20.0)
    tr = trace_spot(SpotDose((), (), contacts=((0.0, 1.0),)), params, times_s=[0.5], depths_m=[0.0])
    assert tr.surface_c[0] == pytest.approx(20.0, abs=0.5)
    tr = trace_spot(SpotDose((), ((0.0, 1.0),), contacts=((0.0, 1.0),)), params, times_s=[0.5], depths_m=[0.0])
    assert tr.surface_c[0] == pytest.approx(20.0, abs=0.5)  # contact wins over the spray


def test_validation() -> None:
    with pytest.raises(ValueError):
        SpotDose(((0.0, 0.0, 1e-3),), ())
    with pytest.raises(ValueError):
        SpotDose(((0.0, 1e-3, -1.0),), ())
    with pytest.raises(ValueError):
        SpotDose((), ((1.0, 0.5),))
    with pytest.raises(ValueError):
        SpotDose((), (), spot_diameter_m=0.0)
    with pytest.raises(ValueError):
        SpotParams(initial_c=(30.0,))
    with pytest.raises(ValueError):
        SpotParams(damage_depths_m=(1.0,))
    with pytest.raises(ValueError):
        simulate_spot(SpotDose((), ()), horizon_s=-1.0)
    dose = SpotDose([(0.0, 1e-3, 1e-3)], [(2e-3, 3e-3)])  # type: ignore[arg-type]
    assert dose.pulses == ((0.0, 1e-3, 1e-3),) and dose.sprays == ((2e-3, 3e-3),)


def test_a_session_of_1500_spots_is_feasible() -> None:
    # Not a timed assertion: the cost per spot is measured and printed (see the report).
    dose = SpotDose(((0.0, 5e-3, 60e-3),), ((22e-3, 172e-3),))
    first = simulate_spot(dose)  # fills the caches
    start = time.perf_counter()
    for _ in range(1500):
        r = simulate_spot(dose)
    per_spot = (time.perf_counter() - start) / 1500
    assert r == first
    print(f"\nper-spot cost (60 mJ, 5 ms, 0.3 mm, 150 ms spray 17 ms later, 2 s horizon): {per_spot * 1e3:.2f} ms")


def test_cost_grows_with_events_not_with_simulated_seconds() -> None:
    # Structural, not timed: the work is the number of samples (and implicit steps), which grows with the
    # log of the horizon (geometric sampling after each event), not with the simulated seconds.
    dose = SpotDose(((0.0, 5e-3, 1e-3),), ((22e-3, 172e-3),))
    samples = {h: spot_module._execute(dose, None, h, (), ())[2].size for h in (2.0, 2000.0)}
    assert samples[2000.0] < 1.5 * samples[2.0]
    one = spot_module._execute(dose, None, 2.0, (), ())[2].size
    three = spot_module._execute(
        SpotDose(((0.0, 5e-3, 1e-3), (0.3, 0.305, 1e-3), (0.6, 0.605, 1e-3)), ((22e-3, 172e-3),)), None, 2.0, (), ()
    )[2].size
    assert one < three < 4 * one


def test_default_layers_are_reused() -> None:
    assert SpotParams().layers is DEFAULT_LAYERS
    assert replace(SpotParams(), spray_h=5000.0).spray_h == 5000.0
