"""Output paths checked before any work starts: a command that runs sessions for minutes must not find at
the end that it cannot write its results (the runs would be lost), and a refused path is named with why."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from plasmactl.inputs import InputError


def ensure_out_dir(path: Path, option: str = "--out") -> None:
    """Create ``path`` if needed and prove a file can be written in it; InputError naming why not."""
    try:
        if path.exists() and not path.is_dir():
            raise InputError(str(path), [f"{option} exists and is not a folder"])
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(path), [f"{option} cannot be created: {exc.strerror or exc}"]) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
    except OSError as exc:
        raise InputError(str(path), [f"{option} is not writable: {exc.strerror or exc}"]) from None
    os.close(fd)
    Path(probe).unlink()


def ensure_out_file(path: Path, option: str = "--write") -> None:
    """Prove ``path`` can be written (its folder exists, it is not a folder, the file opens for writing)
    without changing a file already there; InputError naming why not."""
    try:
        if path.is_dir():
            raise InputError(str(path), [f"{option} is a folder; give a file name"])
        parent = path.parent
        if not parent.exists():
            raise InputError(str(path), [f"{option}: its folder {parent} does not exist"])
        if not parent.is_dir():
            raise InputError(str(path), [f"{option}: {parent} is not a folder"])
        existed = path.exists()
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise InputError(str(path), [f"{option} is not writable: {exc.strerror or exc}"]) from None
