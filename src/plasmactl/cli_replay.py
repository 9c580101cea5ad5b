"""``plasmactl replay RUN_DIR/events.jsonl``: re-run a recorded session (its plan, rig and faults as its first
record holds them, with its seed) in virtual time and compare the new log with the old one, event by event.

Exit 0 and ``no divergence`` (with the count of events compared); 3 and the first divergent line of the
recorded file, expected against got, naming the fields that differ; 2 for bad input (one ``error:`` line,
never a traceback); 1 when the replay itself fails; 130/143 when it is interrupted. The replay's own log is
kept (``--out``, or a new temporary folder) and named. See docs/replay.md.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from plasmactl.cli_paths import folder
from plasmactl.console_format import printable
from plasmactl.stop_signals import exit_code_of

if TYPE_CHECKING:
    from plasmactl.replay_compare import Divergence

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_DIVERGED = 0, 1, 2, 3  # as in plasmactl.cli (3: as verify-log)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def _fail(err: Console, message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _out_dir(out: Path | None, overwrite: bool, recorded: Path) -> Path:
    """The replay's folder: ``--out`` (checked first, never the recorded log's), or a new temporary one."""
    from plasmactl.inputs import InputError
    from plasmactl.out_dir import ensure_out_dir
    from plasmactl.session_files import LOG_NAME

    if out is None:
        return Path(tempfile.mkdtemp(prefix="plasmactl-replay-"))
    target = out / LOG_NAME
    if target.exists() and target.resolve() == recorded.resolve():
        raise InputError(str(out), ["holds the recorded log itself; choose another --out"])
    if target.exists() and not overwrite:
        raise InputError(str(out), ["already holds a session's events.jsonl; choose another --out or pass --overwrite"])
    ensure_out_dir(out)
    return out


def replay(
    log: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR/events.jsonl", help="A recorded session's log (or its output folder)."),
    ],
    out: Annotated[
        Path | None, typer.Option(parser=folder, help="Folder for the replay's log (kept); default: a new temp folder.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Allow an --out folder that already holds a log.")] = False,
    tolerance_ms: Annotated[
        float, typer.Option(min=0.0, help="How far session times (t, t_*, *_t) and *_ms durations may differ.")
    ] = 1.0,
    rel_tol: Annotated[float, typer.Option(min=0.0, help="Relative tolerance of other floats.")] = 1e-6,
    abs_tol: Annotated[float, typer.Option(min=0.0, help="Absolute tolerance of other floats.")] = 1e-9,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Re-run a recorded session (plan, rig, faults and seed from its first record) in virtual time and
    compare the new log with it event by event (hashes and wall time left out, times within --tolerance-ms).

    Exit 0: no divergence; 3: the first divergent line, expected vs got; 2: bad input."""
    from plasmactl.cli_progress import follow_spots, reporter
    from plasmactl.inputs import InputError
    from plasmactl.replay import compare_replay, ended, log_file, prepare, read_recorded, run_replay
    from plasmactl.replay_compare import Tolerances
    from plasmactl.run_log import LogError

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not all(math.isfinite(v) for v in (tolerance_ms, rel_tol, abs_tol)):
        raise _fail(err, "--tolerance-ms, --rel-tol and --abs-tol must be finite numbers")
    try:
        path = log_file(log)
        recorded = read_recorded(path)
        prepared = prepare(recorded)
        out_dir = _out_dir(out, overwrite, path)
    except (LogError, InputError) as exc:
        raise _fail(err, str(exc)) from None
    inputs = prepared.inputs
    plan = inputs.plan
    _say(
        f"replaying {path}: plan {printable(plan.name)} ({plan.pulse_count} pulses), rig {printable(inputs.rig.name)},"
        f" {len(inputs.faults.fault)} fault(s), seed {inputs.seed}, virtual time -> {out_dir / 'events.jsonl'}"
    )
    for note in prepared.notes:
        _say(f"note: {note}")
    progress = reporter(
        err,
        title=f"replay {plan.name}",
        unit="spot",
        total=plan.pulse_count,
        shown_total=plan.spots.count,
        session_time=True,
        enabled=not quiet,
    )
    show = follow_spots(progress)

    try:
        with progress:
            result = run_replay(prepared, out_dir, listeners=(show,))
    except Exception as exc:  # noqa: BLE001 - a crash the record may hold too: compare if its log is whole
        error = f"{type(exc).__name__}: {exc}"
        if not ended(out_dir):
            raise _fail(err, f"internal error in the replay: {error} (see {out_dir})", EXIT_INTERNAL) from None
        _say(f"note: the replay ended in an internal error ({error}); its log is compared all the same")
    else:
        if result.signal is not None:
            err.print(f"replay interrupted ({result.signal}); nothing compared (its log: {escape(str(out_dir))})")
            raise typer.Exit(exit_code_of(result.signal))
    tol = Tolerances(time_ms=tolerance_ms, rel=rel_tol, abs=abs_tol)
    comparison = compare_replay(recorded, prepared, out_dir, tol)
    what = "events" if comparison.mode == "exact" else "events of the sequence (names and non-float fields)"
    divergence = comparison.divergence
    if divergence is None:
        _say(f"no divergence: {comparison.compared} {what} compared; replay log {out_dir / 'events.jsonl'}")
        raise typer.Exit(EXIT_OK)
    _report(divergence, comparison.compared, what, out_dir)
    raise typer.Exit(EXIT_DIVERGED)


def _report(divergence: Divergence, compared: int, what: str, out_dir: Path) -> None:
    from plasmactl.replay_compare import show_event

    _say(divergence.headline())
    replay_at = "" if divergence.replay_line is None else f" (line {divergence.replay_line} of the replay)"
    _say(f"  expected: {show_event(divergence.expected)}")
    _say(f"  got:      {show_event(divergence.got)}{replay_at}")
    for diff in divergence.fields:
        _say(f"  {diff}")
    _say(f"{compared} {what} agreed before it; replay log {out_dir / 'events.jsonl'}")
