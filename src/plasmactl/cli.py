"""The ``plasmactl`` command line.

Exit codes: 0 complete; 4 the plan ran to its end but some spot is not as planned (a pulse cut by a
pause is never fired again: see the ledger in summary.json); 3 ended in a fault, trip or E-stop (safe state
reached); 2 bad input; 130 interrupted (SIGINT), 143 terminated (SIGTERM), 129 SIGHUP, 131 SIGQUIT; 1 internal error.

Conventions of every command: ``-h`` is ``--help``; bad input (a file, an argument, an output path that
cannot be written) is refused before any work starts, with exit 2 and a message naming it, never a
traceback. ``run``, ``check`` and ``probe`` take ``--json`` (one JSON object on stdout, the rest on stderr);
``run`` takes ``--quiet`` and ``--log-level`` for its event stream, and shows its progress on stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from plasmactl import cli_check, cli_monitor, cli_replay, cli_report, cli_resume, cli_sweep, cli_tools
from plasmactl.cli_inputs import load_inputs
from plasmactl.cli_output import NOTABLE, RED_EVENTS, JsonCommand, LogLevel, Output, console_level, write_json
from plasmactl.cli_paths import folder
from plasmactl.cli_progress import follow_spots, reporter
from plasmactl.console_format import describe, printable
from plasmactl.inputs import InputError
from plasmactl.out_dir import OutDirHold, clear_session_files, ensure_out_dir, ensure_room, hold_out_dir
from plasmactl.ports import SessionResult
from plasmactl.session import run_blocking
from plasmactl.session_files import LOG_NAME, SUMMARY_NAME
from plasmactl.stop_signals import STOP_SIGNALS, exit_code_of

__all__ = ["NOTABLE", "app", "exit_code", "load_inputs", "main"]

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_SAFE_STOP, EXIT_INCOMPLETE = 0, 1, 2, 3, 4

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Control a plasma-pulse / cold-spray treatment rig (simulated or real).",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _print_version(value: bool) -> None:
    if value:
        from plasmactl.version import VERSION

        typer.echo(f"plasmactl {VERSION}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Control a plasma-pulse / cold-spray treatment rig (simulated or real)."""


def exit_code(result: SessionResult) -> int:
    if result.internal_error:
        return EXIT_INTERNAL
    if result.outcome == "complete":
        return EXIT_OK
    if result.outcome == "incomplete":
        return EXIT_INCOMPLETE
    if result.outcome == "aborted" and result.cause == "operator interrupt":
        return exit_code_of(result.signal)
    return EXIT_SAFE_STOP


@app.command(cls=JsonCommand)
def run(
    plan: Annotated[Path, typer.Argument(help="Plan file (TOML).")],
    rig: Annotated[Path | None, typer.Option(help="Rig file (TOML); default: in-process simulators.")] = None,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario (TOML).")] = None,
    out: Annotated[Path | None, typer.Option(parser=folder, help="Output folder (default out/<plan>-<time>).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the simulated devices.")] = 0,
    realtime: Annotated[bool, typer.Option(help="Run on the real clock instead of virtual time.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Allow an --out folder that already holds a log.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every event (--log-level debug).")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and the final line, on stderr; no progress.")
    ] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            case_sensitive=False,
            help="Events the stream shows: debug (all), info (default), warning, error.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout (outcome, exit code, summary); text on stderr.")
    ] = False,
    live: Annotated[
        bool, typer.Option("--live", help="Show the live dashboard in this terminal (a: abort; q: close at the end).")
    ] = False,
) -> None:
    """Run a treatment session; leaves OUT/events.jsonl and OUT/summary.json."""
    output = Output(json_mode=json_output, quiet=quiet, level=console_level(verbose, quiet, log_level))
    try:
        inputs = load_inputs(plan, rig, faults, seed)
    except InputError as exc:
        raise output.bad_input(exc) from None
    out_dir = out if out is not None else Path("out") / f"{plan.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    hold: OutDirHold | None = None
    try:
        if live and not sys.stdout.isatty():
            raise InputError("--live", ["the dashboard needs a terminal (stdout is not one)"])
        ensure_out_dir(out_dir)
        ensure_room(out_dir, inputs.plan.pulse_count)
        hold = hold_out_dir(out_dir)  # before looking at what it holds: of two runs into one folder, one runs
        if (out_dir / LOG_NAME).exists() and not overwrite:
            raise InputError(
                str(out_dir), ["already holds a session's events.jsonl; choose another --out or pass --overwrite"]
            )
        if overwrite:
            clear_session_files(out_dir)
    except InputError as exc:
        if hold is not None:
            hold.release()
        raise output.bad_input(exc) from None

    if not inputs.rig.virtual_time_ok and not realtime:
        output.info("note: a rig with devices on wires runs on the real clock (--realtime)")
        realtime = True
    total = inputs.plan.pulse_count
    output.info(
        f"plasmactl: plan [bold]{escape(printable(inputs.plan.name))}[/] ({total} pulses),"
        f" rig {escape(printable(inputs.rig.name))},"
        f" {len(inputs.faults.fault)} fault(s), seed {seed}, {'real time' if realtime else 'virtual time'}"
        f" -> {escape(str(out_dir))}"
    )
    progress = reporter(
        output.err,
        title=inputs.plan.name,
        unit="spot",
        total=total,
        shown_total=inputs.plan.spots.count,
        session_time=True,
        enabled=not quiet,
    )
    advance = follow_spots(progress)

    def show(e: Mapping[str, Any]) -> None:
        advance(e)
        if output.shows(e):
            style = "bold red" if e["event"] in RED_EVENTS else ""
            output.human.print(describe(e), style=style, markup=False, soft_wrap=True)

    try:
        if live:  # the session in a thread of its own, the dashboard here (plasmactl.live_run)
            from plasmactl.live_run import run_live

            result = run_live(inputs, out_dir, realtime=realtime)
        else:
            with progress:
                result = run_blocking(inputs, out_dir, realtime=realtime, listeners=(show,))
    except Exception as exc:  # noqa: BLE001 - the log already holds session_end; report and exit 1
        error = f"internal error: {type(exc).__name__}: {exc}"
        output.err.print(f"{error} (see {out_dir / 'events.jsonl'})", markup=False)
        if json_output:
            write_json({"ok": False, "exit_code": EXIT_INTERNAL, "error": error, "out_dir": str(out_dir)})
        raise typer.Exit(EXIT_INTERNAL) from None
    finally:
        # the session is over (its record is closed): a signal now cannot change its outcome or exit code
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        hold.release()
    code = exit_code(result)
    colour = "green" if code == 0 else "red"
    output.final(
        f"[{colour}]session {escape(result.outcome)}[/]"
        + (f" ({escape(result.cause)})" if result.cause else "")
        + f": {result.pulses} pulses, {result.sprays} sprays; log {escape(str(out_dir / 'events.jsonl'))},"
        f" summary {escape(str(out_dir / 'summary.json'))}"
    )
    summary = _read_summary(out_dir)
    _report_summary(output, summary)
    if json_output:
        write_json(
            {
                "ok": code == EXIT_OK,
                "exit_code": code,
                "outcome": result.outcome,
                "cause": result.cause,
                "signal": result.signal,
                "out_dir": str(out_dir),
                "pulses": result.pulses,
                "sprays": result.sprays,
                "summary": summary,
            }
        )
    raise typer.Exit(code)


def _read_summary(out_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((out_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _report_summary(output: Output, summary: dict[str, Any] | None) -> None:
    """What the summary says that a person must not miss: spots not delivered as planned, a physics error."""
    if summary is None:
        return
    ledger = summary.get("ledger") or {}
    under, over = ledger.get("spots_under_dosed", 0), ledger.get("spots_over_dosed", 0)
    if under or over:
        output.error(
            f"[red]dose ledger: {under} spot(s) under-dosed {ledger.get('under_dosed', [])[:20]},"
            f" {over} over-dosed {ledger.get('over_dosed', [])[:20]}[/]",
            highlight=False,
        )
    if summary.get("tissue_error"):
        output.error(f"[bold red]tissue physics failed:[/] {escape(str(summary['tissue_error']))}")


cli_check.register(app)
cli_sweep.register(app)
cli_tools.register(app)
cli_report.register(app)
cli_monitor.register(app)
cli_resume.register(app)
cli_replay.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
