"""``serve_sim_main`` (what ``plasmactl serve-sim`` wraps): where each device is, as JSON or text, until a
signal; bad input exits 2 before anything is served; stopping powers the devices down."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from plasmactl.drivers.registers import PLASMA, PlasmaCommand
from plasmactl.simulators.served import UNITS, serve_sim_main
from test_served_support import command, configure, modbus_client, read, served


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plasmactl.simulators.served",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.subprocess
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_json_report_then_serve_until_a_signal(sig: signal.Signals) -> None:
    proc = await _spawn("--modbus-tcp", "127.0.0.1:0", "--modbus-rtu", "--serial", "--baud", "19200", "--json")
    try:
        assert proc.stdout is not None
        where = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15.0))
        assert set(where) == {"modbus_tcp", "modbus_rtu", "serial"}
        assert where["modbus_tcp"]["host"] == "127.0.0.1" and where["modbus_tcp"]["port"] > 0
        assert where["modbus_tcp"]["units"] == UNITS == {"plasma": 1, "spray": 2, "safety": 1}
        assert where["modbus_rtu"]["baud"] == 19200 and where["modbus_rtu"]["units"] == UNITS
        assert where["serial"]["baud"] == 19200
        for path in (where["modbus_rtu"]["port"], where["serial"]["thermometer"]):
            assert path.startswith("/dev/pts/") and _exists(path)
        client = AsyncModbusTcpClient("127.0.0.1", port=where["modbus_tcp"]["port"], timeout=1.0, retries=0)
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=2, device_id=PLASMA.unit_id)
        client.close()
        assert rr.registers == [0x504C, PLASMA.model]
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0
        assert not _exists(where["modbus_rtu"]["port"])  # the pty pair is gone
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.subprocess
async def test_text_report(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\ndevice = "link"\nkind = "delay"\ntarget = "spray"\nat_s = 0.0\nvalue = 5.0\n')
    proc = await _spawn("--modbus-tcp", "127.0.0.1:0", "--faults", str(faults), "--seed", "3")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15.0)).decode()
        assert line.startswith("modbus-tcp  127.0.0.1:") and "plasma unit 1" in line and "spray unit 2" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modbus_tcp": "localhost"}, "expected HOST:PORT"),
        ({"modbus_tcp": "127.0.0.1:99999"}, "expected HOST:PORT"),
        ({"modbus_tcp": "127.0.0.1:0", "faults": "/nonexistent/faults.toml"}, "file not found"),
        ({"modbus_tcp": "127.0.0.1:0", "rig": "/nonexistent/rig.toml"}, "file not found"),
        ({"modbus_rtu": "/nonexistent/tty"}, "cannot serve"),
        ({"modbus_tcp": "127.0.0.1:0", "baud": 10}, "baud"),
    ],
)
def test_bad_input_exits_2(kwargs: dict[str, object], message: str) -> None:
    err = io.StringIO()
    assert serve_sim_main(**kwargs, out=io.StringIO(), err=err) == 2  # type: ignore[arg-type]
    assert message in err.getvalue()


async def test_stop_switches_the_output_off_and_closes_the_ptys() -> None:
    async with served(serial=True, rtu=True) as sim, modbus_client(sim, "tcp") as client:
        await configure(client, 1.0, 100.0)
        await command(client, PlasmaCommand.ARM)
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(0.01)
        assert await read(client, PLASMA, "STATUS") & 0b10
        assert sim.modbus_rtu is not None and sim.serial is not None
        paths = [sim.modbus_rtu.port, sim.serial.thermometer]
        await sim.stop()
        status = await sim.plasma.plasma.status()
        assert not status.output_on and not status.armed
        assert not any(_exists(p) for p in paths)
