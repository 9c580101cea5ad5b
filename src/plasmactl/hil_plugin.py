"""The pytest plugin of the hardware-in-the-loop suite (installed with the package: entry point ``pytest11``).

    pytest hil                                   # served simulators over Modbus TCP, spawned on free ports
    pytest hil --rig RIG.toml --plan PLAN.toml --hil-out OUT --hil-report REPORT --junitxml J.xml

Options: ``--rig`` (default: the built-in served TCP rig below), ``--plan`` (default: a short plan),
``--hil-out DIR`` (every session's record kept there, in a folder named after its test), ``--hil-report DIR``
(``hil-report.json``/``.md``/``.html``), ``--hil-operator`` (on a rig without a control channel, ask the
operator for each fault instead of reporting it not verified). Wire rigs run on the real clock, in-process
rigs in virtual time. Before any test the rig is probed: a device that is not there, or not the one the rig
names, fails every test at once with the probe's message.

Fixtures: ``hil_rig``, ``hil_plan``, ``hil_devices`` (the probe's report per device), ``hil_runner`` (runs
sessions, keeps records), ``fault_injector`` (for a test's own injections), ``hil_measure`` (measurements
and not-verified notes, reported as JUnit properties and in the report).
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plasmactl.hil_runner import FaultInjector, HilRunner, Measurements, safe_name
from plasmactl.inputs import InputError, LoadedFile
from plasmactl.plan import Plan, load_plan
from plasmactl.rig import Rig, load_rig
from plasmactl.version import VERSION

DEFAULT_RIG_TOML = """\
# The hil suite's default rig: the simulators served over Modbus TCP on a free loopback port (and the
# thermometer on a pty), spawned by each session and stopped with it, on the real clock.
name = "served simulators over Modbus TCP (hil default)"

[serve]
spawn = true
modbus_tcp = "127.0.0.1:0"
serial = true
control = true

[plasma]
kind = "modbus-tcp"
host = "127.0.0.1"
port = 0
unit_id = 1
timeout_ms = 20.0
retries = 1
watchdog_ms = 500.0
poll_ms = 100.0
heartbeat_ms = 100.0

[spray]
kind = "modbus-tcp"
host = "127.0.0.1"
port = 0
unit_id = 2
timeout_ms = 20.0
watchdog_ms = 500.0
poll_ms = 100.0
heartbeat_ms = 200.0

[safety]
kind = "modbus-tcp"
host = "127.0.0.1"
port = 0
unit_id = 1
timeout_ms = 20.0
watchdog_ms = 500.0
poll_ms = 5.0

[thermometer]
kind = "serial"
port = "@serial"
baud = 115200
timeout_ms = 20.0
watchdog_ms = 500.0
poll_ms = 100.0
"""

DEFAULT_PLAN_TOML = """\
# The hil suite's default plan: eight spots, one 5 mJ / 5 ms pulse each, cooled after every pulse.
name = "hil-short"

[spots]
points = [[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [4.5, 0.0], [0.0, 1.5], [1.5, 1.5], [3.0, 1.5], [4.5, 1.5]]

[pulse]
energy_j = 0.005
pulse_ms = 5.0
pulses_per_spot = 1
interval_s = 0.4

[cooling]
spray_ms = 150.0
when = "pulse"

[limits]
max_cooling_delay_ms = 100.0
skin_temp_max_c = 40.0
"""

LIMITS = {"cooling_latency_ms": 100.0, "estop_reaction_ms": 10.0}


@dataclass
class HilConfig:
    rig: Rig
    rig_file: LoadedFile
    plan: Plan
    plan_file: LoadedFile
    out: Path | None
    report: Path | None
    operator: bool


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plasmactl hil", "hardware-in-the-loop suite (plasmactl)")
    group.addoption("--rig", default=None, help="rig file (default: served simulators over Modbus TCP)")
    group.addoption("--plan", default=None, help="plan file (default: a short plan of 8 pulses)")
    group.addoption("--hil-out", default=None, metavar="DIR", help="keep every session's record here")
    group.addoption("--hil-report", default=None, metavar="DIR", help="write hil-report.json/.md/.html here")
    group.addoption(
        "--hil-operator",
        action="store_true",
        help="on a rig without a control channel, ask the operator for each fault (else: not verified)",
    )


def _builtin(text: str, name: str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="plasmactl-hil-"))
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _config(config: pytest.Config) -> HilConfig:
    cached = config.stash.get(_CONFIG, None)
    if cached is not None:
        return cached
    rig_opt, plan_opt = config.getoption("--rig"), config.getoption("--plan")
    try:
        rig, rig_file = load_rig(str(rig_opt) if rig_opt else _builtin(DEFAULT_RIG_TOML, "hil-default-rig.toml"))
        plan, plan_file = load_plan(str(plan_opt) if plan_opt else _builtin(DEFAULT_PLAN_TOML, "hil-short.toml"))
    except InputError as exc:
        raise pytest.UsageError(f"hil: {exc.source}: " + "; ".join(exc.problems)) from None
    assert rig_file is not None  # a rig read from a file (the built-in one is written to one)
    out, report = config.getoption("--hil-out"), config.getoption("--hil-report")
    hil = HilConfig(
        rig,
        rig_file,
        plan,
        plan_file,
        Path(out) if out else None,
        Path(report) if report else None,
        bool(config.getoption("--hil-operator")),
    )
    config.stash[_CONFIG] = hil
    return hil


_CONFIG = pytest.StashKey[HilConfig]()
_RESULTS = pytest.StashKey[dict[str, Any]]()
_MEASURE = pytest.StashKey[Measurements]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: a hardware-in-the-loop test (needs the hil fixtures)")
    config.stash[_RESULTS] = {"tests": [], "devices": {}, "started": _now(), "not_verified": []}
    if config.getoption("--rig", None) or config.getoption("--plan", None):
        _config(config)  # a bad rig or plan file is a usage error before anything runs, not an error per test


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@pytest.fixture(scope="session")
def hil_config(request: pytest.FixtureRequest) -> HilConfig:
    return _config(request.config)


@pytest.fixture(scope="session")
def hil_rig(hil_config: HilConfig) -> Rig:
    return hil_config.rig


@pytest.fixture(scope="session")
def hil_plan(hil_config: HilConfig) -> Plan:
    return hil_config.plan


@pytest.fixture(scope="session")
def hil_devices(hil_config: HilConfig, request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """The probe's report of every device (identity, state, round trip): a rig whose device is missing or
    not the one it names fails here, in seconds, with the probe's words."""
    from plasmactl import clock as clockmod
    from plasmactl.probe_rig import probe_with_serving

    reports = clockmod.run(probe_with_serving(hil_config.rig, reads=3), virtual=False)
    devices = {str(r["device"]): r for r in reports}
    request.config.stash[_RESULTS]["devices"] = devices
    bad = [r for r in reports if not r["ok"]]
    if bad:
        pytest.fail(
            f"the rig {hil_config.rig_file.path} is not what it says: "
            + "; ".join(f"{r['device']} at {r['endpoint']}: {r['problem']}" for r in bad),
            pytrace=False,
        )
    return devices


@pytest.fixture
def hil_measure(request: pytest.FixtureRequest) -> Measurements:
    m = Measurements()
    request.node.stash[_MEASURE] = m
    return m


@pytest.fixture
def hil_runner(
    hil_config: HilConfig, hil_devices: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path
) -> HilRunner:
    del hil_devices  # probed first: a missing device fails the test before any session
    base = hil_config.out if hil_config.out is not None else tmp_path
    out = base / safe_name(request.node.nodeid)
    runner = HilRunner(hil_config.rig, hil_config.rig_file, hil_config.plan, hil_config.plan_file, out)
    runner.operator = hil_config.operator
    return runner


@pytest.fixture
def fault_injector(hil_config: HilConfig) -> FaultInjector:
    """For a test's own injections inside a session (``HilRunner.run(during=...)`` hands over the live one)."""
    return FaultInjector(hil_config.operator)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        m = item.stash.get(_MEASURE, None)
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        values = m.values if m is not None else {}
        for name, vs in values.items():
            if vs:
                item.user_properties.append((f"{name}_max", round(max(vs), 3)))
                item.user_properties.append((f"{name}_n", len(vs)))
        notes = m.not_verified if m is not None else []
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            notes = [*notes, str(reason)]
        for note in notes:
            item.user_properties.append(("not_verified", note))
        if "hil_runner" in getattr(item, "fixturenames", ()) or values or notes:
            item.config.stash[_RESULTS]["tests"].append(
                {
                    "name": item.nodeid,
                    "outcome": outcome,
                    "duration_s": report.duration,
                    "measurements": {k: list(v) for k, v in values.items()},
                    "not_verified": notes,
                }
            )
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    target = config.getoption("--hil-report", None)
    if not target:
        return
    hil = _config(config)
    results = config.stash[_RESULTS]
    from plasmactl.hil_report import TestRecord, build_report, write_reports

    tests = [
        TestRecord(t["name"], t["outcome"], t["duration_s"], t["measurements"], {}, t["not_verified"])
        for t in results["tests"]
    ]
    report = build_report(
        rig_path=hil.rig_file.path,
        rig_sha256=hil.rig_file.sha256,
        software_version=VERSION,
        devices=results["devices"],
        tests=tests,
        limits=LIMITS,
        not_verified=[],
        started=results["started"],
        finished=_now(),
        plan_path=hil.plan_file.path,
    )
    write_reports(Path(target), report)
