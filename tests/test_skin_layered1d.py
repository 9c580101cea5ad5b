"""Tests of the layered 1-D skin conduction model (closed forms from docs/domain.md, exactness, energy)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy.linalg import expm
from scipy.special import erfc

from plasmactl.simulators.skin.layered1d import DEFAULT_LAYERS, Layer, Layered1DSkin, SkinParams
from plasmactl.simulators.skin.port import SkinModel

# Homogeneous slab for the closed forms: alpha = 1.25e-7 m2/s, effusivity e = sqrt(k rho c).
K, RHO, C = 0.5, 1000.0, 4000.0
ALPHA = K / (RHO * C)
EFF = math.sqrt(K * RHO * C)
T_I = 37.0


def slab(thickness_m: float, w_b: float = 0.0, surface_cell_m: float = 0.5e-6, **kw: float) -> SkinParams:
    """A thick homogeneous slab, adiabatic in air, initially uniform at T_I (core = arterial = T_I)."""
    return SkinParams(
        layers=(Layer("slab", thickness_m, RHO, C, K, w_b, 0.0),),
        air_h=0.0,
        t_core_c=T_I,
        t_arterial_c=T_I,
        surface_cell_m=surface_cell_m,
        growth=1.05,
        deposit_depth_m=surface_cell_m,
        **kw,
    )


def energy_j(model: Layered1DSkin, t: float) -> float:
    """Integral of rho c T dx over the depth, times the field area."""
    dx = np.diff(model.faces_m)
    return float(np.sum(model.rho_c * dx * model.profile_c(t))) * model.params.field_area_m2


# ---------------------------------------------------------------- port, grid, rest state


def test_implements_the_port() -> None:
    model: SkinModel = Layered1DSkin()
    assert isinstance(model, SkinModel)
    assert model.time == 0.0
    assert Layered1DSkin(start_time=12.5).time == 12.5


def test_default_grid_is_fine_at_the_surface_and_aligned_with_layers() -> None:
    model = Layered1DSkin()
    faces = model.faces_m
    widths = np.diff(faces)
    assert 50 <= widths.size <= 80
    assert np.all(widths[faces[1:] <= 20e-6 + 1e-12] <= 4e-6)  # stratum corneum: 2-4 um
    assert np.all(widths[faces[1:] <= 100e-6 + 1e-12] <= 12e-6)  # epidermis: a few um
    for boundary in np.cumsum([layer.thickness_m for layer in DEFAULT_LAYERS]):
        assert np.min(np.abs(faces - boundary)) < 1e-12


def test_rest_state_is_the_air_steady_state() -> None:
    model = Layered1DSkin()
    rest = model.steady_state_c()
    # 37 C core only 4.9 mm down: a little warm for skin at rest (32-34 C), see the report.
    assert 33.0 < rest < 36.0
    assert model.surface_c(0.0) == pytest.approx(rest, abs=1e-9)
    assert model.surface_c(1e4) == pytest.approx(rest, abs=1e-9)
    assert model.temperature_at_c(model.params.total_thickness_m, 1e4) == pytest.approx(37.0)


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("t", [0.01, 0.1, 1.0])
def test_constant_surface_flux(t: float) -> None:
    params = slab(10e-3)
    model = Layered1DSkin(params)
    q = 1e4  # W/m2
    model.heat(0.0, math.inf, q * params.field_area_m2)
    exact = 2 * q * math.sqrt(t) / (math.sqrt(math.pi) * EFF)
    assert model.surface_c(t) - T_I == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("t", [0.1, 1.0])
def test_constant_surface_flux_on_the_default_grid_spacing(t: float) -> None:
    params = replace(slab(10e-3, surface_cell_m=2e-6), growth=1.1)
    model = Layered1DSkin(params)
    q = 1e4
    model.heat(0.0, math.inf, q * params.field_area_m2)
    exact = 2 * q * math.sqrt(t) / (math.sqrt(math.pi) * EFF)
    assert model.surface_c(t) - T_I == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize(("t", "x"), [(0.1, 0.0), (0.1, 50e-6), (0.1, 200e-6), (1.0, 0.0), (1.0, 500e-6)])
def test_convective_surface(t: float, x: float) -> None:
    h, t_inf = 2500.0, 8.0
    model = Layered1DSkin(slab(10e-3, spray_h=h, spray_temp_c=t_inf))
    model.cool(0.0, math.inf)
    eta = x / (2 * math.sqrt(ALPHA * t))
    theta = erfc(eta) - math.exp(h * x / K + h * h * ALPHA * t / K**2) * erfc(eta + h * math.sqrt(ALPHA * t) / K)
    exact = (t_inf - T_I) * theta
    assert model.temperature_at_c(x, t) - T_I == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize(("t", "x"), [(1.0, 0.5e-3), (10.0, 1e-3), (10.0, 2e-3), (50.0, 0.5e-3), (50.0, 2e-3)])
def test_pennes_surface_step_with_a_fixed_surface_temperature(t: float, x: float) -> None:
    # A fixed surface temperature is a spray with a huge h (the surface conductance saturates at 2 k/dx0).
    w_b, step = 0.02, 10.0
    params = slab(50e-3, w_b=w_b, spray_h=1e9, spray_temp_c=T_I + step)
    model = Layered1DSkin(params)
    model.cool(0.0, math.inf)
    beta = w_b * params.rho_b * params.c_b / (RHO * C)
    m = math.sqrt(beta / ALPHA)
    eta = x / (2 * math.sqrt(ALPHA * t))
    sb = math.sqrt(beta * t)
    exact = step / 2 * (math.exp(-m * x) * erfc(eta - sb) + math.exp(m * x) * erfc(eta + sb))
    assert model.temperature_at_c(x, t) - T_I == pytest.approx(exact, rel=0.02)
    assert model.surface_c(t) == pytest.approx(T_I + step, abs=1e-3)


# ---------------------------------------------------------------- exactness of the stepping


def _session(model: Layered1DSkin) -> None:
    model.heat(0.010, 0.015, 10.0)
    model.cool(0.035, 0.185)
    model.heat(0.300, 0.302, 25.0)


def test_one_big_step_equals_many_small_steps() -> None:
    big, small = Layered1DSkin(), Layered1DSkin()
    _session(big)
    _session(small)
    for t in np.linspace(0.0, 0.7, 1777)[1:-1]:
        small.surface_c(float(t))
    a, b = big.profile_c(0.7), small.profile_c(0.7)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=0)


def test_step_equals_scipy_expm() -> None:
    model = Layered1DSkin()
    t0 = model.profile_c(0.0)
    power, dt = 4.0, 0.0123
    model.heat(0.0, math.inf, power)
    model.cool(0.0, math.inf)
    a, b = model.system(spray=True, power_w=power)
    tss = -np.linalg.solve(a, b)
    expected = tss + expm(a * dt) @ (t0 - tss)
    np.testing.assert_allclose(model.profile_c(dt), expected, rtol=1e-10, atol=0)


def test_overlapping_sources_add_and_end_heat_truncates() -> None:
    overlap, piecewise = Layered1DSkin(), Layered1DSkin()
    overlap.heat(0.0, 0.010, 3.0)
    h = overlap.heat(0.005, math.inf, 2.0)
    overlap.surface_c(0.002)
    overlap.end_heat(h, 0.015)
    c1 = overlap.cool(0.02, 0.05)
    overlap.cool(0.03, 0.06)
    overlap.surface_c(0.04)
    overlap.end_cool(c1, 0.045)  # still covered by the second spray: no change
    piecewise.heat(0.0, 0.005, 3.0)
    piecewise.heat(0.005, 0.010, 5.0)
    piecewise.heat(0.010, 0.015, 2.0)
    piecewise.cool(0.02, 0.06)
    np.testing.assert_allclose(overlap.profile_c(0.1), piecewise.profile_c(0.1), rtol=1e-12)


def test_truncating_a_future_or_finished_source() -> None:
    model, reference = Layered1DSkin(), Layered1DSkin()
    h_future = model.heat(0.5, 0.6, 100.0)
    h_done = model.heat(0.0, 0.01, 5.0)
    reference.heat(0.0, 0.01, 5.0)
    model.end_heat(h_future, 0.2)  # before it starts: it never acts
    model.surface_c(0.3)
    model.end_heat(h_done, 0.3)  # already finished: a no-op
    assert model.surface_c(1.0) == pytest.approx(reference.surface_c(1.0), abs=1e-12)
    with pytest.raises(ValueError, match="unknown handle"):
        model.end_cool(12345, 1.0)


# ---------------------------------------------------------------- energy


def test_energy_of_a_pulse_is_conserved() -> None:
    layers = tuple(replace(layer, w_b=0.0) for layer in DEFAULT_LAYERS)
    model = Layered1DSkin(SkinParams(layers=layers))
    e0 = energy_j(model, 0.0)
    model.heat(0.001, 0.006, 10.0)  # 50 mJ in 5 ms
    assert energy_j(model, 0.010) - e0 == pytest.approx(0.050, rel=0.02)


def test_energy_balance_is_exact_without_boundary_losses() -> None:
    # Adiabatic top (air h = 0), no perfusion, heat far from the fixed-temperature bottom.
    layers = tuple(replace(layer, w_b=0.0) for layer in DEFAULT_LAYERS)
    model = Layered1DSkin(SkinParams(layers=layers, air_h=0.0))
    e0 = energy_j(model, 0.0)
    model.heat(0.001, 0.006, 10.0)
    assert energy_j(model, 0.050) - e0 == pytest.approx(0.050, rel=1e-6)


# ---------------------------------------------------------------- sanity with numbers


def test_pulse_heats_and_spray_cools_faster_than_air() -> None:
    air, spray = Layered1DSkin(), Layered1DSkin()
    rest = air.steady_state_c()
    for model in (air, spray):
        model.heat(0.010, 0.015, 10.0)  # 50 mJ in 5 ms over the 6 mm field
    spray.cool(0.035, 0.185)  # 20 ms after the pulse, 150 ms
    peak = air.surface_c(0.015)
    assert spray.surface_c(0.015) == peak
    assert 45.0 < peak < 60.0  # about +17 K
    assert air.surface_c(0.0349) == pytest.approx(spray.surface_c(0.0349), abs=1e-12)
    # At t_start the spray is on: the surface (face) temperature drops at once by the half-cell step.
    assert spray.surface_c(0.035) < air.surface_c(0.035)
    after_air, after_spray = air.surface_c(0.185), spray.surface_c(0.185)
    assert after_air > rest + 1.0  # still warm in air
    assert after_spray < after_air - 10.0  # the spray pulls the surface far below
    assert after_spray < rest
    assert 0.05 < air.surface_c(60.0) - rest < 0.2  # the slowest mode is about 2 min (fat, core)
    assert air.surface_c(1000.0) == pytest.approx(rest, abs=1e-3)
    assert spray.surface_c(1000.0) == pytest.approx(rest, abs=1e-3)


def test_spray_from_rest_cools_the_surface() -> None:
    model = Layered1DSkin()
    rest = model.steady_state_c()
    model.cool(1.0, 1.15)
    assert model.surface_c(0.999999) == pytest.approx(rest)
    assert model.surface_c(1.15) < rest - 5.0
    assert model.temperature_at_c(1e-3, 1.15) > model.surface_c(1.15)


# ---------------------------------------------------------------- time rules


def test_time_is_monotonic() -> None:
    model = Layered1DSkin()
    model.surface_c(1.0)
    assert model.time == 1.0
    with pytest.raises(ValueError):
        model.surface_c(0.5)
    with pytest.raises(ValueError):
        model.temperature_at_c(0.0, 0.999)
    with pytest.raises(ValueError):
        model.heat(0.5, 0.6, 1.0)
    with pytest.raises(ValueError):
        model.cool(0.9, math.inf)
    h = model.heat(1.0, math.inf, 1.0)
    with pytest.raises(ValueError):
        model.end_heat(h, 0.9)
    with pytest.raises(ValueError):
        model.surface_c(math.nan)
    model.surface_c(1.0)  # the same time again is fine
    model.end_heat(h, 1.0)
    assert model.surface_c(2.0) == pytest.approx(model.steady_state_c(), abs=0.05)


def test_invalid_schedules() -> None:
    model = Layered1DSkin()
    with pytest.raises(ValueError):
        model.heat(1.0, 0.5, 1.0)
    with pytest.raises(ValueError):
        model.heat(0.0, 1.0, -1.0)
    with pytest.raises(ValueError):
        model.temperature_at_c(-1e-6, 0.0)


# ---------------------------------------------------------------- speed and memory


def test_many_pulses_and_sprays_are_fast_and_memory_is_bounded() -> None:
    model = Layered1DSkin()
    duration, n_queries, n_pulses = 300.0, 20_000, 1500
    pulses = [i * duration / n_pulses + 0.003 for i in range(n_pulses)]
    nxt = 0
    t0 = time.perf_counter()
    for t in np.linspace(0.001, duration, n_queries):
        while nxt < n_pulses and pulses[nxt] <= t:
            start = max(pulses[nxt], model.time)
            model.heat(start, start + 0.005, 10.0)
            model.cool(start + 0.025, start + 0.175)
            nxt += 1
        assert 8.0 < model.surface_c(float(t)) < 60.0
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0  # about 0.2 s here; the target is well under 1 s
    model.surface_c(duration + 1.0)
    assert not model._heats.segments and not model._cools.segments  # finished segments dropped
    assert not model._events
