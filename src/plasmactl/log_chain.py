"""The audit log's hash chain: what each line carries, and the verifier behind ``plasmactl verify-log``.

Every line of ``events.jsonl`` ends with ``"prev_sha256"``: the hex SHA-256 of the previous line's exact
bytes, its newline included. The first line carries the *genesis* instead: the SHA-256 of
:func:`genesis_bytes`, a canonical JSON of the SHA-256 of the plan, rig and fault files that line names
(``plan_file`` / ``rig_file`` / ``faults_file``, each ``{"path", "sha256"}`` or null). An edit, a removed,
inserted or reordered line breaks the chain at the first line after it; lines removed at the end are seen
only against the anchor ``summary.json`` keeps (``"log": {"records", "last_sha256"}``), written when the
session closes its log. See docs/decisions/0009-hash-chained-log.md for what this does not protect against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from plasmactl.regular_file import LOG_LIMIT, SUMMARY_LIMIT, TOML_LIMIT, BadFile, read_regular
from plasmactl.session_files import SUMMARY_NAME

PREV_FIELD = "prev_sha256"
GENESIS_TAG = "plasmactl audit chain v1"
FILE_FIELDS = ("plan_file", "rig_file", "faults_file")
ANCHOR_KEY = "log"
NO_SESSION_END = "the log ends without session_end (crash or truncation; only summary.json's anchor can tell)"
TORN = "last line torn (ignored)"


class NotALog(Exception):
    """The file cannot be verified at all: missing, unreadable, empty, or not a hash-chained audit log."""


def line_sha256(line: bytes) -> str:
    """The chain's hash of one line: its exact bytes as written, the newline included."""
    return hashlib.sha256(line).hexdigest()


def _file_sha(record: Mapping[str, Any], name: str) -> str | None:
    entry = record.get(name)
    if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str):
        return str(entry["sha256"])
    return None


def genesis_bytes(first: Mapping[str, Any]) -> bytes:
    """The canonical genesis of a log whose first record is ``first``: compact JSON with sorted keys, e.g.
    ``{"faults_file":null,"genesis":"plasmactl audit chain v1","plan_file":"<hex>","rig_file":null}``."""
    doc: dict[str, str | None] = {"genesis": GENESIS_TAG}
    for name in FILE_FIELDS:
        doc[name] = _file_sha(first, name)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("ascii")


def genesis_sha256(first: Mapping[str, Any]) -> str:
    return hashlib.sha256(genesis_bytes(first)).hexdigest()


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ChainReport:
    """What the verifier found: the records that verify, the first problem (if any), notes and file checks."""

    records: int = 0
    last_sha256: str | None = None
    problem: Problem | None = None
    torn: bool = False
    session_end: bool = False
    anchored: bool = False
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _check_line(number: int, line: bytes, record: dict[str, Any] | None, expected: str) -> Problem | None:
    if not line:
        return Problem(number, "empty line (the log never writes one)")
    if record is None:
        return Problem(number, "not a JSON object (edited, or lines merged or split)")
    prev = record.get(PREV_FIELD)
    if not isinstance(prev, str):
        return Problem(number, f"no {PREV_FIELD} field (edited or inserted)")
    if prev == expected:
        return None
    if number == 1:
        return Problem(
            number,
            f"{PREV_FIELD} is not the genesis of the plan, rig and fault files it names"
            " (first line edited, removed or replaced)",
        )
    return Problem(number, f"{PREV_FIELD} does not match line {number - 1} (edited, removed or reordered)")


def _check_anchor(report: ChainReport, lines: list[bytes], anchor: Mapping[str, Any]) -> Problem | None:
    """Compare the verified chain with summary.json's anchor: detects lines removed or added at the end."""
    want, want_sha = anchor["records"], anchor["last_sha256"]
    have = report.records
    if want > have:
        return Problem(
            have + 1,
            f"missing: summary.json anchors {want} records, the log ends after line {have} (lines removed at the end)",
        )
    if want >= 1 and line_sha256(lines[want - 1] + b"\n") != want_sha:
        return Problem(want, "does not match the last_sha256 summary.json anchors (edited or replaced)")
    if want < have:
        return Problem(want + 1, f"after the end summary.json anchors ({want} records): lines added later")
    return None


def read_anchor(summary: Path) -> tuple[Mapping[str, Any] | None, str | None]:
    """summary.json's ``log`` anchor, or a note saying why there is none to compare with."""
    try:
        doc = json.loads(read_regular(summary, SUMMARY_LIMIT))
    except FileNotFoundError:
        return None, f"no {SUMMARY_NAME} next to the log: lines removed at the end would not show"
    except BadFile as exc:
        return None, f"{summary}: {exc}: no anchor to compare with"
    except (OSError, ValueError) as exc:
        return None, f"{summary} unreadable ({type(exc).__name__}): no anchor to compare with"
    anchor = doc.get(ANCHOR_KEY) if isinstance(doc, dict) else None
    if isinstance(anchor, dict) and type(anchor.get("records")) is int and isinstance(anchor.get("last_sha256"), str):
        return anchor, None
    return None, f"{summary} holds no log anchor (written before the chain?): no anchor to compare with"


def verify_bytes(data: bytes, anchor: Mapping[str, Any] | None = None) -> ChainReport:
    """Verify a log's bytes (and, given, summary.json's anchor). Raises NotALog when there is nothing to verify."""
    pieces = data.split(b"\n")
    lines, tail = pieces[:-1], pieces[-1]  # a complete log ends with a newline: its tail is empty
    report = ChainReport(torn=bool(tail))
    records = [_parse(line) for line in lines]
    if not any(r is not None and PREV_FIELD in r and "event" in r for r in records):
        if anchor is not None and anchor["records"] > 0 and not lines:
            report.problem = Problem(1, f"missing: summary.json anchors {anchor['records']} records, the log none")
            return report
        if not lines:
            raise NotALog("no complete record (an empty file, or only a torn line)")
        raise NotALog(f"not a hash-chained audit log (no line is a JSON record with {PREV_FIELD})")
    expected = genesis_sha256(records[0] or {})
    for number, (line, record) in enumerate(zip(lines, records, strict=True), start=1):
        problem = _check_line(number, line, record, expected)
        if problem is not None:
            report.problem = problem
            return report
        expected = line_sha256(line + b"\n")
        report.records = number
    report.last_sha256 = expected
    last = records[-1]
    report.session_end = last is not None and last.get("event") == "session_end"
    if anchor is not None:
        report.anchored = True
        report.problem = _check_anchor(report, lines, anchor)
    if report.torn:
        report.notes.append(TORN)
    if not report.session_end:
        report.notes.append(NO_SESSION_END)
    return report


def check_files(first: Mapping[str, Any]) -> list[str]:
    """Whether the plan, rig and fault files the first record names still hold what the session read
    (informational: a file edited since, or moved, says nothing about the log)."""
    out: list[str] = []
    for name in FILE_FIELDS:
        entry = first.get(name)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            continue
        path, kind = str(entry["path"]), name.removesuffix("_file")
        try:
            now = hashlib.sha256(read_regular(path, TOML_LIMIT)).hexdigest()
        except OSError:
            out.append(f"{kind} file {path}: not found at its recorded path (not compared)")
            continue
        except BadFile as exc:  # a FIFO or a device at the path now: a read could hang verify-log
            out.append(f"{kind} file {path}: {exc} (not compared)")
            continue
        same = now == entry.get("sha256")
        out.append(f"{kind} file {path}: {'unchanged' if same else 'changed since the session (sha256 differs)'}")
    return out


def verify_file(path: Path, summary: Path | None = None, *, files: bool = False) -> ChainReport:
    """Verify a log file against the ``summary.json`` beside it (or ``summary``); raises NotALog."""
    try:
        data = read_regular(path, LOG_LIMIT)
    except BadFile as exc:
        raise NotALog(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise NotALog(f"{path}: file not found") from None
    except IsADirectoryError:
        raise NotALog(f"{path}: is a directory, expected an events.jsonl") from None
    except OSError as exc:
        raise NotALog(f"{path}: cannot read: {exc.strerror}") from None
    anchor, note = read_anchor(summary if summary is not None else path.parent / SUMMARY_NAME)
    try:
        report = verify_bytes(data, anchor)
    except NotALog as exc:
        raise NotALog(f"{path}: {exc}") from None
    if note is not None:
        report.notes.append(note)
    if files and report.records:
        first = _parse(data.split(b"\n", 1)[0])
        report.files = check_files(first or {})
    return report


def anchor_of(path: Path) -> dict[str, Any]:
    """The anchor of a log as it is on disk (complete lines only): for a summary written without the writer."""
    lines = path.read_bytes().split(b"\n")[:-1]
    return {"records": len(lines), "last_sha256": line_sha256(lines[-1] + b"\n") if lines else None}
