"""``plasmactl resume RUN_DIR --out NEW_DIR``: after a session ended early and its cause is gone, a new session
treats the spots the earlier record shows untouched (see plasmactl.resume for which, and why never more).

Exit codes as ``run``'s (0 complete, 3 safe stop, ...); 2 for bad input or a record that cannot be resumed
(a missing folder, a log that does not verify, nothing left to treat, a rig file changed since, a record
already resumed: its folder's ``resumed_by.json`` names the session that continues it), with one
message and never a traceback. What would be treated is printed before anything is opened.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from plasmactl.cli_output import Output, write_json
from plasmactl.cli_paths import folder
from plasmactl.cli_progress import follow_spots, reporter
from plasmactl.console_format import printable
from plasmactl.inputs import InputError
from plasmactl.out_dir import OutDirHold, ensure_not_in_use, ensure_out_dir, ensure_room, hold_out_dir
from plasmactl.session_files import LOG_NAME
from plasmactl.stop_signals import STOP_SIGNALS


def register(app: typer.Typer) -> None:
    app.command("resume")(resume)


def resume(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="The earlier session's output folder (holding events.jsonl).")
    ],
    out: Annotated[Path, typer.Option(parser=folder, help="Output folder of the new session (must not hold a log).")],
    rig: Annotated[
        Path | None, typer.Option(help="Rig file (TOML); default: the one the earlier session used.")
    ] = None,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario (TOML) for the new session.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the simulated devices.")] = 0,
    realtime: Annotated[bool, typer.Option(help="Run on the real clock instead of virtual time.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout; text on stderr.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and the final line, on stderr; no progress.")
    ] = False,
) -> None:
    """Continue a plan after a session that ended early: only the spots its record shows untouched."""
    from plasmactl.cli import exit_code
    from plasmactl.resume import ResumeRefused, claim, plan_resumption
    from plasmactl.run_log import LogError, read_run_log
    from plasmactl.session import run_blocking

    output = Output(json_mode=json_output, quiet=quiet)
    hold: OutDirHold | None = None
    try:
        if out.resolve() == run_dir.resolve():
            raise InputError(str(out), ["--out is the earlier session's own folder; give a new one"])
        ensure_not_in_use(run_dir)  # a session still running: its record is not the end of anything yet
        if (out / LOG_NAME).exists():
            raise InputError(str(out), ["already holds a session's events.jsonl; choose another --out"])
        log = read_run_log(run_dir)
        plan = plan_resumption(log, rig_path=rig, faults_path=faults, seed=seed)
        ensure_out_dir(out)
        ensure_room(out, plan.inputs.plan.pulse_count)
        hold = hold_out_dir(out)  # then no other session writes there meanwhile (run's own rule)
        if (out / LOG_NAME).exists():
            raise InputError(str(out), ["already holds a session's events.jsonl; choose another --out"])
        claim(run_dir, out)  # last: once claimed, this session is the one that continues the record
    except (InputError, LogError, ResumeRefused) as exc:
        if hold is not None:
            hold.release()
        if isinstance(exc, InputError):
            raise output.bad_input(exc) from None
        raise output.bad_input(InputError(str(run_dir), [str(exc)])) from None
    for warning in plan.warnings:
        output.err.print(f"warning: {escape(warning)}")
    inputs = plan.inputs
    if not inputs.rig.virtual_time_ok and not realtime:
        realtime = True
    left = f"; not re-treated, touched but not complete: {plan.left_partial[:20]}" if plan.left_partial else ""
    output.info(
        f"plasmactl resume: plan {escape(printable(inputs.plan.name))}:"
        f" {len(plan.spots)} spot(s) left {plan.spots[:20]}"
        f" ({len(plan.done)} done before{left}) -> {escape(str(out))}"
    )
    plan_now = inputs.plan
    progress = reporter(
        output.err,
        title=plan_now.name,
        unit="spot",
        total=plan_now.pulse_count,
        shown_total=plan_now.spots.count,
        session_time=True,
        enabled=not quiet,
    )
    show = follow_spots(progress)

    try:
        with progress:
            result = run_blocking(inputs, out, realtime=realtime, listeners=(show,))
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        hold.release()
    code = exit_code(result)
    output.final(
        f"session {escape(result.outcome)}"
        + (f" ({escape(result.cause)})" if result.cause else "")
        + f": {result.pulses} pulses on {len(plan.spots)} remaining spot(s); log {escape(str(out / 'events.jsonl'))}"
    )
    if json_output:
        write_json(
            {
                "ok": code == 0,
                "exit_code": code,
                "outcome": result.outcome,
                "cause": result.cause,
                "out_dir": str(out),
                "spots": plan.spots,
                "left_partial": plan.left_partial,
                "pulses": result.pulses,
            }
        )
    raise typer.Exit(code)
