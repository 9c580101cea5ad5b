"""A generator latched in FAULT by an earlier failure: self-test reports it with its code and refuses the
session; only the operator's explicit ``plasmactl clear-fault`` clears it, after which a session runs."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from plasmactl.clock import LoopClock
from plasmactl.drivers.devices import ModbusPlasma
from plasmactl.drivers.modbus import ModbusLink, TcpEndpoint
from plasmactl.events import read_events
from plasmactl.rig import ModbusTcp
from test_one_master import PLASMACTL, REPO, served_tcp

pytestmark = [pytest.mark.subprocess, pytest.mark.hazard("H7")]


async def _die_holding_the_generator(port: int) -> None:
    """A controller that connects, beats its heartbeat, and dies without a word (no release)."""
    cfg = ModbusTcp.model_validate({"kind": "modbus-tcp", "port": port, "unit_id": 1})
    link = ModbusLink(TcpEndpoint("127.0.0.1", port))
    plasma = ModbusPlasma(link, cfg, LoopClock(), token=0xDEAD)
    await plasma.connect()
    await asyncio.sleep(0.3)
    assert plasma._heartbeat_task is not None
    plasma._heartbeat_task.cancel()
    await link.close()
    await asyncio.sleep(0.5)  # past the generator's 300 ms heartbeat window: FAULT 1 latched


def _plasmactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PLASMACTL), *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def test_a_latched_fault_refuses_sessions_until_the_operator_clears_it(tmp_path: Path) -> None:
    with served_tcp(tmp_path) as (plan, rig, where):
        done = _plasmactl("clear-fault", str(rig))
        assert (done.returncode, done.stdout.strip()) == (0, "plasma: no fault latched"), done
        asyncio.run(_die_holding_the_generator(int(where["modbus_tcp"]["port"])))
        refused = _plasmactl("run", str(plan), "--rig", str(rig), "--out", str(tmp_path / "refused"))
        events = read_events(tmp_path / "refused" / "events.jsonl")
        assert refused.returncode == 3, refused
        problems = next(e for e in events if e["event"] == "self_test")["problems"]
        assert any("plasma reports fault code 1" in p for p in problems), problems
        assert not [e for e in events if e["event"] in ("plasma_arm", "pulse_start")]
        done = _plasmactl("clear-fault", str(rig))
        assert (done.returncode, done.stdout.strip()) == (0, "plasma: fault code 1 cleared"), done
        ran = _plasmactl("run", str(plan), "--rig", str(rig), "--out", str(tmp_path / "after"))
        assert ran.returncode == 0, ran.stdout[-2000:]
        assert read_events(tmp_path / "after" / "events.jsonl")[-1]["outcome"] == "complete"


def test_clear_fault_refuses_rigs_with_nothing_to_clear() -> None:
    done = _plasmactl("clear-fault", "examples/rigs/sim-tcp.toml")
    assert done.returncode == 2 and "spawns its own serve-sim" in done.stderr, done
    done = _plasmactl("clear-fault", "examples/rigs/sim.toml")
    assert done.returncode == 2 and "only a generator on a wire" in done.stderr, done
    done = _plasmactl("clear-fault", "examples/rigs/no-such-rig.toml")
    assert done.returncode == 2, done
