"""An output folder checked before any work starts: a command that runs sessions for minutes must not find
at the end that it cannot write its results (the runs would be lost)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from plasmactl.inputs import InputError


def ensure_out_dir(path: Path) -> None:
    """Create ``path`` if needed and prove a file can be written in it; InputError naming why not."""
    if path.exists() and not path.is_dir():
        raise InputError(str(path), ["--out exists and is not a folder"])
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(path), [f"--out cannot be created: {exc.strerror}"]) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
    except OSError as exc:
        raise InputError(str(path), [f"--out is not writable: {exc.strerror}"]) from None
    os.close(fd)
    Path(probe).unlink()
