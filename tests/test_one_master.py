"""One controller per device on a host: two ``plasmactl run`` started together on one served simulator
(Modbus TCP, and one RTU bus), trial after trial. Every time one completes its plan, the other is refused
before it sends anything (no arm, no pulse, the holder named), and the generator counts exactly the plan's
pulses. Before, both armed and fired, each one's safety disarm cut into the other's session.

``PLASMACTL_TWO_MASTER_TRIALS`` sets the trials per transport (CI: 5; the issue's figure: 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from plasmactl.drivers.registers import PLASMA
from plasmactl.events import read_events

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
RIGS = REPO / "examples" / "rigs"
TRIALS = int(os.environ.get("PLASMACTL_TWO_MASTER_TRIALS", "5"))

pytestmark = [pytest.mark.hazard("H13"), pytest.mark.subprocess, pytest.mark.slow]

PLAN = """
name = "two spots"
[spots]
points = [[0.0, 0.0], [1.5, 0.0]]
[pulse]
energy_j = 0.005
pulse_ms = 5.0
interval_s = 0.5
[cooling]
spray_ms = 150.0
when = "pulse"
"""


def _rig(transport: str, where: dict[str, object]) -> str:
    """The example rig for ``transport`` without its [serve] section, pointed at the server's endpoints."""
    text = (RIGS / f"sim-{transport}.toml").read_text(encoding="utf-8")
    lines, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == "[serve]"
        if not skipping:
            lines.append(line)
    text = "\n".join(lines) + "\n"
    serial = where["serial"]
    assert isinstance(serial, dict)
    text = text.replace('"@serial"', json.dumps(serial["thermometer"]))
    if transport == "tcp":
        tcp = where["modbus_tcp"]
        assert isinstance(tcp, dict)
        return text.replace("port = 0", f"port = {tcp['port']}")
    rtu = where["modbus_rtu"]
    assert isinstance(rtu, dict)
    return text.replace('"@rtu"', json.dumps(rtu["port"]))


async def _pulse_count(port: int) -> int:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    assert await client.connect()
    reg = PLASMA["PULSE_COUNT"]
    rr = await client.read_holding_registers(reg.address, count=reg.words, device_id=PLASMA.unit_id)
    client.close()
    value = 0
    for word in rr.registers:
        value = (value << 16) | word
    return value


def _run_together(plan: Path, rig: Path, outs: list[Path], envs: list[dict[str, str]] | None = None) -> list[int]:
    """``plasmactl run`` of ``plan`` on ``rig`` once per out folder, all started together; their exit codes."""
    procs = [
        subprocess.Popen(
            [str(PLASMACTL), "run", str(plan), "--rig", str(rig), "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **(envs[n] if envs else {})},
        )
        for n, out in enumerate(outs)
    ]
    return [p.wait(timeout=120) for p in procs]


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_two_controllers_on_one_simulator_one_is_refused(transport: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN, encoding="utf-8")
    # the TCP server is also served for the RTU trials: the test reads the generator's count through it
    args = ["serve-sim", "--modbus-tcp", "127.0.0.1:0", "--serial", "pty", "--json", "--lifeline"]
    if transport == "rtu":
        args += ["--modbus-rtu", "pty"]
    server = subprocess.Popen([str(PLASMACTL), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        rig = tmp_path / "rig.toml"
        rig.write_text(_rig(transport, where), encoding="utf-8")
        fired = 0
        for trial in range(TRIALS):
            outs = [tmp_path / f"t{trial}-{n}" for n in (1, 2)]
            codes = _run_together(plan, rig, outs)
            logs = [read_events(out / "events.jsonl") for out in outs]
            ends = [log[-1] for log in logs]
            busy = [any("in use by another" in str(e.get("problems")) for e in log) for log in logs]
            assert sorted(busy) == [False, True], (trial, codes, ends)
            winner, loser = (0, 1) if busy[1] else (1, 0)
            assert codes[loser] == 3
            if transport == "tcp" or codes[winner] == 0:
                assert (codes[winner], ends[winner]["outcome"]) == (0, "complete"), ends[winner]
            else:  # the RTU bench's own timing on a loaded host (a known issue of the shared bus), not the lock
                assert ends[winner]["cause"] != "self_test_failed", ends[winner]
            fired += len([e for e in logs[winner] if e["event"] == "pulse_start"])
            refused = logs[loser]
            assert not [e for e in refused if e["event"] in ("plasma_arm", "pulse_start")], refused
            problems = next(e for e in refused if e["event"] == "self_test")["problems"]
            assert "in use by another plasmactl session" in problems[0], problems
            assert f"the session writing {outs[winner]}" in problems[0], problems
        count = asyncio.run(_pulse_count(int(where["modbus_tcp"]["port"])))
        assert count == fired  # exactly the pulses the one controller of each trial fired
        assert fired >= 2 * TRIALS if transport == "tcp" else fired > 0
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


@contextlib.contextmanager
def served_tcp(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """A serve-sim of its own (TCP on a free port, the thermometer on a pty) for the length of the block: the
    test plan's file, a rig file pointed at the server, and the server's report."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN, encoding="utf-8")
    args = ["serve-sim", "--modbus-tcp", "127.0.0.1:0", "--serial", "pty", "--json", "--lifeline"]
    server = subprocess.Popen([str(PLASMACTL), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        rig = tmp_path / "rig.toml"
        rig.write_text(_rig("tcp", where), encoding="utf-8")
        yield plan, rig, where
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


def test_two_controllers_on_two_hosts_the_device_refuses_one(tmp_path: Path) -> None:
    """No host lock between them (each its own PLASMACTL_LOCK_DIR, as on two hosts): the generator's owner
    lease (map v2) refuses the second controller's claim before it writes anything, naming the owner."""
    with served_tcp(tmp_path) as (plan, rig, where):
        fired = 0
        for trial in range(max(2, TRIALS // 2)):
            outs = [tmp_path / f"h{trial}-{n}" for n in (1, 2)]
            hosts = [{"PLASMACTL_LOCK_DIR": str(tmp_path / f"host-{trial}-{n}")} for n in (1, 2)]
            codes = _run_together(plan, rig, outs, hosts)
            logs = [read_events(out / "events.jsonl") for out in outs]
            owned = [any("owned by another controller" in str(e.get("problems")) for e in log) for log in logs]
            assert sorted(owned) == [False, True], (trial, codes, [log[-1] for log in logs])
            winner, loser = (0, 1) if owned[1] else (1, 0)
            assert (codes[winner], logs[winner][-1]["outcome"]) == (0, "complete"), logs[winner][-1]
            assert codes[loser] == 3
            assert not [e for e in logs[loser] if e["event"] in ("plasma_arm", "pulse_start")]
            lease = next(e for e in logs[winner] if e["event"] == "device_lease")
            problems = next(e for e in logs[loser] if e["event"] == "self_test")["problems"]
            assert f"session token {lease['token']}" in problems[0], problems
            fired += len([e for e in logs[winner] if e["event"] == "pulse_start"])
        assert asyncio.run(_pulse_count(int(where["modbus_tcp"]["port"]))) == fired


def test_a_lock_names_its_holder_and_dies_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any spelling of a host is one endpoint; a holder killed by SIGKILL leaves the endpoint free."""
    from plasmactl.drivers.host_locks import EndpointBusy, HostLocks, tcp_key

    monkeypatch.setenv("PLASMACTL_LOCK_DIR", str(tmp_path))
    assert tcp_key("localhost", 1502) in (tcp_key("127.0.0.1", 1502), tcp_key("::1", 1502))
    code = (
        "import os, sys, time; from plasmactl.drivers.host_locks import HostLocks, tcp_key\n"
        "HostLocks('the test child').acquire('plasma', tcp_key('127.0.0.1', 1502)); print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PLASMACTL_LOCK_DIR": str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"
        with pytest.raises(EndpointBusy, match=r"in use by another plasmactl session \(the test child, pid"):
            HostLocks("me").acquire("plasma", tcp_key("127.0.0.1", 1502))
    finally:
        child.kill()
        child.wait(timeout=10)
    mine = HostLocks("me")
    mine.acquire("plasma", tcp_key("127.0.0.1", 1502))
    mine.acquire("safety", tcp_key("127.0.0.1", 1502))  # a second device behind the same endpoint
    mine.release()


def test_a_holder_that_has_not_written_its_name_yet_is_still_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock is taken, then its holder's name written: a session refused in between waits for the name
    (before: "holder unknown", seen in CI when two runs started together)."""
    import fcntl
    import threading
    import time

    from plasmactl.drivers.host_locks import EndpointBusy, HostLocks, tcp_key

    monkeypatch.setenv("PLASMACTL_LOCK_DIR", str(tmp_path))
    first = HostLocks("probe")
    first.acquire("plasma", tcp_key("127.0.0.1", 1502))  # makes the lock file
    first.release()
    (lock,) = tmp_path.glob("*.lock")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)

    def name_it() -> None:
        time.sleep(0.1)
        os.write(fd, b"the late writer, pid 1")

    writer = threading.Thread(target=name_it)
    writer.start()
    try:
        with pytest.raises(EndpointBusy, match=r"\(the late writer, pid 1\)"):
            HostLocks("me").acquire("plasma", tcp_key("127.0.0.1", 1502))
    finally:
        writer.join()
        os.close(fd)
