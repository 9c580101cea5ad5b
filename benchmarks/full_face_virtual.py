"""Full-face plan (>= 1500 pulses, 20-30 session minutes) in virtual time on the in-process simulators.

Prints session seconds, wall seconds and their ratio (the real-time factor) for each run, then the median and
the worst. Beside each run it runs the same plan on the controller as it was before the safety-kernel redesign
(``--baseline``, a commit of this repository, extracted with ``git archive`` into a temporary folder and run in
a worker process on the same interpreter and libraries), alternating the two so that both see the same load:
the machines are shared, so "no slower" is judged by the ratio of the two measured in the same run, not by a
figure from another day. ``--baseline none`` skips it (e.g. in a copy without git history).

One session on each side is run first and not counted (``--warmup``): a process's first session also imports
and compiles what it needs.

Run: .venv/bin/python benchmarks/full_face_virtual.py [--runs N] [--warmup N] [--baseline REV|none]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ("src", "drivers", "simulators")  # the three roots of the plasmactl namespace
PLAN = "examples/plans/full-face.toml"
# The last commit before the safety-kernel redesign (issue 7): the controller the redesign must not be slower than.
PRE_REDESIGN = "7530a4a"


def one_session(plan_path: str, seed: int) -> dict[str, Any]:
    """One full session on whatever ``plasmactl`` this process imports (the checkout, or a baseline's)."""
    from plasmactl.events import read_events
    from plasmactl.plan import load_plan
    from plasmactl.session import SessionInputs, run_blocking

    plan, loaded = load_plan(plan_path)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        result = run_blocking(SessionInputs(plan=plan, plan_file=loaded, seed=seed), out, handle_sigint=False)
        wall = time.perf_counter() - t0
        session_s = float(read_events(out / "events.jsonl")[-1]["t"])
    return {"outcome": result.outcome, "pulses": result.pulses, "session_s": session_s, "wall_s": wall}


def worker(tree: str) -> None:
    """Sessions on the tree's own ``plasmactl`` (its three roots first, the checkout's removed), one per seed
    read from stdin, one JSON line each on stdout; ends at EOF (the parent's exit closes the pipe)."""
    mine = {str((ROOT / r).resolve()) for r in ROOTS}
    sys.path[:] = [str(Path(tree) / r) for r in ROOTS] + [p for p in sys.path if str(Path(p).resolve()) not in mine]
    for line in sys.stdin:
        print(json.dumps(one_session(str(Path(tree) / PLAN), int(line))), flush=True)


def extract(rev: str, into: Path) -> None:
    """The three roots and the plan as they were at ``rev`` (CalledProcessError when git cannot)."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, *ROOTS, PLAN], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")


class Baseline:
    """A worker process running the baseline tree; one session per :meth:`run`."""

    def __init__(self, tree: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(tree)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, seed: int) -> dict[str, Any]:
        stdin: IO[str] | None = self._proc.stdin
        stdout: IO[str] | None = self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(f"{seed}\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"baseline worker ended (exit {self._proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _row(label: str, run: int, r: dict[str, Any]) -> float:
    ratio = float(r["session_s"]) / float(r["wall_s"])
    print(
        f"{label:>9} {run:>3} {r['outcome']:>9} {r['pulses']:>6} {r['session_s']:>10.1f} {r['wall_s']:>7.2f} {ratio:>6.0f}x"
    )
    return ratio


def _stats(label: str, ratios: list[float]) -> None:
    print(
        f"{label}: real-time factor median {statistics.median(ratios):.0f}x,"
        f" worst {min(ratios):.0f}x, best {max(ratios):.0f}x ({len(ratios)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--warmup", type=int, default=1, help="sessions run first on each side and not counted (imports, first calls)"
    )
    parser.add_argument("--plan", default=str(ROOT / PLAN))
    parser.add_argument("--baseline", default=PRE_REDESIGN, help="a commit to compare with, or 'none'")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        baseline: Baseline | None = None
        if args.baseline != "none":
            try:
                extract(args.baseline, Path(tmp))
            except (OSError, subprocess.CalledProcessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                print(f"baseline {args.baseline}: not measured ({exc}; {err.decode(errors='replace').strip()})")
            else:
                baseline = Baseline(Path(tmp))
        try:
            _warm_up(args.plan, args.warmup, baseline)
            mine, base = _measure(args.plan, args.runs, baseline)
        finally:
            if baseline is not None:
                baseline.close()
    _stats("this checkout", mine)
    if base:
        _stats(f"baseline {args.baseline}", base)
        pairs = [m / b for m, b in zip(mine, base, strict=True)]
        print(
            f"this checkout / baseline {args.baseline}: median {statistics.median(mine) / statistics.median(base):.2f}x"
            f" (run by run: median {statistics.median(pairs):.2f}x, worst {min(pairs):.2f}x)"
        )


def _warm_up(plan: str, sessions: int, baseline: Baseline | None) -> None:
    """Sessions not counted, on each side: the first session of a process also imports and compiles what the
    session needs (with PYTHONDONTWRITEBYTECODE=1, as on these machines, nothing is cached between runs)."""
    for i in range(sessions):
        w = one_session(plan, 1000 + i)
        b = baseline.run(1000 + i) if baseline is not None else None
        print(f"(warm-up {i + 1}: checkout {w['wall_s']:.2f} s" + (f", baseline {b['wall_s']:.2f} s)" if b else ")"))


def _measure(plan: str, runs: int, baseline: Baseline | None) -> tuple[list[float], list[float]]:
    """``runs`` sessions of each side, alternating (a run of the checkout, then one of the baseline)."""
    mine: list[float] = []
    base: list[float] = []
    print(f"{'side':>9} {'run':>3} {'outcome':>9} {'pulses':>6} {'session_s':>10} {'wall_s':>7} {'ratio':>7}")
    for run in range(1, runs + 1):
        mine.append(_row("checkout", run, one_session(plan, run)))
        if baseline is not None:
            base.append(_row("baseline", run, baseline.run(run)))
    return mine, base


if __name__ == "__main__":
    main()
