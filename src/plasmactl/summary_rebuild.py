"""``RUN_DIR/summary.json`` rebuilt from the audit log alone, e.g. after a crash or SIGKILL left none.

The file has the keys the session writes (``plasmactl.session.write_summary``): :func:`summarize` of the
records, and the ``log`` anchor (records and the last complete line's hash) as the file now holds it. A log
cut by a crash has no ``session_end``: ``summarize`` then says so in ``outcome``.

The anchor in an existing summary.json is the only evidence of lines removed from the end of the log, so a
log that does not verify (against that anchor, or along its own chain) is not summarised over it: the
command refuses and names the first bad line (``plasmactl verify-log`` says the same).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plasmactl.log_chain import ANCHOR_KEY, anchor_of
from plasmactl.run_log import LogError, RunLog, chain_line, malformed, read_run_log
from plasmactl.session_files import SUMMARY_NAME
from plasmactl.summary import summarize


class ChainBroken(Exception):
    """The log does not verify; rebuilding its summary would overwrite the evidence (one-line message)."""


@dataclass
class Rebuilt:
    path: Path
    summary: dict[str, Any]
    log: RunLog


def summary_of(log: RunLog) -> dict[str, Any]:
    """What the session itself would have written into summary.json for this log."""
    try:
        summary = summarize(log.events)
    except (KeyError, TypeError, ValueError) as exc:  # a record without what every session writes
        raise LogError(malformed(log, exc)) from None
    summary[ANCHOR_KEY] = anchor_of(log.path)  # complete lines only: a torn last line is no record
    return summary


def rebuild_summary(run_dir: Path) -> Rebuilt:
    """Write ``RUN_DIR/summary.json`` from ``RUN_DIR/events.jsonl`` (replaced whole, never half-written).

    Raises LogError for input that is not a session's log or a folder that cannot be written, ChainBroken
    for a log that does not verify."""
    log = read_run_log(run_dir)
    if log.chain.problem is not None:
        kept = (
            f"{SUMMARY_NAME} left as it is (its anchor is what shows the change)"
            if log.chain.anchored
            else f"no {SUMMARY_NAME} written (a summary of an altered record would pass for the session's)"
        )
        raise ChainBroken(f"{log.path}: {chain_line(log.chain)}; {kept}; plasmactl verify-log says more")
    summary = summary_of(log)
    target = run_dir / SUMMARY_NAME
    write_atomically(target, json.dumps(summary, indent=2) + "\n")
    return Rebuilt(target, summary, log)


def write_atomically(target: Path, text: str) -> None:
    """``text`` into ``target`` through a temporary file beside it; LogError naming the file when it cannot."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise LogError(f"cannot write {target}: {exc.strerror or exc}") from None
