"""Opening a file a user names (a plan, a rig, a fault scenario, an audit log) without hanging on it.

A path can name anything: a FIFO blocks ``open()`` until a writer comes (and a read until it writes), a
character device such as ``/dev/zero`` never ends (a read of it whole exhausts memory). Every such path is
stat'ed and refused before it is opened; the open itself is non-blocking (a path swapped for a FIFO in
between cannot hang it) and the descriptor is fstat'ed again, so what is read is the regular file checked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

# Plan, rig and fault files are TOML a person writes: a plan with 100,000 spots as a points list is a few
# MB, so 64 MiB is far over any real one and still far under what a read into memory can afford.
TOML_LIMIT = 64 * 1024 * 1024
# A summary.json is a few kB to a few MB (the dose ledger of every spot).
SUMMARY_LIMIT = 256 * 1024 * 1024
# An audit log is read whatever its length (a session's own record; its size is what was written): None.
LOG_LIMIT: int | None = None

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class BadFile(Exception):
    """The path is not a regular file, or one too large to read; the message says which (without the path)."""


def _refuse_unless_regular(mode: int, path: str) -> None:
    """IsADirectoryError for a folder (callers name it their own way), BadFile for any other non-regular file."""
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file of a known type")
        raise BadFile(f"not a regular file ({kind})")


def _refuse_too_large(size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise BadFile(f"too large ({size} bytes; the limit is {limit})")


def open_regular(path: str | Path, limit: int | None = None) -> BinaryIO:
    """``path`` opened for reading, once it is known to be a regular file (of at most ``limit`` bytes).

    Raises the OSError of the path (FileNotFoundError, IsADirectoryError, PermissionError ...) or BadFile."""
    name = str(path)
    _refuse_unless_regular(Path(name).stat().st_mode, name)  # before any open: opening a device can act on it
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(st.st_mode, name)
        _refuse_too_large(st.st_size, limit)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file, refused (BadFile) if it is not one or holds more than ``limit`` bytes."""
    with open_regular(path, limit) as f:
        if limit is None:
            return f.read()
        data = f.read(limit + 1)  # a file that grew since its fstat (or reports no size) is cut off here
    if len(data) > limit:
        raise BadFile(f"too large (over {limit} bytes; the limit is {limit})")
    return data
