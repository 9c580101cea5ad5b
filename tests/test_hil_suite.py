"""The hil/ suite as its users run it: ``pytest hil --rig RIG --junitxml J --hil-report R`` on the served TCP
and RTU example rigs, with no ``--realtime``, while another process listens on the ports a served simulator
would take by default; then J and R are read as the tools that consume them would. Also: the plugin is
installed with the package, and a rig naming a device that is not there fails fast with the probe's words."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RIGS = ("sim-tcp", "sim-rtu")
SQUATTED = (502, 1502, 5020)  # Modbus' port, the old example port and serve-sim's default
HIL_TIMEOUT_S = 900
PYTEST_HIL = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "hil")]


@pytest.fixture(scope="module")
def squatter() -> Iterator[list[int]]:
    """Another process holding the well-known ports (a leftover server, another session)."""
    code = (
        "import socket, sys, time\n"
        "held, keep = [], []\n"
        f"for port in {SQUATTED!r}:\n"
        "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); keep.append(s)\n"
        "    try:\n"
        "        s.bind(('127.0.0.1', port)); s.listen(); held.append(port)\n"
        "    except OSError:\n"
        "        pass  # already held by someone else: as good for this test\n"
        "print(held, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )  # it ends when its stdin closes (this process gone, however)
    try:
        assert proc.stdout is not None
        held = json.loads(proc.stdout.readline())
        for port in SQUATTED:  # someone listens on every one (it, or another process already)
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        yield held
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def hil_runs(squatter: list[int], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both rigs' hil runs, side by side (each session spawns its own served simulators on free ports): a run
    is real-clock sessions using about half a core (measured side by side: 75 s and 69 s of CPU in 132 s and
    146 s of wall time; 130 s and 144 s each alone), and the rigs' sessions are made to keep their timing
    beside two busy processes (tests/test_examples_realclock.py); one after the other took twice as long."""
    del squatter
    base = tmp_path_factory.mktemp("hil-runs")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {}
    try:
        for rig in RIGS:
            out = base / rig
            out.mkdir()
            args = [
                *PYTEST_HIL,
                "--rig",
                str(ROOT / "examples" / "rigs" / f"{rig}.toml"),
                "--junitxml",
                str(out / "junit.xml"),
                "--hil-report",
                str(out / "report"),
                "--hil-out",
                str(out / "records"),
            ]
            logs[rig] = (out / "pytest.log").open("w")
            procs[rig] = subprocess.Popen(args, cwd=ROOT, stdout=logs[rig], stderr=subprocess.STDOUT)
        deadline = time.monotonic() + HIL_TIMEOUT_S
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):  # reported below with what the run printed
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()
    for rig, proc in procs.items():
        text = (base / rig / "pytest.log").read_text()
        hung = proc.returncode == -9
        assert not hung, f"pytest hil --rig {rig}.toml still running after {HIL_TIMEOUT_S} s:\n{text[-6000:]}"
        assert proc.returncode == 0, f"pytest hil --rig {rig}.toml failed:\n{text[-6000:]}"
    return {rig: base / rig for rig in RIGS}


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("rig", RIGS)
def test_hil_passes_and_its_reports_hold_what_the_tools_read(hil_runs: dict[str, Path], rig: str) -> None:
    out = hil_runs[rig]
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    names = []
    properties: dict[str, list[str]] = {}
    for case in cases:
        names.append(case.get("name", ""))
        for prop in case.iter("property"):
            properties.setdefault(prop.get("name", ""), []).append(prop.get("value", ""))
    assert len(names) >= 10, names
    assert "cooling_latency_ms_max" in properties and "estop_reaction_ms_max" in properties, sorted(properties)
    report = json.loads((out / "report" / "hil-report.json").read_text())
    rig_file = ROOT / "examples" / "rigs" / f"{rig}.toml"
    assert report["rig"]["path"] == str(rig_file)
    import hashlib

    assert report["rig"]["sha256"] == hashlib.sha256(rig_file.read_bytes()).hexdigest()
    assert report["software_version"]
    assert set(report["devices"]) >= {"plasma", "spray", "thermometer", "safety"}
    assert len(report["tests"]) >= 10 and all({"name", "outcome", "measurements"} <= set(t) for t in report["tests"])
    for name in ("cooling_latency_ms", "estop_reaction_ms"):
        m = report["measurements"][name]
        assert m["n"] > 0 and m["p50"] <= m["p99"] <= m["max"], m
    assert report["measurements"]["cooling_latency_ms"]["max"] <= 100.0
    assert isinstance(report["not_verified"], list)
    md = (out / "report" / "hil-report.md").read_text()
    html = (out / "report" / "hil-report.html").read_text()
    assert "cooling_latency_ms" in md and "estop_reaction_ms" in html and "http" not in html
    records = list((out / "records").rglob("events.jsonl"))
    assert len(records) >= 10  # every session's record kept, in a folder named after its test


@pytest.mark.subprocess
def test_the_plugin_is_installed_with_the_package() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "--hil-report" in out.stdout and "--rig" in out.stdout, out.stdout[-2000:]


@pytest.mark.subprocess
def test_a_rig_naming_a_device_that_is_not_there_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]  # nothing listens here once closed
    rig = tmp_path / "missing.toml"
    # a bench rig whose devices are not there (a rig that spawns the simulators may not point one elsewhere:
    # that is a bad rig file, refused when read)
    body = "".join(
        f'[{device}]\nkind = "modbus-tcp"\nhost = "127.0.0.1"\nport = {free}\nunit_id = {unit}\n'
        for device, unit in (("plasma", 1), ("spray", 2), ("safety", 1))
    )
    rig.write_text(body + '[thermometer]\nkind = "serial"\nport = "/dev/ttyPLASMACTL-NONE"\n', encoding="utf-8")
    started = time.monotonic()
    out = subprocess.run(
        [*PYTEST_HIL, "--rig", str(rig), "-x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    took = time.monotonic() - started
    assert out.returncode != 0
    assert "is not what it says" in out.stdout and f"127.0.0.1:{free}" in out.stdout, out.stdout[-3000:]
    bad = subprocess.run(
        [*PYTEST_HIL, "--rig", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 4 and "hil:" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert took < 60.0, f"{took:.0f} s to find a missing device"


@pytest.mark.subprocess
def test_hil_on_its_default_rig(tmp_path: Path) -> None:
    """Without ``--rig`` the suite spawns the served simulators over Modbus TCP on free ports itself."""
    out = subprocess.run(
        [
            *PYTEST_HIL,
            "-k",
            "every_device or plan_completes",
            "--hil-report",
            str(tmp_path / "report"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    report = json.loads((tmp_path / "report" / "hil-report.json").read_text())
    assert report["rig"]["path"].endswith("hil-default-rig.toml")
    assert report["measurements"]["cooling_latency_ms"]["n"] > 0
