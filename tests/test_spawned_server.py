"""A run that spawns ``serve-sim`` (``[serve] spawn = true``) owns it: the server dies with the run, even when
the run is SIGKILLed (it watches a pipe only the run holds), and it is outside the run's process group, so a
Ctrl-C in the terminal (SIGINT to the whole foreground group) reaches only the controller, which then shuts
down against devices that are still there. The example rig takes a free port (``modbus_tcp`` port 0), so a
run never fails because another process holds a fixed one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plasmactl.events import read_events
from plasmactl.spawn import SERVER_MODULE

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
FULL_FACE = REPO / "examples" / "plans" / "full-face.toml"
SIM_TCP = REPO / "examples" / "rigs" / "sim-tcp.toml"

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc; zombies count as gone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture
def run_on_wires(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``plasmactl run`` of the full face on sim-tcp.toml in its own process group (as a shell's job is),
    once its served generator has fired twice: (the run, its serve-sim's pid, the log)."""
    out = tmp_path / "out"
    with (tmp_path / "stdout.txt").open("wb") as stdout, (tmp_path / "stderr.txt").open("wb") as stderr:
        proc = subprocess.Popen(
            [str(PLASMACTL), "run", str(FULL_FACE), "--rig", str(SIM_TCP), "--out", str(out)],
            stdout=stdout,
            stderr=stderr,
            cwd=REPO,
            start_new_session=True,
        )
    log = out / "events.jsonl"
    server = None
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and proc.poll() is None:
            if server is None:
                server = next((c for c in _children(proc.pid) if SERVER_MODULE in _cmdline(c)), None)
            if server is not None and log.exists() and log.read_bytes().count(b'"event":"pulse_end"') >= 2:
                break
            time.sleep(0.005)
        else:
            pytest.fail(f"the run did not get to its second pulse: {(tmp_path / 'stderr.txt').read_text()}")
        assert server is not None
        yield proc, server, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)


def test_the_server_dies_with_a_killed_run(run_on_wires: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, server, _ = run_on_wires
    proc.kill()
    proc.wait(timeout=10)
    killed = time.monotonic()
    while _alive(server) and time.monotonic() - killed < 1.0:
        time.sleep(0.01)
    assert not _alive(server), f"serve-sim {server} still running 1 s after its run was killed"


def test_ctrl_c_reaches_the_controller_not_the_server(
    run_on_wires: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    proc, server, log = run_on_wires
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    assert proc.wait(timeout=20) == 130
    events = read_events(log)
    names = [e["event"] for e in events]
    assert "abort" in names
    offs = [e for e in events if e["event"] == "plasma_off"]
    disarms = [e for e in events if e["event"] == "plasma_disarm"]
    # the devices were there to confirm it (on a saturated host a first attempt may time out, and is retried:
    # a server Ctrl-C had reached would answer none)
    assert offs and offs[-1]["ok"], offs
    assert disarms and disarms[-1]["ok"], disarms
    assert events[-1]["event"] == "session_end" and events[-1]["outcome"] == "aborted"
    deadline = time.monotonic() + 5.0
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(server)  # stopped by the run at its end


def test_the_example_rigs_name_no_fixed_tcp_port(tmp_path: Path) -> None:
    """Every served example rig lets its server pick a free port (the devices follow it), so a run never
    fails because another process holds a port; the TCP one runs and reports the port it got."""
    from plasmactl.rig import ModbusTcp, load_rig, parse_host_port

    for path in sorted((REPO / "examples" / "rigs").glob("*.toml")):
        rig, _ = load_rig(str(path))
        if rig.serve is not None and rig.serve.modbus_tcp:
            assert parse_host_port(rig.serve.modbus_tcp)[1] == 0, path
            for device in ("plasma", "spray", "safety"):
                cfg = getattr(rig, device)
                assert not isinstance(cfg, ModbusTcp) or cfg.port == 0, (path, device)
    short = REPO / "examples" / "plans" / "short.toml"
    done = subprocess.run(
        [str(PLASMACTL), "run", str(short), "--rig", str(SIM_TCP), "--out", str(tmp_path / "out")],
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    start = next(e for e in read_events(tmp_path / "out" / "events.jsonl") if e["event"] == "serve_sim")
    assert start["report"]["modbus_tcp"]["port"] != 0


def test_a_chatty_server_is_never_blocked_on_its_own_pipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the server prints after its report (warnings, pymodbus' error lines) is read as it comes: before,
    nobody read its pipes, and a server that had printed 64 KiB blocked in write() with its devices in it."""
    import asyncio

    from plasmactl import spawn
    from plasmactl.faults import FaultScenario
    from plasmactl.rig import ServeSim

    done = tmp_path / "done"
    fake = tmp_path / "fake-python"
    fake.write_text(
        "#!" + sys.executable + "\n"
        "import sys\n"
        "print('{}', flush=True)\n"
        "for _ in range(64):\n"
        "    sys.stderr.write('x' * 16384); sys.stderr.flush(); sys.stdout.write('y' * 16384); sys.stdout.flush()\n"
        f"open({str(done)!r}, 'w').close()\n"
        "sys.stdin.read()\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))  # what spawn starts the server with

    async def main() -> bool:
        async with spawn.spawned_server(ServeSim(modbus_tcp="127.0.0.1:0"), 1, FaultScenario(), None):
            for _ in range(100):
                if done.exists():
                    return True
                await asyncio.sleep(0.05)
        return False

    assert asyncio.run(main()), "the server is stuck writing to a pipe nobody reads"
