"""Output paths checked before any work starts: a command that runs sessions for minutes must not find at
the end that it cannot write its results (the runs would be lost), and a refused path is named with why."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from plasmactl.inputs import InputError
from plasmactl.session_files import SESSION_FILES

# What a session's folder takes per planned pulse, with room to spare: a full-face session (1517 pulses) wrote
# 4.3 MB (the log 3.7, simulator.json 0.4, summary.json 0.2); faults, pauses and readings add records.
RECORD_BYTES_PER_PULSE = 8192
RECORD_BYTES_BASE = 1 << 17  # session_start, self-test, the end records, summary.json of a short plan


def ensure_room(path: Path, pulses: int, option: str = "--out") -> None:
    """InputError unless ``path``'s file system has room for the record of a session of ``pulses`` pulses: a
    disk that filled up mid-session cut the log (exit 1, no session_end); one full before the start left an
    empty log. Checked before any device is opened."""
    need = RECORD_BYTES_BASE + RECORD_BYTES_PER_PULSE * max(0, pulses)
    try:
        st = os.statvfs(path)
    except OSError:
        return  # the write probe (ensure_out_dir) judged the folder; a file system that cannot say is not refused
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise InputError(
            str(path),
            [
                f"{option} has {_mb(free)} free; the record of this session ({pulses} pulses) needs about"
                f" {_mb(need)}: free some space or choose another --out"
            ],
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


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
    try:
        os.write(fd, bytes(4096))  # a file system with no room at all creates the file, then refuses its bytes
    except OSError as exc:
        raise InputError(str(path), [f"{option} cannot be written: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)
        Path(probe).unlink()


class OutDirHold:
    """A folder held for a session (see :func:`hold_out_dir`); ``release`` (or the process's end) frees it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = -1

    def __enter__(self) -> OutDirHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_out_dir(path: Path, option: str = "--out") -> OutDirHold:
    """Hold ``path`` (an existing folder) for this process's session: two sessions writing one folder at once
    interleaved into one log that no longer verified (two ``run --overwrite``). An exclusive ``flock`` on the
    folder itself, so nothing is left in it, and released by the kernel however the process ends (SIGKILL
    too); InputError if another session holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise InputError(str(path), [f"{option} cannot be opened: {exc.strerror or exc}"]) from None
    if not _flock_now(fd):
        os.close(fd)
        raise InputError(
            str(path), [f"{option} is in use by another plasmactl session right now; choose another --out"]
        ) from None
    return OutDirHold(fd)


def _flock_now(fd: int) -> bool:
    """The folder's session hold taken (False: another session has it), without waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def ensure_not_in_use(path: Path, what: str = "RUN_DIR") -> None:
    """InputError if a running session holds ``path`` (its record is still being written: ``resume`` of it
    would treat its spots a second time, beside the session treating them). Asked of the hold itself, and let
    go at once; a folder that cannot be opened is left to the caller's own reading of it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        free = _flock_now(fd)
    finally:
        os.close(fd)
    if not free:
        why = f"{what} is being written by a running plasmactl session right now; resume it once that session ended"
        raise InputError(str(path), [why])


def clear_session_files(path: Path) -> None:
    """Remove what an earlier session left in ``path`` (``--overwrite``; with what ``report`` and ``resume``
    add), so that no file of it stands beside the new log as if it were of it; InputError naming what cannot
    go."""
    for name in SESSION_FILES:
        try:
            (path / name).unlink(missing_ok=True)
        except OSError as exc:
            raise InputError(str(path / name), [f"cannot be removed for --overwrite: {exc.strerror or exc}"]) from None


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


def write_whole(path: Path, text: str) -> None:
    """``path`` replaced by ``text`` whole or not at all (a temporary file beside it, then a rename): a crash or
    a full disk never leaves half a file; the temporary one is removed when the write fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
