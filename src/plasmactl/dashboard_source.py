"""Where the dashboard's events come from: a session's log file followed as it grows (``plasmactl monitor``),
or the session's own log listener through a thread-safe queue (``plasmactl run --live``).

The follower only reads: it opens ``events.jsonl`` read-only when it appears, takes complete lines only (a
line the writer has not finished is kept until its newline comes), and starts over when the file is written
anew (shorter than what was read, or another file at the path: a session run with ``--overwrite``).
"""

from __future__ import annotations

import os
import queue
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from plasmactl.regular_file import BadFile, open_regular

CHUNK = 8 << 20  # bytes read per poll at most (a long finished log is taken in a few polls)


class NotALog(Exception):
    """What the file holds is not a session's audit log (the message names the line and the problem)."""


@dataclass
class Batch:
    """The events read since the last poll; ``restart``: the log was written anew, forget what came before."""

    events: list[Mapping[str, Any]] = field(default_factory=list)
    restart: bool = False


class EventSource(Protocol):
    def poll(self) -> Batch:
        """The events that came since the last call (never blocks); raises :class:`NotALog`."""
        ...

    @property
    def waiting(self) -> str | None:
        """What the source waits for (a log that does not exist yet), or None."""
        ...

    def close(self) -> None:
        """Let go of what it holds open (the dashboard calls it when it closes)."""
        ...


def parse_record(line: bytes, number: int) -> dict[str, Any]:
    """One complete log line as a record, or NotALog naming the line."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise NotALog(f"line {number} is not a JSON record") from None
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        raise NotALog(f"line {number} is not an event record (no 'event' name)")
    if number == 1 and value["event"] != "session_start":
        raise NotALog(f"its first record is {value['event']!r}, not session_start")
    return value


def check_log(path: Path) -> None:
    """NotALog unless the complete lines ``path`` holds so far are a session's record (none yet is fine)."""
    follower = LogFollower(path)
    try:
        while follower.poll().events:
            pass
    finally:
        follower.close()


class LogFollower:
    """Follows a log file that a session writes (or has written), one poll at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self._offset = 0
        self._rest = b""  # the start of a line whose newline has not come yet
        self._lines = 0

    @property
    def waiting(self) -> str | None:
        return f"waiting for {self.path} to appear" if self._file is None else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self) -> Batch:
        restart = self._check_file()
        if self._file is None:
            return Batch(restart=restart)
        self._file.seek(self._offset)
        data = self._file.read(CHUNK)
        self._offset += len(data)
        data = self._rest + data
        end = data.rfind(b"\n") + 1
        self._rest = data[end:]
        events: list[Mapping[str, Any]] = []
        for line in data[:end].split(b"\n")[:-1]:
            self._lines += 1
            events.append(parse_record(line, self._lines))
        return Batch(events, restart)

    def _check_file(self) -> bool:
        """Open the log once it exists; True when the file at the path was written anew since."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        inode = (st.st_dev, st.st_ino)
        if self._file is not None and inode == self._inode and st.st_size >= self._offset:
            return False
        restarted = self._file is not None
        self.close()
        try:  # a FIFO would block the open, /dev/zero fill memory with a line that never ends: refused
            self._file = open_regular(self.path)
        except BadFile as exc:
            raise NotALog(str(exc)) from None
        except OSError as exc:
            raise NotALog(f"cannot be read: {exc.strerror or exc}") from None
        st = os.fstat(self._file.fileno())
        self._inode = (st.st_dev, st.st_ino)
        self._offset, self._rest, self._lines = 0, b"", 0
        return restarted


class QueueSource:
    """The events a session's log listener puts on a queue (in the session's thread), taken in the UI's."""

    def __init__(self, events: queue.SimpleQueue[Mapping[str, Any]], *, max_batch: int = 20_000) -> None:
        self._events = events
        self._max = max_batch

    @property
    def waiting(self) -> str | None:
        return None

    def close(self) -> None:
        return None

    def poll(self) -> Batch:
        batch = Batch()
        for _ in range(self._max):
            try:
                batch.events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return batch
