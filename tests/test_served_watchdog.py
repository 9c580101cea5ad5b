"""Device-side protection of the served devices: the generator's heartbeat watchdog (also against a
controller process that is SIGKILLed mid-pulse), its hardware pulse limit, the spray unit's watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from plasmactl.drivers.registers import (
    PLASMA,
    SPRAY,
    FaultCode,
    PlasmaCommand,
    PlasmaStatusBit,
    SprayCommand,
    SprayStatusBit,
)
from test_served_support import (
    Client,
    Transport,
    bit,
    command,
    configure,
    modbus_client,
    poll_until,
    read,
    rig,
    scenario,
    served,
    write,
    write_words,
)

WINDOW_S = PLASMA["WATCHDOG_MS"].default / 1000.0  # 300 ms
STUCK = scenario({"device": "plasma", "kind": "stuck_on", "at_s": 0.0})


@asynccontextmanager
async def heartbeat(client: Client, period_s: float = 0.05) -> AsyncIterator[list[float]]:
    """Write a changing HEARTBEAT every ``period_s`` as the lease's owner; yields the perf_counter times of the
    acknowledged writes. A refused beat fails the test where it is (not a wait for a first ack that never
    comes: the helper used to hang there when its direct writes were refused on a map v2 unit)."""
    acks: list[float] = []
    first = asyncio.Event()

    async def run() -> None:
        beat = 0
        while True:
            beat = (beat + 1) & 0xFFFF
            rr = await write(client, PLASMA, "HEARTBEAT", beat)
            assert not rr.isError(), f"heartbeat {beat} refused: {rr}"
            acks.append(time.perf_counter())
            first.set()
            await asyncio.sleep(period_s)

    task = asyncio.create_task(run())
    acked = asyncio.create_task(first.wait())
    try:
        await asyncio.wait({task, acked}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # the first beat failed: raise its error
        yield acks
    finally:
        acked.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a beat that failed meanwhile raises here


async def _output_on(client: Client) -> bool:
    return bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.OUTPUT_ON)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_heartbeat_loss_switches_a_stuck_output_off_within_the_window(transport: Transport) -> None:
    the_rig = rig(hw_max_pulse_ms=2000.0)  # the hardware limit would not end the pulse before 2 s
    async with (
        served(the_rig, STUCK, tcp=transport == "tcp", rtu=transport == "rtu") as sim,
        modbus_client(sim, transport) as client,
    ):
        async with heartbeat(client) as acks:
            await configure(client, 2.0, 100.0, limit_j=10.0)  # the dose monitor far out of the way
            await command(client, PlasmaCommand.ARM)
            await command(client, PlasmaCommand.FIRE)
            await asyncio.sleep(0.2)
            assert await _output_on(client), "the stuck output should still be on after 200 ms"
        last_ack = acks[-1]

        async def off() -> bool:
            return not await _output_on(client)

        t_off = await poll_until(off, WINDOW_S + 0.2)
        assert t_off is not None, "the watchdog never switched the output off"
        seen = t_off - last_ack
        tripped = sim.plasma.trips[0] - sim.plasma.watchdog.last_beat
        print(
            f"\n[{transport}] output off {seen * 1000:.1f} ms after the last heartbeat ack (seen over the wire);"
            f" the watchdog tripped {tripped * 1000:.1f} ms after the last heartbeat"
        )
        assert WINDOW_S <= tripped <= WINDOW_S + 0.010
        assert WINDOW_S - 0.010 <= seen <= WINDOW_S + 0.030

        status = await read(client, PLASMA, "STATUS")
        assert bit(status, PlasmaStatusBit.WATCHDOG_TRIPPED) and bit(status, PlasmaStatusBit.FAULT)
        assert not bit(status, PlasmaStatusBit.ARMED)
        assert await read(client, PLASMA, "FAULT_CODE") == FaultCode.WATCHDOG
        rr = await command(client, PlasmaCommand.ARM)
        assert rr.isError() and rr.exception_code == 4  # locked out until a reset
        assert not (await command(client, PlasmaCommand.RESET_FAULT)).isError()
        assert await read(client, PLASMA, "FAULT_CODE") == 0
        assert await read(client, PLASMA, "STATUS") == 0
        assert not (await command(client, PlasmaCommand.ARM)).isError()


async def test_no_heartbeat_ever_means_no_watchdog() -> None:
    async with served() as sim, modbus_client(sim, "tcp") as client:
        await configure(client, 1.0, 20.0)
        await command(client, PlasmaCommand.ARM)
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(WINDOW_S + 0.1)
        assert await read(client, PLASMA, "FAULT_CODE") == 0
        assert bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.ARMED)


async def test_an_unchanging_heartbeat_is_no_heartbeat() -> None:
    async with served() as sim, modbus_client(sim, "tcp") as client:
        await command(client, PlasmaCommand.ARM)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < WINDOW_S + 0.1:
            await write(client, PLASMA, "HEARTBEAT", 7)  # a stuck writer
            await asyncio.sleep(0.05)
        assert await read(client, PLASMA, "FAULT_CODE") == FaultCode.WATCHDOG
        assert not bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.ARMED)


async def test_the_hardware_limit_ends_a_stuck_pulse() -> None:
    async with served(faults=STUCK) as sim, modbus_client(sim, "tcp") as client:
        hw_max_s = sim.plasma.plasma.cfg.hw_max_pulse_ms / 1000.0
        await configure(client, 1.0, 20.0, limit_j=10.0)  # 7.5 J in 150 ms: the dose monitor never ends it
        await command(client, PlasmaCommand.ARM)
        t_fire = time.perf_counter()
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(0.06)
        assert await _output_on(client)

        async def off() -> bool:
            return not await _output_on(client)

        t_off = await poll_until(off, 0.3)
        assert t_off is not None
        assert hw_max_s <= t_off - t_fire <= hw_max_s + 0.02
        assert await read(client, PLASMA, "FAULT_CODE") == FaultCode.PULSE_LIMIT
        assert bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.FAULT)
        # the stuck output kept delivering at the set power for the whole 150 ms
        assert await read(client, PLASMA, "LAST_ENERGY") > 5 * 1_000_000
        rr = await command(client, PlasmaCommand.FIRE)
        assert rr.isError() and rr.exception_code == 4


async def test_the_dose_monitor_ends_a_stuck_pulse_at_its_energy_limit() -> None:
    async with served(faults=STUCK) as sim, modbus_client(sim, "tcp") as client:
        await configure(client, 1.0, 20.0, limit_j=1.2)
        await command(client, PlasmaCommand.ARM)
        await command(client, PlasmaCommand.FIRE)
        window = sim.plasma.plasma.pulse_window()
        assert window is not None
        # the set power (1 J in 20 ms, within the energy noise) until 1.2 J: about 24 ms, not the 150 ms limit
        assert 0.020 <= window[1] - window[0] <= 0.028
        await asyncio.sleep(0.005)
        assert await _output_on(client)

        async def off() -> bool:
            return not await _output_on(client)

        assert await poll_until(off, 0.1) is not None
        assert await read(client, PLASMA, "LAST_ENERGY") == 1_200_000  # uJ: exactly the limit
        assert await read(client, PLASMA, "FAULT_CODE") == 0  # the pulse limit never came into it


async def test_an_output_switched_off_before_the_limit_latches_no_fault() -> None:
    async with served(faults=STUCK) as sim, modbus_client(sim, "tcp") as client:
        await configure(client, 1.0, 20.0, limit_j=10.0)
        await command(client, PlasmaCommand.ARM)
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(0.05)
        await command(client, PlasmaCommand.OUTPUT_OFF)
        await asyncio.sleep(0.15)
        assert await read(client, PLASMA, "FAULT_CODE") == 0


async def test_spray_watchdog_closes_the_valve() -> None:
    window_s = SPRAY["WATCHDOG_MS"].default / 1000.0
    async with served() as sim, modbus_client(sim, "tcp") as client:
        assert not (await write(client, SPRAY, "HEARTBEAT", 1)).isError()
        t_beat = time.perf_counter()
        rr = await write_words(client, SPRAY, SPRAY["COMMAND"].address, [SprayCommand.SPRAY, 5000])
        assert not rr.isError(), rr

        async def closed() -> bool:
            return not bit(await read(client, SPRAY, "STATUS"), SprayStatusBit.VALVE_OPEN)

        await asyncio.sleep(0.1)
        assert not await closed()
        t_closed = await poll_until(closed, window_s + 0.2, period=0.005)
        assert t_closed is not None
        assert window_s - 0.01 <= t_closed - t_beat <= window_s + 0.03
        assert await read(client, SPRAY, "FAULT_CODE") == FaultCode.WATCHDOG
        assert bit(await read(client, SPRAY, "STATUS"), SprayStatusBit.FAULT)
        assert not (await write(client, SPRAY, "HEARTBEAT", 2)).isError()
        assert await read(client, SPRAY, "FAULT_CODE") == 0


CONTROLLER = """
import asyncio, sys
from pymodbus.client import AsyncModbusTcpClient
from plasmactl.drivers.registers import PLASMA, PlasmaCommand, owner_write, split

TOKEN = 0x7E57_00C1

async def main(port: int) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
    assert await c.connect()
    beat = 0

    async def put(address, words):  # map v2: the owner's write
        at, request = owner_write(TOKEN, address, words)
        rr = await c.write_registers(at, request, device_id=PLASMA.unit_id)
        if rr.isError():
            print(f"error {rr} writing {words} at {address}", flush=True)
        return rr

    async def heartbeat() -> None:  # the owner's heartbeat also keeps its lease
        nonlocal beat
        while True:
            beat = (beat + 1) & 0xFFFF
            await put(PLASMA["HEARTBEAT"].address, [beat])
            await asyncio.sleep(0.05)

    rr = await c.write_registers(PLASMA["LEASE_CLAIM"].address, split(TOKEN, 2), device_id=PLASMA.unit_id)
    if rr.isError():
        print(f"error {rr} claiming", flush=True)
        return
    task = asyncio.create_task(heartbeat())
    words = PLASMA["ENERGY_SET"].encode(2.0) + PLASMA["PULSE_SET"].encode(100.0)
    await put(PLASMA["ENERGY_SET"].address, words)
    limit = PLASMA["ENERGY_LIMIT"].encode(10.0)  # the dose monitor out of the way: the watchdog must act
    await put(PLASMA["ENERGY_LIMIT"].address, limit)
    await put(PLASMA["COMMAND"].address, [PlasmaCommand.ARM])
    rr = await put(PLASMA["COMMAND"].address, [PlasmaCommand.FIRE])
    print("fired" if not rr.isError() else f"error {rr}", flush=True)
    await task

asyncio.run(main(int(sys.argv[1])))
"""


@pytest.mark.slow
async def test_sigkilled_controller_leaves_the_output_on_no_longer_than_the_watchdog_window() -> None:
    async with (
        served(rig(hw_max_pulse_ms=2000.0), STUCK) as sim,
        modbus_client(sim, "tcp") as client,
    ):
        assert sim.modbus_tcp is not None
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CONTROLLER, str(sim.modbus_tcp.port), stdout=asyncio.subprocess.PIPE
        )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 15.0)  # type: ignore[union-attr]
            assert line.strip() == b"fired", line
            await asyncio.sleep(0.12)  # mid-pulse (100 ms set, the stuck output stays on)
            assert await _output_on(client)
            os.kill(proc.pid, signal.SIGKILL)
            t_kill, clock_kill = time.perf_counter(), sim.world.clock.now()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

        async def off() -> bool:
            return not await _output_on(client)

        t_off = await poll_until(off, 1.0)
        assert t_off is not None, "the output stayed on"
        on_wire = t_off - t_kill
        on_device = sim.plasma.trips[0] - clock_kill
        print(
            f"\noutput on after SIGKILL: {on_device * 1000:.1f} ms (device), {on_wire * 1000:.1f} ms"
            f" (seen over the wire, 2 ms polls); watchdog window {WINDOW_S * 1000:.0f} ms"
        )
        assert on_device <= WINDOW_S + 0.050
        assert on_wire <= WINDOW_S + 0.050
        assert await read(client, PLASMA, "FAULT_CODE") == FaultCode.WATCHDOG
        assert await read(client, PLASMA, "LEASE_OWNER") == 0  # the dead controller's lease lapsed with it
