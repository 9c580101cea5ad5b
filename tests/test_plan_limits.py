"""Tests for the hard caps and effective limits, the plan, fault scenarios and the rig file.

Covers src/plasmactl/limits.py, plan.py, faults.py and rig.py: a plan may tighten a cap and never
loosen it, a plan is consistent with its own limits, grids are laid out as documented, every shipped
example file loads, and every user-file model rejects what it must.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from plasmactl.faults import KINDS, Fault, FaultScenario, check_against_plan, load_faults
from plasmactl.inputs import InputError, validate
from plasmactl.limits import Caps, Limits
from plasmactl.plan import Grid, Plan, load_plan
from plasmactl.rig import DEVICES, DeviceTiming, Rig, load_rig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Every capped field of Limits and its hard cap (an upper bound a plan may never exceed).
CAPPED: dict[str, float] = {
    "max_energy_j": Caps.MAX_ENERGY_J,
    "max_pulse_ms": Caps.MAX_PULSE_MS,
    "max_cooling_delay_ms": Caps.MAX_COOLING_DELAY_MS,
    "skin_temp_max_c": Caps.SKIN_TEMP_MAX_C,
    "max_session_s": Caps.MAX_SESSION_S,
    "energy_tolerance_pct": Caps.ENERGY_TOLERANCE_PCT,
    "reading_max_age_ms": Caps.READING_MAX_AGE_MS,
    "stuck_window_s": Caps.STUCK_WINDOW_S,
    "max_pause_s": Caps.MAX_PAUSE_S,
    "plausible_max_c": Caps.PLAUSIBLE_MAX_C,
}


def _plan_data(**overrides: Any) -> dict[str, Any]:
    """A small valid plan as parsed TOML; ``overrides`` replace whole top-level sections."""
    data: dict[str, Any] = {
        "name": "t",
        "spots": {"points": [[0.0, 0.0], [1.5, 0.0], [3.0, 0.0]], "spot_diameter_mm": 1.5},  # 60 mJ: 3.4 J/cm2
        "pulse": {"energy_j": 0.06, "pulse_ms": 5.0, "pulses_per_spot": 1, "interval_s": 1.0},
        "cooling": {"spray_ms": 150.0, "when": "pulse"},
        "limits": {"max_cooling_delay_ms": 100.0, "skin_temp_max_c": 40.0},
    }
    data.update(overrides)
    return data


def _consistent_limits(field: str, value: float) -> dict[str, float]:
    """Limits kwargs with ``field = value`` plus whatever keeps the other cross-field rules satisfied."""
    kwargs = {field: value}
    if field == "plausible_max_c":
        # plausible_min_c < skin_temp_max_c < plausible_max_c
        kwargs.update(plausible_min_c=Caps.PLAUSIBLE_MIN_C, skin_temp_max_c=(Caps.PLAUSIBLE_MIN_C + value) / 2)
    return kwargs


def _problems(exc: pytest.ExceptionInfo[InputError]) -> str:
    return "\n".join(exc.value.problems)


# ---------------------------------------------------------------------------------------------- caps


def test_defaults_and_caps() -> None:
    lim = Limits()
    assert lim.max_cooling_delay_ms == 100.0
    assert lim.skin_temp_max_c == 40.0
    assert Caps.MAX_COOLING_DELAY_MS == 1000.0
    assert Caps.SKIN_TEMP_MAX_C == 43.0
    # the defaults are themselves inside the caps
    for field, cap in CAPPED.items():
        assert getattr(lim, field) <= cap, field
    assert lim.plausible_min_c >= Caps.PLAUSIBLE_MIN_C
    assert lim.hard_trip_c == 40.0 + Caps.HARD_TRIP_MARGIN_C


@pytest.mark.parametrize("field", sorted(CAPPED))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_value_above_cap_is_rejected(field: str, data: st.DataObject) -> None:
    cap = CAPPED[field]
    value = data.draw(st.floats(min_value=cap, exclude_min=True, allow_nan=False), label=field)
    # finite values name the cap; infinity is refused earlier as not a finite number
    with pytest.raises(ValidationError, match="exceeds the hard cap" if math.isfinite(value) else "finite number"):
        Limits(**{field: value})


@pytest.mark.parametrize("field", sorted(CAPPED))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_value_within_cap_becomes_effective_limit(field: str, data: st.DataObject) -> None:
    cap = CAPPED[field]
    # plausible_max_c, and skin_temp_max_c, can only be consistent above the lowest allowed plausible_min_c
    # (plausible_max_c a little above it: skin_temp_max_c must fit between the two)
    low = {"plausible_max_c": Caps.PLAUSIBLE_MIN_C + 0.1, "skin_temp_max_c": Caps.PLAUSIBLE_MIN_C}.get(field, 0.0)
    value = data.draw(st.floats(min_value=low, max_value=cap, exclude_min=True), label=field)
    lim = Limits(**_consistent_limits(field, value))
    assert getattr(lim, field) == value


@pytest.mark.parametrize("field", sorted(CAPPED))
def test_cap_itself_is_accepted_and_just_above_is_not(field: str) -> None:
    cap = CAPPED[field]
    assert getattr(Limits(**_consistent_limits(field, cap)), field) == cap
    with pytest.raises(ValidationError, match="exceeds the hard cap"):
        Limits(**_consistent_limits(field, math.nextafter(cap, math.inf)))


@pytest.mark.parametrize("field", sorted(CAPPED))
def test_cap_violation_in_a_plan_file_names_the_field(field: str) -> None:
    limits = {field: CAPPED[field] * 2}
    with pytest.raises(InputError) as exc:
        validate(Plan, _plan_data(limits=limits), "x.toml")
    text = _problems(exc)
    assert exc.value.source == "x.toml"
    assert field in text
    assert "exceeds the hard cap" in text


@settings(max_examples=30, deadline=None)
@given(energy=st.floats(min_value=1e-6, max_value=Caps.MAX_ENERGY_J))
def test_plan_tightened_energy_is_the_effective_limit(energy: float) -> None:
    data = _plan_data(
        spots={"points": [[0.0, 0.0], [7.0, 0.0]], "spot_diameter_mm": 6.0},  # 4 J is 14 J/cm2 on it
        pulse={"energy_j": energy, "pulse_ms": 5.0, "interval_s": 1.0},
        limits={"max_energy_j": energy},
    )
    plan = validate(Plan, data, "x.toml")
    assert plan.limits.max_energy_j == energy
    # and anything above the tightened limit is refused, even when below the cap
    over = dict(data, pulse={"energy_j": math.nextafter(energy, math.inf), "pulse_ms": 5.0})
    with pytest.raises(InputError, match=r"pulse\.energy_j"):
        validate(Plan, over, "x.toml")


@settings(max_examples=30, deadline=None)
@given(value=st.floats(max_value=Caps.PLAUSIBLE_MIN_C, exclude_max=True, allow_nan=False, allow_infinity=False))
def test_plausible_min_below_cap_is_rejected(value: float) -> None:
    with pytest.raises(ValidationError, match="below the hard cap"):
        Limits(plausible_min_c=value)


def test_plausible_min_at_cap_is_accepted() -> None:
    assert Limits(plausible_min_c=Caps.PLAUSIBLE_MIN_C).plausible_min_c == Caps.PLAUSIBLE_MIN_C


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tip_min_mm": 1.5, "tip_max_mm": 1.5}, "tip_min_mm must be below tip_max_mm"),
        ({"plausible_min_c": 30.0, "plausible_max_c": 30.0, "skin_temp_max_c": 20.0}, "plausible_min_c"),
        ({"skin_temp_max_c": 42.0, "plausible_max_c": 42.0}, "must be below plausible_max_c"),
        ({"max_energy_j": 0.0}, "greater than 0"),
        ({"max_energy_j": -1.0}, "greater than 0"),
    ],
)
def test_inconsistent_limits_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Limits(**kwargs)


def test_limits_are_frozen() -> None:
    lim = Limits()
    with pytest.raises(ValidationError):
        lim.max_energy_j = 100.0


@pytest.mark.parametrize(
    ("data_key", "section", "expected_field"),
    [
        ("caps", {"MAX_ENERGY_J": 100.0}, "caps"),
        ("limits", {"MAX_ENERGY_J": 100.0}, "limits.MAX_ENERGY_J"),
        ("limits", {"hard_caps": {"max_energy_j": 100.0}}, "limits.hard_caps"),
    ],
)
def test_caps_cannot_be_set_from_a_plan_file(data_key: str, section: dict[str, Any], expected_field: str) -> None:
    data = _plan_data()
    if data_key == "limits":
        data["limits"] = {**data["limits"], **section}
    else:
        data[data_key] = section
    with pytest.raises(InputError) as exc:
        validate(Plan, data, "x.toml")
    assert any(p.startswith(f"{expected_field}: unknown field") for p in exc.value.problems), exc.value.problems
    # nothing changed in code
    assert Caps.MAX_ENERGY_J == 4.0


# ----------------------------------------------------------------------------------- plan consistency


def test_small_plan_is_valid() -> None:
    plan = validate(Plan, _plan_data(), "x.toml")
    assert plan.pulse_count == 3
    assert plan.estimated_session_s() == pytest.approx(2.0 + 0.155)  # two intervals, then the last cycle


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pulse": {"energy_j": 0.2, "pulse_ms": 5.0}, "limits": {"max_energy_j": 0.1}}, "pulse.energy_j"),
        ({"pulse": {"energy_j": 5.0, "pulse_ms": 5.0}}, "pulse.energy_j"),
        ({"pulse": {"energy_j": 0.06, "pulse_ms": 20.0}, "limits": {"max_pulse_ms": 10.0}}, "pulse.pulse_ms"),
        ({"pulse": {"energy_j": 0.06, "pulse_ms": 20.0, "interval_s": 0.01}}, "pulse.interval_s"),
        (
            {
                "pulse": {"energy_j": 0.06, "pulse_ms": 5.0, "pulses_per_spot": 3, "interval_s": 0.05},
                "cooling": {"spray_ms": 100.0, "when": "spot"},
            },
            "cooling.when",
        ),
        (
            {
                "pulse": {"energy_j": 0.06, "pulse_ms": 5.0, "pulses_per_spot": 2, "interval_s": 0.1},
                "cooling": {"spray_ms": 100.0, "when": "spot"},
            },
            "cooling.when",
        ),
        (
            {
                "pulse": {"energy_j": 0.06, "pulse_ms": 5.0, "interval_s": 10.0},
                "limits": {"max_session_s": 15.0},
            },
            "limits.max_session_s",
        ),
    ],
    ids=[
        "energy-over-limit",
        "energy-over-cap",
        "pulse-over-limit",
        "interval-shorter-than-pulse",
        "spot-cooling-window-3-pulses",
        "spot-cooling-window-exactly-at-limit",
        "session-too-long",
    ],
)
def test_inconsistent_plan_rejected_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as exc:
        validate(Plan, _plan_data(**overrides), "x.toml")
    assert field in _problems(exc), exc.value.problems


@pytest.mark.parametrize(
    ("spots", "hint"),
    [
        ({"points": [[0.0, 0.0]], "spot_diameter_mm": 300.0}, "did you mean 300 um = 0.3 mm?"),
        (
            {"grid": {"width_mm": 5000.0, "height_mm": 5000.0, "spacing_mm": 2000.0, "spot_diameter_mm": 1500.0}},
            "1.5 mm?",
        ),
        ({"points": [[0.0, 0.0]], "spot_diameter_mm": 30000.0}, None),  # no reading as micrometres fits
    ],
)
def test_a_spot_diameter_in_micrometres_is_refused(spots: dict[str, Any], hint: str | None) -> None:
    """300 typed for 0.3 mm would make every fluence a million times smaller than it is (and pass its cap)."""
    with pytest.raises(InputError) as exc:
        validate(Plan, _plan_data(spots=spots, pulse={"energy_j": 0.005, "pulse_ms": 5.0, "interval_s": 1.0}), "x")
    text = _problems(exc)
    assert f"over the cap of {Caps.MAX_SPOT_DIAMETER_MM:g} mm" in text
    assert (hint in text) if hint is not None else ("did you mean" not in text)


def test_the_largest_spot_is_accepted() -> None:
    spots = {"points": [[0.0, 0.0]], "spot_diameter_mm": Caps.MAX_SPOT_DIAMETER_MM}
    assert validate(Plan, _plan_data(spots=spots), "x.toml").spots.diameter_mm == Caps.MAX_SPOT_DIAMETER_MM


def test_plan_boundaries_accepted() -> None:
    # energy and pulse exactly at the limits, interval exactly the pulse length
    plan = validate(
        Plan,
        _plan_data(
            pulse={"energy_j": 0.1, "pulse_ms": 10.0, "interval_s": 0.01},
            limits={"max_energy_j": 0.1, "max_pulse_ms": 10.0},
        ),
        "x.toml",
    )
    assert plan.pulse.interval_s * 1000.0 == plan.pulse.pulse_ms
    # spot cooling with a window just inside the limit, and "pulse" cooling is never window-checked
    ok_spot = _plan_data(
        pulse={"energy_j": 0.06, "pulse_ms": 5.0, "pulses_per_spot": 2, "interval_s": 0.099},
        cooling={"spray_ms": 100.0, "when": "spot"},
    )
    assert validate(Plan, ok_spot, "x.toml").pulse.pulses_per_spot == 2
    ok_pulse = _plan_data(
        pulse={"energy_j": 0.06, "pulse_ms": 5.0, "pulses_per_spot": 5, "interval_s": 1.0},
        cooling={"spray_ms": 100.0, "when": "pulse"},
    )
    assert validate(Plan, ok_pulse, "x.toml").pulse_count == 15
    # a session exactly at the limit is accepted
    pulse = {"energy_j": 0.06, "pulse_ms": 5.0, "interval_s": 10.0}
    estimate = validate(Plan, _plan_data(pulse=pulse), "x.toml").estimated_session_s()
    assert estimate == pytest.approx(20.155)  # 2 intervals, the last pulse and its 150 ms spray
    exact = _plan_data(pulse=pulse, limits={"max_session_s": estimate})
    assert validate(Plan, exact, "x.toml").estimated_session_s() == estimate
    with pytest.raises(InputError, match="max_session_s"):
        validate(Plan, _plan_data(pulse=pulse, limits={"max_session_s": estimate - 0.001}), "x.toml")


@pytest.mark.parametrize(
    "spots",
    [
        {},
        {"points": []},
        {"points": [[0.0, 0.0]], "grid": {"width_mm": 1.0, "height_mm": 1.0, "spacing_mm": 0.5}},
    ],
    ids=["neither", "empty", "both"],
)
def test_spots_need_exactly_one_non_empty_source(spots: dict[str, Any]) -> None:
    with pytest.raises(InputError) as exc:
        validate(Plan, _plan_data(spots=spots), "x.toml")
    assert "spots" in _problems(exc)


# ---------------------------------------------------------------------------------------------- grid


@pytest.mark.parametrize("density", [1.0, 5.0, 10.0, 25.0, 50.0, 78.0])
@pytest.mark.parametrize("diameter", [0.1, 0.3, 1.0])
def test_pitch_from_density(density: float, diameter: float) -> None:
    grid = Grid(width_mm=10.0, height_mm=10.0, density_pct=density, spot_diameter_mm=diameter)
    expected = math.sqrt(math.pi * (diameter / 2) ** 2 / (density / 100.0))
    assert grid.pitch_mm == pytest.approx(expected, rel=1e-12)
    # and the fraction of the area covered is the density
    assert math.pi * (diameter / 2) ** 2 / grid.pitch_mm**2 == pytest.approx(density / 100.0)


def test_spacing_is_the_pitch() -> None:
    assert Grid(width_mm=5.0, height_mm=5.0, spacing_mm=1.25).pitch_mm == 1.25


@pytest.mark.parametrize(
    ("width", "height", "spacing", "nx", "ny"),
    [
        (10.0, 5.0, 2.5, 5, 3),
        (10.0, 10.0, 1.0, 11, 11),
        (0.3, 0.3, 0.3, 2, 2),
        (0.3, 0.2, 0.1 * 3, 2, 1),  # 0.3 / 0.30000000000000004 must still count as a full step
        (0.9, 0.6, 0.3, 4, 3),  # 0.9 / 0.3 = 3.0000000000000004
        (1.0, 1.0, 0.3, 4, 4),
        (0.2, 0.2, 0.3, 1, 1),
        (60.0, 54.0, 1.5, 41, 37),
    ],
)
def test_grid_point_count(width: float, height: float, spacing: float, nx: int, ny: int) -> None:
    grid = Grid(width_mm=width, height_mm=height, spacing_mm=spacing)
    pts = grid.points()
    assert len(pts) == nx * ny
    assert len(set(pts)) == len(pts)
    assert all(0.0 <= x <= width + 1e-6 and 0.0 <= y <= height + 1e-6 for x, y in pts)


def test_grid_is_serpentine() -> None:
    grid = Grid(width_mm=3.0, height_mm=2.0, spacing_mm=1.0)
    pts = grid.points()
    rows = [pts[j * 4 : (j + 1) * 4] for j in range(3)]
    assert rows[0] == [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.0)]
    assert rows[1] == [(3.0, 1.0), (2.0, 1.0), (1.0, 1.0), (0.0, 1.0)]  # second row reversed
    assert rows[2] == [(0.0, 2.0), (1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]
    # consecutive points are always one pitch apart (no jump back across the area)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        assert math.hypot(x1 - x0, y1 - y0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"width_mm": 5.0, "height_mm": 5.0, "spacing_mm": 0.2, "spot_diameter_mm": 0.3}, "smaller than the spot"),
        # above pi/4 circles on a square grid must overlap: refused by the field's bound
        ({"width_mm": 5.0, "height_mm": 5.0, "density_pct": 100.0, "spot_diameter_mm": 0.3}, "less than or equal"),
        ({"width_mm": 5.0, "height_mm": 5.0, "density_pct": 80.0, "spot_diameter_mm": 0.3}, "less than or equal"),
    ],
    ids=["spacing", "density-100", "density-80"],
)
def test_overlapping_spots_rejected(grid: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Grid(**grid)


def test_spacing_equal_to_spot_is_accepted() -> None:
    assert Grid(width_mm=1.0, height_mm=1.0, spacing_mm=0.3, spot_diameter_mm=0.3).pitch_mm == 0.3


@pytest.mark.parametrize(
    "grid",
    [
        {"width_mm": 5.0, "height_mm": 5.0},
        {"width_mm": 5.0, "height_mm": 5.0, "spacing_mm": 1.0, "density_pct": 5.0},
        {"width_mm": 5.0, "height_mm": 5.0, "density_pct": 0.0},
        {"width_mm": 5.0, "height_mm": 5.0, "density_pct": 101.0},
        {"width_mm": 0.0, "height_mm": 5.0, "spacing_mm": 1.0},
        {"width_mm": float("inf"), "height_mm": 5.0, "spacing_mm": 1.0},
        {"width_mm": 5.0, "height_mm": 5.0, "spacing_mm": float("nan")},
    ],
)
def test_bad_grids_rejected(grid: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Grid(**grid)


# ----------------------------------------------------------------------------------- example plans


def test_full_face_example() -> None:
    plan, loaded = load_plan(str(EXAMPLES / "plans" / "full-face.toml"))
    assert plan.pulse_count >= 1500
    assert plan.pulse_count == 41 * 37
    assert 20 * 60 <= plan.estimated_session_s() <= 30 * 60
    assert plan.estimated_session_s() <= plan.limits.max_session_s
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize("name", ["periorbital", "short"])
def test_other_example_plans_load(name: str) -> None:
    plan, loaded = load_plan(str(EXAMPLES / "plans" / f"{name}.toml"))
    assert plan.name == name
    assert plan.pulse_count > 0
    assert loaded.data["name"] == name


def test_periorbital_example_details() -> None:
    plan, _ = load_plan(str(EXAMPLES / "plans" / "periorbital.toml"))
    assert plan.cooling.when == "spot"
    assert plan.pulse.pulses_per_spot == 2
    assert plan.pulse_count == 21 * 9 * 2
    assert plan.limits.max_energy_j == 0.004
    assert plan.limits.skin_temp_max_c == 39.0


def test_load_plan_missing_file() -> None:
    with pytest.raises(InputError, match="file not found"):
        load_plan(str(EXAMPLES / "plans" / "does-not-exist.toml"))


# ----------------------------------------------------------------------------------------- faults

FAULT_FILES = sorted((EXAMPLES / "faults").glob("*.toml"))


def test_there_are_fault_examples() -> None:
    assert len(FAULT_FILES) >= len([k for kinds in KINDS.values() for k in kinds])


@pytest.mark.parametrize("path", FAULT_FILES, ids=[p.stem for p in FAULT_FILES])
def test_fault_example_loads(path: Path) -> None:
    scenario, loaded = load_faults(str(path))
    assert scenario.fault, path
    assert scenario.name
    assert loaded.path == str(path)


def test_fault_examples_cover_every_kind() -> None:
    seen = {(f.device, f.kind) for path in FAULT_FILES for f in load_faults(str(path))[0].fault}
    expected = {(device, kind) for device, kinds in KINDS.items() for kind in kinds}
    assert expected - seen == set()
    assert seen <= expected


def _fault(**kw: Any) -> dict[str, Any]:
    return {"fault": [kw]}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"device": "laser", "kind": "stuck_on", "at_s": 1.0}, "fault.0.device"),
        ({"device": "plasma", "kind": "valve_slow", "at_s": 1.0, "value": 5.0}, "unknown kind 'valve_slow'"),
        ({"device": "spray", "kind": "no_such", "at_s": 1.0}, "unknown kind 'no_such'"),
        ({"device": "plasma", "kind": "stuck_on"}, "exactly one of at_s or after_pulses"),
        ({"device": "plasma", "kind": "stuck_on", "at_s": 1.0, "after_pulses": 2}, "exactly one of"),
        ({"device": "plasma", "kind": "energy_drift", "at_s": 1.0}, "needs value"),
        ({"device": "spray", "kind": "valve_slow", "after_pulses": 1}, "needs value"),
        ({"device": "thermometer", "kind": "offset", "at_s": 1.0}, "needs value"),
        ({"device": "plasma", "kind": "stuck_on", "at_s": 1.0, "value": 1.0}, "takes no value"),
        ({"device": "link", "kind": "timeout", "at_s": 1.0}, "needs target"),
        ({"device": "spray", "kind": "reservoir_empty", "at_s": 1.0, "target": "spray"}, "only for device 'link'"),
        ({"device": "link", "kind": "timeout", "at_s": 1.0, "target": "link"}, "fault.0.target"),
        ({"device": "plasma", "kind": "energy_drift", "at_s": 1.0, "value": -0.5}, "must be >= 0"),
        ({"device": "spray", "kind": "valve_slow", "at_s": 1.0, "value": -1.0}, "must be >= 0"),
        (
            {"device": "link", "target": "safety", "kind": "delay", "at_s": 1.0, "value": -5.0},
            "delay value is added milliseconds",
        ),
        ({"device": "plasma", "kind": "stuck_on", "at_s": -1.0}, "fault.0.at_s"),
        ({"device": "plasma", "kind": "stuck_on", "after_pulses": 0}, "fault.0.after_pulses"),
        ({"device": "plasma", "kind": "stuck_on", "at_s": 1.0, "duration_s": 0.0}, "fault.0.duration_s"),
        ({"device": "plasma", "kind": "stuck_on", "at_s": float("nan")}, "fault.0.at_s"),
        ({"device": "plasma", "kind": "stuck_on", "at_s": 1.0, "colour": "red"}, "unknown field"),
    ],
)
def test_bad_fault_rejected(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as exc:
        validate(FaultScenario, _fault(**fault), "f.toml")
    assert message in _problems(exc), exc.value.problems


@pytest.mark.parametrize(
    "fault",
    [
        {"device": "thermometer", "kind": "stuck", "at_s": 0.0},
        {"device": "thermometer", "kind": "stuck", "at_s": 0.0, "value": 80.0},
        {"device": "safety", "kind": "tip_lift", "after_pulses": 1},
        {"device": "link", "kind": "timeout", "at_s": 1.0, "target": "safety", "duration_s": 0.5},
    ],
)
def test_optional_values_and_targets_accepted(fault: dict[str, Any]) -> None:
    scenario = validate(FaultScenario, _fault(**fault), "f.toml")
    assert scenario.fault[0].kind == fault["kind"]


def test_fault_affected_device() -> None:
    link = Fault(device="link", kind="timeout", at_s=1.0, target="thermometer")
    assert link.affected == "thermometer"
    assert Fault(device="spray", kind="reservoir_empty", at_s=1.0).affected == "spray"


def test_empty_scenario_is_valid() -> None:
    assert validate(FaultScenario, {}, "f.toml").fault == []


def test_check_against_plan() -> None:
    scenario = FaultScenario(
        fault=[
            Fault(device="plasma", kind="stuck_on", after_pulses=5),  # ok for 6 pulses
            Fault(device="plasma", kind="stuck_on", after_pulses=6),  # right after the last pulse: still meaningful
            Fault(device="plasma", kind="stuck_on", after_pulses=7),  # never happens
            Fault(device="plasma", kind="stuck_on", after_pulses=100),  # far beyond
            Fault(device="safety", kind="estop", at_s=10.0),  # ok
            Fault(device="safety", kind="estop", at_s=60.0),  # exactly the limit
            Fault(device="safety", kind="estop", at_s=1e6),  # far beyond
        ]
    )
    problems = check_against_plan(scenario, pulses=6, max_session_s=60.0)
    assert [p.split(":")[0] for p in problems] == [
        "fault.2.after_pulses",
        "fault.3.after_pulses",
        "fault.5.at_s",
        "fault.6.at_s",
    ]
    assert "only 6 pulses" in problems[0]
    assert "60 s" in problems[2]


def test_example_faults_fit_the_short_plan() -> None:
    plan, _ = load_plan(str(EXAMPLES / "plans" / "short.toml"))
    for path in FAULT_FILES:
        scenario, _ = load_faults(str(path))
        assert check_against_plan(scenario, plan.pulse_count, plan.limits.max_session_s) == [], path.name


# -------------------------------------------------------------------------------------------- rig


def test_default_rig_is_all_sim() -> None:
    rig = Rig()
    assert rig.all_simulated
    for device in DEVICES:
        timing = rig.timing(device)
        assert isinstance(timing, DeviceTiming)
        assert timing.model_dump()["kind"] == "sim"
    assert rig.skin.model == "layered1d"
    assert load_rig(None) == (rig, None)


@pytest.mark.parametrize("device", DEVICES)
def test_unknown_device_kind_rejected(device: str) -> None:
    with pytest.raises(InputError) as exc:
        validate(Rig, {device: {"kind": "simulated"}}, "r.toml")
    assert f"{device}.kind" in _problems(exc)


def test_unknown_rig_section_rejected() -> None:
    with pytest.raises(InputError) as exc:
        validate(Rig, {"laser": {"kind": "sim"}}, "r.toml")
    assert "laser: unknown field" in _problems(exc)


def test_unknown_device_key_rejected() -> None:
    with pytest.raises(InputError) as exc:
        validate(Rig, {"plasma": {"kind": "sim", "timeout": 5.0}}, "r.toml")
    assert "plasma.timeout: unknown field" in _problems(exc)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"timeout_ms": 500.0, "watchdog_ms": 500.0}, "timeout_ms"),
        ({"timeout_ms": 600.0, "watchdog_ms": 500.0}, "timeout_ms"),
        ({"timeout_ms": 10.0, "poll_ms": 500.0, "watchdog_ms": 500.0}, "poll_ms"),
        ({"timeout_ms": 0.0}, "timeout_ms"),
    ],
)
def test_bad_timing_rejected(device: str, timing: dict[str, float], message: str) -> None:
    with pytest.raises(InputError) as exc:
        validate(Rig, {device: timing}, "r.toml")
    assert message in _problems(exc)
    assert _problems(exc).startswith(device)


def test_timing_just_inside_accepted() -> None:
    """A device's own ordering accepts values just inside it; the rig then checks that a healthy device's
    longest silence (poll plus one call plus the monitor period) fits its watchdog."""
    timing = validate(DeviceTiming, {"timeout_ms": 499.0, "poll_ms": 499.0, "watchdog_ms": 500.0}, "r.toml")
    assert timing.timeout_ms == 499.0
    with pytest.raises(InputError, match="can be silent for 1098 ms"):
        validate(Rig, {"plasma": {"timeout_ms": 499.0, "poll_ms": 499.0, "watchdog_ms": 500.0}}, "r.toml")
    fits = {"timeout_ms": 20.0, "poll_ms": 250.0, "watchdog_ms": 370.5, "max_age_ms": 300.0}  # silence 370 ms
    assert validate(Rig, {"plasma": fits}, "r.toml").plasma.watchdog_ms == 370.5
    with pytest.raises(InputError, match="can be silent for 370 ms"):
        validate(Rig, {"plasma": {**fits, "watchdog_ms": 370.0}}, "r.toml")


def test_sim_rig_example_equals_default() -> None:
    rig, loaded = load_rig(str(EXAMPLES / "rigs" / "sim.toml"))
    assert loaded is not None
    default = Rig()
    a = rig.model_dump(exclude={"name", "description", "serve"})
    b = default.model_dump(exclude={"name", "description", "serve"})
    assert a == b
    assert set(a) == {*DEVICES, "skin"}
    assert rig.serve is None


def test_a_tcp_port_0_follows_the_served_port() -> None:
    """``port = 0`` on a Modbus TCP device means the port the rig's own [serve] server reports; without a
    [serve] modbus_tcp there is nothing for it to follow, which is an error naming the device."""
    rig, _ = load_rig(str(EXAMPLES / "rigs" / "sim-tcp.toml"))
    assert rig.plasma.kind == "modbus-tcp" and rig.plasma.port == 0
    served = rig.with_served_tcp({"modbus_tcp": {"host": "127.0.0.1", "port": 40123, "units": {}}})
    for device in ("plasma", "spray", "safety"):
        cfg = getattr(served, device)
        assert cfg.kind == "modbus-tcp" and cfg.port == 40123
    assert rig.with_served_tcp({}) is rig
    tcp: dict[str, Any] = {"kind": "modbus-tcp", "host": "127.0.0.1", "port": 0, "unit_id": 1}
    therm = {"kind": "serial", "port": "/dev/ttyUSB0"}
    rig_data = {"plasma": tcp, "spray": {**tcp, "unit_id": 2}, "safety": tcp, "thermometer": therm}
    with pytest.raises(InputError) as exc:
        validate(Rig, rig_data, "r")
    assert "plasma.port = 0 (the served port) needs [serve] modbus_tcp" in _problems(exc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "names no device"),
        ("# nothing yet\n", "names no device"),
        ('name = "bench"\n', "names no device"),
        ("[skin]\ntissue = false\n", "names no device"),
        ("[plasm]\n", "plasm: unknown field"),  # a typo is named as such first
    ],
)
def test_a_rig_file_that_names_no_device_is_refused(text: str, message: str, tmp_path: Path) -> None:
    """An empty or mistyped rig file used to run on the in-process simulators without a word."""
    path = tmp_path / "rig.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_rig(str(path))
    assert message in str(exc.value) and str(path) in str(exc.value)


@pytest.mark.parametrize("device", ["plasma", "spray", "safety"])
def test_a_device_elsewhere_beside_spawned_simulators_is_refused(tmp_path: Path, device: str) -> None:
    """Before: sim-tcp.toml with one device's port pointed at another serve-sim was accepted; the session
    fired into one simulated world and read the skin of the other, and completed."""
    text = (EXAMPLES / "rigs" / "sim-tcp.toml").read_text(encoding="utf-8")
    head, section, rest = text.partition(f"[{device}]")
    rest = rest.replace("port = 0", "port = 15502", 1)
    path = tmp_path / "rig.toml"
    path.write_text(head + section + rest, encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_rig(str(path))
    text = " ".join(exc.value.problems)
    assert f"{device}.port = 15502" in text and "remove [serve]" in text, text
    assert load_rig(str(EXAMPLES / "rigs" / "sim-tcp.toml"))[0].serve is not None  # the example itself is fine
