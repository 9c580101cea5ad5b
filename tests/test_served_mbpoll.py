"""mbpoll (libmodbus) as an independent Modbus peer of the served devices, over TCP and RTU on the pty.

mbpoll's register references are 1-based: ``-r 1`` is address 0. A missing mbpoll is installed (Debian
package), never skipped.

The units serve register map version 2: mbpoll writes as the lease's owner, a claim (the token to
LEASE_CLAIM) and then the owner's write at WRITE_TOKEN, each one FC16 request (``-t 4`` with several values);
a direct write of one value (FC6) is refused with exception 1, "Illegal function".
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest

from plasmactl.drivers.registers import PLASMA, Capability, owner_write, split
from plasmactl.simulators.served import ServedSim
from test_served_support import TOKEN, Transport, served


@pytest.fixture(scope="session")
def mbpoll() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        install = ["apt-get", "install", "-y", "mbpoll"]
        if subprocess.run(install, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=True)
        path = shutil.which("mbpoll")
    assert path is not None, "mbpoll could not be installed"
    return path


@pytest.fixture(params=["tcp", "rtu"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ServedSim, Transport]]:
    transport: Transport = request.param
    async with served(tcp=transport == "tcp", rtu=transport == "rtu") as s:
        yield s, transport


async def run_mbpoll(
    mbpoll: str, sim: ServedSim, transport: Transport, *args: str, values: tuple[int, ...] = ()
) -> tuple[int, str, str]:
    if transport == "tcp":
        assert sim.modbus_tcp is not None
        where = ["-m", "tcp", "-p", str(sim.modbus_tcp.port), *args, "-1", sim.modbus_tcp.host]
    else:
        assert sim.modbus_rtu is not None
        rtu = sim.modbus_rtu
        where = ["-m", "rtu", "-b", str(rtu.baud), "-P", "none", "-o", "0.5", *args, "-1", rtu.port]
    proc = await asyncio.create_subprocess_exec(
        mbpoll, *where, *map(str, values), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 15.0)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def mbpoll_owner_write(
    mbpoll: str, sim: ServedSim, transport: Transport, address: int, values: tuple[int, ...]
) -> tuple[int, str, str]:
    """Claim the generator's lease with ``TOKEN``, then write ``values`` at ``address`` as its owner: two
    mbpoll runs (the lease lives LEASE_MS, 300 ms, after the claim); the second run's result."""
    claim = PLASMA["LEASE_CLAIM"]
    rc, out, err = await run_mbpoll(
        mbpoll, sim, transport, "-a", "1", "-t", "4", "-r", str(claim.address + 1), values=tuple(split(TOKEN, 2))
    )
    assert rc == 0 and "Written 2 references" in out, (out, err)
    at, words = owner_write(TOKEN, address, values)
    return await run_mbpoll(mbpoll, sim, transport, "-a", "1", "-t", "4", "-r", str(at + 1), values=tuple(words))


def registers(out: str) -> dict[int, int]:
    """``[ref]: value`` lines of mbpoll's output -> {address (0-based): value}."""
    return {int(ref) - 1: int(v, 0) for ref, v in re.findall(r"^\[(\d+)\]:\s+(\S+)$", out, re.MULTILINE)}


async def test_mbpoll_reads_the_identity_block(mbpoll: str, sim: tuple[ServedSim, Transport]) -> None:
    s, transport = sim
    rc, out, err = await run_mbpoll(mbpoll, s, transport, "-a", "1", "-t", "4:hex", "-r", "1", "-c", "10")
    assert rc == 0, err
    expected = [w for r in PLASMA.registers if r.address < 10 for w in split(r.default, r.words)]
    expected[PLASMA["CAPABILITIES"].address] = 1 << Capability.TRIGGER_LINE  # the served units have the line
    assert registers(out) == dict(enumerate(expected))
    assert registers(out)[PLASMA["MAP_VERSION"].address] == 2


async def test_mbpoll_reads_status_and_writes_a_setpoint(mbpoll: str, sim: tuple[ServedSim, Transport]) -> None:
    s, transport = sim
    first, count = PLASMA.block("STATUS", "FAULT_CODE")
    rc, out, err = await run_mbpoll(
        mbpoll, s, transport, "-a", "1", "-t", "4:hex", "-r", str(first + 1), "-c", str(count)
    )
    assert rc == 0, err
    assert registers(out) == dict(zip(range(first, first + count), [0, 0, 0, 0xFFFF, 0xFFFF, 0], strict=True))

    pulse = PLASMA["PULSE_SET"]
    # a direct write (FC6) is refused: only the lease's owner writes
    rc, out, err = await run_mbpoll(
        mbpoll, s, transport, "-a", "1", "-t", "4", "-r", str(pulse.address + 1), values=(500,)
    )
    assert rc != 0 and "Illegal function" in err, (out, err)
    assert s.plasma.plasma.pulse_ms == 0.0
    rc, out, err = await mbpoll_owner_write(mbpoll, s, transport, pulse.address, (500,))
    assert rc == 0, err
    assert "Written 5 references" in out  # the token, the address, the count and the value
    assert s.plasma.plasma.pulse_ms == 5.0
    rc, out, err = await run_mbpoll(mbpoll, s, transport, "-a", "1", "-t", "4", "-r", str(pulse.address + 1))
    assert rc == 0 and registers(out) == {pulse.address: 500}, (out, err)


async def test_mbpoll_sees_the_contract_exceptions(mbpoll: str, sim: tuple[ServedSim, Transport]) -> None:
    s, transport = sim
    cmd = PLASMA["COMMAND"]
    rc, _, err = await mbpoll_owner_write(mbpoll, s, transport, cmd.address, (cmd.high + 1,))
    assert rc != 0 and "Illegal data value" in err
    mapped = {a for r in PLASMA for a in r.addresses}
    gap = min(a for a in range(PLASMA.size) if a not in mapped)
    rc, _, err = await run_mbpoll(mbpoll, s, transport, "-a", "1", "-t", "4", "-r", str(gap + 1))
    assert rc != 0 and "Illegal data address" in err
    status = PLASMA["STATUS"].address  # read-only
    rc, _, err = await mbpoll_owner_write(mbpoll, s, transport, status, (1,))
    assert rc != 0 and "Illegal data address" in err
    rc, _, err = await run_mbpoll(mbpoll, s, transport, "-a", "1", "-t", "4", "-r", str(cmd.address + 1), values=(1,))
    assert rc != 0 and "Illegal function" in err  # a direct write, even of a good value
    assert not s.plasma.plasma.armed
    if transport == "tcp":
        rc, _, err = await run_mbpoll(mbpoll, s, transport, "-a", "9", "-t", "4", "-r", "1")
        assert rc != 0 and "Target device failed to respond" in err
