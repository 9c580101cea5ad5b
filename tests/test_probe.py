"""``plasmactl probe RIG``: every device of a rig read on its own (identity, state, fault code, round trip),
nothing written. Exit 0 when all answer and match, 3 otherwise (each device's problem named, not only the
first), 2 for a bad rig file. On the served TCP and RTU rigs, and on a new user's rig mistakes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
RIGS = REPO / "examples" / "rigs"

pytestmark = pytest.mark.subprocess


def _probe(rig: Path, *extra: str) -> tuple[int, dict[str, Any] | None, str]:
    done = subprocess.run(
        [str(PLASMACTL), "probe", str(rig), "--json", *extra], capture_output=True, cwd=REPO, timeout=60
    )
    out = done.stdout.decode()
    return done.returncode, json.loads(out) if out.strip() else None, done.stderr.decode(errors="replace")


@pytest.mark.parametrize("rig", ["sim-tcp.toml", "sim-rtu.toml", "sim-tcp-inprocess.toml"])
def test_the_served_rigs_answer_and_match(rig: str) -> None:
    code, report, err = _probe(RIGS / rig)
    assert code == 0, err
    assert report is not None and report["ok"] is True
    devices = {d["device"]: d for d in report["devices"]}
    assert set(devices) == {"plasma", "spray", "thermometer", "safety"}
    assert devices["plasma"]["identity"]["model"] == "0x0101" and devices["spray"]["identity"]["model"] == "0x0201"
    assert devices["plasma"]["status"]["fault_code"] == 0 and devices["plasma"]["status"]["armed"] is False
    assert devices["thermometer"]["identity"]["model"] == "IRT-1"
    assert all(d["round_trip_ms"]["n"] == 5 and d["round_trip_ms"]["median"] > 0 for d in devices.values())
    assert "every device answers and matches" in err  # the table goes to stderr with --json


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rig.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _unreachable_rig(tmp_path: Path, port: int, serial: str) -> Path:
    """The three Modbus devices on a port nothing listens on, the thermometer on ``serial``."""
    devices = "".join(
        f'[{device}]\nkind = "modbus-tcp"\nport = {port}\nunit_id = {unit}\n'
        for device, unit in (("plasma", 1), ("spray", 2), ("safety", 1))
    )
    return _write(tmp_path, devices + f'[thermometer]\nkind = "serial"\nport = "{serial}"\n')


def test_nothing_reachable_names_every_device_and_why(tmp_path: Path) -> None:
    port = _unused_port()
    code, report, _ = _probe(_unreachable_rig(tmp_path, port, "/dev/ttyPLASMACTL-NONE"))
    assert code == 3 and report is not None and report["ok"] is False
    problems = {d["device"]: d["problem"] for d in report["devices"]}
    for device in ("plasma", "spray", "safety"):
        assert f"connection refused: nothing listens on 127.0.0.1:{port}; check {device}.port" in problems[device]
    assert "no such device /dev/ttyPLASMACTL-NONE; check thermometer.port" in problems["thermometer"]


@pytest.mark.parametrize("path", ["/dev/null", "REGULAR"])
def test_a_port_that_is_not_a_serial_device_is_named_so(tmp_path: Path, path: str) -> None:
    """Before: '/dev/null opens now but did not when it was asked for', naming no field."""
    if path == "REGULAR":
        path = str(tmp_path / "a-file")
        Path(path).write_text("x", encoding="utf-8")
    code, report, _ = _probe(_unreachable_rig(tmp_path, _unused_port(), path))
    assert code == 3 and report is not None
    problems = {d["device"]: d["problem"] for d in report["devices"]}
    assert f"{path} is not a serial device (not a tty); check thermometer.port" in problems["thermometer"], problems


@pytest.fixture
def served_tcp() -> Any:
    server = subprocess.Popen(
        [str(PLASMACTL), "serve-sim", "--modbus-tcp", "127.0.0.1:0", "--serial", "pty", "--json", "--lifeline"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert server.stdout is not None
    try:
        yield json.loads(server.stdout.readline())
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


def _served_rig(where: dict[str, Any], plasma_unit: int, spray_unit: int) -> str:
    port, pty = where["modbus_tcp"]["port"], where["serial"]["thermometer"]
    units = {"plasma": plasma_unit, "spray": spray_unit, "safety": 1}
    body = "".join(f'[{d}]\nkind = "modbus-tcp"\nport = {port}\nunit_id = {u}\n' for d, u in units.items())
    return body + f'[thermometer]\nkind = "serial"\nport = "{pty}"\n'


def test_a_wrong_unit_id_points_at_the_field(tmp_path: Path, served_tcp: dict[str, Any]) -> None:
    code, report, _ = _probe(_write(tmp_path, _served_rig(served_tcp, 9, 2)))
    assert code == 3 and report is not None
    devices = {d["device"]: d for d in report["devices"]}
    assert "check plasma.unit_id" in devices["plasma"]["problem"]
    assert devices["spray"]["ok"] and devices["safety"]["ok"] and devices["thermometer"]["ok"]  # all probed


def test_swapped_unit_ids_name_the_device_found(tmp_path: Path, served_tcp: dict[str, Any]) -> None:
    code, report, _ = _probe(_write(tmp_path, _served_rig(served_tcp, 2, 1)))
    assert code == 3 and report is not None
    devices = {d["device"]: d for d in report["devices"]}
    assert "that is the spray unit's model" in devices["plasma"]["problem"]
    assert "that is the plasma generator's model" in devices["spray"]["problem"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "names no device"), ("[plasma]\nkind = 'modbus-tcp'\nunit_id = 1\nport = 'x'\n", "plasma")],
)
def test_a_bad_rig_file_exits_2(tmp_path: Path, text: str, message: str) -> None:
    code, report, err = _probe(_write(tmp_path, text))
    # with --json, bad input is one JSON object on stdout too (tests/test_cli_conventions.py)
    assert code == 2 and report is not None and report["ok"] is False and report["exit_code"] == 2
    assert any(message in p for p in report["problems"])
    assert message in err


@pytest.mark.parametrize("rig", ["sim-tcp.toml", "sim-tcp-inprocess.toml"])
def test_a_serve_port_in_use_is_an_unhealthy_rig_not_a_traceback(tmp_path: Path, rig: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        text = (RIGS / rig).read_text(encoding="utf-8")
        assert 'modbus_tcp = "127.0.0.1:0"' in text
        path = _write(tmp_path, text.replace('modbus_tcp = "127.0.0.1:0"', f'modbus_tcp = "127.0.0.1:{port}"'))
        code, report, err = _probe(path)
        plain = subprocess.run([str(PLASMACTL), "probe", str(path)], capture_output=True, text=True, timeout=60)
    expected = f"[serve] modbus_tcp 127.0.0.1:{port}: address already in use"
    assert code == 3, err
    assert report is not None and report["ok"] is False and report["exit_code"] == 3
    assert expected in report["problem"] and report["devices"] == []
    assert "Traceback" not in err and expected in " ".join(err.split())
    assert plain.returncode == 3 and "Traceback" not in plain.stderr and expected in " ".join(plain.stderr.split())
