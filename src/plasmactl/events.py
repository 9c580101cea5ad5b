"""The session's append-only audit log (JSON Lines), produced through structlog.

Each event is one line ``{"t": <session s>, "event": <name>, ...fields}``, written with a single
``os.write`` on an O_APPEND descriptor (so a SIGKILL loses nothing already logged and never leaves a
torn line behind in the page cache) and fsynced at every safety-relevant event (so a power cut does
not either). ``t`` comes from the session clock (virtual in simulation): structlog's TimeStamper would
stamp wall time, so a processor of our own stamps it.

The lines are hash-chained (``log_chain``): each ends with ``"prev_sha256"``, the SHA-256 of the previous
line's bytes as written (the first line: the genesis of the plan, rig and fault files it names). The sink
hashes each line right after writing it, so what is hashed is exactly what is on disk; ``AuditLog.anchor``
(records written, hash of the last) goes into summary.json, where ``plasmactl verify-log`` finds it.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import structlog

from plasmactl.clock import Clock
from plasmactl.log_chain import PREV_FIELD, genesis_sha256, line_sha256

EventDict = MutableMapping[str, Any]
Listener = Callable[[Mapping[str, Any]], None]

# Events after which the log is fsynced before the controller goes on.
SAFETY_EVENTS = frozenset(
    {
        "session_start",
        "session_end",
        "interlock_trip",
        "fault",
        "estop",
        "reset",
        "abort",
        "plasma_off",
        "plasma_disarm",
        "controller_error",
        "cooling_missed",
    }
)
LATCHED_STATES = frozenset({"fault", "estop", "paused", "complete"})


_PLAIN = frozenset({int, str, bool, type(None)})


def _round(value: float) -> float | str:
    """A float to the nano-unit (so logs compare textually across runs); not finite: its name.

    ``round(v, 9)`` is exact but costs a decimal conversion per value, and an event carries a dozen floats;
    in the range the log holds (|v| < 1e6: session seconds, joules, millilitres) the nearest multiple of
    1e-9 is computed as well by one multiplication and one correctly rounded division. (``x // 1.0`` is
    ``math.floor(x)`` as a float, exactly, for these |x| < 2**53, without the call and the int.)"""
    if value - value != 0.0:  # inf or nan
        return str(value)
    if -1e6 < value < 1e6:
        return (value * 1e9 + 0.5) // 1.0 / 1e9
    return round(value, 9)


def _jsonable(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:  # the common case first: every event carries several of these
        return value
    if kind is float:
        return _round(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _FileSink:
    """structlog's final 'logger': writes one rendered line and hashes it (the chain), fsyncs when asked."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.lines = 0
        self.last_sha256: str | None = None  # of the last line written whole: the next line's prev_sha256
        self.written: list[bytes] = []  # every line written whole, in order (the summary reads them back)

    def msg(self, line: bytes) -> None:
        written = os.write(self._fd, line)
        if written < len(line):  # rare (a full disk, a signal): finish the line, still on one descriptor
            view = memoryview(line)[written:]
            while view:
                view = view[os.write(self._fd, view) :]
        self.last_sha256 = line_sha256(line)  # after the write: a line that failed is no link
        self.lines += 1
        self.written.append(line)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


class _AuditLogger(structlog.BoundLoggerBase):
    """structlog's bound logger with the one method the log needs: the fields as a dict (not re-packed as
    keywords twice on the way), run through the processor chain, the rendered line to the sink."""

    def msg(self, event: str, fields: dict[str, Any]) -> None:
        # = ``_process_event`` for a logger that binds no context: the chain gets the fields dict itself (a
        # fresh one per emit), not a copy of the empty context updated with them (a third of its cost)
        event_dict: Any = {**self._context, **fields} if self._context else fields
        event_dict["event"] = event
        for proc in self._processors:
            event_dict = proc(self._logger, "msg", event_dict)
        self._logger.msg(event_dict)


class AuditLog:
    """Writes events; notifies listeners (the console) with the same dict that was written."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._sink = _FileSink(path)
        self._listeners: list[Listener] = []
        self._closed = False
        self._last: dict[str, Any] = {}
        self._defer = 0  # inside sync_after
        self._sync_due = False
        # event and t of each record rendered, in step with the sink's lines unless a write failed (two flat
        # lists of untracked values, not a tuple per record: the collector would scan those all session long)
        self._names: list[str] = []
        self._times: list[Any] = []
        _WRITERS[path] = self
        names, times = self._names, self._times

        now, sink = clock.now, self._sink

        def stamp_and_render(_: Any, __: str, event_dict: EventDict) -> bytes:
            # One processor, not a stamper and a renderer: the chain runs ~20k times per session.
            at = now()
            t = (at * 1e9 + 0.5) // 1.0 / 1e9 if -1e6 < at < 1e6 else _round(at)  # _round, its common case inline
            ordered: dict[str, Any] = {"t": t, "event": event_dict.pop("event")}
            for k, v in event_dict.items():
                kind = type(v)
                if kind is float and -1e6 < v < 1e6:
                    ordered[k] = (v * 1e9 + 0.5) // 1.0 / 1e9  # _round's common case, inline
                else:
                    ordered[k] = v if kind in _PLAIN else _round(v) if kind is float else _jsonable(v)
            prev = sink.last_sha256
            ordered[PREV_FIELD] = prev if prev is not None else genesis_sha256(ordered)  # the last field
            self._last = ordered
            # TypeError on what JSON cannot hold. orjson hands back its whole output buffer (~4 KiB whatever the
            # line's length); the concatenation is a right-sized copy, so the lines kept for the summary cost
            # their own length (a full-face session kept 75 MB, and a process running sessions back to back
            # grew by that each time and slowed by half)
            line = orjson.dumps(ordered) + b"\n"
            names.append(ordered["event"])
            times.append(t)
            return line

        # Bound once here: the lazy proxy wrap_logger returns would re-resolve ``msg`` on every call.
        logger = structlog.wrap_logger(self._sink, processors=[stamp_and_render], wrapper_class=_AuditLogger)
        self._msg = logger.bind().msg

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if self._closed:
            raise RuntimeError(f"audit log closed; cannot record {event!r}")
        if "t" in fields or "event" in fields or PREV_FIELD in fields:
            raise ValueError(f"{event!r}: 't', 'event' and {PREV_FIELD!r} are set by the log itself")
        self._msg(event, fields)
        written = self._last  # a new dict per event: what was written is what listeners and callers get
        if event in SAFETY_EVENTS or (event == "state" and fields.get("dest") in LATCHED_STATES):
            if self._defer:
                self._sync_due = True
            else:
                self._sink.fsync()
        if self._listeners:
            for listener in tuple(self._listeners):
                try:
                    listener(written)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - an observer never reaches the controller
                    self._drop(listener, exc)
        return written

    def _drop(self, listener: Listener, exc: BaseException) -> None:
        """A listener that failed (a console whose pipe closed raises, rich even raises SystemExit) is dropped
        and its failure recorded: what watches the session must not end it, or cut its safe state short."""
        if listener in self._listeners:
            self._listeners.remove(listener)
            name = getattr(listener, "__qualname__", type(listener).__name__)
            self.emit("listener_error", listener=name, error=f"{type(exc).__name__}: {exc}")

    @contextlib.contextmanager
    def sync_after(self) -> Iterator[None]:
        """Safety events written inside the block are fsynced when it ends, not one by one: a trip's record
        is written (a crash keeps it) but its fsync waits until the output-off command has gone."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1
            if not self._defer and self._sync_due and not self._closed:
                self._sync_due = False
                self._sink.fsync()

    @property
    def count(self) -> int:
        """Records written."""
        return self._sink.lines

    @property
    def anchor(self) -> dict[str, Any]:
        """What the log holds as its writer knows it: the lines written whole and the hash of the last one
        (summary.json keeps it, so that lines removed at the end show)."""
        return {"records": self._sink.lines, "last_sha256": self._sink.last_sha256}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sink.close()

    def as_written(self, anchor: Mapping[str, Any]) -> tuple[list[str], list[Any], list[bytes]] | None:
        """The event names, ``t`` values and lines of every record, if this writer's lines are provably what the
        file holds and what ``anchor`` names (else None: read the file). ``t`` and the name are what parsing the
        line gives: a float (or the str of one not finite) and the name the record was emitted with."""
        lines, names, times = self._sink.written, self._names, self._times
        if not len(names) == len(times) == len(lines):
            return None  # a write failed: the file may hold a torn line the writer never counted
        if dict(anchor) != self.anchor:
            return None  # the anchor of another log
        try:
            on_disk = self.path.read_bytes()
        except OSError:
            return None
        if on_disk != b"".join(lines):  # changed (or cut) behind the writer's back: the file is the authority
            return None
        return names, times, lines


# The log each path was last opened by in this process (so the summary can skip re-parsing what it wrote).
_WRITERS: weakref.WeakValueDictionary[Path, AuditLog] = weakref.WeakValueDictionary()


def writer_of(path: Path) -> AuditLog | None:
    """The AuditLog of this process that last opened ``path``, if it still exists."""
    return _WRITERS.get(path)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Parse a log line by line; a torn last line (a crash mid-write) is dropped, nothing else is."""
    events: list[dict[str, Any]] = []
    lines = Path(path).read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            if number == len(lines):  # only the final, unterminated line may be torn
                break
            raise
    return events
