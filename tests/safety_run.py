"""Run one simulated session and judge it with the safety invariants (plasmactl.invariants).

Uses only the session API every version of plasmactl has (SessionInputs, run_blocking, read_events), so the
same tests can be run against an earlier checkout to show the defect they were written for. When the run
left no ``simulator.json`` (earlier versions), the fault windows are taken from the scenario itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plasmactl.events import read_events
from plasmactl.faults import FaultScenario
from plasmactl.invariants import check
from plasmactl.plan import Plan, load_plan
from plasmactl.rig import Rig
from plasmactl.session import SessionInputs, run_blocking

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SIM_LATENCY_S = 0.0005  # the simulated generator's fire latency (rig default)


def example_plan(name: str) -> Plan:
    return load_plan(str(EXAMPLES / "plans" / f"{name}.toml"))[0]


class Run:
    def __init__(self, out: Path, faults: list[dict[str, Any]], outcome: str | None) -> None:
        self.events = read_events(out / "events.jsonl")
        self.summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        record = out / "simulator.json"
        self.simulator: dict[str, Any] = (
            json.loads(record.read_text(encoding="utf-8")) if record.exists() else self._windows(faults)
        )
        self.outcome = outcome
        self.violations = check(self.events, summary=self.summary, simulator=self.simulator)

    def _windows(self, faults: list[dict[str, Any]]) -> dict[str, Any]:
        starts = {e["pulse"]: e["t"] for e in self.events if e["event"] == "pulse_start"}
        pulse_ms = self.events[0]["plan"]["pulse"]["pulse_ms"]
        windows = []
        for f in faults:
            if "at_s" in f:
                start = f["at_s"]
            elif f["after_pulses"] in starts:
                start = starts[f["after_pulses"]] + SIM_LATENCY_S + pulse_ms / 1000.0
            else:
                continue
            end = start + f["duration_s"] if "duration_s" in f else None
            windows.append({**f, "start": start, "end": end})
        return {"faults": windows}  # what the scenario says; no record of what the devices did

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event and all(e.get(k) == v for k, v in match.items())]

    def rules(self) -> list[str]:
        return [e["rule"] for e in self.named("interlock_trip")]


def run(plan: Plan, faults: list[dict[str, Any]], tmp: Path, seed: int = 0, rig: Rig | None = None) -> Run:
    """One session of ``plan`` with ``faults`` (on ``rig``: the in-process simulators when None), judged."""
    scenario = FaultScenario.model_validate({"fault": faults})
    inputs = SessionInputs(plan=plan, plan_file=None, rig=Rig() if rig is None else rig, faults=scenario, seed=seed)
    result = run_blocking(inputs, tmp, handle_sigint=False)
    return Run(tmp, faults, result.outcome)
