"""A session folder's audit log read for the tools that work from the record alone (``plasmactl report``,
``plasmactl summary``): its records, what was dropped and why, and the hash chain's verdict.

Everything that can be wrong with the input is a :class:`LogError` with one sentence naming the problem (the
commands print it and exit 2): a missing folder, no ``events.jsonl``, a file that is not an audit log. A last
line without its newline was cut mid-write (a crash, SIGKILL, a copy cut short): it is dropped with a warning
naming it, as ``plasmactl verify-log`` ignores it. A line before that which does not parse is dropped with a
warning too; the chain check then names it as the first bad line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from plasmactl.log_chain import ChainReport, NotALog, read_anchor, verify_bytes
from plasmactl.regular_file import LOG_LIMIT, BadFile, read_regular
from plasmactl.session_files import LOG_NAME, SUMMARY_NAME


class LogError(Exception):
    """The input cannot be read as a session's record; the message is one line naming the problem."""


@dataclass
class RunLog:
    """The records of ``RUN_DIR/events.jsonl`` that parse, in order, and what the reader saw on the way."""

    run_dir: Path
    path: Path
    events: list[dict[str, Any]]
    chain: ChainReport
    torn_line: int | None = None  # the 1-based number of a last line cut mid-write (dropped)
    bad_lines: list[int] = field(default_factory=list)  # earlier lines that did not parse (dropped)
    warnings: list[str] = field(default_factory=list)

    @property
    def start(self) -> dict[str, Any]:
        return self.events[0]

    @property
    def has_session_end(self) -> bool:
        return any(e.get("event") == "session_end" for e in self.events)


def log_path(run_dir: Path) -> Path:
    """``RUN_DIR/events.jsonl``, or a LogError saying why the folder holds none."""
    if not run_dir.exists():
        raise LogError(f"{run_dir}: no such folder")
    if not run_dir.is_dir():
        raise LogError(f"{run_dir}: not a folder (give the session's output folder, the one holding {LOG_NAME})")
    path = run_dir / LOG_NAME
    if not path.exists():
        raise LogError(f"{run_dir}: holds no {LOG_NAME} (not a session's output folder?)")
    if not path.is_file():
        raise LogError(f"{path}: not a file")
    return path


def chain_line(chain: ChainReport) -> str:
    """The chain check's verdict in the words of ``plasmactl verify-log``."""
    if chain.problem is None:
        return f"chain intact: {chain.records} records"
    return f"chain broken: first bad line: {chain.problem}"


def malformed(log: RunLog, exc: Exception) -> str:
    """The message for a record that lacks what every session writes (an edited log, another version's)."""
    return f"{log.path}: a record is not as a session writes it ({type(exc).__name__}: {exc}); {chain_line(log.chain)}"


def read_run_log(run_dir: Path) -> RunLog:
    """Read and verify ``RUN_DIR/events.jsonl`` (against the anchor of the summary.json beside it, if any)."""
    path = log_path(run_dir)
    try:
        data = read_regular(path, LOG_LIMIT)
    except BadFile as exc:
        raise LogError(f"{path}: {exc}") from None
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    anchor, _ = read_anchor(run_dir / SUMMARY_NAME)
    try:
        chain = verify_bytes(data, anchor)
    except NotALog as exc:
        raise LogError(f"{path}: not a session's audit log: {exc}") from None
    log = RunLog(run_dir, path, [], chain)
    pieces = data.split(b"\n")
    for number, line in enumerate(pieces[:-1], start=1):
        record = _record(line)
        if record is None:
            log.bad_lines.append(number)
            log.warnings.append(f"{path}: line {number} is not a JSON record: dropped")
        else:
            log.events.append(record)
    if pieces[-1]:
        log.torn_line = len(pieces)
        log.warnings.append(
            f"{path}: line {log.torn_line} is cut mid-write (no newline: a crash, SIGKILL or a copy cut short): dropped"
        )
    if not log.events:
        raise LogError(f"{path}: not a session's audit log: no complete record")
    first = log.events[0].get("event")
    if first != "session_start":
        raise LogError(f"{path}: not a session's audit log: its first record is {first!r}, not session_start")
    if not log.has_session_end:
        log.warnings.append(f"{path}: no session_end: the record is incomplete (the session was cut)")
    return log


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None
