"""The commands that work from a finished (or cut) session's record alone: ``plasmactl report RUN_DIR`` (a
self-contained HTML page) and ``plasmactl summary RUN_DIR`` (summary.json rebuilt from the log).

Bad input (a missing folder, no events.jsonl, a file that is not an audit log, a folder that cannot be
written) is one ``error:`` line on stderr and exit 2, never a traceback; warnings (a torn last line dropped,
no session_end) go to stderr too, and what was written is said on stdout. Heavy imports (matplotlib, the
ledger) are made inside the commands, so ``plasmactl --help`` stays quick.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plasmactl.session_files import REPORT_NAME

EXIT_OK, EXIT_BAD_INPUT = 0, 2  # as in plasmactl.cli
EXIT_CHAIN_BROKEN = 3  # as plasmactl verify-log

RunDir = Annotated[
    Path, typer.Argument(metavar="RUN_DIR", help="A session's output folder (the one holding events.jsonl).")
]
T = TypeVar("T")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("summary")(summary)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(err: Console, message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _warn(err: Console, warnings: list[str]) -> None:
    for warning in warnings:
        err.print(f"warning: {escape(warning)}")


def report(run_dir: RunDir) -> None:
    """Write RUN_DIR/report.html from RUN_DIR/events.jsonl: skin temperature, cooling delays, the dose map,
    tissue results, the interlock timeline, the summary, the plan, rig and devices, and the chain check.

    Exit 0 when written (a broken chain is shown in the report and warned about), 2 for bad input."""
    from plasmactl import report_html, report_plots
    from plasmactl.report_data import build_report_data
    from plasmactl.run_log import LogError, read_run_log
    from plasmactl.summary_rebuild import write_atomically

    err = _stderr()
    progress = Progress(
        TextColumn("[bold]report[/] {task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("reading the log", total=8)

    def step(description: str, work: Callable[[], T]) -> T:
        progress.update(task, description=description)
        result = work()
        progress.advance(task)
        return result

    target = run_dir / REPORT_NAME
    try:
        with progress:
            log = step("reading the log", lambda: read_run_log(run_dir))
            data = step("summarising", lambda: build_report_data(log))
            plots = {
                "skin": step("skin temperature", lambda: report_plots.skin_temperature(data)),
                "cooling": step("cooling delays", lambda: report_plots.cooling_delays(data)),
                "dose": step("dose map", lambda: report_plots.dose_map(data)),
                "tissue": step("tissue", lambda: report_plots.tissue_by_depth(data)),
            }
            page = step("the page", lambda: report_html.render(data, plots))
            step("writing", lambda: write_atomically(target, page))
    except LogError as exc:
        raise _fail(err, str(exc)) from None
    _warn(err, log.warnings)
    if not log.chain.ok:
        _warn(err, [f"{log.path}: {data.chain} (shown in the report)"])
    sys.stdout.write(f"wrote {target}\n")
    raise typer.Exit(EXIT_OK)


def summary(run_dir: RunDir) -> None:
    """Rebuild RUN_DIR/summary.json from RUN_DIR/events.jsonl (e.g. after a crash or SIGKILL left none).

    A torn last line is dropped with a warning naming it; a log without session_end gives a summary that
    says so. Exit 0 when written, 2 for bad input, 3 when the log does not verify (summary.json is then left
    as it is: its anchor is what shows the change)."""
    from plasmactl.run_log import LogError
    from plasmactl.summary_rebuild import ChainBroken, rebuild_summary

    err = _stderr()
    try:
        rebuilt = rebuild_summary(run_dir)
    except LogError as exc:
        raise _fail(err, str(exc)) from None
    except ChainBroken as exc:
        raise _fail(err, str(exc), EXIT_CHAIN_BROKEN) from None
    _warn(err, rebuilt.log.warnings)
    records = rebuilt.summary["log"]["records"]
    sys.stdout.write(f"wrote {rebuilt.path} ({records} records; outcome: {rebuilt.summary['outcome']})\n")
    raise typer.Exit(EXIT_OK)
