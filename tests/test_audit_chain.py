"""The audit log's hash chain (events.py writes it, log_chain.py verifies it, ``plasmactl verify-log``).

A real session (short.toml with the E-stop scenario on the spelled-out sim rig, so the first line names all
three input files) verifies; every kind of damage is caught at the first line where the chain stops
holding: any single-byte edit (generated), each line deleted, each pair of neighbours swapped, a line
inserted anywhere, the tail cut anywhere (summary.json's anchor present). A torn last line is tolerated.
The command's contract: ``chain intact: N records`` and 0, ``line L: ...`` and 3, bad input 2.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from plasmactl import clock
from plasmactl.cli import app
from plasmactl.events import AuditLog, read_events
from plasmactl.faults import load_faults
from plasmactl.log_chain import (
    NO_SESSION_END,
    PREV_FIELD,
    TORN,
    ChainReport,
    NotALog,
    anchor_of,
    genesis_sha256,
    line_sha256,
    verify_bytes,
    verify_file,
)
from plasmactl.plan import load_plan
from plasmactl.rig import load_rig
from plasmactl.session import SessionInputs, run_blocking

pytestmark = pytest.mark.hazard("H14")

REPO = Path(__file__).parents[1]
EXAMPLES = REPO / "examples"
SHORT = EXAMPLES / "plans" / "short.toml"
RIG = EXAMPLES / "rigs" / "sim.toml"
ESTOP = EXAMPLES / "faults" / "safety-estop.toml"
PLASMACTL = Path(sys.executable).parent / "plasmactl"
EXIT_OK, EXIT_BAD_INPUT, EXIT_BROKEN = 0, 2, 3


@dataclass(frozen=True)
class Session:
    out: Path
    log: Path
    data: bytes
    lines: list[bytes]  # without their newlines
    anchor: dict[str, Any]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    plan, plan_file = load_plan(str(SHORT))
    rig, rig_file = load_rig(str(RIG))
    faults, faults_file = load_faults(str(ESTOP))
    out = tmp_path_factory.mktemp("chain") / "out"
    inputs = SessionInputs(
        plan=plan, plan_file=plan_file, rig=rig, rig_file=rig_file, faults=faults, faults_file=faults_file, seed=5
    )
    run_blocking(inputs, out, handle_sigint=False)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    data = (out / "events.jsonl").read_bytes()
    return Session(out, out / "events.jsonl", data, data.split(b"\n")[:-1], summary["log"])


def _problem_line(report: ChainReport) -> int:
    assert report.problem is not None, "damage not detected"
    return report.problem.line


# ------------------------------------------------------------------------------------------ a real session


def test_a_real_session_verifies(session: Session) -> None:
    report = verify_file(session.log, files=True)
    assert report.ok, report.problem
    assert report.records == len(session.lines) == session.anchor["records"]
    assert report.anchored and report.session_end and not report.torn
    assert report.notes == []
    assert report.last_sha256 == session.anchor["last_sha256"] == line_sha256(session.lines[-1] + b"\n")
    assert [line.split(": ", 1)[1] for line in report.files] == ["unchanged"] * 3  # the input files, still there
    tissue = json.loads((session.out / "summary.json").read_text(encoding="utf-8"))["tissue"]
    assert tissue and PREV_FIELD not in tissue  # the summary copies a record's fields, never its link


def test_every_line_carries_the_hash_of_the_one_before(session: Session) -> None:
    lines = session.lines
    records = [orjson.loads(line) for line in lines]
    assert all(list(r)[-1] == PREV_FIELD for r in records)  # the last field of every line
    for before, record in zip(lines, records[1:], strict=False):
        assert record[PREV_FIELD] == hashlib.sha256(before + b"\n").hexdigest()
    assert read_events(session.log) == records  # readers see one more field, nothing else changes


def test_genesis_is_the_hash_of_the_input_files(session: Session) -> None:
    first = orjson.loads(session.lines[0])
    assert first["event"] == "session_start"
    digests = {}
    for name, path in (("plan_file", SHORT), ("rig_file", RIG), ("faults_file", ESTOP)):
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        assert first[name] == {"path": str(path), "sha256": digests[name]}
    canonical = (
        f'{{"faults_file":"{digests["faults_file"]}","genesis":"plasmactl audit chain v1",'
        f'"plan_file":"{digests["plan_file"]}","rig_file":"{digests["rig_file"]}"}}'
    )
    assert first[PREV_FIELD] == hashlib.sha256(canonical.encode()).hexdigest()


# ------------------------------------------------------------------------------------------ damage, generated


def _line_of(lines: list[bytes], pos: int) -> tuple[int, int]:
    """The 1-based line holding byte ``pos`` (its newline included), and the offset in that line."""
    start = 0
    for number, line in enumerate(lines, start=1):
        if pos <= start + len(line):
            return number, pos - start
        start += len(line) + 1
    raise AssertionError(pos)


def _expected_after_edit(lines: list[bytes], pos: int, new: int) -> int:
    """Where the chain must break after byte ``pos`` becomes ``new``: at the edited line if it no longer
    parses, or its own prev_sha256 (or line 1's genesis) changed; else at the next line, whose
    prev_sha256 no longer matches; the last line's content is held by summary.json's anchor (same line)."""
    k, offset = _line_of(lines, pos)
    line = lines[k - 1]
    if offset == len(line) or new == ord("\n"):
        return k  # lines merged or split: not JSON (the last line's newline: torn, one record short)
    edited = line[:offset] + bytes([new]) + line[offset + 1 :]
    try:
        record = orjson.loads(edited)
    except orjson.JSONDecodeError:
        return k
    original = orjson.loads(line)
    if not isinstance(record, dict) or record.get(PREV_FIELD) != original[PREV_FIELD]:
        return k
    if k == 1 and genesis_sha256(record) != original[PREV_FIELD]:
        return k
    return min(k + 1, len(lines))


def _edit(data: bytes, pos: int, new: int) -> bytes:
    return data[:pos] + bytes([new]) + data[pos + 1 :]


@settings(max_examples=400, deadline=None)
@given(where=st.floats(0.0, 1.0, exclude_max=True), new=st.integers(0, 255))
def test_any_single_byte_edit_is_caught(session: Session, where: float, new: int) -> None:
    pos = int(where * len(session.data))
    if session.data[pos] == new:
        new ^= 0x01
    report = verify_bytes(_edit(session.data, pos, new), session.anchor)
    assert _problem_line(report) == _expected_after_edit(session.lines, pos, new), (pos, new, report.problem)


def test_single_byte_edits_in_every_line(session: Session) -> None:
    """In every line: its first byte, its newline, a byte of its prev_sha256 value and two anywhere."""
    rng, start, positions = random.Random(9), 0, []
    for line in session.lines:
        hash_at = line.rindex(b'"', 0, len(line) - 1) - rng.randrange(1, 65)
        positions += [start, start + len(line), start + hash_at, *(start + rng.randrange(len(line)) for _ in "ab")]
        start += len(line) + 1
    for pos in positions:
        for new in (rng.randrange(256), ord("\n"), ord("0") if session.data[pos] != ord("0") else ord("1")):
            if new == session.data[pos]:
                continue
            report = verify_bytes(_edit(session.data, pos, new), session.anchor)
            assert _problem_line(report) == _expected_after_edit(session.lines, pos, new), (pos, new)


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def test_every_line_deleted_is_caught(session: Session) -> None:
    lines = session.lines
    for k in range(1, len(lines) + 1):
        report = verify_bytes(_join(lines[: k - 1] + lines[k:]), session.anchor)
        assert _problem_line(report) == k, k  # the line now at k (or, the last deleted, the anchor's)
        if k < len(lines):
            assert "edited, removed or reordered" in str(report.problem) or k == 1
        else:
            assert "lines removed at the end" in str(report.problem)


def test_every_swap_of_neighbours_is_caught(session: Session) -> None:
    lines = session.lines
    for k in range(1, len(lines)):
        swapped = [*lines[: k - 1], lines[k], lines[k - 1], *lines[k + 1 :]]
        assert _problem_line(verify_bytes(_join(swapped), session.anchor)) == k, k


def test_a_line_inserted_anywhere_is_caught(session: Session) -> None:
    """Before line k: a copy of a line, an empty line, garbage, a line forged with a valid link. Where the
    inserted line links to the one before it (forged, or a copy of the line it pushes down), it is the
    next line that no longer links: that is where the chain breaks (at the end: the anchor's count)."""
    lines, n = session.lines, len(session.lines)
    rng = random.Random(17)
    for k in range(1, n + 2):  # k = N + 1 appends
        before = line_sha256(lines[k - 2] + b"\n") if k > 1 else genesis_sha256({})
        forged = orjson.dumps({"t": 0.5, "event": "reset", PREV_FIELD: before})
        follows = lines[k - 1] if k <= n else None
        for extra in (rng.choice(lines), b"", b"not json", follows or lines[0], forged):
            report = verify_bytes(_join([*lines[: k - 1], extra, *lines[k - 1 :]]), session.anchor)
            linked = extra in (forged, follows)
            assert _problem_line(report) == (k + 1 if linked and k <= n else k), (k, extra[:40])
    assert "lines added later" in str(report.problem)  # the last: appended with a valid link, seen by the anchor
    assert verify_bytes(_join([*lines, forged])).ok  # and only by the anchor


def test_the_tail_cut_anywhere_is_caught_by_the_anchor(session: Session) -> None:
    data, lines = session.data, session.lines
    rng = random.Random(23)
    ends = [len(_join(lines[:k])) for k in range(1, len(lines))]  # every line boundary, and near it
    cuts = sorted(
        {*ends, *(e - 1 for e in ends), *(e + 1 for e in ends), *(rng.randrange(len(data)) for _ in range(200))}
    )
    for cut in cuts:
        if cut < len(lines[0]) + 1:
            with pytest.raises(NotALog):
                verify_bytes(data[:cut])  # nothing whole left, and no anchor: nothing to verify
            assert _problem_line(verify_bytes(data[:cut], session.anchor)) == 1
            continue
        complete = data[:cut].count(b"\n")
        report = verify_bytes(data[:cut], session.anchor)
        assert _problem_line(report) == complete + 1, cut
        assert "lines removed at the end" in str(report.problem)
        alone = verify_bytes(data[:cut])  # without the anchor a cut is indistinguishable from a crash
        assert alone.ok and alone.records == complete and NO_SESSION_END in alone.notes
        assert (TORN in alone.notes) == (data[cut - 1] != ord("\n"))


def test_a_torn_last_line_is_tolerated(session: Session) -> None:
    for torn in (b'{"t":1.0,"ev', session.lines[-1][:-3], b"{"):
        report = verify_bytes(session.data + torn, session.anchor)
        assert report.ok and report.records == len(session.lines) and report.notes == [TORN]
    cut = session.data[: -len(session.lines[-1]) // 2]  # the crash tore session_end itself
    report = verify_bytes(cut)
    assert report.ok and report.records == len(session.lines) - 1
    assert report.notes == [TORN, NO_SESSION_END]


# ------------------------------------------------------------------------------------------ the writer


def test_audit_log_chain_from_the_first_emit(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    heard: list[dict[str, Any]] = []

    async def session() -> list[dict[str, Any]]:
        c = clock.LoopClock()
        log = AuditLog(path, c)
        log.subscribe(lambda e: heard.append(dict(e)))
        returned = [log.emit("session_start", plan_file=None, rig_file=None, faults_file=None)]
        with pytest.raises(TypeError):
            log.emit("reading", skin_c=object())  # not written: no link in the chain either
        with pytest.raises(ValueError, match=PREV_FIELD):
            log.emit("reading", **{PREV_FIELD: "0" * 64})
        await c.sleep(1.0)
        returned.append(log.emit("reading", skin_c=31.0))
        returned.append(log.emit("session_end", outcome="complete"))
        assert log.anchor == {"records": 3, "last_sha256": line_sha256(path.read_bytes().split(b"\n")[-2] + b"\n")}
        log.close()
        return returned

    returned = clock.run(session(), virtual=True)
    lines = path.read_bytes().split(b"\n")[:-1]
    null = b'{"faults_file":null,"genesis":"plasmactl audit chain v1","plan_file":null,"rig_file":null}'
    assert returned[0][PREV_FIELD] == hashlib.sha256(null).hexdigest()
    assert returned == heard == [orjson.loads(line) for line in lines]  # what listeners get is what was written
    assert anchor_of(path) == {"records": 3, "last_sha256": line_sha256(lines[-1] + b"\n")}
    report = verify_file(path)
    assert report.ok and report.records == 3 and report.session_end


def test_a_stale_summary_is_removed_when_a_session_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --overwrite, a cut session must not leave the earlier session's anchor beside its log."""
    import plasmactl.session as session_module

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"log": {"records": 1, "last_sha256": "00"}}\n', encoding="utf-8")
    monkeypatch.setattr(session_module, "write_summary", lambda out_dir, anchor=None: {})  # as if cut there
    plan, plan_file = load_plan(str(SHORT))
    run_blocking(SessionInputs(plan=plan, plan_file=plan_file), out, handle_sigint=False)
    assert not (out / "summary.json").exists()
    report = verify_file(out / "events.jsonl")
    assert report.ok and not report.anchored and report.session_end


# ------------------------------------------------------------------------------------------ the command


def _invoke(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, ["verify-log", *args])


def _copy(session: Session, to: Path, data: bytes | None = None, summary: bool = True) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    (to / "events.jsonl").write_bytes(session.data if data is None else data)
    if summary:
        (to / "summary.json").write_bytes((session.out / "summary.json").read_bytes())
    return to / "events.jsonl"


@pytest.mark.parametrize("cut", ["middle", "end"])
def test_cli_broken_names_the_first_bad_line(session: Session, tmp_path: Path, cut: str) -> None:
    lines, n = session.lines, len(session.lines)
    k = n // 2 if cut == "middle" else n
    result = _invoke(str(_copy(session, tmp_path, _join([*lines[: k - 1], *lines[k:]]))))
    assert result.exit_code == EXIT_BROKEN, result.output
    expected = {
        "middle": f"line {k}: prev_sha256 does not match line {k - 1} (edited, removed or reordered)",
        "end": f"line {n}: missing: summary.json anchors {n} records, the log ends after line {n - 1}",
    }[cut]
    assert result.stdout.splitlines()[0].startswith(expected)
    assert result.stdout.splitlines()[1] == f"chain broken: lines 1 to {k - 1} verify"


def test_cli_torn_and_cut_logs_verify_with_notes(session: Session, tmp_path: Path) -> None:
    log = _copy(session, tmp_path, _join(session.lines[:-1]) + session.lines[-1][:10], summary=False)
    result = _invoke(str(log))
    assert result.exit_code == EXIT_OK, result.output
    out = result.stdout.splitlines()
    assert out[0] == f"chain intact: {len(session.lines) - 1} records"
    assert f"note: {TORN}" in out and f"note: {NO_SESSION_END}" in out


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("missing.jsonl", None, "file not found"),
        ("empty.jsonl", b"", "no complete record"),
        ("plan.toml", SHORT.read_bytes(), "not a hash-chained audit log"),
        ("old.jsonl", b'{"t":0.0,"event":"session_start"}\n{"t":1.0,"event":"session_end"}\n', "no line is"),
        ("a-folder", "dir", "is a directory"),
    ],
)
def test_cli_bad_input_is_exit_2(tmp_path: Path, name: str, content: bytes | str | None, says: str) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    result = _invoke(str(path))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert says in " ".join(result.stderr.split())


def test_cli_reports_an_input_file_changed_since(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_bytes(b'name = "x"\n')
    path = tmp_path / "events.jsonl"

    async def session() -> None:
        log = AuditLog(path, clock.LoopClock())
        log.emit(
            "session_start", plan_file={"path": str(plan), "sha256": hashlib.sha256(plan.read_bytes()).hexdigest()}
        )
        log.emit("session_end", outcome="complete")
        log.close()

    clock.run(session(), virtual=True)
    plan.write_bytes(b'name = "y"\n')
    result = _invoke(str(path))
    assert result.exit_code == EXIT_OK, result.output  # informational: the log itself is intact
    assert f"input: plan file {plan}: changed since the session (sha256 differs)" in result.stdout.splitlines()


@pytest.mark.subprocess
def test_the_real_command(session: Session, tmp_path: Path) -> None:
    def run(log: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PLASMACTL), "verify-log", str(log)], capture_output=True, text=True, timeout=60, cwd=REPO
        )

    intact = run(session.log)
    assert intact.returncode == EXIT_OK, intact.stderr
    assert intact.stdout.splitlines()[0] == f"chain intact: {len(session.lines)} records"
    broken = run(_copy(session, tmp_path / "b", _edit(session.data, len(session.lines[0]) + 5, ord("9"))))
    assert broken.returncode == EXIT_BROKEN
    assert broken.stdout.startswith("line 2: ")
    assert run(tmp_path / "nothing.jsonl").returncode == EXIT_BAD_INPUT


def test_the_lines_kept_for_the_summary_cost_their_own_length(tmp_path: Path) -> None:
    """The writer keeps every line (the summary reads them back without parsing the file): each must hold its
    own bytes, not the serializer's whole output buffer (orjson's is ~4 KiB; a full-face session kept 75 MB
    that way, and a process running sessions back to back grew by that and slowed by half)."""
    import tracemalloc

    async def session() -> int:
        c = clock.LoopClock()
        log = AuditLog(tmp_path / "events.jsonl", c)
        log.emit("session_start", plan_file=None, rig_file=None, faults_file=None)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(2000):
                log.emit("reading", skin_c=31.0 + i * 1e-3, sample_t=i * 0.1)
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        log.close()
        return kept

    kept = clock.run(session(), virtual=True)
    line = len((tmp_path / "events.jsonl").read_bytes().split(b"\n")[-2])
    assert line < 200
    # the line itself, its bytes object's header, the name and time kept beside it: well under 1 KiB a record
    assert kept / 2000 < 2 * line + 200, f"{kept / 2000:.0f} bytes kept per {line}-byte record"
