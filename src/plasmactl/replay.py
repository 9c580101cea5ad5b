"""``plasmactl replay RUN_DIR/events.jsonl``: run a recorded session again and compare the two logs.

The recorded log's first record (``session_start``) holds everything a session is made of: the plan, rig
and fault scenario as data, and the seed. They are validated again (a plan that no longer validates is bad
input, as it would be for ``run``) and run on the in-process simulators in virtual time, where a session is
a function of its inputs and seed; the new log is then compared with the old one (``replay_compare``).

What cannot be replayed deterministically is said, and compared as a sequence only:

* a session on devices on wires (Modbus, serial, ``[serve]``): it followed the wire's real round trips. It is
  replayed on the in-process simulators, with the rig's timing kept (per-call budget, watchdog, poll period,
  status ages and the safety inputs' heartbeat), the simulators' physics at their defaults (as the served
  simulators have it) and the rig's skin;
* a session on the real clock (``session_start`` says ``realtime``, or is stamped later than 0 s: in
  virtual time nothing passes before the first record).

A record that took an outside input (an operator's signal, a plan edit or a reset during the session) is
compared up to that line: the replay cannot know when it came. Log problems are :class:`LogError` (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from plasmactl.budget import budget_problems
from plasmactl.events import Listener
from plasmactl.faults import FaultScenario, check_against_plan
from plasmactl.inputs import InputError, LoadedFile, describe_validation_error, validate
from plasmactl.log_chain import ChainReport, NotALog, read_anchor, verify_bytes
from plasmactl.plan import Plan
from plasmactl.ports import SessionResult
from plasmactl.regular_file import LOG_LIMIT, BadFile, read_regular
from plasmactl.replay_compare import Comparison, Mode, Numbered, Tolerances, compare
from plasmactl.rig import DEVICES, PlasmaSim, Rig, SafetySim, SpraySim, ThermometerSim
from plasmactl.run_log import LogError
from plasmactl.session import SessionInputs, run_blocking
from plasmactl.session_files import LOG_NAME, SUMMARY_NAME
from plasmactl.version import VERSION

SIMULATORS: dict[str, type[PlasmaSim | SpraySim | ThermometerSim | SafetySim]] = {
    "plasma": PlasmaSim,
    "spray": SpraySim,
    "thermometer": ThermometerSim,
    "safety": SafetySim,
}
M = TypeVar("M", bound=BaseModel)
OUTSIDE_INPUTS = ("plan_edit", "reset")  # and an ``abort`` with a signal
WIRE_FAULT_KINDS = frozenset({"delay", "corrupt", "garbage", "disconnect"})  # link faults only a wire shows


@dataclass
class Recorded:
    """The recorded log: its records with their line numbers, and the hash chain's verdict."""

    path: Path
    events: list[Numbered]
    chain: ChainReport

    @property
    def start(self) -> Mapping[str, Any]:
        return self.events[0][1]


@dataclass
class Prepared:
    """What the replay runs, and how its log can be compared with the record."""

    inputs: SessionInputs
    mode: Mode
    notes: list[str] = field(default_factory=list)
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per event, top-level fields not compared
    before_line: int | None = None


def log_file(path: Path) -> Path:
    """The log a ``replay`` argument names: the file itself, or a session folder's events.jsonl."""
    if path.is_dir():
        inside = path / LOG_NAME
        if not inside.is_file():
            raise LogError(f"{path}: holds no {LOG_NAME} (not a session's output folder?)")
        return inside
    if not path.exists():
        raise LogError(f"{path}: no such file")
    return path


def read_recorded(path: Path) -> Recorded:
    """Read a complete recorded log; LogError for anything a replay cannot start from."""
    try:
        data = read_regular(path, LOG_LIMIT)
    except BadFile as exc:  # a FIFO or /dev/zero given as the log: refused, not read forever
        raise LogError(f"{path}: {exc}") from None
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    anchor = read_anchor(path.parent / SUMMARY_NAME)[0] if path.name == LOG_NAME else None
    try:
        chain = verify_bytes(data, anchor)
    except NotALog as exc:
        raise LogError(f"{path}: not a session's audit log: {exc}") from None
    pieces = data.split(b"\n")
    if pieces[-1]:
        raise LogError(f"{path}: truncated: line {len(pieces)} is cut mid-write (no newline); nothing to compare to")
    events: list[Numbered] = []
    for number, line in enumerate(pieces[:-1], start=1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("event"), str):
            raise LogError(f"{path}: line {number} is not a record of the log (not a JSON object with an event)")
        events.append((number, record))
    first = events[0][1]["event"]
    if first != "session_start":
        raise LogError(f"{path}: not a session's audit log: its first record is {first!r}, not session_start")
    if not any(e.get("event") == "session_end" for _, e in events):
        raise LogError(f"{path}: truncated: no session_end after line {len(events)} (the session was cut)")
    return Recorded(path, events, chain)


def _loaded(entry: object) -> LoadedFile | None:
    """A file the record names (path and digest), to name it again in the replay's first record."""
    if isinstance(entry, Mapping) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str):
        return LoadedFile(str(entry["path"]), str(entry["sha256"]), {})
    return None


def sim_rig(rig: Rig) -> Rig:
    """The in-process simulators standing in for a rig on wires, each with the timing the controller had for
    the wired device (a call's budget, retries included, becomes the simulator's timeout)."""
    if rig.all_simulated:
        return rig
    devices: dict[str, Any] = {}
    for device in DEVICES:
        cfg = rig.timing(device)
        settings: dict[str, Any] = {
            "timeout_ms": cfg.call_budget_ms,
            "watchdog_ms": cfg.watchdog_ms,
            "poll_ms": cfg.poll_ms,
            "max_age_ms": cfg.max_age_ms,
        }
        if device == "safety":
            settings["heartbeat_ms"] = rig.refresh_period_ms("safety")
        if device == "spray":  # hardware-timed cooling stays hardware-timed (the simulators have the line)
            settings["trigger_line"] = rig.trigger_line
        devices[device] = SIMULATORS[device](**settings)
    return Rig(
        name=f"{rig.name} (replayed on in-process simulators)", description=rig.description, skin=rig.skin, **devices
    )


def _model(path: Path, what: str, model: type[M], data: object) -> M:
    try:
        return validate(model, data, what)
    except InputError as exc:
        raise LogError(
            f"{path}: the {what} recorded in line 1 no longer validates: {'; '.join(exc.problems)}"
        ) from None


def _seed(path: Path, start: Mapping[str, Any]) -> int:
    seed = start.get("seed")
    if type(seed) is not int or not 0 <= seed <= 2**32 - 1:
        raise LogError(f"{path}: line 1 holds no usable seed (got {seed!r})")
    return seed


def _outside_input(recorded: Recorded) -> tuple[int, str] | None:
    for line, e in recorded.events:
        name = e.get("event")
        if name == "abort" and e.get("signal"):
            return line, f"an operator's {e['signal']}"
        if name in OUTSIDE_INPUTS:
            return line, "a plan edit" if name == "plan_edit" else "a reset"
    return None


def _wire_kinds(rig: Rig) -> str:
    kinds = sorted({rig.timing(d).model_dump()["kind"] for d in DEVICES})
    return ", ".join(kinds) + (" served in-process" if rig.serve is not None and rig.serve.in_process else "")


def prepare(recorded: Recorded) -> Prepared:
    """The replay's inputs from the record's first line, checked as ``run`` checks its files."""
    path, start = recorded.path, recorded.start
    for key in ("plan", "rig", "faults"):
        if not isinstance(start.get(key), Mapping):
            raise LogError(f"{path}: line 1 (session_start) holds no {key} (written by another version?)")
    plan = _model(path, "plan", Plan, start["plan"])
    rig = _model(path, "rig", Rig, start["rig"])
    faults = _model(path, "fault scenario", FaultScenario, start["faults"])
    seed = _seed(path, start)
    notes: list[str] = []
    skip: dict[str, tuple[str, ...]] = {"session_start": ("version",)}
    mode: Mode = "exact"
    replay_rig, rig_file = rig, _loaded(start.get("rig_file"))
    if not rig.all_simulated:
        mode, rig_file = "sequence", None
        try:
            replay_rig = sim_rig(rig)
        except ValidationError as exc:
            why = "; ".join(describe_validation_error(exc, Rig))
            raise LogError(f"{path}: the recorded rig has no in-process equivalent: {why}") from None
        skip["session_start"] += ("rig", "rig_file")
        notes.append(
            f"the session ran on devices on wires ({_wire_kinds(rig)}): it is replayed on the equivalent"
            " in-process simulators (the rig's timing kept); their timing is not reproducible, so only the"
            " event sequence is compared"
        )
        wire_only = sorted({f.kind for f in faults.fault if f.device == "link" and f.kind in WIRE_FAULT_KINDS})
        if wire_only:
            notes.append(
                f"link faults {', '.join(wire_only)} act on a wire; the in-process simulators make them silence"
            )
    elif start.get("realtime") is True or start.get("t") != 0.0:
        mode = "sequence"
        notes.append(
            f"the session ran on the real clock (its first record is stamped t = {start.get('t')!r} s; in virtual"
            " time it is 0): it is replayed in virtual time and only the event sequence is compared"
        )
    problems = check_against_plan(faults, plan.pulse_count, plan.limits.max_session_s)
    problems += budget_problems(plan, replay_rig)
    if problems:
        on = "" if replay_rig is rig else " on the in-process simulators standing in for its rig"
        raise LogError(f"{path}: the inputs recorded in line 1 no longer validate{on}: {'; '.join(problems)}")
    if "resume_of" in start:  # the replay runs the plan as recorded; it continues no record itself
        skip["session_start"] += ("resume_of",)
        notes.append("the session resumed an earlier record (resume_of); the replay does not, and that is not compared")
    if start.get("version") != VERSION:
        notes.append(f"recorded with plasmactl {start.get('version')}, replayed with {VERSION}")
    if recorded.chain.problem is not None:
        notes.append(f"the record's hash chain is broken at {recorded.chain.problem}: it was changed after the session")
    inputs = SessionInputs(
        plan=plan,
        plan_file=_loaded(start.get("plan_file")),
        rig=replay_rig,
        rig_file=rig_file,
        faults=faults,
        faults_file=_loaded(start.get("faults_file")),
        seed=seed,
    )
    prepared = Prepared(inputs, mode, notes, skip)
    outside = _outside_input(recorded)
    if outside is not None:
        prepared.before_line = outside[0]
        notes.append(
            f"the session took {outside[1]} at line {outside[0]}, which a replay cannot reproduce: only the lines"
            " before it are compared"
        )
    return prepared


def run_replay(prepared: Prepared, out_dir: Path, listeners: tuple[Listener, ...] = ()) -> SessionResult:
    """The session again, in virtual time; its log is ``out_dir/events.jsonl``."""
    return run_blocking(prepared.inputs, out_dir, realtime=False, listeners=listeners)


def ended(out_dir: Path) -> bool:
    """The replay's log is whole: its last line is session_end (written whatever happened in the session)."""
    try:
        lines = (out_dir / LOG_NAME).read_bytes().split(b"\n")
        last = orjson.loads(lines[-2]) if len(lines) >= 2 and not lines[-1] else None
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(last, dict) and last.get("event") == "session_end"


def replayed_events(out_dir: Path) -> list[Numbered]:
    """The replay's own log (written whole by this process: every line is a record)."""
    lines = (out_dir / LOG_NAME).read_bytes().split(b"\n")[:-1]
    return [(number, orjson.loads(line)) for number, line in enumerate(lines, start=1)]


def compare_replay(recorded: Recorded, prepared: Prepared, out_dir: Path, tol: Tolerances) -> Comparison:
    return compare(
        recorded.events,
        replayed_events(out_dir),
        prepared.mode,
        tol,
        skip=prepared.skip,
        before_line=prepared.before_line,
    )
