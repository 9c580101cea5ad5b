"""Whole simulated sessions on the example plans: they complete, and the record proves the interlocks held."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import EXAMPLES, cooling_violations, first, limits_of, names, run_to_log, skin_violations
from plasmactl.plan import load_plan
from plasmactl.session import SessionInputs


def inputs(plan: str, seed: int = 0) -> SessionInputs:
    p, loaded = load_plan(str(EXAMPLES / "plans" / f"{plan}.toml"))
    return SessionInputs(plan=p, plan_file=loaded, seed=seed)


@pytest.mark.parametrize("plan", ["short", "periorbital", pytest.param("full-face", marks=pytest.mark.slow)])
def test_example_plan_completes_with_interlocks_held(plan: str, tmp_path: Path) -> None:
    events = run_to_log(inputs(plan), tmp_path)
    assert events[-1]["event"] == "session_end"
    assert events[-1]["outcome"] == "complete", events[-1]
    pulses = [e for e in events if e["event"] == "pulse_end"]
    assert len(pulses) == inputs(plan).plan.pulse_count
    assert cooling_violations(events) == []
    assert skin_violations(events) == []
    assert first(events, "interlock_trip") is None
    # the emission is disarmed before the session ends, and the last state is complete
    states = [e for e in events if e["event"] == "state"]
    assert states[-1]["dest"] == "complete"
    assert (tmp_path / "summary.json").is_file()


def test_session_start_records_inputs_and_limits(tmp_path: Path) -> None:
    events = run_to_log(inputs("short", seed=7), tmp_path)
    start = events[0]
    assert start["event"] == "session_start"
    assert start["seed"] == 7
    assert len(start["plan_file"]["sha256"]) == 64
    assert start["plan"]["name"] == "short"
    assert start["rig"]["plasma"]["kind"] == "sim"
    assert limits_of(events)["max_cooling_delay_ms"] == 100.0
    assert limits_of(events)["skin_temp_max_c"] == 40.0
    assert start["version"]
    ends = [e for e in events if e["event"] == "pulse_end"]
    assert [e["pulse"] for e in ends] == list(range(1, 7))
    assert all(abs(e["energy_j"] - 0.005) < 0.001 for e in ends)


def _strip_wall(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in e.items() if k not in ("wall_time", "prev_sha256")} for e in events]  # chain: wall_time


def test_same_inputs_same_log(tmp_path: Path) -> None:
    a = run_to_log(inputs("periorbital", seed=3), tmp_path / "a")
    b = run_to_log(inputs("periorbital", seed=3), tmp_path / "b")
    assert _strip_wall(a) == _strip_wall(b)
    c = run_to_log(inputs("periorbital", seed=4), tmp_path / "c")
    assert _strip_wall(a) != _strip_wall(c)  # the seed reaches the devices


def test_state_sequence_of_one_pulse_cycle(tmp_path: Path) -> None:
    events = run_to_log(inputs("short"), tmp_path)
    i = first(events, "pulse_start", pulse=2)
    assert i is not None
    cycle = [e for e in events[i - 1 :] if e["event"] == "state"][:4]
    assert [(e["src"], e["dest"]) for e in cycle] == [
        ("armed", "pulsing"),
        ("pulsing", "awaiting_cooling"),
        ("awaiting_cooling", "cooling"),
        ("cooling", "armed"),
    ]
    order = [
        n for n in names(events[i:]) if n in ("pulse_start", "pulse_end", "spray_command", "spray_start", "spray_end")
    ]
    assert order[:5] == ["pulse_start", "pulse_end", "spray_command", "spray_start", "spray_end"]


def _with_delay(delay_ms: float) -> SessionInputs:
    base = inputs("short")
    data = base.plan.model_dump()
    data["cooling"]["delay_ms"] = delay_ms
    return SessionInputs(plan=type(base.plan).model_validate(data), plan_file=None)


def test_deliberate_cooling_delay_is_applied(tmp_path: Path) -> None:
    events = run_to_log(_with_delay(50.0), tmp_path)
    assert events[-1]["outcome"] == "complete"
    delays = [e["delay_ms"] for e in events if e["event"] == "spray_start"]
    assert len(delays) == 6 and all(50.0 <= d <= 100.0 for d in delays)


def test_deliberate_delay_past_the_window_trips(tmp_path: Path) -> None:
    # 95 ms of deliberate delay plus the valve's 15 ms latency cannot meet a 100 ms window
    events = run_to_log(_with_delay(95.0), tmp_path)
    assert events[-1]["outcome"] == "fault"
    assert events[-1]["cause"] == "cooling_not_confirmed"
    assert sum(e["event"] == "pulse_start" for e in events) == 1


def test_session_reports_tissue_results_and_layers_come_from_the_rig(tmp_path: Path) -> None:
    from plasmactl.rig import Rig

    base = inputs("short")
    default = run_to_log(base, tmp_path / "default")
    summary = next(e for e in default if e["event"] == "tissue_summary")
    assert summary["spots"] == 6 and summary["ablation_depth_um"] > 0
    assert sum(e["event"] == "tissue" for e in default) == 6
    thin = [
        {"name": "stratum corneum", "thickness_um": 15.0, "rho": 1150.0, "c": 3600.0, "k": 0.2},
        {"name": "viable epidermis", "thickness_um": 50.0, "rho": 1200.0, "c": 3590.0, "k": 0.24, "q_m": 2000.0},
        {"name": "dermis", "thickness_um": 1200.0, "rho": 1150.0, "c": 3500.0, "k": 0.5, "w_b": 0.00125},
        {"name": "fat", "thickness_um": 3000.0, "rho": 900.0, "c": 2400.0, "k": 0.18, "w_b": 0.00125},
    ]
    rig = Rig.model_validate({"skin": {"layers": thin}})
    thin_log = run_to_log(SessionInputs(plan=base.plan, plan_file=None, rig=rig), tmp_path / "thin")
    thin_summary = next(e for e in thin_log if e["event"] == "tissue_summary")
    # the layers reach the physics: the same pulses on a thinner stack heat the tissue 100 um down more
    assert thin_summary["max_basal_c"] > summary["max_basal_c"]
