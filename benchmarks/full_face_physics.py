"""Full-face plan in virtual time with the skin physics on and off: what the physics costs per pulse.

The physics (per-spot 1-D column with ablation and damage integrals, and the axisymmetric 2-D model for
the lateral radius) runs once per distinct dose; prints wall seconds, the real-time factor with physics
on, and the solver's cost per pulse and per distinct dose (the difference to the same run with it off).
Run: .venv/bin/python benchmarks/full_face_physics.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from plasmactl.events import read_events
from plasmactl.plan import load_plan
from plasmactl.rig import Rig
from plasmactl.session import SessionInputs, run_blocking

ROOT = Path(__file__).resolve().parents[1]


def once(physics: bool, seed: int) -> tuple[float, float, int, int]:
    plan, loaded = load_plan(str(ROOT / "examples/plans/full-face.toml"))
    rig = Rig.model_validate({"skin": {"tissue": physics}})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_blocking(SessionInputs(plan=plan, plan_file=loaded, rig=rig, seed=seed), Path(tmp), handle_sigint=False)
        wall = time.perf_counter() - t0
        events = read_events(Path(tmp) / "events.jsonl")
    tissue = next((e for e in events if e["event"] == "tissue_summary"), {})
    pulses = sum(e["event"] == "pulse_end" for e in events)
    return wall, events[-1]["t"], pulses, int(tissue.get("doses_simulated", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    session_s = 0.0
    pulses = doses = 0
    for run in range(1, args.runs + 1):
        w_off, _, _, _ = once(False, run)
        w_on, session_s, pulses, doses = once(True, run)
        off.append(w_off)
        on.append(w_on)
        print(f"run {run}: physics off {w_off:.2f} s, on {w_on:.2f} s ({pulses} pulses, {doses} distinct doses)")
    m_on, m_off = statistics.median(on), statistics.median(off)
    extra = max(m_on - m_off, 0.0)
    print(
        f"session {session_s:.0f} s; median wall with physics {m_on:.2f} s -> real-time factor {session_s / m_on:.0f}x"
    )
    print(f"median wall without physics {m_off:.2f} s -> {session_s / m_off:.0f}x")
    print(
        f"solver cost: {extra * 1000 / pulses:.2f} ms per pulse, {extra * 1000 / max(doses, 1):.0f} ms per distinct dose"
    )


if __name__ == "__main__":
    main()
