"""``plasmactl campaign``: the systematic fault campaign (plasmactl.campaign_table) as a command, with a
progress bar, on the local cores or a dask.distributed cluster. Exit 0 when every row holds (no pulse after a
latching trip, nothing lost, no spot over plan, no broken invariant), 3 when one does not, 2 for bad input."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from plasmactl.cli_output import Output
from plasmactl.cli_paths import folder
from plasmactl.cli_progress import reporter
from plasmactl.inputs import InputError
from plasmactl.out_dir import ensure_out_dir
from plasmactl.parallel import SchedulerUnreachable

EXIT_OK, EXIT_BAD_INPUT, EXIT_BROKEN = 0, 2, 3


def register(app: typer.Typer) -> None:
    app.command()(campaign)


def campaign(
    transport: Annotated[str, typer.Option(help="inprocess, tcp, or both: inprocess,tcp.")] = "inprocess,tcp",
    out: Annotated[Path, typer.Option(parser=folder, help="Folder for campaign.csv and campaign.md.")] = Path(
        "out/campaign"
    ),
    workers: Annotated[int | None, typer.Option(min=1, help="Local processes (default: all cores).")] = None,
    dask_scheduler: Annotated[
        str | None, typer.Option("--dask-scheduler", help="Run on a dask.distributed cluster at this address.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases (a quick look).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final line (stderr).")] = False,
) -> None:
    """Every fault kind at every moment of the pulse cycle, per transport: a table of how each session ended."""
    from plasmactl import campaign_table as ct

    output = Output(quiet=quiet)
    err = output.err
    transports = tuple(t.strip() for t in transport.split(",") if t.strip())
    if not transports or set(transports) - set(ct.TRANSPORTS) or len(set(transports)) != len(transports):
        err.print(f"error: --transport {transport!r}: give inprocess, tcp or inprocess,tcp", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        ensure_out_dir(out)  # before the runs: a folder that cannot be written would lose them all
    except InputError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    total = ct.case_count(transports, limit)
    where = f"dask at {dask_scheduler}" if dask_scheduler else f"{workers or 'all'} local processes"
    output.info(f"plasmactl campaign: {total} sessions on {', '.join(transports)}, {escape(where)}")
    progress = reporter(err, title="campaign", unit="session", total=total, enabled=not quiet)
    command = "plasmactl campaign --transport " + ",".join(transports) + (f" --limit {limit}" if limit else "")
    try:
        with progress:
            rows = ct.run_campaign(
                transports,
                workers=workers,
                dask_scheduler=dask_scheduler,
                progress=lambda done, _total: progress.update(done),
                only=limit,
            )
    except SchedulerUnreachable as exc:  # nothing ran: bad input, said in one line
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    csv_path, md_path = ct.write(rows, out, command)
    broken = [r for r in rows if not r.holds]
    output.final(
        f"wrote {shlex.quote(str(csv_path))} and {shlex.quote(str(md_path))}: {len(rows)} sessions", markup=False
    )
    for r in broken[:10]:
        output.error(
            f"[bold red]broken:[/] {r.transport} {r.fault} at {r.moment}: "
            + ", ".join(f"{c}={getattr(r, c)}" for c in ct.MUST_BE_ZERO if getattr(r, c))
        )
    if broken:
        raise typer.Exit(EXIT_BROKEN)
