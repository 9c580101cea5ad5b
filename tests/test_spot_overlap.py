"""Spots given as a list of points may not overlap, as a grid's spacing may not be under its spot size.

Before: only exact repeats were refused; ``points = [[0,0],[0.000001,0],[0,0.000001]]`` at 24.9 J/cm2 passed
``check`` and ``run``: three full pulses on the same skin.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plasmactl.inputs import InputError, validate
from plasmactl.plan import OVERLAP_SLACK_MM, Grid, Plan


def _plan(points: list[list[float]], diameter: float) -> dict[str, Any]:
    return {
        "name": "overlap",
        "spots": {"points": points, "spot_diameter_mm": diameter},
        "pulse": {"energy_j": 0.0001, "pulse_ms": 5.0, "interval_s": 0.1},
        "cooling": {"spray_ms": 50.0},
    }


def _closest(points: list[list[float]]) -> float:
    return min((math.dist(a, b) for a, b in itertools.combinations(points, 2)), default=math.inf)


coordinate = st.floats(-5.0, 5.0, allow_nan=False).map(lambda v: round(v, 4))


@settings(max_examples=400, deadline=None)
@given(
    points=st.lists(st.lists(coordinate, min_size=2, max_size=2), min_size=1, max_size=25), diameter=st.floats(0.1, 3.0)
)
def test_a_points_plan_is_valid_exactly_when_no_two_spots_overlap(points: list[list[float]], diameter: float) -> None:
    closest = _closest(points)
    try:
        validate(Plan, _plan(points, diameter), "x.toml")
    except InputError as exc:
        assert closest < diameter - OVERLAP_SLACK_MM, exc.problems
        text = " ".join(exc.problems)
        assert "repeats an earlier spot" in text or "closer than the spot diameter" in text, text
    else:
        assert closest >= diameter - OVERLAP_SLACK_MM


@pytest.mark.parametrize(
    "points",
    [
        [[0.0, 0.0], [0.000001, 0.0], [0.0, 0.000001]],  # the reported case
        [[0.0, 0.0], [0.29, 0.0]],
        [[10.0, 10.0], [3.0, 3.0], [10.1, 10.1]],  # not neighbours in the list
        [[-0.1, -0.1], [0.1, 0.1]],  # across the origin's cells
    ],
)
def test_overlapping_points_are_refused_naming_both(points: list[list[float]]) -> None:
    with pytest.raises(InputError) as exc:
        validate(Plan, _plan(points, 0.3), "x.toml")
    assert "spots.points[" in " ".join(exc.value.problems)


@settings(max_examples=100, deadline=None)
@given(
    width=st.floats(0.5, 20.0), height=st.floats(0.5, 20.0), diameter=st.floats(0.1, 2.0), factor=st.floats(1.0, 3.0)
)
def test_a_grids_own_positions_are_a_valid_points_plan(
    width: float, height: float, diameter: float, factor: float
) -> None:
    """What a resume builds from a grid's remaining spots (rounded positions) must validate."""
    grid = Grid(width_mm=width, height_mm=height, spacing_mm=diameter * factor, spot_diameter_mm=diameter)
    points = [list(p) for p in grid.points()]
    if len(points) <= 5000:
        validate(Plan, _plan(points, diameter), "x.toml")


def test_positions_far_off_are_refused_not_overflowed() -> None:
    with pytest.raises(InputError, match="positions are in mm"):
        validate(Plan, _plan([[1e308, 0.0], [0.0, 0.0]], 0.1), "x.toml")
