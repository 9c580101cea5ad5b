"""One test per class of defect the safety assessment found in the first controller (each failed on it).

Every test runs a whole simulated session with the faults that showed the defect and checks the strict
invariants (plasmactl.invariants, from the log and the simulated devices' record) plus what the class is
about. Class 10 (signals during start-up) is in test_startup_signals.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safety_run import ROOT, example_plan, run

SHORT = "short"  # six spots, a 5 ms pulse each second at t = 0, 1, ..., 5 s, a 150 ms spray after each


@pytest.mark.hazard("H1")
def test_class1_cooling_missed_during_a_pause_latches_a_fault(tmp_path: Path) -> None:
    """A pause during which a pulse's cooling failed must not resume: the missed cooling is a latched fault
    (before: the pause resumed with stale cooling bookkeeping and the next pulse had no spray at all)."""
    faults = [  # pulse 2 (1.0005-1.0055 s) is cut by the pause, and the spray unit is silent meanwhile
        {"device": "safety", "kind": "footswitch_release", "at_s": 1.003, "duration_s": 1.0},
        {"device": "link", "kind": "timeout", "target": "spray", "at_s": 1.0, "duration_s": 0.2},
    ]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "fault"
    assert any(2 in e["pulses"] for e in r.named("cooling_missed"))
    assert not [e for e in r.named("pulse_start") if e["pulse"] > 2]


@pytest.mark.hazard("H2")
def test_class2_unknown_safety_inputs_block_emission(tmp_path: Path) -> None:
    """The safety link goes silent, the E-stop is pressed meanwhile: no pulse on the last known state, and
    when the link answers again with the E-stop pressed the session ends as an E-stop."""
    faults = [
        {"device": "link", "kind": "timeout", "target": "safety", "at_s": 2.9, "duration_s": 0.3},
        {"device": "safety", "kind": "estop", "at_s": 2.95},
    ]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert not [e for e in r.named("pulse_start") if e["t"] > 2.9]
    assert r.outcome == "estop"


@pytest.mark.hazard("H1")
def test_class3_a_dry_reservoir_is_not_cooling(tmp_path: Path) -> None:
    """The reservoir runs dry just after a pulse: the valve opens but no water comes; that is no cooling (a
    trip inside the window), and no later pulse fires."""
    faults = [{"device": "spray", "kind": "reservoir_empty", "after_pulses": 3}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert "cooling_not_confirmed" in r.rules() or "reservoir_low" in r.rules()
    assert not [e for e in r.named("spray_start") if 3 in e["pulses"]]
    assert len(r.named("pulse_start")) == 3


@pytest.mark.hazard("H1")
def test_class3_a_reservoir_dry_before_a_pulse_stops_it(tmp_path: Path) -> None:
    faults = [{"device": "spray", "kind": "reservoir_empty", "at_s": 2.95}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert len(r.named("pulse_start")) == 3
    assert r.rules()[0] == "reservoir_low"


@pytest.mark.hazard("H6")
def test_class4_a_cut_pulse_is_never_fired_again(tmp_path: Path) -> None:
    """A footswitch released inside a pulse: the spot keeps what it got, is reported under-dosed, and the
    session does not claim to be complete (before: the pulse was fired again in full)."""
    faults = [{"device": "safety", "kind": "footswitch_release", "at_s": 1.004, "duration_s": 0.5}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    spots = [e["spot"] for e in r.named("pulse_start")]
    assert spots == sorted(set(spots)), "a spot was pulsed twice"
    assert r.outcome != "complete"
    assert r.summary["ledger"]["spots_under_dosed"] == 1
    assert r.summary["ledger"]["spots_over_dosed"] == 0


@pytest.mark.hazard("H5")
def test_class5_a_cut_pulse_is_energy_checked(tmp_path: Path) -> None:
    """Triple the power, then a cut: the cut pulse is judged on the share it could deliver, and no spot gets
    more than its plan (before: 383 % on one spot)."""
    faults = [
        {"device": "plasma", "kind": "energy_drift", "at_s": 0.9, "value": 3.0},
        {"device": "safety", "kind": "footswitch_release", "at_s": 1.002, "duration_s": 0.4},
    ]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert "energy_out_of_tolerance" in r.rules()


@pytest.mark.hazard("H5")
def test_class6_a_stuck_output_is_held_to_the_energy_tolerance(tmp_path: Path) -> None:
    """A generator whose pulse timer sticks: the pulse ends within the energy tolerance and is reported as
    an energy (or overrun) fault (before: 164-185 % of the energy, reported as an overrun only)."""
    faults = [{"device": "plasma", "kind": "stuck_on", "after_pulses": 2}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    third = r.named("pulse_end", pulse=3)[0]
    assert third["energy_j"] <= 0.005 * 1.2 * (1 + 1e-6)
    assert r.rules()[0] in ("energy_out_of_tolerance", "pulse_overrun")
    assert "energy" in r.named("interlock_trip")[0]["reason"]


@pytest.mark.hazard("H1")
def test_class7_the_spray_command_is_sent_again_after_a_comm_error(tmp_path: Path) -> None:
    """The spray unit misses the command at a pulse's end (30 ms of silence): the command is sent again
    inside the window and the session goes on (before: a fault at once)."""
    faults = [{"device": "link", "kind": "timeout", "target": "spray", "after_pulses": 2, "duration_s": 0.03}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "complete"
    assert [e["attempt"] for e in r.named("spray_command") if 2 in e["pulses"]] == [2]


@pytest.mark.hazard("H14")
def test_class8_one_record_per_pulse_on_an_energy_trip(tmp_path: Path) -> None:
    """An energy trip on the second pulse of a spot cooled per spot: one pulse_end per pulse, no pulse
    listed twice in a spray, summary.json counting what the log holds."""
    faults = [{"device": "plasma", "kind": "energy_drift", "after_pulses": 3, "value": 1.5}]
    r = run(example_plan("periorbital"), faults, tmp_path)
    assert r.violations == {}
    assert r.summary["pulses"] == len(r.named("pulse_start")) == len(r.named("pulse_end"))


@pytest.mark.hazard("H5")
def test_class9_a_pause_at_the_end_of_a_pulse_is_no_unexpected_output(tmp_path: Path) -> None:
    """The footswitch released in the last moment of a pulse: a pause, not a false unexpected_output
    judged on a status from before the pulse ended."""
    faults = [{"device": "safety", "kind": "footswitch_release", "at_s": 1.005, "duration_s": 0.05}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert "unexpected_output" not in r.rules()
    assert r.outcome in ("complete", "incomplete")
    assert r.named("resume")


@pytest.mark.hazard("H3")
def test_class11_moving_the_handpiece_between_spots_pauses(tmp_path: Path) -> None:
    """The tip lifted out of the arc window between pulses: emission waits (a pause), then goes on."""
    faults = [{"device": "safety", "kind": "tip_lift", "at_s": 1.5, "duration_s": 1.0, "value": 4.0}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "complete"
    assert r.rules() == ["tip_out_of_window"]
    assert r.named("resume")


@pytest.mark.hazard("H3")
def test_class11_an_implausible_tip_reading_is_a_sensor_fault(tmp_path: Path) -> None:
    faults = [{"device": "safety", "kind": "tip_lift", "at_s": 1.5, "value": -1.0}]
    r = run(example_plan(SHORT), faults, tmp_path)
    assert r.violations == {}
    assert r.outcome == "fault"
    assert r.rules()[0] == "tip_implausible"


@pytest.mark.hazard("H12")
def test_class12_millijoules_in_a_joule_field_are_refused(tmp_path: Path) -> None:
    plan = (
        (ROOT / "examples" / "plans" / "short.toml")
        .read_text(encoding="utf-8")
        .replace("energy_j = 0.005", "energy_j = 2.5")
    )
    path = tmp_path / "mj.toml"
    path.write_text(plan, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "plasmactl.cli", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())
    assert "2.5 J on a 0.3 mm spot is 3537 J/cm2" in text
    assert "did you mean 2.5 mJ = 0.0025 J?" in text
