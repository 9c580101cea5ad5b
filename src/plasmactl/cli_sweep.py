"""``plasmactl sweep``: a plan over a grid of parameters, each combination a whole simulated session, on
the local cores or a dask.distributed cluster; the tissue results tabulated (CSV + PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from plasmactl.cli_inputs import load_inputs
from plasmactl.cli_output import Output
from plasmactl.cli_paths import folder
from plasmactl.cli_progress import reporter
from plasmactl.inputs import InputError
from plasmactl.out_dir import ensure_out_dir
from plasmactl.parallel import SchedulerUnreachable

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130


def register(app: typer.Typer) -> None:
    app.command()(sweep)


def sweep(
    plan: Annotated[Path, typer.Argument(help="Plan file (TOML); keep it short: every combination runs it.")],
    vary: Annotated[
        list[str],
        typer.Option(
            help="NAME=start:stop:step or NAME=v1,v2 (repeat). cooling_delay_ms, a plan field, or a skin field."
        ),
    ],
    out: Annotated[Path, typer.Option(parser=folder, help="Output folder for sweep.csv and sweep.png.")],
    rig: Annotated[Path | None, typer.Option(help="Rig file (TOML); must be all simulators.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
    workers: Annotated[int | None, typer.Option(min=1, help="Local processes (default: all cores).")] = None,
    dask_scheduler: Annotated[
        str | None, typer.Option("--dask-scheduler", help="Run on a dask.distributed cluster at this address.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final line (stderr).")] = False,
) -> None:
    """Run a plan over a grid of parameters and tabulate the tissue results (CSV + PNG)."""
    from plasmactl.sweep import parse_axes, run_sweep

    output = Output(quiet=quiet)
    try:
        inputs = load_inputs(plan, rig, None, seed)
        if not inputs.rig.all_simulated:
            raise InputError(str(rig), ["a sweep runs on simulators only: every device kind must be 'sim'"])
        axes = parse_axes(vary, inputs.plan)
        if (out / "sweep.csv").exists():
            raise InputError(str(out), ["already holds a sweep.csv; choose another --out"])
        ensure_out_dir(out)  # before the runs: a folder that cannot be written would lose them all
    except InputError as exc:
        raise output.bad_input(exc) from None
    total = 1
    for axis in axes:
        total *= len(axis.values)
    output.info(
        f"plasmactl sweep: plan {escape(repr(inputs.plan.name))}, {total} combinations of "
        + ", ".join(f"{a.name} ({len(a.values)})" for a in axes)
        + (f", on dask at {dask_scheduler}" if dask_scheduler else f", on {workers or 'all'} local processes")
    )
    progress = reporter(output.err, title="sweep", unit="combination", total=total, enabled=not quiet)
    try:
        with progress:
            rows = run_sweep(
                inputs.plan,
                inputs.rig,
                axes,
                out,
                seed=seed,
                workers=workers,
                dask_scheduler=dask_scheduler,
                progress=lambda done, _total: progress.update(done),
            )
    except InputError as exc:
        raise output.bad_input(exc) from None
    except SchedulerUnreachable as exc:  # nothing ran: bad input, said in one line
        output.err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    faulted = sum(1 for r in rows if r["outcome"] != "complete")
    output.final(
        f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'} ({len(rows)} rows, {faulted} ended early)", markup=False
    )
