"""Full-face plan (>= 1500 pulses, 20-30 session minutes) in virtual time on the in-process simulators.

Prints session seconds, wall seconds and their ratio for each run, then the median and the worst.
Run: .venv/bin/python benchmarks/full_face_virtual.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from plasmactl.events import read_events
from plasmactl.plan import load_plan
from plasmactl.session import SessionInputs, run_blocking

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plan", default=str(ROOT / "examples/plans/full-face.toml"))
    args = parser.parse_args()
    plan, loaded = load_plan(args.plan)
    ratios: list[float] = []
    print(f"plan {plan.name}: {plan.pulse_count} pulses")
    print(f"{'run':>3} {'outcome':>9} {'pulses':>6} {'session_s':>10} {'wall_s':>7} {'ratio':>7}")
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            t0 = time.perf_counter()
            result = run_blocking(SessionInputs(plan=plan, plan_file=loaded, seed=run), out, handle_sigint=False)
            wall = time.perf_counter() - t0
            session_s = read_events(out / "events.jsonl")[-1]["t"]
        ratio = session_s / wall
        ratios.append(ratio)
        print(f"{run:>3} {result.outcome:>9} {result.pulses:>6} {session_s:>10.1f} {wall:>7.2f} {ratio:>6.0f}x")
    print(
        f"real-time factor: median {statistics.median(ratios):.0f}x, worst {min(ratios):.0f}x, best {max(ratios):.0f}x"
    )


if __name__ == "__main__":
    main()
