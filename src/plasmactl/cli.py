"""The ``plasmactl`` command line.

Exit codes: 0 complete; 4 the plan ran to its end but some spot is not as planned (a pulse cut by a
pause is never fired again: see the ledger in summary.json); 3 ended in a fault, trip or E-stop (safe state
reached); 2 bad input; 130 interrupted (SIGINT), 143 terminated (SIGTERM); 1 internal error.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plasmactl import cli_tools
from plasmactl.budget import budget_line, budget_problems, cooling_budget
from plasmactl.faults import FaultScenario, check_against_plan, load_faults
from plasmactl.inputs import InputError
from plasmactl.out_dir import ensure_out_dir
from plasmactl.plan import load_plan
from plasmactl.ports import SessionResult
from plasmactl.rig import load_rig
from plasmactl.session import SessionInputs, run_blocking

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_SAFE_STOP, EXIT_INCOMPLETE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Control a plasma-pulse / cold-spray treatment rig (simulated or real).",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)


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


# Events shown in the default stream (everything is in the audit log; --verbose shows all of it).
NOTABLE = frozenset(
    {
        "self_test",
        "interlock_trip",
        "plasma_off",
        "plasma_disarm",
        "fault",
        "estop",
        "cooling_missed",
        "comm_error",
        "warning",
        "abort",
        "resume",
        "reset",
        "controller_error",
        "safety_input",
        "tissue_error",
        "session_end",
    }
)


def load_inputs(plan: Path, rig: Path | None, faults: Path | None, seed: int) -> SessionInputs:
    p, pf = load_plan(str(plan))
    r, rf = load_rig(str(rig) if rig else None)
    f, ff = (FaultScenario(), None) if faults is None else load_faults(str(faults))
    problems = check_against_plan(f, p.pulse_count, p.limits.max_session_s)
    if problems:
        raise InputError(str(faults), problems)
    combination = budget_problems(p, r)
    if combination:
        raise InputError(f"{plan} on {rig if rig else 'the default rig'}", combination)
    return SessionInputs(plan=p, plan_file=pf, rig=r, rig_file=rf, faults=f, faults_file=ff, seed=seed)


def _bad_input(exc: InputError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(exc.source)}:", markup=True, soft_wrap=True)
    for problem in exc.problems:
        err.print(f"  - {problem}", markup=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _describe(e: Mapping[str, Any]) -> str:
    hidden = ("t", "event", "plan", "rig", "faults", "prev_sha256")  # the chain's hash stays in the log
    fields = " ".join(f"{k}={v}" for k, v in e.items() if k not in hidden)
    return f"{e['t']:10.3f}s  {e['event']:<15} {fields}"


def exit_code(result: SessionResult) -> int:
    if result.internal_error:
        return EXIT_INTERNAL
    if result.outcome == "complete":
        return EXIT_OK
    if result.outcome == "incomplete":
        return EXIT_INCOMPLETE
    if result.outcome == "aborted" and result.cause == "operator interrupt":
        return EXIT_TERMINATED if result.signal == "SIGTERM" else EXIT_INTERRUPTED
    return EXIT_SAFE_STOP


@app.command()
def run(
    plan: Annotated[Path, typer.Argument(help="Plan file (TOML).")],
    rig: Annotated[Path | None, typer.Option(help="Rig file (TOML); default: in-process simulators.")] = None,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario (TOML).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default out/<plan>-<time>).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the simulated devices.")] = 0,
    realtime: Annotated[bool, typer.Option(help="Run on the real clock instead of virtual time.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Allow an --out folder that already holds a log.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every event.")] = False,
) -> None:
    """Run a treatment session; leaves OUT/events.jsonl and OUT/summary.json."""
    try:
        inputs = load_inputs(plan, rig, faults, seed)
    except InputError as exc:
        raise _bad_input(exc) from None
    out_dir = out if out is not None else Path("out") / f"{plan.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out_dir / "events.jsonl").exists() and not overwrite:
        raise _bad_input(
            InputError(
                str(out_dir),
                ["already holds a session's events.jsonl; choose another --out or pass --overwrite"],
            )
        )
    try:
        ensure_out_dir(out_dir)
    except InputError as exc:
        raise _bad_input(exc) from None

    console = Console(highlight=False, soft_wrap=True)
    if not inputs.rig.virtual_time_ok and not realtime:
        console.print("note: a rig with devices on wires runs on the real clock (--realtime)")
        realtime = True
    total = inputs.plan.pulse_count
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("session {task.fields[t]:>8.1f} s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(escape(inputs.plan.name), total=total, t=0.0)

    def show(e: Mapping[str, Any]) -> None:
        name = e["event"]
        if name == "pulse_end":
            progress.update(task, completed=e["pulse"], t=e["t"])
        if (
            verbose
            or name in NOTABLE
            or (name == "state" and e.get("dest") in ("paused", "fault", "estop", "complete"))
        ):
            style = (
                "bold red" if name in ("interlock_trip", "fault", "estop", "controller_error", "tissue_error") else ""
            )
            progress.console.print(_describe(e), style=style, markup=False, soft_wrap=True)

    console.print(
        f"plasmactl: plan [bold]{escape(inputs.plan.name)}[/] ({total} pulses), rig {escape(inputs.rig.name)},"
        f" {len(inputs.faults.fault)} fault(s), seed {seed}, {'real time' if realtime else 'virtual time'}"
        f" -> {out_dir}"
    )
    try:
        with progress:
            result = run_blocking(inputs, out_dir, realtime=realtime, listeners=(show,))
    except Exception as exc:  # noqa: BLE001 - the log already holds session_end; report and exit 1
        err.print(f"internal error: {type(exc).__name__}: {exc} (see {out_dir / 'events.jsonl'})")
        raise typer.Exit(EXIT_INTERNAL) from None
    finally:
        # the session is over (its record is closed): a signal now cannot change its outcome or exit code
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    code = exit_code(result)
    colour = "green" if code == 0 else "red"
    console.print(
        f"[{colour}]session {result.outcome}[/]"
        + (f" ({result.cause})" if result.cause else "")
        + f": {result.pulses} pulses, {result.sprays} sprays; log {out_dir / 'events.jsonl'},"
        f" summary {out_dir / 'summary.json'}"
    )
    _report_summary(console, out_dir)
    raise typer.Exit(code)


def _report_summary(console: Console, out_dir: Path) -> None:
    """What the summary says that a person must not miss: spots not delivered as planned, a physics error."""
    try:
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    ledger = summary.get("ledger") or {}
    under, over = ledger.get("spots_under_dosed", 0), ledger.get("spots_over_dosed", 0)
    if under or over:
        console.print(
            f"[red]dose ledger: {under} spot(s) under-dosed {ledger.get('under_dosed', [])[:20]},"
            f" {over} over-dosed {ledger.get('over_dosed', [])[:20]}[/]",
            highlight=False,
        )
    if summary.get("tissue_error"):
        console.print(f"[bold red]tissue physics failed:[/] {escape(str(summary['tissue_error']))}")


@app.command()
def check(
    plan: Annotated[Path, typer.Argument(help="Plan file (TOML).")],
    rig: Annotated[Path | None, typer.Option(help="Rig file (TOML).")] = None,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario (TOML).")] = None,
) -> None:
    """Validate a plan (and rig, faults) without running anything."""
    try:
        inputs = load_inputs(plan, rig, faults, 0)
    except InputError as exc:
        raise _bad_input(exc) from None
    p = inputs.plan
    lim = p.limits
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"ok: plan {escape(repr(p.name))}: {len(p.spots.positions())} spots x {p.pulse.pulses_per_spot}"
        f" = {p.pulse_count} pulses"
        f" of {p.pulse.energy_j:g} J / {p.pulse.pulse_ms:g} ms ({p.fluence_j_cm2:.1f} J/cm2 on"
        f" {p.spots.diameter_mm:g} mm), about {p.estimated_session_s() / 60:.1f} min;"
        f" cooling {p.cooling.spray_ms:g} ms after every {p.cooling.when};"
        f" max cooling delay {lim.max_cooling_delay_ms:g} ms, skin limit {lim.skin_temp_max_c:g} C;"
        f" rig {escape(repr(inputs.rig.name))}; {len(inputs.faults.fault)} fault(s)"
    )
    console.print(pulse_bound_line(inputs))
    console.print(budget_line(cooling_budget(p, inputs.rig)))


def pulse_bound_line(inputs: SessionInputs) -> str:
    """What holds a stuck-on output on this rig: the software pulse bound where the link allows it, else
    the generator's own dose monitor (always set to the plan's energy + tolerance)."""
    p, lim = inputs.plan, inputs.plan.limits
    lat = inputs.rig.pulse_latencies_s()
    bound_ms = lim.pulse_bound_s(p.pulse.pulse_ms, lat.fire_s, lat.off_s, lat.detect_s) * 1000.0
    worst = lim.stuck_on_pct(p.pulse.pulse_ms, lat.fire_s, lat.off_s, lat.detect_s, lat.earliest_start_s)
    line = (
        f"pulse bound: a pulse still on {bound_ms:.2f} ms after its fire command is cut; the generator's energy"
        f" limit is set to {lim.energy_limit_j(p.pulse.energy_j):g} J (+{lim.energy_tolerance_pct:g} %)"
    )
    if worst > 100.0 + lim.energy_tolerance_pct + 1e-6:
        line += (
            f". On this rig's link a stuck-on output at the set power could deliver up to {worst:.0f} % before the"
            f" software bound cuts it: the generator's energy limit is what holds the dose"
        )
    return line


@app.command()
def sweep(
    plan: Annotated[Path, typer.Argument(help="Plan file (TOML); keep it short: every combination runs it.")],
    vary: Annotated[
        list[str],
        typer.Option(
            help="NAME=start:stop:step or NAME=v1,v2 (repeat). cooling_delay_ms, a plan field, or a skin field."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output folder for sweep.csv and sweep.png.")],
    rig: Annotated[Path | None, typer.Option(help="Rig file (TOML); must be all simulators.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
    workers: Annotated[int | None, typer.Option(min=1, help="Local processes (default: all cores).")] = None,
    dask_scheduler: Annotated[
        str | None, typer.Option("--dask-scheduler", help="Run on a dask.distributed cluster at this address.")
    ] = None,
) -> None:
    """Run a plan over a grid of parameters and tabulate the tissue results (CSV + PNG)."""
    from plasmactl.sweep import parse_axes, run_sweep

    try:
        inputs = load_inputs(plan, rig, None, seed)
        if not inputs.rig.all_simulated:
            raise InputError(str(rig), ["a sweep runs on simulators only: every device kind must be 'sim'"])
        axes = parse_axes(vary, inputs.plan)
        if (out / "sweep.csv").exists():
            raise InputError(str(out), ["already holds a sweep.csv; choose another --out"])
        ensure_out_dir(out)  # before the runs: a folder that cannot be written would lose them all
    except InputError as exc:
        raise _bad_input(exc) from None
    total = 1
    for axis in axes:
        total *= len(axis.values)
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"plasmactl sweep: plan {escape(repr(inputs.plan.name))}, {total} combinations of "
        + ", ".join(f"{a.name} ({len(a.values)})" for a in axes)
        + (f", on dask at {dask_scheduler}" if dask_scheduler else f", on {workers or 'all'} local processes")
    )
    progress = Progress(
        TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    task = progress.add_task("sweep", total=total)
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
                progress=lambda done, _total: progress.update(task, completed=done),
            )
    except InputError as exc:
        raise _bad_input(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    faulted = sum(1 for r in rows if r["outcome"] != "complete")
    console.print(f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'} ({len(rows)} rows, {faulted} ended early)")


cli_tools.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
