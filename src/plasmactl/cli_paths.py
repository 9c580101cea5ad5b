"""How the commands read a folder option (``--out``): an empty name is refused, not taken for the current
folder. ``--out "$OUT"`` with ``OUT`` unset gave ``Path("")``, which is ``.``: a session wrote its log and
summary into wherever the shell stood (and a name of only spaces made a folder no one could see in ``ls``)."""

from __future__ import annotations

from pathlib import Path

import typer


def folder(value: str) -> Path:
    """The folder named by an option's text; typer's BadParameter (exit 2, the option named) when it is empty."""
    if not value.strip():
        shown = "an empty name" if not value else f"a name of only spaces ({value!r})"
        raise typer.BadParameter(f"{shown}: give a folder (did a shell variable expand to nothing?)")
    return Path(value)
