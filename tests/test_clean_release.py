"""A session that ends releases its devices through the contract (COMMAND = RELEASE after off and disarm):
the devices' own heartbeat watchdogs stand down instead of tripping when the heartbeat stops, so the next
session on the same served simulator passes its self-test. Before, every clean end latched the generator in
FAULT 1 (heartbeat lost) and the next session was refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plasmactl.events import read_events

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
SHORT = REPO / "examples" / "plans" / "short.toml"

pytestmark = [pytest.mark.hazard("H11"), pytest.mark.subprocess, pytest.mark.slow]

SIM_TCP = REPO / "examples" / "rigs" / "sim-tcp.toml"


def _rig_for(port: int, serial: str) -> str:
    """sim-tcp.toml's devices and timing, pointed at a server the test started (no [serve] section)."""
    text = SIM_TCP.read_text(encoding="utf-8")
    text = re.sub(r"^\[serve\]\n(?:[^\[\n].*\n|\n)*", "", text, flags=re.MULTILINE)
    return text.replace("port = 0", f"port = {port}").replace('"@serial"', json.dumps(serial))


def test_two_sessions_in_a_row_on_one_served_simulator_both_complete(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [str(PLASMACTL), "serve-sim", "--modbus-tcp", "127.0.0.1:0", "--serial", "pty", "--json", "--lifeline"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        rig = tmp_path / "rig.toml"
        rig.write_text(_rig_for(where["modbus_tcp"]["port"], where["serial"]["thermometer"]))
        for n in (1, 2):
            out = tmp_path / f"out{n}"
            done = subprocess.run(
                [str(PLASMACTL), "run", str(SHORT), "--rig", str(rig), "--out", str(out)],
                capture_output=True,
                cwd=REPO,
                timeout=120,
            )
            events = read_events(out / "events.jsonl")
            end = events[-1]
            assert done.returncode == 0, (n, end, done.stderr.decode(errors="replace")[-1500:])
            assert end["outcome"] == "complete"
            self_test = next(e for e in events if e["event"] == "self_test")
            assert self_test["ok"], self_test
            time.sleep(0.6)  # past the generator's 300 ms watchdog window: a stopped heartbeat would trip it
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the lifeline: the server stops
        server.wait(timeout=10)
    assert server.returncode == 0
    assert server.stderr is not None
    err = server.stderr.read().decode(errors="replace")
    assert "heartbeat lost" not in err, err[-1500:]
