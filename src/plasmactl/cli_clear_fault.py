"""``plasmactl clear-fault RIG``: the operator clears the generator's latched fault (see
:mod:`plasmactl.drivers.clear_fault`). Exit 0 when no fault is latched afterwards, 3 when one still is or the
device could not be reached or claimed, 2 for a bad rig file or a rig whose generator is not on a wire."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from plasmactl.inputs import InputError
from plasmactl.ports import DeviceError
from plasmactl.rig import load_rig

EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_CLEARED = 0, 2, 3  # as in plasmactl.cli


def register(app: typer.Typer) -> None:
    app.command("clear-fault")(clear_fault)


def clear_fault(
    rig: Annotated[Path, typer.Argument(help="Rig file (TOML) of devices that stay up (real, or serve-sim).")],
) -> None:
    """Clear a fault the generator has latched (lost heartbeat, pulse limit, E-stop), once its cause is known.

    A spawned serve-sim starts without a fault each run: use this with devices that stay up."""
    err = Console(stderr=True, highlight=False)
    try:
        the_rig, _ = load_rig(str(rig))
    except InputError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if the_rig.serve is not None and the_rig.serve.spawn:
        err.print("[red]error:[/red] this rig spawns its own serve-sim, which starts without a fault; nothing to clear")
        raise typer.Exit(EXIT_BAD_INPUT)
    from plasmactl import clock as clockmod
    from plasmactl.drivers.clear_fault import clear_generator_fault

    try:
        cleared = clockmod.run(clear_generator_fault(the_rig), virtual=False)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except DeviceError as exc:
        err.print(f"[red]not cleared:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_NOT_CLEARED) from None
    out = Console(highlight=False)
    if cleared.fault_before == 0:
        out.print("plasma: no fault latched")
    elif cleared.ok:
        out.print(f"plasma: fault code {cleared.fault_before} cleared")
    else:
        err.print(f"[red]plasma: fault code {cleared.fault_after} still latched after the reset[/red]")
        raise typer.Exit(EXIT_NOT_CLEARED)
