"""The rig under test: every device answers and is the one the rig names; a plan completes, every pulse
cooled in time; the cooling latency across many pulses, measured."""

from __future__ import annotations

from audit import cooling_violations, skin_violations
from plasmactl.hil_runner import HilRunner, Measurements
from plasmactl.plan import Plan


def test_every_device_answers_with_its_identity(hil_devices: dict[str, dict[str, object]]) -> None:
    assert set(hil_devices) >= {"plasma", "spray", "thermometer", "safety"}
    for name, report in hil_devices.items():
        assert report["ok"], f"{name}: {report['problem']}"


def test_self_test_passes_and_the_generator_holds_the_setpoints(hil_runner: HilRunner) -> None:
    run = hil_runner.run()
    self_test = run.first("self_test")
    assert self_test is not None and self_test["ok"], self_test
    start = run.events[0]
    assert self_test["energy_limit_j"] == start["energy_limit_j"]


def test_plan_completes_every_pulse_cooled(hil_runner: HilRunner, hil_plan: Plan, hil_measure: Measurements) -> None:
    run = hil_runner.run()
    assert run.result.outcome == "complete", run.events[-1]
    assert cooling_violations(run.events) == []
    assert skin_violations(run.events) == []
    assert run.summary["pulses"] == hil_plan.pulse_count
    delays = [float(e["delay_ms"]) for e in run.all("spray_start")]
    hil_measure.add("cooling_latency_ms", *delays)
    assert len(delays) == hil_plan.pulse_count if hil_plan.cooling.when == "pulse" else hil_plan.spots.count
    assert max(delays) <= hil_plan.limits.max_cooling_delay_ms
