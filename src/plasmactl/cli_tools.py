"""The commands around a session: probing a rig, serving the simulators, verifying a session's audit log,
and the generated documents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from plasmactl.cli_output import JsonCommand, bad_input_json, write_json
from plasmactl.inputs import InputError
from plasmactl.out_dir import ensure_out_file
from plasmactl.rig import load_rig

EXIT_OK, EXIT_BAD_INPUT, EXIT_UNHEALTHY = 0, 2, 3
EXIT_CHAIN_BROKEN = 3  # verify-log: other tools are written against 0 / 2 / 3 and "chain intact: N records"


def register(app: typer.Typer) -> None:
    app.command(cls=JsonCommand)(probe)
    app.command()(diagram)
    app.command("serve-sim")(serve_sim)
    app.command("verify-log")(verify_log)
    app.command()(contracts)
    from plasmactl import cli_campaign

    cli_campaign.register(app)
    from plasmactl import cli_sim_control

    cli_sim_control.register(app)
    from plasmactl import cli_clear_fault

    cli_clear_fault.register(app)


def probe(
    rig: Annotated[Path, typer.Argument(help="Rig file (TOML); a \\[serve] section is served for the probe.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout, the table on stderr.")
    ] = False,
    reads: Annotated[int, typer.Option(min=1, max=1000, help="Identity reads per device for the round trip.")] = 5,
) -> None:
    """Read every device of a rig (identity, state, fault code, round trip) without writing anything.

    Exit 0 when every device answers and is the one the rig expects, 3 otherwise, 2 for a bad rig file."""
    err = Console(stderr=True, highlight=False)
    try:
        the_rig, _ = load_rig(str(rig))
    except InputError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        if json_output:
            write_json({"rig": str(rig), **bad_input_json(exc.source, exc.problems)})
        raise typer.Exit(EXIT_BAD_INPUT) from None
    from plasmactl import clock as clockmod
    from plasmactl.probe_rig import ProbeFailed, probe_with_serving

    try:
        reports = clockmod.run(probe_with_serving(the_rig, reads), virtual=False)
    except ProbeFailed as exc:  # no device could be asked: the rig is not healthy (3), its file was fine
        err.print(f"[red]error:[/red] {escape(str(rig))}: {escape(str(exc))}", soft_wrap=True)
        if json_output:
            write_json({"rig": str(rig), "ok": False, "exit_code": EXIT_UNHEALTHY, "problem": str(exc), "devices": []})
        raise typer.Exit(EXIT_UNHEALTHY) from None
    healthy = all(r["ok"] for r in reports)
    out = Console(stderr=json_output, highlight=False)
    out.print(_table(str(rig), reports))
    out.print("every device answers and matches" if healthy else "[red]not every device answers and matches[/red]")
    if json_output:
        sys.stdout.write(json.dumps({"rig": str(rig), "ok": healthy, "devices": reports}) + "\n")
    raise typer.Exit(EXIT_OK if healthy else EXIT_UNHEALTHY)


def _table(title: str, reports: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("device", "where", "identity", "state", "round trip ms", "result"):
        table.add_column(column)
    for r in reports:
        ident = r["identity"] or {}
        identity = (
            f"{ident.get('vendor')}/{ident.get('model')} fw {ident.get('firmware')} map v{ident.get('map_version')}"
            + (f" sn {ident['serial']}" if "serial" in ident else "")
            if ident
            else ""
        )
        state = " ".join(f"{k}={v}" for k, v in r["status"].items())
        rt = r["round_trip_ms"]
        trip = f"{rt['median']:.1f} (max {rt['max']:.1f}, n {rt['n']})" if rt else ""
        result = "[green]ok[/green]" if r["ok"] else f"[red]{escape(r['problem'] or 'failed')}[/red]"
        table.add_row(
            r["device"], escape(f"{r['kind']} {r['endpoint']}"), escape(identity), escape(state), trip, result
        )
    return table


def diagram(
    write: Annotated[Path | None, typer.Option(help="Write the Markdown file here instead of printing.")] = None,
) -> None:
    """Print (or write) the state machine's Mermaid diagram, generated from its table."""
    _check_writable(write)
    from plasmactl.controller.machine import diagram_markdown

    _print_or_write(diagram_markdown(), write)


def serve_sim(
    modbus_tcp: Annotated[
        str | None, typer.Option("--modbus-tcp", help="HOST:PORT for every Modbus device (unit ids 1, 2).")
    ] = None,
    modbus_rtu: Annotated[
        str | None,
        typer.Option(
            "--modbus-rtu", help="Serve one RTU bus on this port; 'pty' (or no value given) creates a pty pair."
        ),
    ] = None,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Serve the thermometer on this port; 'pty' creates a pty pair.")
    ] = None,
    baud: Annotated[
        int, typer.Option(min=300, max=4_000_000, help="Simulated wire speed (replies are paced).")
    ] = 115200,
    json_output: Annotated[bool, typer.Option("--json", help="Print where each device is as one JSON line.")] = False,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario, wire faults included (TOML).")] = None,
    rig: Annotated[Path | None, typer.Option(help="Rig file for the simulators' own settings.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
    lifeline: Annotated[
        bool, typer.Option("--lifeline", help="Also stop when standard input closes (the spawning process is gone).")
    ] = False,
    control: Annotated[
        str | None,
        typer.Option(
            "--control",
            metavar="HOST:PORT",
            help="Also serve the control channel there (JSON lines: inject and clear faults, read the state;"
            " plasmactl sim-control talks to it).",
        ),
    ] = None,
) -> None:
    """Serve the simulated devices on real wires (Modbus TCP, Modbus RTU on a pty, serial) until Ctrl-C.

    With no transport given: Modbus TCP on 127.0.0.1:5020 and the thermometer on a pty. Servers bind loopback
    unless an address given says otherwise."""
    from plasmactl.simulators.served import serve_sim_main

    def flag(value: str | None) -> str | bool:
        return False if value is None else (True if value in ("", "pty") else value)

    code = serve_sim_main(
        modbus_tcp=modbus_tcp,
        modbus_rtu=flag(modbus_rtu),
        serial=flag(serial),
        baud=baud,
        json_output=json_output,
        faults=str(faults) if faults else None,
        seed=seed,
        rig=str(rig) if rig else None,
        lifeline=lifeline,
        control=control,
    )
    raise typer.Exit(code)


def verify_log(
    log: Annotated[Path, typer.Argument(help="A session's events.jsonl (a summary.json beside it is its anchor).")],
) -> None:
    """Verify a session's audit log: every line's prev_sha256, the genesis from the plan, rig and fault files
    the first line names, and the end against summary.json's anchor when one sits beside the log.

    Prints ``chain intact: N records`` and exits 0, or names the first bad line and exits 3; 2 for a missing
    file or one that is not an audit log. A torn last line (a crash mid-write) is ignored and said so."""
    from plasmactl.log_chain import NotALog, verify_file

    try:
        report = verify_file(log, files=True)
    except NotALog as exc:
        Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if report.problem is not None:
        before = report.problem.line - 1
        sys.stdout.write(f"{report.problem}\n")
        sys.stdout.write(
            f"chain broken: lines 1 to {before} verify\n" if before else "chain broken at its first line\n"
        )
        raise typer.Exit(EXIT_CHAIN_BROKEN)
    sys.stdout.write(f"chain intact: {report.records} records\n")
    if report.anchored:
        sys.stdout.write("summary.json's anchor matches (records and last line)\n")
    for note in report.notes:
        sys.stdout.write(f"note: {note}\n")
    for line in report.files:
        sys.stdout.write(f"input: {line}\n")
    raise typer.Exit(EXIT_OK)


def contracts(
    write: Annotated[Path | None, typer.Option(help="Write the Markdown file here instead of printing.")] = None,
) -> None:
    """Print (or write) the devices' register maps and line protocol, generated from their declarations."""
    _check_writable(write)
    from plasmactl.drivers.contracts_doc import contracts_markdown

    _print_or_write(contracts_markdown(), write)


def _check_writable(write: Path | None) -> None:
    """Before generating anything: a ``--write`` path that cannot be written is bad input (exit 2)."""
    if write is None:
        return
    try:
        ensure_out_file(write)
    except InputError as exc:
        Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _print_or_write(text: str, write: Path | None) -> None:
    """A generated document to stdout, or to ``write`` (an unwritable path is bad input, exit 2)."""
    if write is None:
        sys.stdout.write(text)
        return
    try:
        write.write_text(text, encoding="utf-8")
    except OSError as exc:
        Console(stderr=True, highlight=False).print(f"[red]error:[/red] cannot write {escape(str(write))}: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
