"""A generative fault campaign: many short simulated sessions with random faults, each checked against the
strict safety invariants (:mod:`plasmactl.invariants`) from its log and the simulated devices' own record.

    python -m plasmactl.random_campaign --sessions 10000 [--transport inprocess,tcp] [--seed N] [--workers N]

prints the sessions run and the count of sessions breaking each invariant, and, for the first failures, the
plan, the seed and the fault file that reproduce them with ``plasmactl run``; exits 1 when any invariant broke.
The test suite runs the same campaign in a short profile (``tests/test_campaign.py``).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasmactl import clock as clockmod
from plasmactl.events import read_events
from plasmactl.faults import FaultScenario
from plasmactl.invariants import check
from plasmactl.log_chain import verify_file
from plasmactl.plan import Plan
from plasmactl.random_faults import Timeline, scenario, to_toml
from plasmactl.rig import Rig, load_rig
from plasmactl.session import SessionInputs, run_session
from plasmactl.session_files import LOG_NAME, SIMULATOR_RECORD, SUMMARY_NAME

# Short plans that exercise every cooling schedule: after every pulse, after a spot of two pulses 50 ms
# apart (the periorbital pattern), three pulses per spot, a fast repetition.
PLANS: dict[str, dict[str, Any]] = {
    "short": {
        "spots": {"points": [[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [0.0, 1.5], [1.5, 1.5], [3.0, 1.5]]},
        "pulse": {"energy_j": 0.005, "pulse_ms": 5.0, "pulses_per_spot": 1, "interval_s": 1.0},
        "cooling": {"spray_ms": 150.0, "when": "pulse"},
    },
    "eyelid": {
        "spots": {"grid": {"width_mm": 3.0, "height_mm": 2.0, "spacing_mm": 1.0}},
        "pulse": {
            "energy_j": 0.0025,
            "pulse_ms": 4.0,
            "pulses_per_spot": 2,
            "interval_s": 0.05,
            "spot_interval_s": 0.6,
        },
        "cooling": {"spray_ms": 120.0, "when": "spot"},
        "limits": {"skin_temp_max_c": 39.0},
    },
    "triple": {
        "spots": {"points": [[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [6.0, 0.0]]},
        "pulse": {"energy_j": 0.004, "pulse_ms": 3.0, "pulses_per_spot": 3, "interval_s": 0.4},
        "cooling": {"spray_ms": 100.0, "when": "pulse"},
        "limits": {"energy_tolerance_pct": 10.0},
    },
    "fast": {
        "spots": {"grid": {"width_mm": 4.5, "height_mm": 1.5, "spacing_mm": 1.5}},
        "pulse": {"energy_j": 0.006, "pulse_ms": 5.0, "pulses_per_spot": 1, "interval_s": 0.25},
        "cooling": {"spray_ms": 150.0, "when": "pulse"},
        "limits": {"max_cooling_delay_ms": 60.0},
    },
}
TCP_RIG = Path(__file__).resolve().parents[2] / "examples" / "rigs" / "sim-tcp-inprocess.toml"


def plan_named(name: str) -> Plan:
    return Plan.model_validate({"name": name, **PLANS[name]})


@dataclass
class Case:
    index: int
    plan: str
    transport: str
    seed: int
    faults: dict[str, Any]
    tissue: bool


@dataclass
class Outcome:
    case: Case
    violations: dict[str, list[str]] = field(default_factory=dict)
    outcome: str | None = None


def cases(count: int, seed: int, transports: tuple[str, ...]) -> list[Case]:
    rng = random.Random(seed)
    timelines = {name: Timeline.of(plan_named(name)) for name in PLANS}
    out = []
    for i in range(count):
        name = rng.choice(sorted(PLANS))
        out.append(
            Case(
                i,
                name,
                transports[i % len(transports)],
                rng.randrange(1 << 30),
                scenario(rng, timelines[name]),
                rng.random() < 0.1,
            )
        )
    return out


TRANSPORTS = ("inprocess", "tcp", "trigger", "tcp-trigger")


def rig_for(transport: str) -> Rig:
    """``inprocess``: the in-process simulators; ``tcp``: the in-process served rig over Modbus TCP (its
    server takes a free port: ``modbus_tcp`` port 0); ``trigger`` / ``tcp-trigger``: the same with the
    pulse-end trigger line wired (hardware-timed cooling)."""
    rig = load_rig(str(TCP_RIG))[0] if transport.startswith("tcp") else Rig()
    if transport.endswith("trigger"):
        rig = rig.model_copy(update={"spray": rig.spray.model_copy(update={"trigger_line": True})})
    return rig


@dataclass(frozen=True)
class Recorded:
    """What one simulated session left: its log, its summary, the devices' own record, how it ended."""

    events: list[dict[str, Any]]
    summary: dict[str, Any]
    simulator: dict[str, Any] | None
    exit_code: int
    output: str  # what escaped the session, if anything (itself a finding)
    chain_ok: bool  # the log's hash chain verifies

    def violations(self) -> dict[str, list[str]]:
        """The strict invariants, from the log and the simulator's record."""
        return check(
            self.events, summary=self.summary, simulator=self.simulator, exit_code=self.exit_code, output=self.output
        )


def run_recorded(inputs: SessionInputs) -> Recorded:
    """One session in virtual time, in a temporary folder; what it left."""
    from plasmactl.cli import exit_code

    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        out = Path(tmp)
        try:
            result = clockmod.run(run_session(inputs, out), virtual=True)
            rc, text = exit_code(result), ""
        except Exception as exc:  # noqa: BLE001 - an escape from the session is itself a finding
            rc, text = 1, f"Traceback: {type(exc).__name__}: {exc}"
        events = read_events(out / LOG_NAME)
        summary = json.loads((out / SUMMARY_NAME).read_text(encoding="utf-8"))
        record = out / SIMULATOR_RECORD
        simulator = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
        chain_ok = verify_file(out / LOG_NAME).ok
    return Recorded(events, summary, simulator, rc, text, chain_ok)


def quiet_drivers() -> None:
    """The drivers' link warnings and pymodbus' frame dumps are expected in a campaign: the results say it all."""
    for name in ("plasmactl", "pymodbus"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run_case(case: Case) -> Outcome:
    rig = rig_for(case.transport)
    rig = rig.model_copy(update={"skin": rig.skin.model_copy(update={"tissue": case.tissue})})
    inputs = SessionInputs(
        plan=plan_named(case.plan),
        plan_file=None,
        rig=rig,
        faults=FaultScenario.model_validate(case.faults),
        seed=case.seed,
    )
    recorded = run_recorded(inputs)
    return Outcome(case, recorded.violations(), recorded.summary.get("outcome"))


def _run_batch(batch: list[Case]) -> list[Outcome]:
    quiet_drivers()
    return [run_case(c) for c in batch]


def run(cases_: list[Case], workers: int = 1) -> list[Outcome]:
    if workers <= 1:
        return _run_batch(cases_)
    batches = [cases_[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        results = [o for part in pool.map(_run_batch, batches) for o in part]
    return sorted(results, key=lambda o: o.case.index)


def report(results: list[Outcome], out: Any = sys.stdout, show: int = 3) -> int:
    """Print the counts by invariant and the first failures; returns the number of sessions that broke any."""
    broken = [r for r in results if r.violations]
    counts = collections.Counter(k for r in broken for k in r.violations)
    outcomes = collections.Counter(r.outcome for r in results)
    print(f"random fault campaign: {len(results)} sessions, {len(broken)} broke an invariant", file=out)
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items(), key=str)), file=out)
    for name, n in counts.most_common():
        print(f"  {name}: {n} session(s)", file=out)
    for r in broken[:show]:
        c = r.case
        first = sorted(r.violations)[0]
        print(f"  - {first}: {r.violations[first][0][:300]}", file=out)
        print(f"    plan {c.plan} ({c.transport}), seed {c.seed}; fault file:", file=out)
        print("    " + to_toml(c.faults).replace("\n", "\n    ").rstrip(), file=out)
    return len(broken)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="campaign seed (default: a fresh one)")
    parser.add_argument(
        "--transport", default="inprocess", help=f"one or more of {', '.join(TRANSPORTS)}, comma-separated"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    transports = tuple(t.strip() for t in args.transport.split(",") if t.strip())
    if not transports or set(transports) - set(TRANSPORTS):
        parser.error(f"--transport takes {', '.join(TRANSPORTS)} (comma-separated)")
    print(f"campaign seed {seed}: {args.sessions} sessions on {', '.join(transports)}, {args.workers} workers")
    results = run(cases(args.sessions, seed, transports), args.workers)
    return 1 if report(results) else 0


if __name__ == "__main__":
    sys.exit(main())
