"""Tests of the ``plasmactl`` command line: its exit codes, its error messages and its session files.

The contract (other tools depend on it)::

    plasmactl run PLAN [--rig R] [--faults F] [--out DIR] [--seed N] [--realtime]
    plasmactl check PLAN [--rig R] [--faults F]

Exit codes: 0 complete; 3 fault, trip or E-stop (safe state reached); 2 bad input; 130 interrupted
(SIGINT); 1 internal error. A bad input names the file, the field and what is wrong, and starts no session.

Bad inputs run in-process through typer's CliRunner (fast); only the signal tests spawn real processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import plasmactl.cli as cli
from plasmactl.cli import app, exit_code
from plasmactl.events import read_events
from plasmactl.ports import SessionResult
from plasmactl.simulators.devices import SimSpray

REPO = Path(__file__).parents[1]
EXAMPLES = REPO / "examples"
PLANS = sorted((EXAMPLES / "plans").glob("*.toml"))
RIGS = sorted((EXAMPLES / "rigs").glob("*.toml"))
FAULTS = sorted((EXAMPLES / "faults").glob("*.toml"))
SHORT = EXAMPLES / "plans" / "short.toml"
FULL_FACE = EXAMPLES / "plans" / "full-face.toml"
PLASMACTL = Path(sys.executable).parent / "plasmactl"

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_SAFE_STOP, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# A wide terminal for typer's own error panel (our own messages are whitespace-normalised anyway).
RUNNER_ENV = {"COLUMNS": "200", "NO_COLOR": "1"}

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BOX = re.compile(r"[\u2500-\u257f]")  # rich panel borders around typer's usage errors


def flat(text: str) -> str:
    """Output as one line: no colour codes, no panel borders, every run of whitespace one space.

    rich wraps long lines at the console width; flattening makes phrase checks independent of it.
    """
    return " ".join(_BOX.sub(" ", _ANSI.sub("", text)).split())


def invoke(args: Sequence[str]) -> Result:
    return CliRunner(env=RUNNER_ENV).invoke(app, list(args))


def all_output(result: Result) -> str:
    """stdout and stderr (typer's CliRunner keeps both, and their interleaving in ``output``)."""
    return flat(result.output)


# --------------------------------------------------------------------------- input files


def plan_toml(
    *,
    head: str = 'name = "tiny"',
    spots: str = "[spots]\npoints = [[0.0, 0.0], [1.5, 0.0]]\nspot_diameter_mm = 1.5",  # 60 mJ: 3.4 J/cm2
    pulse: str = "[pulse]\nenergy_j = 0.06\npulse_ms = 5.0",
    cooling: str = "[cooling]\nspray_ms = 150.0",
    limits: str = "",
) -> str:
    """A small plan (2 spots, 1 pulse each, cooled after every pulse); each section may be replaced."""
    return "\n".join(part for part in (head, spots, pulse, cooling, limits) if part) + "\n"


GOOD_PLAN = plan_toml()  # 2 pulses
ESTOP_AT_1S = '[[fault]]\ndevice = "safety"\nkind = "estop"\nat_s = 1.0\n'


@dataclass(frozen=True)
class Bad:
    """One bad input: files written into the (temporary) working directory, the CLI arguments after the
    command, the file (or option) the error must name, and phrases the error must contain."""

    id: str
    args: tuple[str, ...]
    source: str
    expect: tuple[str, ...]
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    out: str = "out"  # --out, relative to the working directory
    command: str = "run"
    file_case: bool = True  # a plan/rig/fault problem: `check` must reject it too


def bad_plan(id: str, text: str | bytes, *expect: str, command: str = "run") -> Bad:
    return Bad(id, ("plan.toml",), "plan.toml", expect, files={"plan.toml": text}, command=command)


def bad_rig(id: str, text: str, *expect: str) -> Bad:
    return Bad(
        id, ("plan.toml", "--rig", "rig.toml"), "rig.toml", expect, files={"plan.toml": GOOD_PLAN, "rig.toml": text}
    )


def bad_faults(id: str, text: str, *expect: str) -> Bad:
    return Bad(
        id,
        ("plan.toml", "--faults", "faults.toml"),
        "faults.toml",
        expect,
        files={"plan.toml": GOOD_PLAN, "faults.toml": text},
    )


def fault(body: str) -> str:
    return "[[fault]]\n" + body + "\n"


BAD_INPUTS: list[Bad] = [
    # ---- the plan file itself
    Bad("plan-missing", ("nowhere.toml",), "nowhere.toml", ("file not found",)),
    Bad("plan-is-a-folder", ("plans",), "plans", ("is a directory",), dirs=("plans",)),
    bad_plan("plan-not-toml", 'name = "x"\n[pulse\nenergy_j = 1.0\n', "not valid TOML", "line 2"),
    bad_plan("plan-duplicate-key", 'name = "a"\nname = "b"\n', "not valid TOML"),
    bad_plan("plan-not-utf8", b'name = "caf\xe9"\n', "not UTF-8"),
    bad_plan("plan-empty", "", "name: required field is missing", "pulse: required field is missing"),
    # ---- plan structure
    bad_plan("plan-missing-pulse", plan_toml(pulse=""), "pulse: required field is missing"),
    bad_plan(
        "plan-typo-enrgy_j",
        plan_toml(pulse="[pulse]\nenrgy_j = 0.06\npulse_ms = 5.0"),
        "pulse.enrgy_j: unknown field",
        "pulse.energy_j: required field is missing",
    ),
    bad_plan(
        "plan-unknown-section",
        plan_toml(limits="[limts]\nskin_temp_max_c = 39.0"),
        "limts: unknown field",
    ),
    bad_plan(
        "plan-limits-typo",
        plan_toml(limits="[limits]\nskin_temp_max = 39.0"),
        "limits.skin_temp_max: unknown field",
    ),
    bad_plan("plan-empty-name", plan_toml(head='name = ""'), "name:", "at least 1 character"),
    # ---- pulse values
    bad_plan(
        "energy-negative",
        plan_toml(pulse="[pulse]\nenergy_j = -0.5\npulse_ms = 5.0"),
        "pulse.energy_j:",
        "greater than or equal to 0.000001",
        "-0.5",
    ),
    bad_plan(
        "energy-zero",
        plan_toml(pulse="[pulse]\nenergy_j = 0.0\npulse_ms = 5.0"),
        "pulse.energy_j:",
        "greater than or equal to 0.000001",
    ),
    bad_plan(
        "energy-over-hard-cap",
        plan_toml(
            spots="[spots]\npoints = [[0.0, 0.0], [7.0, 0.0]]\nspot_diameter_mm = 6.0",  # 18 J/cm2
            pulse="[pulse]\nenergy_j = 5.0\npulse_ms = 5.0",
        ),
        "pulse.energy_j = 5 exceeds limits.max_energy_j = 4",
    ),
    bad_plan(
        "energy-over-tightened-limit",
        plan_toml(pulse="[pulse]\nenergy_j = 0.2\npulse_ms = 5.0", limits="[limits]\nmax_energy_j = 0.1"),
        "pulse.energy_j = 0.2 exceeds limits.max_energy_j = 0.1",
    ),
    bad_plan(
        "energy-nan",
        plan_toml(pulse="[pulse]\nenergy_j = nan\npulse_ms = 5.0"),
        "pulse.energy_j:",
        "finite number",
    ),
    bad_plan(
        "energy-inf",
        plan_toml(pulse="[pulse]\nenergy_j = inf\npulse_ms = 5.0"),
        "pulse.energy_j:",
        "finite number",
    ),
    bad_plan(
        "pulse-ms-over-limit",
        plan_toml(pulse="[pulse]\nenergy_j = 0.06\npulse_ms = 50.0", limits="[limits]\nmax_pulse_ms = 20.0"),
        "pulse.pulse_ms = 50 exceeds limits.max_pulse_ms = 20",
    ),
    bad_plan(
        "interval-shorter-than-pulse",
        plan_toml(pulse="[pulse]\nenergy_j = 0.06\npulse_ms = 50.0\ninterval_s = 0.01"),
        "pulse.interval_s = 0.01 is shorter than the pulse",
    ),
    bad_plan(
        "pulses-per-spot-zero",
        plan_toml(pulse="[pulse]\nenergy_j = 0.06\npulse_ms = 5.0\npulses_per_spot = 0"),
        "pulse.pulses_per_spot:",
        "greater than or equal to 1",
    ),
    # ---- limits: a plan may only tighten
    bad_plan(
        "limit-cooling-delay-over-cap",
        plan_toml(limits="[limits]\nmax_cooling_delay_ms = 1500.0"),
        "limits:",
        "max_cooling_delay_ms = 1500 exceeds the hard cap 1000",
        "a plan may only tighten",
    ),
    bad_plan(
        "limit-skin-temp-over-cap",
        plan_toml(limits="[limits]\nskin_temp_max_c = 45.0"),
        "limits:",
        "skin_temp_max_c = 45 exceeds the hard cap 43",
        "a plan may only tighten",
    ),
    bad_plan(
        "limit-max-energy-nan",
        plan_toml(limits="[limits]\nmax_energy_j = nan"),
        "limits.max_energy_j:",
    ),
    bad_plan(
        "limit-plausible-min-nan",
        plan_toml(limits="[limits]\nplausible_min_c = nan"),
        "limits.plausible_min_c:",
        "finite number",
    ),
    bad_plan(
        "limit-plausible-max-nan",
        plan_toml(limits="[limits]\nplausible_max_c = nan"),
        "limits.plausible_max_c:",
        "finite number",
    ),
    bad_plan(
        "plan-longer-than-session-limit",
        plan_toml(limits="[limits]\nmax_session_s = 1.0"),
        "over limits.max_session_s = 1",
    ),
    # ---- spots and cooling
    bad_plan(
        "grid-spacing-and-density",
        plan_toml(spots="[spots.grid]\nwidth_mm = 3.0\nheight_mm = 3.0\nspacing_mm = 1.0\ndensity_pct = 10.0"),
        "spots.grid:",
        "give exactly one of spacing_mm or density_pct",
    ),
    bad_plan(
        "grid-spots-overlap",
        plan_toml(spots="[spots.grid]\nwidth_mm = 3.0\nheight_mm = 3.0\nspacing_mm = 0.1"),
        "spots.grid:",
        "smaller than the spot diameter",
    ),
    bad_plan(
        "spots-points-nan-inf",
        plan_toml(spots="[spots]\npoints = [[nan, inf]]"),
        "spots.points.0.0:",
        "spots.points.0.1:",
        "finite number",
    ),
    bad_plan(
        "spots-points-repeated",
        plan_toml(spots="[spots]\npoints = [[0.0, 0.0], [0.0, 0.0]]"),
        "spots:",
        "repeats an earlier spot",
    ),
    bad_plan(
        "grid-too-many-spots",  # must be refused from its shape, not by building 10^13 points
        plan_toml(spots="[spots.grid]\nwidth_mm = 1000000.0\nheight_mm = 1000000.0\nspacing_mm = 0.3"),
        "spots.grid:",
        "spots",
    ),
    bad_plan("spots-points-empty", plan_toml(spots="[spots]\npoints = []"), "spots:", "spots.points is empty"),
    bad_plan(
        "spots-points-and-grid",
        plan_toml(
            spots="[spots]\npoints = [[0.0, 0.0]]\n[spots.grid]\nwidth_mm = 3.0\nheight_mm = 3.0\nspacing_mm = 1.0"
        ),
        "spots:",
        "give exactly one of spots.points or spots.grid",
    ),
    bad_plan(
        "cooling-when-sometimes",
        plan_toml(cooling='[cooling]\nspray_ms = 150.0\nwhen = "sometimes"'),
        "cooling.when:",
        "'sometimes'",
    ),
    bad_plan(
        "cooling-per-spot-too-late",
        plan_toml(
            pulse="[pulse]\nenergy_j = 0.06\npulse_ms = 5.0\npulses_per_spot = 3\ninterval_s = 1.0",
            cooling='[cooling]\nspray_ms = 150.0\nwhen = "spot"',
        ),
        "cooling.when = 'spot'",
        "limits.max_cooling_delay_ms",
    ),
    # ---- the rig file
    Bad(
        "rig-missing",
        ("plan.toml", "--rig", "no-rig.toml"),
        "no-rig.toml",
        ("file not found",),
        files={"plan.toml": GOOD_PLAN},
    ),
    bad_rig("rig-not-toml", "[plasma\n", "not valid TOML"),
    bad_rig("rig-modbus-tcp-without-unit", '[plasma]\nkind = "modbus-tcp"\n', "plasma.unit_id:", "required field"),
    bad_rig(
        "rig-mixes-sim-and-wire",
        '[plasma]\nkind = "modbus-tcp"\nunit_id = 1\n',
        "cannot be mixed",
    ),
    bad_rig("rig-kind-banana", '[spray]\nkind = "banana"\n', "spray.kind:", "'banana'"),
    bad_rig("rig-unknown-device-laser", '[laser]\nkind = "sim"\n', "laser: unknown field"),
    bad_rig("rig-unknown-key", "[plasma]\nwatchdg_ms = 500.0\n", "plasma.watchdg_ms: unknown field"),
    bad_rig(
        "rig-timeout-not-below-watchdog",
        "[spray]\ntimeout_ms = 500.0\nwatchdog_ms = 500.0\n",
        "spray:",
        "timeout_ms (500) must be below watchdog_ms (500)",
    ),
    bad_rig(
        "rig-poll-not-below-watchdog",
        "[thermometer]\npoll_ms = 800.0\n",
        "thermometer:",
        "poll_ms (800) must be below watchdog_ms (500)",
    ),
    bad_rig("rig-latency-nan", "[plasma]\nlatency_ms = nan\n", "plasma.latency_ms:", "finite number"),
    bad_rig("rig-skin-model", '[skin]\nmodel = "layered3d"\n', "skin.model:", "'layered3d'"),
    # ---- the fault file
    Bad(
        "faults-missing",
        ("plan.toml", "--faults", "no-faults.toml"),
        "no-faults.toml",
        ("file not found",),
        files={"plan.toml": GOOD_PLAN},
    ),
    bad_faults(
        "fault-unknown-device",
        fault('device = "laser"\nkind = "estop"\nat_s = 1.0'),
        "fault.0.device:",
        "'laser'",
    ),
    bad_faults(
        "fault-unknown-kind",
        fault('device = "spray"\nkind = "melt"\nat_s = 1.0'),
        "fault.0:",
        "unknown kind 'melt' for device 'spray'",
        "valve_stuck_closed",
    ),
    bad_faults(
        "fault-at_s-and-after_pulses",
        fault('device = "safety"\nkind = "estop"\nat_s = 1.0\nafter_pulses = 1'),
        "fault.0:",
        "give exactly one of at_s or after_pulses",
    ),
    bad_faults(
        "fault-neither-at_s-nor-after_pulses",
        fault('device = "safety"\nkind = "estop"'),
        "fault.0:",
        "give exactly one of at_s or after_pulses",
    ),
    bad_faults(
        "fault-energy-drift-without-value",
        fault('device = "plasma"\nkind = "energy_drift"\nat_s = 1.0'),
        "fault.0:",
        "kind 'energy_drift' needs value",
    ),
    bad_faults(
        "fault-value-on-estop",
        fault('device = "safety"\nkind = "estop"\nat_s = 1.0\nvalue = 2.0'),
        "fault.0:",
        "kind 'estop' takes no value",
    ),
    bad_faults(
        "fault-link-without-target",
        fault('device = "link"\nkind = "timeout"\nat_s = 1.0'),
        "fault.0:",
        "device 'link' needs target",
    ),
    bad_faults(
        "fault-target-on-non-link",
        fault('device = "spray"\nkind = "reservoir_empty"\nat_s = 1.0\ntarget = "plasma"'),
        "fault.0:",
        "target is only for device 'link'",
    ),
    bad_faults(
        "fault-after-pulses-beyond-plan",
        fault('device = "safety"\nkind = "estop"\nafter_pulses = 5'),
        "fault.0.after_pulses:",
        "the plan delivers only 2 pulses",
    ),
    bad_faults(
        "fault-after-pulses-zero",
        fault('device = "safety"\nkind = "estop"\nafter_pulses = 0'),
        "fault.0.after_pulses:",
        "greater than or equal to 1",
    ),
    bad_faults(
        "fault-at_s-past-session-limit",
        fault('device = "safety"\nkind = "estop"\nat_s = 5000.0'),
        "fault.0.at_s:",
        "past the session limit 3600 s",
    ),
    bad_faults("fault-table-not-array", '[fault]\ndevice = "safety"\nkind = "estop"\nat_s = 1.0\n', "fault:"),
    bad_faults(
        "fault-second-entry-bad",
        ESTOP_AT_1S + fault('device = "spray"\nkind = "melt"\nat_s = 1.0'),
        "fault.1:",
        "unknown kind 'melt'",
    ),
    # ---- command-line arguments
    Bad(
        "seed-negative",
        ("plan.toml", "--seed", "-1"),
        "--seed",
        ("Invalid value",),
        {"plan.toml": GOOD_PLAN},
        file_case=False,
    ),
    Bad(
        "seed-not-int",
        ("plan.toml", "--seed", "abc"),
        "--seed",
        ("Invalid value",),
        {"plan.toml": GOOD_PLAN},
        file_case=False,
    ),
    Bad(
        "seed-over-32-bits",
        ("plan.toml", "--seed", str(2**32)),
        "--seed",
        ("Invalid value",),
        {"plan.toml": GOOD_PLAN},
        file_case=False,
    ),
    Bad(
        "unknown-option",
        ("plan.toml", "--sede", "1"),
        "--sede",
        ("No such option",),
        {"plan.toml": GOOD_PLAN},
        file_case=False,
    ),
    Bad(
        "out-is-a-regular-file",
        ("plan.toml",),
        "out",
        ("--out exists and is not a folder",),
        {"plan.toml": GOOD_PLAN, "out": "not a folder\n"},
        file_case=False,
    ),
    Bad(
        "out-already-has-events",
        ("plan.toml",),
        "out",
        ("already holds a session's events.jsonl", "--overwrite"),
        {"plan.toml": GOOD_PLAN, "out/events.jsonl": '{"t":0.0,"event":"session_start"}\n'},
        file_case=False,
    ),
]

# Bad inputs that once slipped through (markup in a path, --out under a file, booleans as numbers).
KNOWN_BUGS = [
    pytest.param(
        Bad("path-with-closing-markup", ("[/b]plan.toml",), "[/b]plan.toml", ("file not found",)),
        id="path-with-closing-markup",
    ),
    pytest.param(
        Bad("path-with-markup-tag", ("[bold]plan.toml",), "[bold]plan.toml", ("file not found",)),
        id="path-with-markup-tag",
    ),
    pytest.param(
        Bad(
            "out-below-a-regular-file",
            ("plan.toml",),
            "out/sub",
            ("cannot be created",),
            {"plan.toml": GOOD_PLAN, "out": "a file\n"},
            out="out/sub",
            file_case=False,
        ),
        id="out-below-a-regular-file",
    ),
    pytest.param(
        bad_plan(
            "energy-boolean",
            plan_toml(pulse="[pulse]\nenergy_j = true\npulse_ms = 5.0"),
            "pulse.energy_j:",
            command="check",
        ),
        id="energy-boolean",
    ),
]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _write_case(case: Bad, root: Path) -> None:
    for d in case.dirs:
        (root / d).mkdir(parents=True)
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _assert_rejected(case: Bad, args: list[str], root: Path) -> None:
    _write_case(case, root)
    before = _snapshot(root)
    result = invoke(args)
    text = all_output(result)
    assert result.exit_code == EXIT_BAD_INPUT, f"exit {result.exit_code}: {text} ({result.exception!r})"
    if case.source.startswith("--"):  # a command-line option: click's usage error names it
        assert case.source in text, text
    else:
        # The first line of a bad-input report is "error: <file>:".
        assert f"error: {case.source}:" in text, text
    for phrase in case.expect:
        assert phrase in text, f"{phrase!r} not in: {text}"
    # No session: nothing was written (no events.jsonl, no summary.json, no folder), nothing was touched.
    assert _snapshot(root) == before
    if "out/events.jsonl" not in case.files:
        assert not (root / case.out / "events.jsonl").exists()


@pytest.mark.hazard("H12")
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD_INPUTS] + KNOWN_BUGS)
def test_bad_input_exits_2_and_names_the_problem(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative names keep the reports short (rich wraps at the console width)
    args = [case.command, *case.args]
    if case.command == "run":
        args += ["--out", case.out]
    _assert_rejected(case, args, tmp_path)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD_INPUTS if c.file_case])
def test_check_rejects_the_same_bad_input(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _assert_rejected(case, ["check", *case.args], tmp_path)


def test_there_are_at_least_20_distinct_bad_inputs() -> None:
    assert len({c.id for c in BAD_INPUTS}) == len(BAD_INPUTS) >= 20
    assert {c.source for c in BAD_INPUTS} >= {"plan.toml", "rig.toml", "faults.toml", "--seed", "out"}


@pytest.mark.subprocess
def test_bad_input_report_goes_to_stderr_of_the_real_command(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_toml(pulse="[pulse]\nenrgy_j = 0.06\npulse_ms = 5.0"), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(PLASMACTL), "run", str(plan), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},  # rich folds a path longer than the console width
    )
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stdout == ""
    err = flat(proc.stderr)
    assert f"error: {plan}:" in err and "pulse.enrgy_j: unknown field" in err
    assert not out.exists()


# --------------------------------------------------------------------------- check: the examples

# one 115200-baud RTU bus, software-timed cooling: a spot of two pulses and one spray cannot be guaranteed
BUDGET_REFUSED = {
    ("periorbital", "sim-rtu-inprocess"),
    ("periorbital", "bench-template"),
    ("periorbital", "bench-hil"),
}


@pytest.mark.parametrize("faults", [None, *FAULTS], ids=lambda f: "no-faults" if f is None else f.stem)
@pytest.mark.parametrize("rig", [None, *RIGS], ids=lambda r: "default-rig" if r is None else r.stem)
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_check_accepts_every_example(plan: Path, rig: Path | None, faults: Path | None) -> None:
    args = ["check", str(plan)]
    if rig is not None:
        args += ["--rig", str(rig)]
    if faults is not None:
        args += ["--faults", str(faults)]
    result = invoke(args)
    if rig is not None and (plan.stem, rig.stem) in BUDGET_REFUSED:  # see tests/test_cooling_budget.py
        assert result.exit_code == EXIT_BAD_INPUT and "a healthy session would fault" in flat(all_output(result))
        return
    assert result.exit_code == EXIT_OK, all_output(result)
    assert all_output(result).startswith("ok: plan")


def test_examples_exist() -> None:
    assert len(PLANS) >= 3 and RIGS and len(FAULTS) >= 10
    assert SHORT in PLANS and FULL_FACE in PLANS


# --------------------------------------------------------------------------- run: outcomes


def _run(tmp_path: Path, *extra: str, plan: Path = SHORT) -> tuple[Result, Path, list[dict[str, Any]]]:
    out = tmp_path / "out"
    result = invoke(["run", str(plan), "--out", str(out), *extra])
    events = read_events(out / "events.jsonl") if (out / "events.jsonl").exists() else []
    return result, out, events


def _summary(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_run_short_plan_completes(tmp_path: Path) -> None:
    result, out, events = _run(tmp_path)
    assert result.exit_code == EXIT_OK, all_output(result)
    assert (out / "events.jsonl").is_file() and (out / "summary.json").is_file()
    summary = _summary(out)
    assert summary["outcome"] == "complete"
    assert summary["pulses"] == 6 and summary["sprays"] == 6
    assert events[0]["event"] == "session_start" and events[-1]["event"] == "session_end"
    assert events[-1]["outcome"] == "complete" and events[-1]["internal_error"] is False
    assert "session complete" in all_output(result)


def test_run_with_example_rig_and_seed_completes(tmp_path: Path) -> None:
    result, out, events = _run(tmp_path, "--rig", str(EXAMPLES / "rigs" / "sim.toml"), "--seed", "7")
    assert result.exit_code == EXIT_OK, all_output(result)
    assert events[0]["seed"] == 7
    assert _summary(out)["outcome"] == "complete"


def test_run_overwrite_replaces_an_earlier_log(tmp_path: Path) -> None:
    first, out, _ = _run(tmp_path)
    assert first.exit_code == EXIT_OK
    again = invoke(["run", str(SHORT), "--out", str(out)])
    assert again.exit_code == EXIT_BAD_INPUT
    forced = invoke(["run", str(SHORT), "--out", str(out), "--overwrite"])
    assert forced.exit_code == EXIT_OK, all_output(forced)
    events = read_events(out / "events.jsonl")
    assert [e["event"] for e in events].count("session_start") == 1


def test_run_estop_exits_3(tmp_path: Path) -> None:
    result, out, events = _run(tmp_path, "--faults", str(EXAMPLES / "faults" / "safety-estop.toml"))
    assert result.exit_code == EXIT_SAFE_STOP, all_output(result)
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] == "estop"
    assert _summary(out)["outcome"] == "estop"


def test_run_spray_valve_stuck_closed_exits_3(tmp_path: Path) -> None:
    faults = EXAMPLES / "faults" / "spray-valve-stuck-closed.toml"
    result, out, events = _run(tmp_path, "--faults", str(faults))
    assert result.exit_code == EXIT_SAFE_STOP, all_output(result)
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] == "fault" and end["internal_error"] is False
    assert _summary(out)["outcome"] == "fault"
    assert any(e["event"] == "plasma_off" for e in events)


# --------------------------------------------------------------------------- internal errors (exit 1)


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (SessionResult("complete"), EXIT_OK),
        (SessionResult("fault", "cooling_not_confirmed"), EXIT_SAFE_STOP),
        (SessionResult("fault", "device_no_reply"), EXIT_SAFE_STOP),
        (SessionResult("estop", "estop"), EXIT_SAFE_STOP),
        (SessionResult("aborted", "operator interrupt"), EXIT_INTERRUPTED),
        (SessionResult("aborted", "pause timeout"), EXIT_SAFE_STOP),
        (SessionResult("complete", internal_error=True), EXIT_INTERNAL),
        (SessionResult("fault", "controller_error", internal_error=True), EXIT_INTERNAL),
        (SessionResult("estop", "estop", internal_error=True), EXIT_INTERNAL),
        (SessionResult("aborted", "operator interrupt", internal_error=True), EXIT_INTERNAL),
    ],
    ids=lambda v: repr(v) if isinstance(v, int) else f"{v.outcome}-{v.cause}-{v.internal_error}",
)
def test_exit_code_mapping(result: SessionResult, code: int) -> None:
    assert exit_code(result) == code


def test_device_bug_mid_session_exits_1_in_the_safe_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No public input reaches an internal error (see the known bugs above), so inject a driver bug."""

    async def broken_spray(self: SimSpray, duration_s: float) -> None:
        raise ZeroDivisionError("injected bug")

    monkeypatch.setattr(SimSpray, "spray", broken_spray)
    result, out, events = _run(tmp_path)
    assert result.exit_code == EXIT_INTERNAL, all_output(result)
    names = [e["event"] for e in events]
    assert "controller_error" in names
    after = names[names.index("controller_error") :]
    assert "plasma_off" in after and "pulse_start" not in after
    assert events[-1]["event"] == "session_end" and events[-1]["internal_error"] is True
    assert _summary(out)["outcome"] == "fault"


def test_exception_out_of_the_session_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> SessionResult:
        raise RuntimeError("injected crash")

    monkeypatch.setattr(cli, "run_blocking", crash)
    result = invoke(["run", str(SHORT), "--out", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INTERNAL
    assert "internal error: RuntimeError: injected crash" in flat(result.stderr)


# --------------------------------------------------------------------------- signals (real processes)


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path
    stderr: Path


def _start_full_face(tmp_path: Path, attempt: int) -> Started:
    out = tmp_path / f"out{attempt}"
    # Output to files, not pipes: nobody reads a pipe while we poll, and a full pipe would block the child.
    stdout_path, stderr_path = tmp_path / f"stdout{attempt}.txt", tmp_path / f"stderr{attempt}.txt"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(PLASMACTL), "run", str(FULL_FACE), "--realtime", "--out", str(out)],
            stdout=stdout,
            stderr=stderr,
            cwd=REPO,
        )
    return Started(proc, out, out / "events.jsonl", stderr_path)


def _early_skin_trip(log: Path) -> bool:
    """The session ended by itself on the hard skin limit (the post-pulse transient read by a thermometer
    sample that lands a few ms after a pulse; depends on the start-up phase in real time: a source issue)."""
    events = read_events(log) if log.exists() else []
    return bool(events) and events[-1]["event"] == "session_end" and events[-1]["cause"] == "skin_temp_hard_limit"


def _start_and_wait_for_pulses(tmp_path: Path, pulses: int = 2, timeout_s: float = 20.0) -> Started:
    """Start full-face in real time and poll its log (tightly, so the signal lands between a pulse and its
    spray) until it holds `pulses` pulse_end events. A run that trips the hard skin limit on its own before
    that is started again (at most 3 times), so that this tests the signal handling and only that."""
    for attempt in range(3):
        s = _start_full_face(tmp_path, attempt)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if s.log.exists() and s.log.read_bytes().count(b'"event":"pulse_end"') >= pulses:
                return s
            if s.proc.poll() is not None:
                break
            time.sleep(0.002)
        else:
            s.proc.kill()
            s.proc.wait(timeout=20)
            pytest.fail(f"no {pulses} pulse_end events in {s.log} within {timeout_s} s")
        if not _early_skin_trip(s.log):
            pytest.fail(f"plasmactl exited early with {s.proc.returncode}: {s.stderr.read_text()}")
    pytest.fail("full-face tripped the hard skin limit on its own in 3 real-time runs")


def _finish(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
        raise


@pytest.mark.subprocess
@pytest.mark.slow
def test_sigint_mid_session_aborts_safely(tmp_path: Path) -> None:
    started = _start_and_wait_for_pulses(tmp_path)
    out, log = started.out, started.log
    started.proc.send_signal(signal.SIGINT)
    code = _finish(started.proc)
    assert code == EXIT_INTERRUPTED, started.stderr.read_text(encoding="utf-8", errors="replace")

    events = read_events(log)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(events) == len(lines)  # every line parses; none was dropped as torn
    names = [e["event"] for e in events]
    assert names[0] == "session_start"
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] == "aborted"
    assert end["cause"] == "operator interrupt" and end["internal_error"] is False

    assert names.count("abort") == 1
    i_abort = names.index("abort")
    assert names[i_abort + 1] == "plasma_off", names[i_abort : i_abort + 5]
    assert events[i_abort + 1]["ok"] is True
    assert "pulse_start" not in names[i_abort:]

    # The last pulse is cooled too: every pulse_end is followed by a spray_start that covers it.
    pulse_ends = [(i, e["pulse"]) for i, e in enumerate(events) if e["event"] == "pulse_end"]
    assert len(pulse_ends) >= 2
    for i, pulse in pulse_ends:
        assert any(e["event"] == "spray_start" and pulse in e["pulses"] for e in events[i + 1 :]), (
            f"pulse {pulse} never cooled"
        )
    assert _summary(out)["outcome"] == "aborted"


@pytest.mark.subprocess
@pytest.mark.slow
def test_sigkill_mid_session_leaves_a_whole_log(tmp_path: Path) -> None:
    started = _start_and_wait_for_pulses(tmp_path)
    log = started.log
    started.proc.send_signal(signal.SIGKILL)
    code = _finish(started.proc)
    assert code == -signal.SIGKILL

    raw = log.read_bytes()
    assert raw.endswith(b"\n"), raw[-200:]  # no torn last line
    lines = raw.decode("utf-8").split("\n")[:-1]
    parsed = [json.loads(line) for line in lines]  # every line is whole JSON
    assert all(isinstance(e, dict) for e in parsed)
    assert parsed[0]["event"] == "session_start"
    names = [e["event"] for e in parsed]
    assert names.count("pulse_start") >= 2 and names.count("pulse_end") >= 2
    assert "session_end" not in names  # it really died mid-session
    assert read_events(log) == parsed


@pytest.mark.subprocess
def test_real_command_runs_the_short_plan(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(PLASMACTL), "run", str(SHORT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert _summary(out)["outcome"] == "complete"
    assert read_events(out / "events.jsonl")[-1]["event"] == "session_end"


def test_unreachable_device_refuses_the_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(["run", str(SHORT), "--rig", str(EXAMPLES / "rigs" / "bench-template.toml"), "--out", str(out)])
    assert result.exit_code == EXIT_SAFE_STOP, all_output(result)
    events = read_events(out / "events.jsonl")
    trip = next(e for e in events if e["event"] == "interlock_trip")
    assert trip["rule"] == "self_test_failed" and "ttyUSB0" in trip["reason"]
    assert events[-1]["event"] == "session_end" and events[-1]["cause"] == "self_test_failed"
    assert not any(e["event"] == "pulse_start" for e in events)
