"""Continuing a plan after a session that ended early (a fault, an E-stop, an abort, a crash): a new session
treats only the spots the earlier record shows untouched, and its record is linked to the earlier one.

Which spots: those of the earlier session's plan (as last edited) where the dose ledger rebuilt from its log
shows no pulse at all. A spot that received any pulse is never treated again: a complete one is done, a cut
or partly treated one (fewer pulses than planned) is left under-dosed and named in the new record, because
the plan format cannot give one spot fewer pulses and a second full treatment could overdose it. A log that
does not verify is refused (a dose record that may have been changed cannot say what is left).

The new session's ``session_start`` carries ``resume_of``: the earlier log's path, record count and last
line's hash (so a reader can check the one it finds there), and ``spots``, the numbers in the *first* plan of
the spots this session treats (its own spot i is ``spots[i - 1]``), composed through a chain of resumes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from plasmactl.cli_inputs import check_together
from plasmactl.controller.ledger import ledger_from_events
from plasmactl.faults import FaultScenario, load_faults
from plasmactl.inputs import InputError, LoadedFile, read_toml
from plasmactl.plan import Plan
from plasmactl.rig import Rig, load_rig
from plasmactl.run_log import RunLog, chain_line
from plasmactl.session import SessionInputs
from plasmactl.session_files import CLAIM_NAME, LOG_NAME


class ResumeRefused(Exception):
    """The earlier record cannot be continued; the message says why in one sentence."""


def claim(run_dir: Path, out: Path) -> None:
    """Mark ``run_dir`` as continued by the session about to run into ``out``, once and for all, before any
    device is opened: a second resume of the same record would treat its untouched spots a second time (two
    resumes, one after the other or at once, both gave every remaining spot its full plan). The claim is
    created exclusively (of two resumes at once, one wins); the record to continue is then the new one. A
    claim whose session never started (no log in its folder, its process gone) is stale and taken over."""
    path = run_dir / CLAIM_NAME
    record = {"out": str(out.resolve()), "pid": os.getpid(), "wall_time": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            earlier = _read_claim(path)
            if earlier is not None and _stale(earlier):
                path.unlink(missing_ok=True)
                continue
            by = "an unreadable claim" if earlier is None else f"the session in {earlier.get('out')}"
            raise ResumeRefused(
                f"{run_dir} was already resumed by {by} ({path}); resume that session's folder instead,"
                " so that no spot is treated twice"
            ) from None
        except OSError as exc:
            raise ResumeRefused(f"{run_dir}: cannot record that it is being resumed ({path}: {exc.strerror})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return
    raise ResumeRefused(f"{run_dir}: another resume is claiming it at this moment ({path})")


def _read_claim(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stale(claimed: dict[str, Any]) -> bool:
    """The claiming session left no log and its process is gone (killed before its session started)."""
    out, pid = claimed.get("out"), claimed.get("pid")
    if not isinstance(out, str) or not isinstance(pid, int) or (Path(out) / LOG_NAME).exists():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Resumption:
    """The new session's inputs and what the earlier record left."""

    inputs: SessionInputs
    spots: list[int]  # the first plan's numbers of the spots this session treats, in order
    done: list[int] = field(default_factory=list)  # first-plan numbers of spots fully treated before
    left_partial: list[int] = field(default_factory=list)  # touched before, not complete: never re-treated
    warnings: list[str] = field(default_factory=list)


def first_plan_numbers(start: dict[str, Any]) -> list[int]:
    """The first plan's number of each spot of the session that ``start`` opens (itself, unless a resume)."""
    resumed = start.get("resume_of")
    if isinstance(resumed, dict) and isinstance(resumed.get("spots"), list):
        return [int(n) for n in resumed["spots"]]
    return list(range(1, int(start["spots_planned"]) + 1))


def plan_in_force(log: RunLog) -> Plan:
    """The earlier session's plan as its last applied edit left it."""
    data = log.start["plan"]
    for e in log.events:
        if e.get("event") == "plan_edit" and e.get("ok") and isinstance(e.get("plan"), dict):
            data = e["plan"]
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise ResumeRefused(f"{log.path}: its plan no longer validates: {exc.errors()[0]['msg']}") from None


def plan_resumption(
    log: RunLog, *, rig_path: Path | None = None, faults_path: Path | None = None, seed: int = 0
) -> Resumption:
    """What a resume of ``log`` would run; ResumeRefused (or InputError for a bad --rig/--faults file)."""
    if not log.chain.ok:
        raise ResumeRefused(
            f"{log.path}: {chain_line(log.chain)}; a record that may have been changed cannot be resumed"
        )
    start = log.start
    ledger = ledger_from_events(log.events)
    try:
        numbers = first_plan_numbers(start)
    except (KeyError, TypeError, ValueError):
        numbers = []
    if ledger is None or len(numbers) != len(ledger.spots):
        raise ResumeRefused(f"{log.path}: its session_start does not say what was planned")
    plan = plan_in_force(log)
    if plan.spots.count != len(ledger.spots):
        raise ResumeRefused(f"{log.path}: the plan and the record disagree on the number of spots")
    warnings = list(log.warnings)
    outcome = next((e.get("outcome") for e in log.events if e.get("event") == "session_end"), None)
    positions = plan.spots.positions()
    untouched = [sd.spot for sd in ledger.spots if not sd.pulses]
    partial = [sd.spot for sd in ledger.spots if sd.pulses and sd.status(ledger.tolerance) != "complete"]
    done = [sd.spot for sd in ledger.spots if sd.pulses and sd.status(ledger.tolerance) == "complete"]
    if not untouched:
        left = f"; {len(partial)} spot(s) touched but not complete, never re-treated: {partial[:20]}" if partial else ""
        raise ResumeRefused(f"{log.path}: nothing left to treat (the session ended {outcome}){left}")
    data = plan.model_dump(mode="json")
    data["name"] = plan.name if plan.name.endswith(" (resumed)") else f"{plan.name} (resumed)"
    data["spots"] = {"points": [list(positions[s - 1]) for s in untouched], "spot_diameter_mm": plan.spots.diameter_mm}
    try:
        new_plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise ResumeRefused(f"the remaining spots do not make a valid plan: {exc.errors()[0]['msg']}") from None
    rig, rig_file = _rig(log, rig_path)
    faults, faults_file = (FaultScenario(), None) if faults_path is None else load_faults(str(faults_path))
    where = f"the resumed plan on {rig_path or 'the recorded rig'}"
    check_together(new_plan, rig, faults, faults_source=str(faults_path), combination=where)
    spots = [numbers[s - 1] for s in untouched]
    record = {
        "log": str(log.path.resolve()),
        "records": log.chain.records,
        "last_sha256": log.chain.last_sha256,
        "outcome": outcome,
        "spots": spots,
        "spots_done_before": [numbers[s - 1] for s in done],
        "left_partial": [numbers[s - 1] for s in partial],
    }
    inputs = SessionInputs(
        plan=new_plan,
        plan_file=_same_file(start.get("plan_file"), "plan", warnings),
        rig=rig,
        rig_file=rig_file,
        faults=faults,
        faults_file=faults_file,
        seed=seed,
        resume_of=record,
    )
    return Resumption(
        inputs, spots, [numbers[s - 1] for s in done], [numbers[s - 1] for s in partial], warnings=warnings
    )


def _rig(log: RunLog, rig_path: Path | None) -> tuple[Rig, LoadedFile | None]:
    """The rig given, else the one the earlier session ran on: its file if unchanged, the in-process
    simulators if it had none; a rig file that is gone or changed must be named again (``--rig``)."""
    if rig_path is not None:
        return load_rig(str(rig_path))
    recorded = log.start.get("rig_file")
    if recorded is None:
        return Rig(), None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("path"), str):
        raise ResumeRefused(f"{log.path}: its session_start does not name its rig file readably; give --rig")
    path = recorded["path"]
    try:
        rig, loaded = load_rig(path)
    except InputError as exc:
        raise ResumeRefused(
            f"the earlier session's rig {path} cannot be read now ({exc.problems[0]}); give --rig"
        ) from None
    if loaded is None or loaded.sha256 != recorded.get("sha256"):
        raise ResumeRefused(f"the earlier session's rig {path} has changed since; give --rig to use it as it is now")
    return rig, loaded


def _same_file(recorded: Any, kind: str, warnings: list[str]) -> LoadedFile | None:
    """The earlier session's plan file, if it is still there unchanged (the new log's genesis then covers it)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("path"), str):
        return None
    try:
        loaded = read_toml(recorded["path"], kind)
    except InputError:
        warnings.append(f"the {kind} file {recorded['path']} is gone; the plan is taken from the earlier record")
        return None
    if loaded.sha256 != recorded.get("sha256"):
        warnings.append(f"the {kind} file {recorded['path']} has changed; the plan is taken from the earlier record")
        return None
    return loaded


def resumed_chain(log: RunLog) -> list[RunLog]:
    """``log`` and every earlier record it resumes (through ``resume_of``), the first session first; a link
    that cannot be read ends the chain there."""
    from plasmactl.run_log import LogError, read_run_log

    chain: list[RunLog] = [log]
    seen = {log.path.resolve()}
    while isinstance(resumed := chain[-1].start.get("resume_of"), dict) and isinstance(resumed.get("log"), str):
        earlier = Path(resumed["log"])
        if earlier.resolve() in seen:
            break
        seen.add(earlier.resolve())
        try:
            chain.append(read_run_log(earlier.parent))
        except LogError:
            break
    return chain[::-1]


def combined_doses(log: RunLog) -> dict[int, dict[str, Any]]:
    """Per spot of the first plan: energy planned and delivered over this record and every earlier one it
    resumes, the sessions that pulsed it, and its status (``treated_twice`` if more than one did)."""
    doses: dict[int, dict[str, Any]] = {}
    for record in resumed_chain(log):
        ledger = ledger_from_events(record.events)
        if ledger is None:
            continue
        numbers = first_plan_numbers(record.start)
        for sd in ledger.spots:
            n = numbers[sd.spot - 1]
            entry = doses.setdefault(n, {"spot": n, "planned_j": sd.planned_j, "delivered_j": 0.0, "sessions": 0})
            if sd.pulses:
                entry["delivered_j"] += sd.delivered_j
                entry["sessions"] += 1
                # treated in two sessions is what a resume must never do: shown as such, whatever the sum
                entry["status"] = sd.status(ledger.tolerance) if entry["sessions"] == 1 else "treated_twice"
            entry.setdefault("status", "not_started")
    return dict(sorted(doses.items()))


def combined_spot_doses(log: RunLog) -> tuple[list[Any], list[str]]:
    """The report's dose map rows for the first plan's spots over the chain of sessions, and the logs."""
    from dataclasses import replace

    from plasmactl.report_data import spot_doses

    rows: dict[int, Any] = {}
    chain = resumed_chain(log)
    for record in chain:
        numbers = first_plan_numbers(record.start)
        plan = record.start.get("plan")
        for row in spot_doses(record.events, plan if isinstance(plan, dict) else {}):
            n = numbers[row.spot - 1]
            earlier = rows.get(n)
            if earlier is None or (earlier.pulses == 0 and row.pulses > 0):
                rows[n] = replace(row, spot=n)
            elif row.pulses > 0:  # pulsed in two sessions: never by a resume; shown if a record says so
                rows[n] = replace(row, spot=n, delivered_j=earlier.delivered_j + row.delivered_j, status="over_dosed")
    return [rows[n] for n in sorted(rows)], [str(r.path) for r in chain]
