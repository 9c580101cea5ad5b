"""The invariants about how a session ended and what its record says of it: no controller error, traceback or
internal error; the exit code matching the outcome; ``session_end`` and ``summary.json`` agreeing with the log
(pulses, sprays, the dose ledger); a ``complete`` session with every planned pulse in full."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plasmactl.stop_signals import exit_code_of

if TYPE_CHECKING:
    from plasmactl.invariants import Record

Violations = dict[str, list[str]]
EXIT_CODES = {"complete": {0}, "incomplete": {4}, "fault": {3}, "estop": {3}, "aborted": {130, 143}}


def outcome_and_record(
    ctx: Record, v: Violations, summary: Mapping[str, Any] | None, rc: int | None, output: str
) -> None:
    end = ctx.end
    outcome = None if end is None else end.get("outcome")
    if any(e.get("event") == "controller_error" for e in ctx.events):
        v["controller_error"].extend(
            str(e.get("error"))[:300] for e in ctx.events if e.get("event") == "controller_error"
        )
    if ctx.running:
        return
    if end is not None and end.get("internal_error"):
        v["internal_error"].append(f"session_end internal_error: {end.get('error')}")
    if "Traceback" in output:
        v["traceback"].append("a traceback in the output")
    expected = EXIT_CODES.get(str(outcome))
    if outcome == "aborted" and end is not None and isinstance(end.get("signal"), str):
        expected = {exit_code_of(end["signal"])}  # the shell's code of the signal that stopped it
    if rc is not None and expected is not None and rc not in expected and rc != -9:
        v["exit_code"].append(f"exit {rc} for outcome {outcome}")
    if rc == 1:
        v["exit_code"].append("exit 1 (internal error)")
    if end is not None and end.get("pulses") is not None and end["pulses"] != len(ctx.starts):
        v["record_summary"].append(f"session_end pulses={end['pulses']}, {len(ctx.starts)} pulse_start")
    if outcome == "complete":
        planned = ctx.start.get("pulses_planned")
        full = sum(1 for e in ctx.ends.values() if not e.get("interrupted"))
        if planned is not None and full != planned:
            v["complete_wrong_count"].append(f"complete with {full} full pulses, plan {planned}")
    if summary is None:
        return
    from plasmactl.controller.ledger import ledger_from_events  # the same arithmetic the summary must show

    if summary.get("outcome") != outcome:
        v["record_summary"].append(f"summary outcome {summary.get('outcome')}, log {outcome}")
    if summary.get("pulses") != len(ctx.starts):
        v["record_summary"].append(f"summary pulses {summary.get('pulses')}, log {len(ctx.starts)} pulse_start")
    if summary.get("sprays") != len(ctx.sprays):
        v["record_summary"].append(f"summary sprays {summary.get('sprays')}, log {len(ctx.sprays)} spray_start")
    ledger = ledger_from_events(ctx.events)
    if ledger is not None and summary.get("ledger") != _plain(ledger.summary()):
        v["record_summary"].append("summary ledger differs from the ledger the log records")


def _plain(value: Any) -> Any:
    """What a dict looks like after a JSON round trip (tuples become lists)."""
    if isinstance(value, Mapping):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(x) for x in value]
    return value
