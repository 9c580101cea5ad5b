"""CLI conventions (tracker issue 11): `--version`, `-h`, `--json`, `--quiet`/`--log-level`, progress, SIGTERM,
output paths refused first, "did you mean", a JSON file named as such, console rounding, and the summary's
session facts. Process-level behaviour (exit codes, what goes to stdout and what to stderr, never a
traceback) is tested on the real command in a child process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer

import plasmactl.cli as cli
from plasmactl.cli import NOTABLE, app
from plasmactl.cli_output import DEBUG, ERROR, INFO, WARNING, event_level
from plasmactl.cli_progress import Lines, eta_text
from plasmactl.console_format import describe, value_text
from plasmactl.events import LATCHED_STATES, read_events
from plasmactl.inputs import field_names_at
from plasmactl.log_chain import ANCHOR_KEY
from plasmactl.plan import Plan
from plasmactl.summary import summarize
from plasmactl.version import VERSION
from test_cli import EXAMPLES, GOOD_PLAN, PLASMACTL, REPO, all_output, invoke, plan_toml

pytestmark = pytest.mark.hazard("H12")
SHORT = str(EXAMPLES / "plans" / "short.toml")
FULL_FACE = str(EXAMPLES / "plans" / "full-face.toml")
ESTOP = str(EXAMPLES / "faults" / "safety-estop.toml")
SIM_RIG = str(EXAMPLES / "rigs" / "sim.toml")
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def real(args: Sequence[str], cwd: Path = REPO, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """The real command in a child process (stdout and stderr apart, neither a terminal)."""
    return subprocess.run(
        [str(PLASMACTL), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=ENV, check=False
    )


def one_json_object(stdout: str) -> dict[str, Any]:
    """stdout holds exactly one JSON object (one line) and nothing else."""
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


# --------------------------------------------------------------------------- --version, -h


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"plasmactl {VERSION}"


def _command_paths() -> list[list[str]]:
    group = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        for sub in getattr(command, "commands", {}):
            paths.append([name, sub])
    return paths


def test_every_command_is_listed() -> None:
    names = {p[0] for p in _command_paths()}
    assert {"run", "check", "sweep", "probe", "diagram", "contracts", "campaign", "verify-log", "serve-sim"} <= names


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p))
def test_dash_h_is_help_on_every_command(path: list[str]) -> None:
    short, long = invoke([*path, "-h"]), invoke([*path, "--help"])
    assert short.exit_code == 0, all_output(short)
    assert "Usage:" in short.stdout and short.stdout == long.stdout


@pytest.mark.subprocess
def test_dash_h_on_the_real_command() -> None:
    for args in (["-h"], ["run", "-h"]):
        proc = real(args)
        assert proc.returncode == 0 and "Usage: plasmactl" in proc.stdout, proc.stderr
        assert "--help" in proc.stdout and "-h" in proc.stdout


# --------------------------------------------------------------------------- --json


@pytest.mark.subprocess
def test_run_json_is_one_object_on_stdout_and_the_text_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = real(["run", SHORT, "--out", str(out), "--json"])
    assert proc.returncode == 0, proc.stderr
    obj = one_json_object(proc.stdout)
    for key in ("outcome", "cause", "exit_code", "out_dir", "pulses", "sprays", "summary"):
        assert key in obj, obj
    assert obj["ok"] is True and obj["exit_code"] == 0 and obj["outcome"] == "complete"
    assert obj["out_dir"] == str(out) and obj["pulses"] == 6 and obj["sprays"] == 6
    assert obj["summary"] == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "plasmactl: plan short" in proc.stderr and "session complete" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.subprocess
def test_run_json_on_a_safe_stop_says_so(tmp_path: Path) -> None:
    proc = real(["run", SHORT, "--out", str(tmp_path / "out"), "--faults", ESTOP, "--json"])
    assert proc.returncode == 3, proc.stderr
    obj = one_json_object(proc.stdout)
    assert obj["ok"] is False and obj["exit_code"] == 3 and obj["outcome"] == "estop"
    assert obj["summary"]["outcome"] == "estop"


@pytest.mark.subprocess
def test_check_json(tmp_path: Path) -> None:
    proc = real(["check", SHORT, "--rig", SIM_RIG, "--json"])
    assert proc.returncode == 0, proc.stderr
    obj = one_json_object(proc.stdout)
    assert obj["ok"] is True and obj["problems"] == []
    assert obj["plan"]["name"] == "short" and obj["plan"]["pulses"] == 6 and obj["plan"]["spots"] == 6
    assert obj["rig"]["file"] == SIM_RIG
    assert obj["pulse_bound"]["energy_limit_j"] > 0 and obj["cooling_budget"]["window_ms"] == 100.0
    assert proc.stderr.startswith("ok: plan 'short'") and obj["lines"] == proc.stderr.splitlines()


BAD_JSON_CASES = {
    "plan-typo": (["run", "plan.toml", "--out", "out"], "plan.toml", "did you mean energy_j?"),
    "check-plan-typo": (["check", "plan.toml"], "plan.toml", "did you mean energy_j?"),
    "out-under-a-file": (["run", "good.toml", "--out", "blocker/sub"], "blocker/sub", "--out cannot be created"),
    "seed-negative": (["run", "good.toml", "--seed", "-1"], "command line", "--seed"),
    "log-level-unknown": (["run", "good.toml", "--log-level", "loud"], "command line", "--log-level"),
    "unknown-option": (["check", "good.toml", "--sede", "1"], "command line", "--sede"),
    "quiet-and-verbose": (["run", "good.toml", "-q", "-v", "--out", "out"], "command line", "contradict"),
    "probe-missing-rig": (["probe", "nowhere.toml"], "nowhere.toml", "file not found"),
}


@pytest.mark.subprocess
@pytest.mark.parametrize("case", sorted(BAD_JSON_CASES))
def test_bad_input_with_json_exits_2_with_one_object(case: str, tmp_path: Path) -> None:
    args, source, phrase = BAD_JSON_CASES[case]
    (tmp_path / "plan.toml").write_text(plan_toml(pulse="[pulse]\nenergy_jj = 0.06\npulse_ms = 5.0"), encoding="utf-8")
    (tmp_path / "good.toml").write_text(GOOD_PLAN, encoding="utf-8")
    (tmp_path / "blocker").write_text("a file\n", encoding="utf-8")
    proc = real([*args, "--json"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    obj = one_json_object(proc.stdout)
    assert obj["ok"] is False and obj["exit_code"] == 2 and obj["source"] == source
    assert any(phrase in p for p in obj["problems"]), obj
    assert "Traceback" not in proc.stderr and proc.stderr.strip()
    assert not (tmp_path / "out").exists()


def test_run_json_on_an_internal_error_is_still_one_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected crash")

    monkeypatch.setattr(cli, "run_blocking", crash)
    result = invoke(["run", SHORT, "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 1
    obj = one_json_object(result.stdout)
    assert obj["ok"] is False and obj["exit_code"] == 1 and "injected crash" in obj["error"]
    assert "internal error: RuntimeError: injected crash" in result.stderr


# --------------------------------------------------------------------------- --quiet, --log-level


EVENT_LINE = re.compile(r"^\s*-?\d+\.\d{3}s  (\S+)", re.MULTILINE)


@pytest.mark.subprocess
def test_quiet_prints_only_errors_and_the_final_line_on_stderr(tmp_path: Path) -> None:
    proc = real(["run", SHORT, "--out", str(tmp_path / "out"), "--faults", ESTOP, "--quiet"])
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("session estop (estop): 3 pulses")
    shown = EVENT_LINE.findall(proc.stderr)
    assert shown and set(shown) <= {"interlock_trip", "estop", "fault", "cooling_missed"}, shown
    assert "progress:" not in proc.stderr and "plasmactl: plan" not in proc.stderr


def _shown(tmp_path: Path, *extra: str) -> list[str]:
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    result = invoke(["run", SHORT, "--out", str(out), "--faults", ESTOP, *extra])
    assert result.exit_code == 3, all_output(result)
    return EVENT_LINE.findall(result.stdout)


def test_log_level_chooses_the_events_shown(tmp_path: Path) -> None:
    debug, info = _shown(tmp_path, "--log-level", "debug"), _shown(tmp_path)
    warning, error = _shown(tmp_path, "--log-level", "warning"), _shown(tmp_path, "--log-level", "ERROR")
    assert debug == _shown(tmp_path, "--verbose") and info == _shown(tmp_path, "--log-level", "info")
    assert len(debug) > len(info) > len(warning) > len(error) > 0
    assert "reading" in debug and "reading" not in info and "self_test" in info
    assert "state" in warning and set(error) == {"interlock_trip", "estop"}
    for fewer, more in ((error, debug), (warning, info), (info, debug)):
        assert set(fewer) <= set(more)


@pytest.mark.parametrize(
    "args",
    [["--log-level", "loud"], ["--log-level"], ["--quiet", "--verbose"], ["-v", "--log-level", "error"]],
    ids=["unknown", "no-value", "quiet-and-verbose", "verbose-and-error"],
)
def test_log_level_mistakes_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    result = invoke(["run", SHORT, "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, all_output(result)
    assert not (tmp_path / "out").exists()


def test_the_default_stream_is_still_the_notable_events() -> None:
    """tests/test_audit_crash.py's witness: info shows NOTABLE and the latched states, exactly."""
    names = [*NOTABLE, "reading", "pulse_start", "pulse_end", "spray_start", "tissue", "plasma_arm"]
    events: list[dict[str, Any]] = [{"event": n} for n in names]
    events += [{"event": "state", "dest": d} for d in ("idle", "armed", "pulsing", *LATCHED_STATES)]
    for e in events:
        level = event_level(e)
        notable = e["event"] in NOTABLE or (e["event"] == "state" and e.get("dest") in LATCHED_STATES)
        assert (level >= INFO) == notable, e
        assert level in (DEBUG, INFO, WARNING, ERROR)


# --------------------------------------------------------------------------- progress


def test_plain_progress_every_10_pct_or_10_s() -> None:
    printed: list[str] = []
    now = [0.0]

    class Capture:
        def print(self, text: str, **kwargs: Any) -> None:
            printed.append(text)

    lines = Lines(Capture(), "spot", 30, clock=lambda: now[0])  # type: ignore[arg-type]
    for done in range(1, 31):
        now[0] += 0.5
        lines.update(done)
    assert len(printed) == 10 and printed[0] == "progress: spot 3/30 (10 %), eta 0:00:14"
    assert printed[-1] == "progress: spot 30/30 (100 %), eta 0:00:00"
    printed.clear()
    slow = Lines(Capture(), "spot", 1000, clock=lambda: now[0])  # type: ignore[arg-type]
    for done in range(1, 7):
        now[0] += 4.0  # 6 pulses in 24 s: 0.6 % done, a line at each 10 s passed
        slow.update(done)
    assert printed == ["progress: spot 3/1000 (0 %), eta 1:06:28", "progress: spot 6/1000 (0 %), eta 1:06:16"]
    assert eta_text(None) == "?" and eta_text(3725.4) == "1:02:05"


@pytest.mark.subprocess
def test_run_progress_lines_come_during_the_session_not_at_its_end(tmp_path: Path) -> None:
    proc = real(["run", SHORT, "--out", str(tmp_path / "out"), "--json"])  # all text on stderr, in order
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    progress = [i for i, line in enumerate(lines) if line.startswith("progress: spot ")]
    end = next(i for i, line in enumerate(lines) if "session_end" in line)
    assert len(progress) >= 5 and progress[0] < end, proc.stderr
    assert lines[progress[-1]].startswith("progress: spot 6/6 (100 %), eta ")
    assert re.fullmatch(r"progress: spot \d/6 \(\d+ %\), eta (\d:\d\d:\d\d|\?)", lines[progress[0]])


@pytest.mark.subprocess
def test_run_progress_on_a_terminal_is_a_bar_with_eta(tmp_path: Path) -> None:
    import pty
    import select

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [str(PLASMACTL), "run", SHORT, "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=secondary,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "150"},
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([primary], [], [], 0.2)[0]:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(primary)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    assert "6/6" in text and "eta" in text and "progress:" not in text
    assert "session complete" in stdout


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["sweep", SHORT, "--vary", "energy_j=0.004,0.005", "--workers", "1"], "progress: combination 2/2 (100 %)"),
        (["campaign", "--transport", "inprocess", "--limit", "2", "--workers", "1"], "progress: session 2/2 (100 %)"),
    ],
    ids=["sweep", "campaign"],
)
def test_sweep_and_campaign_progress_lines(args: list[str], line: str, tmp_path: Path) -> None:
    proc = real([*args, "--out", str(tmp_path / "out")], timeout=300)
    assert proc.returncode == 0, proc.stderr
    progress = [x for x in proc.stderr.splitlines() if x.startswith("progress: ")]
    assert len(progress) == 2 and progress[-1].startswith(line), proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.subprocess
def test_sigterm_mid_session_exits_143_in_the_safe_state(tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = out / "events.jsonl"
    with (tmp_path / "stdout").open("w") as stdout, (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [str(PLASMACTL), "run", SHORT, "--realtime", "--out", str(out), "--json"],
            stdout=stdout,
            stderr=stderr,
            cwd=REPO,
            env=ENV,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and log.read_bytes().count(b'"event":"pulse_end"') >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    err = (tmp_path / "stderr").read_text()
    assert code == 143, err
    assert "Traceback" not in err
    obj = one_json_object((tmp_path / "stdout").read_text())
    assert obj["exit_code"] == 143 and obj["outcome"] == "aborted" and obj["signal"] == "SIGTERM"
    end = read_events(log)[-1]
    assert end["event"] == "session_end" and end["outcome"] == "aborted" and end["signal"] == "SIGTERM"
    assert any(e["event"] == "plasma_off" for e in read_events(log))


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    "command",
    [
        ["run", SHORT],
        ["sweep", SHORT, "--vary", "energy_j=0.002,0.003"],
        ["campaign", "--transport", "inprocess"],
    ],
    ids=["run", "sweep", "campaign"],
)
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_an_unwritable_output_folder_is_refused_first(command: list[str], where: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "sub" if where == "under_a_file" else blocker
    t0 = time.perf_counter()
    result = invoke([*command, "--out", str(out)])
    text = all_output(result)
    assert result.exit_code == 2, text
    assert ("cannot be created" in text) if where == "under_a_file" else ("is not a folder" in text)
    assert "Traceback" not in text and time.perf_counter() - t0 < 10.0  # refused before the runs


@pytest.mark.parametrize("command", ["diagram", "contracts"])
@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("under_a_file", "a-file is not a folder"),
        ("a_folder", "is a folder; give a file name"),
        ("no_folder", "does not exist"),
    ],
)
def test_an_unwritable_write_path_is_refused_first(command: str, where: str, why: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    target = {
        "under_a_file": tmp_path / "a-file" / "doc.md",
        "a_folder": tmp_path,
        "no_folder": tmp_path / "missing" / "doc.md",
    }[where]
    result = invoke([command, "--write", str(target)])
    text = all_output(result)
    assert result.exit_code == 2, text
    assert f"error: {target}:" in text and why in text and "Traceback" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_write_path_that_works_is_written(tmp_path: Path) -> None:
    target = tmp_path / "machine.md"
    result = invoke(["diagram", "--write", str(target)])
    assert result.exit_code == 0, all_output(result)
    assert "mermaid" in target.read_text(encoding="utf-8")


@pytest.mark.subprocess
def test_an_unwritable_path_on_the_real_command_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    for args in (
        ["contracts", "--write", str(tmp_path / "a-file" / "c.md")],
        ["run", SHORT, "--out", str(tmp_path / "a-file" / "o")],
    ):
        proc = real(args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert str(tmp_path / "a-file") in proc.stderr and proc.stdout == ""


# --------------------------------------------------------------------------- did you mean, JSON files


def _problems(tmp_path: Path, files: dict[str, str], args: list[str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = invoke(["check", *(str(tmp_path / a) if a.endswith((".toml", ".json")) else a for a in args)])
    assert result.exit_code == 2, all_output(result)
    return all_output(result)


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        (
            {"plan.toml": plan_toml(pulse="[pulse]\nenergy_jj = 0.06\npulse_ms = 5.0")},
            ["plan.toml"],
            "pulse.energy_jj: unknown field (did you mean energy_j?)",
        ),
        (
            {"plan.toml": plan_toml(limits="[limts]\nskin_temp_max_c = 39.0")},
            ["plan.toml"],
            "limts: unknown field (did you mean limits?)",
        ),
        (
            {"plan.toml": GOOD_PLAN, "rig.toml": "[plasma]\nwatchdg_ms = 500.0\n"},
            ["plan.toml", "--rig", "rig.toml"],
            "plasma.watchdg_ms: unknown field (did you mean watchdog_ms?)",
        ),
        (
            {"plan.toml": GOOD_PLAN, "rig.toml": '[plasma]\nkind = "modbus-tcp"\nunit_id = 1\nhots = "x"\n'},
            ["plan.toml", "--rig", "rig.toml"],
            "plasma.hots: unknown field (did you mean host?)",
        ),
        (
            {"plan.toml": GOOD_PLAN, "rig.toml": '[thermometr]\nkind = "sim"\n'},
            ["plan.toml", "--rig", "rig.toml"],
            "thermometr: unknown field (did you mean thermometer?)",
        ),
        (
            {
                "plan.toml": GOOD_PLAN,
                "faults.toml": '[[fault]]\ndevice = "safety"\nkind = "estop"\nat_s = 1.0\nduraton_s = 1.0\n',
            },
            ["plan.toml", "--faults", "faults.toml"],
            "fault.0.duraton_s: unknown field (did you mean duration_s?)",
        ),
        (
            {
                "plan.toml": GOOD_PLAN,
                "faults.toml": '[[fault]]\ndevice = "safety"\nkind = "estop"\nat_s = 1.0\ncolour = "red"\n',
            },
            ["plan.toml", "--faults", "faults.toml"],
            "fault.0.colour: unknown field (not allowed)",  # nothing close: no guess
        ),
    ],
    ids=["plan-pulse", "plan-section", "rig-sim-field", "rig-tagged-union", "rig-section", "fault", "no-match"],
)
def test_an_unknown_field_names_the_closest(
    files: dict[str, str], args: list[str], expected: str, tmp_path: Path
) -> None:
    assert expected in _problems(tmp_path, files, args)


def test_field_names_at_each_level() -> None:
    assert "energy_j" in (field_names_at(Plan, ["pulse"]) or [])
    assert "width_mm" in (field_names_at(Plan, ["spots", "grid"]) or [])
    assert field_names_at(Plan, ["pulse", "energy_j"]) is None  # a number, not a model


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("plan.json", ["plan.json"], "plan.json is JSON; plans are TOML files (see examples/plans/)"),
        ("rig.json", ["good.toml", "--rig", "rig.json"], "rig.json is JSON; rigs are TOML files (see examples/rigs/)"),
        (
            "faults.json",
            ["good.toml", "--faults", "faults.json"],
            "faults.json is JSON; fault scenarios are TOML files (see examples/faults/)",
        ),
        ("list.toml", ["list.toml"], "list.toml is JSON; plans are TOML files"),
    ],
)
def test_a_json_file_is_named_as_such(name: str, args: list[str], expected: str, tmp_path: Path) -> None:
    body = '[{"name": "x"}]' if name == "list.toml" else json.dumps({"name": "x", "pulse": {"energy_j": 0.06}})
    files = {name: body, "good.toml": GOOD_PLAN}
    text = _problems(tmp_path, files, args)
    assert f"error: {tmp_path / name}:" in text and expected in text
    assert "not valid TOML" not in text


# --------------------------------------------------------------------------- console rounding


def test_console_values_are_rounded_by_what_they_are() -> None:
    wall = 1_700_000_000.123456
    e = {
        "t": 12.3456789,
        "event": "pulse_end",
        "skin_c": 35.324457535,
        "delay_ms": 16.5216,
        "t_off": 1.00554321,
        "sample_t": -0.1,
        "energy_j": 0.005144369,
        "flow_ml_s": 0.512345,
        "wall_time": wall,
        "pulses": [1, 2],
        "limits": {"skin_temp_max_c": 40.0, "max_cooling_delay_ms": 100.0},
        "interrupted": False,
        "prev_sha256": "ab" * 32,
    }
    line = describe(e)
    clock = time.strftime("%H:%M:%S", time.localtime(wall))
    assert line == (
        "    12.346s  pulse_end       skin_c=35.3 delay_ms=16.5 t_off=1.006 sample_t=-0.1 energy_j=0.00514"
        f" flow_ml_s=0.5123 wall_time={clock} pulses=[1, 2]"
        " limits={skin_temp_max_c: 40, max_cooling_delay_ms: 100} interrupted=False"
    )
    assert value_text("energy_j", 1.23456) == "1.23" and value_text("x", "nan") == "nan"


def test_the_stream_is_rounded_and_the_log_is_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(["run", SHORT, "--out", str(out), "-v"])
    assert result.exit_code == 0, all_output(result)
    text = result.stdout
    assert re.search(r"skin_c=\d+\.\d\b", text) and not re.search(r"skin_c=\d+\.\d\d", text)
    assert re.search(r"wall_time=\d\d:\d\d:\d\d\b", text)
    assert not re.search(r"_ms=\d+\.\d\d", text)
    energies = re.findall(r"energy_j=([0-9.e+-]+)", text)
    assert energies and all(len(re.sub(r"^[0.]+|\.|e.*$", "", v)) <= 3 for v in energies), energies
    raw = (out / "events.jsonl").read_text(encoding="utf-8")
    assert re.search(r'"skin_c":\d+\.\d{5,}', raw) and re.search(r'"wall_time":\d{10}\.\d+', raw)


# --------------------------------------------------------------------------- summary.json


def test_the_summary_names_the_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(["run", SHORT, "--out", str(out), "--rig", SIM_RIG, "--seed", "7"])
    assert result.exit_code == 0, all_output(result)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    events = read_events(out / "events.jsonl")
    assert summary["plan_name"] == "short" and summary["pulses_planned"] == 6 and summary["seed"] == 7
    assert summary["version"] == VERSION and summary["rig"] == SIM_RIG
    started = datetime.fromisoformat(summary["started_at"])
    assert started.tzinfo is not None and started.timestamp() == pytest.approx(events[0]["wall_time"], abs=1e-6)
    ledger = summary["dose_ledger"]
    assert [s["spot"] for s in ledger] == [1, 2, 3, 4, 5, 6]
    assert all(s["done"] and s["planned_j"] == 0.005 and 0.004 < s["delivered_j"] < 0.006 for s in ledger)
    for key in ("outcome", "cause", "pulses", "sprays", "ledger", "tissue", "session_s", "wall_s", ANCHOR_KEY):
        assert key in summary  # every earlier key stays
    # derived from the log alone, and the log still verifies
    assert {**summarize(events), ANCHOR_KEY: summary[ANCHOR_KEY]} == summary
    verified = invoke(["verify-log", str(out / "events.jsonl")])
    assert verified.exit_code == 0 and "chain intact" in verified.stdout


def test_the_default_rig_and_a_cut_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(["run", SHORT, "--out", str(out), "--faults", ESTOP])
    assert result.exit_code == 3
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["rig"] == "default"
    done = [s["done"] for s in summary["dose_ledger"]]
    assert done[:2] == [True, True] and not any(done[3:])
    empty = summarize([])
    assert empty["plan_name"] is None and empty["started_at"] is None and empty["dose_ledger"] is None
