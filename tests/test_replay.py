"""``plasmactl replay RUN_DIR/events.jsonl``: a recorded session run again from its first record (plan, rig,
faults, seed) and compared with the record event by event (docs/replay.md).

Sessions are recorded in-process in virtual time, once per module where they are shared. The command is
tested through a typer app built here (``cli_replay.register``) and, in the child-process tests, as the
real ``plasmactl``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from audit import EXAMPLES
from plasmactl import cli_replay
from plasmactl import replay as replay_module
from plasmactl.cli_inputs import load_inputs
from plasmactl.controller.owner import Controller
from plasmactl.ports import SessionResult
from plasmactl.replay_compare import Numbered, Tolerances, compare, diff_events
from plasmactl.rig import ModbusTcp, PlasmaSim, SafetySim, load_rig
from plasmactl.session import run_blocking

PLASMACTL = Path(sys.executable).parent / "plasmactl"
PLANS = sorted((EXAMPLES / "plans").glob("*.toml"))
SHORT = EXAMPLES / "plans" / "short.toml"
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
Event = dict[str, Any]
RECORD_CHANGED = pytest.mark.hazard("H14")  # a record changed after the session: the replay finds where


def record(out: Path, plan: Path = SHORT, faults: str | None = None, seed: int = 0, rig: str | None = None) -> Path:
    """A session as ``plasmactl run`` leaves it; its log's path."""
    inputs = load_inputs(
        plan,
        None if rig is None else EXAMPLES / "rigs" / rig,
        None if faults is None else EXAMPLES / "faults" / faults,
        seed,
    )
    run_blocking(inputs, out, realtime=not inputs.rig.virtual_time_ok, handle_sigint=False)
    return out / "events.jsonl"


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})
    cli_replay.register(app)

    @app.callback()
    def _root() -> None:  # a group, as plasmactl's: the command is called by its name
        pass

    return app


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """In-process, exceptions not caught: anything but an exit fails the test with its traceback."""
    return CliRunner(env={**ENV, **(env or {})}).invoke(_app(), ["replay", *args], catch_exceptions=False)


def replay(log: Path, out: Path, *args: str) -> Result:
    return invoke(str(log), "--out", str(out), *args)


def lines_of(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines(keepends=True)


def records(log: Path) -> list[Event]:
    return [json.loads(line) for line in lines_of(log)]


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def dumped(event: Event) -> str:
    return json.dumps(event, separators=(",", ":")) + "\n"


def line_of(log: Path, name: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` event called ``name``."""
    seen = 0
    for number, e in enumerate(records(log), start=1):
        if e["event"] == name:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(f"no {name} #{nth} in {log}")


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("replay") / "short")


# --------------------------------------------------------------------------- determinism


def test_two_runs_with_the_same_seed_give_the_same_log(short: Path, tmp_path: Path) -> None:
    """The premise: in virtual time a session is a function of its inputs and seed (t included, exactly);
    only the wall clock and the hashes (which hash it) differ."""
    again = records(record(tmp_path / "again"))
    first = records(short)
    assert len(again) == len(first)
    for a, b in zip(first, again, strict=True):
        for e in (a, b):
            e.pop("prev_sha256")
            e.pop("wall_time", None)
        assert a == b


# --------------------------------------------------------------------------- replays that agree


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_replay_of_each_example_plan_has_no_divergence(plan: Path, tmp_path: Path) -> None:
    """full-face too: 1517 pulses, about 10 s to record and 10 s to replay in virtual time."""
    log = record(tmp_path / "run", plan)
    result = replay(log, tmp_path / "replay")
    assert result.exit_code == 0, result.output
    count = len(lines_of(log))
    assert f"no divergence: {count} events compared" in result.stdout
    assert (tmp_path / "replay" / "events.jsonl").is_file()  # kept
    assert "note:" not in result.stdout  # deterministic: nothing to qualify


@pytest.mark.parametrize(
    "faults", ["plasma-no-output.toml", "safety-estop.toml", "spray-valve-slow.toml", "thermometer-stuck.toml"]
)
def test_replay_of_a_session_with_faults_has_no_divergence(faults: str, tmp_path: Path) -> None:
    log = record(tmp_path / "run", faults=faults, seed=7)
    result = replay(log, tmp_path / "replay")
    assert result.exit_code == 0, result.output
    assert "1 fault(s), seed 7" in result.stdout
    assert f"no divergence: {len(lines_of(log))} events compared" in result.stdout


def test_a_session_folder_is_taken_for_its_log(short: Path, tmp_path: Path) -> None:
    result = invoke(str(short.parent), "--out", str(tmp_path / "replay"), "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # --quiet: no progress


def test_without_out_the_replay_is_kept_in_a_new_temp_folder(short: Path) -> None:
    result = invoke(str(short), "-q")
    assert result.exit_code == 0, result.output
    kept = Path(result.stdout.rsplit("replay log ", 1)[1].strip())
    try:
        assert kept.name == "events.jsonl" and kept.is_file()
        assert kept.parent.name.startswith("plasmactl-replay-")
    finally:
        shutil.rmtree(kept.parent)


# --------------------------------------------------------------------------- edited records


@RECORD_CHANGED
def test_a_changed_value_is_reported_at_its_line(short: Path, tmp_path: Path) -> None:
    lines = lines_of(short)
    k = line_of(short, "pulse_end", 3)
    event = json.loads(lines[k - 1])
    event["energy_j"] *= 1.05
    lines[k - 1] = dumped(event)
    result = replay(write(tmp_path / "edited" / "events.jsonl", lines), tmp_path / "replay")
    assert result.exit_code == 3, result.output
    assert f"divergence at line {k}: pulse_end: 1 field(s) differ: energy_j" in result.stdout
    assert "energy_j: expected" in result.stdout and f"{k - 1} events agreed before it" in result.stdout
    assert "hash chain is broken" in result.stdout  # said, and compared all the same


@RECORD_CHANGED
def test_a_deleted_line_is_reported_at_its_line(short: Path, tmp_path: Path) -> None:
    lines = lines_of(short)
    k = line_of(short, "spray_command", 2)
    after = records(short)[k]["event"]  # what line k holds once line k is gone
    del lines[k - 1]
    result = replay(write(tmp_path / "deleted.jsonl", lines), tmp_path / "replay")
    assert result.exit_code == 3, result.output
    assert f"divergence at line {k}: expected {after}, got spray_command" in result.stdout


@RECORD_CHANGED
def test_an_added_line_is_reported_at_its_line(short: Path, tmp_path: Path) -> None:
    lines = lines_of(short)
    k = line_of(short, "pulse_start", 4)
    extra = {"t": json.loads(lines[k - 1])["t"], "event": "warning", "message": "added", "prev_sha256": "0" * 64}
    lines.insert(k - 1, dumped(extra))
    result = replay(write(tmp_path / "added.jsonl", lines), tmp_path / "replay")
    assert result.exit_code == 3, result.output
    assert f"divergence at line {k}: expected warning, got pulse_start" in result.stdout
    assert '"message":"added"' in result.stdout  # the event itself is shown


def test_times_are_compared_within_the_tolerance(short: Path, tmp_path: Path) -> None:
    lines = lines_of(short)
    k = line_of(short, "spray_start", 2)
    event = json.loads(lines[k - 1])
    event["t"] += 0.0004  # 0.4 ms: within the default 1 ms
    lines[k - 1] = dumped(event)
    within = write(tmp_path / "within.jsonl", lines)
    assert replay(within, tmp_path / "r1", "-q").exit_code == 0
    event["t_open"] += 0.003  # 3 ms
    lines[k - 1] = dumped(event)
    beyond = write(tmp_path / "beyond.jsonl", lines)
    result = replay(beyond, tmp_path / "r2", "-q")
    assert result.exit_code == 3 and f"divergence at line {k}: spray_start" in result.stdout, result.output
    assert "t_open: expected" in result.stdout and "tolerance 1 ms" in result.stdout
    assert replay(beyond, tmp_path / "r3", "-q", "--tolerance-ms", "5").exit_code == 0


def test_hashes_and_wall_time_are_not_compared(short: Path, tmp_path: Path) -> None:
    lines = lines_of(short)
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    first["wall_time"] += 3600.0
    last["prev_sha256"] = "f" * 64
    result = replay(write(tmp_path / "x.jsonl", [dumped(first), *lines[1:-1], dumped(last)]), tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output


def test_a_record_longer_or_shorter_than_the_replay(short: Path, tmp_path: Path) -> None:
    lines = lines_of(short)
    end = lines[-1]
    longer = write(tmp_path / "longer.jsonl", [*lines, end])  # a second session_end
    result = replay(longer, tmp_path / "r1", "-q")
    assert result.exit_code == 3 and f"line {len(lines) + 1}: expected session_end, got the end of the replay" in (
        result.stdout
    )
    shorter = write(tmp_path / "shorter.jsonl", [*lines[:-2], end])  # the tissue summary dropped
    result = replay(shorter, tmp_path / "r2", "-q")
    assert result.exit_code == 3 and f"line {len(lines) - 1}: expected session_end, got tissue_summary" in (
        result.stdout
    )


# --------------------------------------------------------------------------- what cannot be replayed exactly


def test_a_session_on_the_real_clock_is_compared_as_a_sequence(short: Path, tmp_path: Path) -> None:
    """In virtual time the first record is stamped 0.0; on the real clock later (a stand-in record here)."""
    events = records(short)
    events[0]["t"] = 0.000402
    for e in events[1:]:
        e["t"] = round(e["t"] + 0.0123, 9)
        if e["event"] == "reading":
            e["skin_c"] += 0.01  # measured at another moment
    result = replay(write(tmp_path / "rt.jsonl", [dumped(e) for e in events]), tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output
    assert "note: the session ran on the real clock" in result.stdout
    assert "events of the sequence (names and non-float fields) compared" in result.stdout
    k = line_of(short, "pulse_end", 2)
    events[k - 1]["pulse"] = 99  # but not the pulse numbers
    result = replay(write(tmp_path / "rt2.jsonl", [dumped(e) for e in events]), tmp_path / "r2", "-q")
    assert result.exit_code == 3 and f"divergence at line {k}: pulse_end: 1 field(s) differ: pulse" in result.stdout


def test_a_session_on_wires_is_replayed_on_simulators(tmp_path: Path) -> None:
    log = record(tmp_path / "run", rig="sim-tcp-inprocess.toml")
    # however the wire session ended (its own timing on a loaded machine), its sequence replays the same
    result = replay(log, tmp_path / "replay", "-q")
    assert result.exit_code == 0, result.output
    assert "note: the session ran on devices on wires (modbus-tcp, serial served in-process)" in result.stdout
    assert "(replayed on in-process simulators)" in result.stdout and "events of the sequence" in result.stdout
    start = records(tmp_path / "replay" / "events.jsonl")[0]
    assert start["rig"]["plasma"]["kind"] == "sim" and start["rig_file"] is None


def test_the_wired_rigs_timing_is_kept_on_the_simulators() -> None:
    from plasmactl.replay import sim_rig

    rig, _ = load_rig(str(EXAMPLES / "rigs" / "sim-tcp.toml"))
    sims = sim_rig(rig)
    assert sims.all_simulated and sims.serve is None and sims.skin == rig.skin
    assert isinstance(rig.plasma, ModbusTcp) and isinstance(sims.plasma, PlasmaSim)
    for device in ("plasma", "spray", "thermometer", "safety"):
        wired, sim = rig.timing(device), sims.timing(device)
        assert sim.call_budget_ms == wired.call_budget_ms, device
        assert (sim.watchdog_ms, sim.poll_ms) == (wired.watchdog_ms, wired.poll_ms), device
        assert sims.max_age_s(device, 500.0) == rig.max_age_s(device, 500.0), device
    assert isinstance(sims.safety, SafetySim) and sims.refresh_period_ms("safety") == rig.refresh_period_ms("safety")


def test_an_outside_input_ends_the_comparison_at_its_line(short: Path, tmp_path: Path) -> None:
    events = records(short)
    k = line_of(short, "pulse_start", 3)
    abort = {"t": events[k - 1]["t"], "event": "abort", "reason": "operator interrupt (SIGINT)", "signal": "SIGINT"}
    cut = [*events[: k - 1], abort, events[-1]]
    result = replay(write(tmp_path / "cut.jsonl", [dumped(e) for e in cut]), tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output
    assert f"an operator's SIGINT at line {k}" in result.stdout
    assert f"no divergence: {k - 1} events compared" in result.stdout


async def _crash(self: Controller) -> SessionResult:
    raise RuntimeError("injected crash")


def test_a_crash_the_record_holds_is_replayed_and_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Controller, "run", _crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        record(tmp_path / "run")
    log = tmp_path / "run" / "events.jsonl"
    assert records(log)[-1]["internal_error"] is True
    result = replay(log, tmp_path / "replay", "-q")
    assert result.exit_code == 0, result.output
    assert "note: the replay ended in an internal error (RuntimeError: injected crash)" in result.stdout


def test_a_crash_only_the_replay_has_is_a_divergence(
    short: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Controller, "run", _crash)
    result = replay(short, tmp_path / "replay", "-q")
    assert result.exit_code == 3, result.output
    assert f"divergence at line 2: expected {records(short)[1]['event']}, got session_end" in result.stdout


def test_a_replay_that_leaves_no_log_is_an_internal_error(
    short: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> SessionResult:
        raise OSError("disk gone")

    monkeypatch.setattr(replay_module, "run_blocking", fail)
    result = replay(short, tmp_path / "replay", "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: internal error in the replay: OSError: disk gone")


def test_a_resumed_sessions_link_is_said_and_not_compared(short: Path, tmp_path: Path) -> None:
    events = records(short)
    events[0]["resume_of"] = {"log": "earlier/events.jsonl", "records": 40, "last_sha256": "a" * 64}
    result = replay(write(tmp_path / "resumed.jsonl", [dumped(e) for e in events]), tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output
    assert "note: the session resumed an earlier record" in result.stdout


# --------------------------------------------------------------------------- bad input


def _bad_inputs(short: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    lines = lines_of(short)
    start = json.loads(lines[0])
    bad_plan = {**start, "plan": {**start["plan"], "pulse": {**start["plan"]["pulse"], "energy_j": 9.0}}}
    no_rig = {k: v for k, v in start.items() if k != "rig"}
    (tmp / "empty-folder").mkdir()
    return {
        "missing": (tmp / "nothing.jsonl", "no such file"),
        "folder without a log": (tmp / "empty-folder", "holds no events.jsonl"),
        "empty": (write(tmp / "empty.jsonl", []), "not a session's audit log"),
        "not a log": (write(tmp / "text.jsonl", ["hello\n", "world\n"]), "not a session's audit log"),
        "binary": (tmp / "binary.jsonl", "not a session's audit log"),
        "not session_start first": (write(tmp / "headless.jsonl", lines[1:]), "not session_start"),
        "torn last line": (write(tmp / "torn.jsonl", [*lines[:20], lines[20][:30]]), "truncated: line 21"),
        "no session_end": (write(tmp / "cut.jsonl", lines[:40]), "truncated: no session_end"),
        "a line not a record": (write(tmp / "merged.jsonl", [*lines[:5], "{oops\n", *lines[5:]]), "line 6 is not"),
        "plan no longer validates": (
            write(tmp / "plan.jsonl", [dumped(bad_plan), *lines[1:]]),
            "the plan recorded in line 1 no longer validates: pulse.energy_j",
        ),
        "no rig": (write(tmp / "norig.jsonl", [dumped(no_rig), *lines[1:]]), "holds no rig"),
        "bad seed": (write(tmp / "seed.jsonl", [dumped({**start, "seed": "7"}), *lines[1:]]), "no usable seed"),
    }


BAD = [
    "missing",
    "folder without a log",
    "empty",
    "not a log",
    "binary",
    "not session_start first",
    "torn last line",
    "no session_end",
    "a line not a record",
    "plan no longer validates",
    "no rig",
    "bad seed",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_error_line_and_exit_2(case: str, short: Path, tmp_path: Path) -> None:
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    path, message = _bad_inputs(short, tmp_path)[case]
    result = invoke(str(path), "--out", str(tmp_path / "replay"))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr
    assert not (tmp_path / "replay").exists()  # refused before any work


def test_the_recorded_folder_is_never_the_replays(short: Path, tmp_path: Path) -> None:
    result = invoke(str(short), "--out", str(short.parent))
    assert result.exit_code == 2 and "holds the recorded log itself" in result.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "events.jsonl").write_text("{}\n", encoding="utf-8")
    result = invoke(str(short), "--out", str(taken))
    assert result.exit_code == 2 and "--overwrite" in result.stderr


# --------------------------------------------------------------------------- progress


def test_progress_lines_off_a_terminal_and_a_bar_on_one(short: Path, tmp_path: Path) -> None:
    plain = replay(short, tmp_path / "r1")
    assert plain.exit_code == 0 and "progress: spot 6/6 (100 %)" in plain.stderr
    bar = invoke(str(short), "--out", str(tmp_path / "r2"), env={"TTY_COMPATIBLE": "1"})
    assert bar.exit_code == 0 and "replay short" in bar.stderr and "6/6" in bar.stderr
    assert "progress:" not in bar.stderr


# --------------------------------------------------------------------------- the comparison itself


def test_fields_are_named_by_their_path_and_compared_by_what_they_are() -> None:
    a: Event = {"t": 1.0, "event": "x", "n": 1, "f": 1.0, "flag": True, "nested": {"list": [1, 2.0, "s"]}}
    assert diff_events(a, {**a, "wall_time": 5.0, "wall_s": 3.0, "prev_sha256": "ab"}) == []
    assert diff_events(a, {**a, "t": 1.0009}) == []
    assert [d.path for d in diff_events(a, {**a, "t": 1.0011})] == ["t"]
    assert [d.path for d in diff_events(a, {**a, "f": 1.0 + 1e-7})] == []
    assert [d.path for d in diff_events(a, {**a, "f": 1.001})] == ["f"]
    assert [d.path for d in diff_events(a, {**a, "n": 2})] == ["n"]
    assert [d.path for d in diff_events(a, {**a, "flag": 1})] == ["flag"]  # a bool is not a number
    assert [d.path for d in diff_events(a, {**a, "nested": {"list": [1, 2.5, "s"]}})] == ["nested.list[1]"]
    assert [str(d) for d in diff_events(a, {k: v for k, v in a.items() if k != "n"})] == ["n: expected 1, got (absent)"]
    assert diff_events(a, {**a, "f": 9.0}, "sequence") == []  # floats are left out of a sequence
    assert [d.path for d in diff_events(a, {**a, "n": 3}, "sequence")] == ["n"]
    assert diff_events({**a, "delay_ms": 10.0}, {**a, "delay_ms": 12.0}, tol=Tolerances(time_ms=2.5)) == []


def test_a_sequence_leaves_out_the_events_timing_decides() -> None:
    rec: list[Numbered] = [(1, {"event": "a"}), (2, {"event": "reading", "skin_c": 1.0}), (3, {"event": "b", "n": 1})]
    rep: list[Numbered] = [
        (1, {"event": "a"}),
        (2, {"event": "comm_error"}),
        (3, {"event": "b", "n": 1}),
        (4, {"event": "tissue"}),
    ]
    assert compare(rec, rep, "sequence").divergence is None
    divergence = compare(rec, rep, "exact").divergence
    assert divergence is not None and divergence.line == 2


# --------------------------------------------------------------------------- the real command


def real(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLASMACTL), "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
        check=False,
    )


@pytest.mark.subprocess
def test_the_real_command_replays_and_reports(short: Path, tmp_path: Path) -> None:
    ok = real(str(short), "--out", str(tmp_path / "r1"))
    assert ok.returncode == 0 and "no divergence" in ok.stdout, ok.stderr
    lines = lines_of(short)
    del lines[9]
    diverged = real(str(write(tmp_path / "deleted.jsonl", lines)), "--out", str(tmp_path / "r2"))
    assert diverged.returncode == 3 and "divergence at line 10" in diverged.stdout, diverged.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("case", ["missing", "not a log", "torn last line", "plan no longer validates"])
def test_the_real_command_on_bad_input_exits_2_without_a_traceback(case: str, short: Path, tmp_path: Path) -> None:
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)))
    path, message = _bad_inputs(short, tmp_path)[case]
    proc = real(str(path), "--out", str(tmp_path / "replay"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr
