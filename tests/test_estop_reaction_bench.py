"""benchmarks/estop_reaction.py's measurement, on a few trials: every press is measured, the generator's own
E-stop loop has its output off at the press, no pulse starts after it, and the controller's off command reaches
the generator within the safety link's poll + watchdog budget, in process and over Modbus TCP. Not a timing
benchmark: the figures are the script's business."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import estop_reaction as bench
from _estop_results import Way

pytestmark = pytest.mark.hazard("H2")

HARDWARE_LOOP_S = 0.001


@pytest.mark.parametrize(("way", "trials"), [("inprocess", 20), ("tcp", 10)])
def test_every_press_switches_the_output_off_within_the_bound(way: Way, trials: int) -> None:
    results = bench.measure(way, trials, workers=1, seed=7)
    bound = bench.bound_s(way)
    assert len(results) == trials
    for r in results:
        where = f"{r.kind} press at {r.press_s}"
        assert r.outcome == "estop", where
        assert r.press_s is not None, f"{where}: the press never came"
        assert r.off_s is not None, f"{where}: no OUTPUT_OFF reached the generator after the press"
        assert 0.0 <= r.off_s <= bound, f"{where}: off at the device {r.off_s * 1000:.1f} ms after the press"
        assert r.trip_s is not None, f"{where}: the controller never tripped estop"
        assert r.reported_s is not None and r.reported_s <= bound, where
        assert r.on_after_s <= HARDWARE_LOOP_S, f"{where}: output on {r.on_after_s * 1000:.3f} ms after the press"
        assert not r.emitted_after, f"{where}: output on for a pulse fired after the press"
        if r.phase in ("pulse", "fire"):
            assert r.hardware_s is not None and r.hardware_s <= HARDWARE_LOOP_S, where
    # the trial mix reaches each phase it aims at (a press in a pulse is what the hardware loop figure needs)
    assert any(r.phase == "pulse" for r in results)
    assert any(r.phase == "spray" for r in results)
    assert any(r.software_s is not None for r in results)
