"""The served Modbus devices against raw pymodbus clients, over TCP and over RTU on a pty: the register
contract (identity, pulse cycle, spray, write checks, exceptions) and unknown unit ids.

The units serve register map version 2: every write is the lease owner's write (``write_words``: a claim,
then the owner's write at WRITE_TOKEN), and a direct write is refused with exception 1 (NOT_OWNER)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU

from plasmactl.drivers.registers import (
    NO_ENERGY,
    NOT_OWNER,
    PLASMA,
    SPRAY,
    Capability,
    DeviceMap,
    PlasmaCommand,
    PlasmaStatusBit,
    SafetyBit,
    SprayCommand,
    SprayStatusBit,
    split,
)
from plasmactl.simulators.served import ServedSim
from test_served_support import (
    TOKEN,
    Client,
    Transport,
    as_owner,
    bit,
    claim,
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

TRANSPORTS: list[Transport] = ["tcp", "rtu"]


@pytest.fixture(params=TRANSPORTS)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ServedSim, Client]]:
    transport: Transport = request.param
    async with served(tcp=transport == "tcp", rtu=transport == "rtu") as sim, modbus_client(sim, transport) as client:
        yield sim, client


def _gaps(dmap: DeviceMap) -> list[int]:
    """Addresses inside (and just past) the map that no register declares."""
    mapped = {a for r in dmap for a in r.addresses}
    return [a for a in range(dmap.size + 1) if a not in mapped]


def _defaults(dmap: DeviceMap, first: int, count: int) -> list[int]:
    words = {r.address + i: w for r in dmap for i, w in enumerate(split(r.default, r.words))}
    return [words[a] for a in range(first, first + count)]


@pytest.mark.parametrize("dmap", [PLASMA, SPRAY], ids=["plasma", "spray"])
async def test_identity_block_serves_the_declared_defaults(bus: tuple[ServedSim, Client], dmap: DeviceMap) -> None:
    """The declared defaults, but CAPABILITIES: the served world wires the pulse-end trigger line (bit 0)."""
    _, client = bus
    start, count = dmap.block("VENDOR", "RESERVED")
    rr = await client.read_holding_registers(start, count=count, device_id=dmap.unit_id)
    assert not rr.isError(), rr
    capabilities = dmap["CAPABILITIES"].address - start
    expected = _defaults(dmap, start, count)
    expected[capabilities] = 1 << Capability.TRIGGER_LINE
    assert rr.registers == expected
    assert rr.registers[:2] == [0x504C, dmap.model]
    assert rr.registers[dmap["MAP_VERSION"].address - start] == 2
    assert rr.registers[capabilities] == 1


async def test_pulse_cycle(bus: tuple[ServedSim, Client]) -> None:
    _, client = bus
    assert await read(client, PLASMA, "LAST_ENERGY") == NO_ENERGY
    assert await read(client, PLASMA, "PULSE_COUNT") == 0
    await configure(client, energy_j=2.0, pulse_ms=40.0)
    assert await read(client, PLASMA, "ENERGY_SET") == 2_000_000
    assert await read(client, PLASMA, "PULSE_SET") == 4000
    assert not (await command(client, PlasmaCommand.ARM)).isError()
    assert bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.ARMED)

    t_fire = time.perf_counter()
    assert not (await command(client, PlasmaCommand.FIRE)).isError()

    async def output_on() -> bool:
        return bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.OUTPUT_ON)

    async def output_off() -> bool:
        return not await output_on()

    t_on = await poll_until(output_on, 0.02)
    assert t_on is not None, "the output never came on"
    assert await read(client, PLASMA, "PULSE_COUNT") == 1
    t_off = await poll_until(output_off, 0.2)
    assert t_off is not None, "the output never went off"
    # on for the pulse length (40 ms after the 0.5 ms latency), seen through a poll of a few ms
    assert 0.035 <= t_off - t_fire <= 0.040 + 0.030, t_off - t_fire
    assert await read(client, PLASMA, "PULSE_COUNT") == 1
    energy_uj = await read(client, PLASMA, "LAST_ENERGY")
    assert energy_uj == pytest.approx(2_000_000, rel=0.1)  # 2 % noise (1 sigma)
    status = await read(client, PLASMA, "STATUS")
    assert bit(status, PlasmaStatusBit.ARMED) and not bit(status, PlasmaStatusBit.FAULT)
    assert await read(client, PLASMA, "FAULT_CODE") == 0
    assert not (await command(client, PlasmaCommand.DISARM)).isError()
    assert not bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.ARMED)


async def test_fire_refusals(bus: tuple[ServedSim, Client]) -> None:
    _, client = bus
    rr = await command(client, PlasmaCommand.FIRE)  # no setpoints
    assert rr.isError() and rr.exception_code == 4
    await configure(client, 1.0, 50.0)
    rr = await command(client, PlasmaCommand.FIRE)  # not armed
    assert rr.isError() and rr.exception_code == 4
    await command(client, PlasmaCommand.ARM)
    assert not (await command(client, PlasmaCommand.FIRE)).isError()
    rr = await command(client, PlasmaCommand.FIRE)  # a pulse is in progress: busy
    assert rr.isError() and rr.exception_code == 6
    assert not (await command(client, PlasmaCommand.OUTPUT_OFF)).isError()
    assert not bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.OUTPUT_ON)
    assert await read(client, PLASMA, "COMMAND") == PlasmaCommand.OUTPUT_OFF


async def test_spray_command_with_its_length_in_one_write(bus: tuple[ServedSim, Client]) -> None:
    sim, client = bus
    assert not (await claim(client, SPRAY)).isError()
    t_write = time.perf_counter()
    rr = await as_owner(client, SPRAY, SPRAY["COMMAND"].address, [SprayCommand.SPRAY, 120])
    assert not rr.isError(), rr
    assert await read(client, SPRAY, "SPRAY_MS") == 120
    assert await read(client, SPRAY, "SPRAY_COUNT") == 1

    async def valve_open() -> bool:
        return bit(await read(client, SPRAY, "STATUS"), SprayStatusBit.VALVE_OPEN)

    async def valve_closed() -> bool:
        return not await valve_open()

    latency = sim.spray.spray.cfg.valve_latency_ms / 1000.0
    t_open = await poll_until(valve_open, 0.1)
    assert t_open is not None
    assert t_open - t_write >= latency
    assert bit(await read(client, SPRAY, "STATUS"), SprayStatusBit.SPRAY_COMMANDED)
    t_closed = await poll_until(valve_closed, 0.3)
    assert t_closed is not None
    assert 0.120 + latency <= t_closed - t_write <= 0.120 + latency + 0.03
    assert await read(client, SPRAY, "RESERVOIR") < SPRAY["RESERVOIR"].default
    assert await read(client, SPRAY, "FLOW") == 0  # a closed valve lets no water through


async def test_spray_stop(bus: tuple[ServedSim, Client]) -> None:
    _, client = bus
    rr = await write_words(client, SPRAY, SPRAY["COMMAND"].address, [SprayCommand.SPRAY, 5000])
    assert not rr.isError(), rr

    async def valve_open() -> bool:
        return bit(await read(client, SPRAY, "STATUS"), SprayStatusBit.VALVE_OPEN)

    assert await poll_until(valve_open, 0.1) is not None
    assert not (await command(client, SprayCommand.STOP, SPRAY)).isError()
    assert not await valve_open()


@pytest.mark.parametrize(
    ("dmap", "address", "values", "code"),
    [
        (PLASMA, PLASMA["COMMAND"].address, [7], 3),  # above the write range 0..6
        (PLASMA, PLASMA["PULSE_SET"].address, [15_001], 3),  # above 150 ms
        (PLASMA, PLASMA["PULSE_SET"].address, [0], 3),  # below the range
        (PLASMA, PLASMA["ENERGY_SET"].address, split(10_000_001, 2), 3),
        (SPRAY, SPRAY["SPRAY_MS"].address, [0], 3),
        (SPRAY, SPRAY["COMMAND"].address, [6], 3),  # above 0..5 (4 and 5 arm and disarm the trigger)
        (PLASMA, PLASMA["STATUS"].address, [1], 2),  # read-only
        (PLASMA, PLASMA["VENDOR"].address, [1], 2),  # identity is read-only
        (PLASMA, PLASMA["WATCHDOG_MS"].address, [1000], 2),
        (PLASMA, _gaps(PLASMA)[0], [1], 2),  # unmapped
        (SPRAY, _gaps(SPRAY)[0], [1], 2),
        (PLASMA, 200, [1], 2),
        (PLASMA, PLASMA["ENERGY_SET"].address, [1], 2),  # half of a 32-bit register
        (PLASMA, PLASMA["ENERGY_SET"].address + 1, [1], 2),
        (SPRAY, SPRAY["FAULT_CODE"].address, [0], 2),
    ],
)
async def test_bad_writes_get_the_contract_exception(
    bus: tuple[ServedSim, Client], dmap: DeviceMap, address: int, values: list[int], code: int
) -> None:
    """The owner's write (the lease claimed, the token right) keeps every check of the contract: the embedded
    write gets the exception a direct one got on map v1, and changes nothing."""
    _, client = bus
    rr = await write_words(client, dmap, address, values)
    assert rr.isError() and rr.exception_code == code, rr
    assert await read(client, dmap, "LEASE_OWNER") == TOKEN  # the claim was taken: the embedded write refused
    # nothing changed
    assert await read(client, PLASMA, "PULSE_SET") == 0
    assert await read(client, SPRAY, "SPRAY_MS") == SPRAY["SPRAY_MS"].default


DIRECT_WRITES = [
    pytest.param(PLASMA, [PlasmaCommand.ARM], id="plasma-fc6"),
    pytest.param(PLASMA, [PlasmaCommand.ARM, *PLASMA["ENERGY_SET"].encode(1.0)], id="plasma-fc16"),
    pytest.param(SPRAY, [SprayCommand.SPRAY], id="spray-fc6"),
    pytest.param(SPRAY, [SprayCommand.SPRAY, 120], id="spray-fc16"),
]
WATCHED = {
    "plasma": ("COMMAND", "ENERGY_SET", "PULSE_SET", "STATUS", "PULSE_COUNT", "FAULT_CODE"),
    "spray": ("COMMAND", "SPRAY_MS", "STATUS", "SPRAY_COUNT", "FAULT_CODE"),
}


@pytest.mark.parametrize(("dmap", "words"), DIRECT_WRITES)
async def test_a_direct_write_to_command_is_refused_on_a_v2_unit(
    bus: tuple[ServedSim, Client], dmap: DeviceMap, words: list[int]
) -> None:
    """Map v2: a direct write to COMMAND (FC6, or FC16 at COMMAND) is refused with exception 1 (NOT_OWNER) and
    changes nothing, on a free unit and on one whose lease the writer's own token holds; the same words as the
    owner's write are taken (the refusal is the write's form, not its content)."""
    sim, client = bus
    unit = sim.plasma if dmap is PLASMA else sim.spray
    assert unit.lease is not None

    async def snapshot() -> dict[str, int]:
        return {name: await read(client, dmap, name) for name in WATCHED[dmap.device]}

    before = await snapshot()
    for owned in (False, True):
        if owned:
            assert not (await claim(client, dmap)).isError()
        if len(words) == 1:
            rr = await client.write_register(dmap["COMMAND"].address, words[0], device_id=dmap.unit_id)
        else:
            rr = await client.write_registers(dmap["COMMAND"].address, words, device_id=dmap.unit_id)
        assert rr.isError() and rr.exception_code == NOT_OWNER, rr
        assert await snapshot() == before
        assert await read(client, dmap, "LEASE_OWNER") == (TOKEN if owned else 0)  # the lease is untouched
    assert unit.lease.refused == 2
    assert not sim.plasma.plasma.armed

    rr = await as_owner(client, dmap, dmap["COMMAND"].address, words)
    assert not rr.isError(), rr
    assert await read(client, dmap, "COMMAND") == words[0]
    assert await snapshot() != before


READ_GAPS = [
    pytest.param(dmap, address, count, id=f"{dmap.device}-{address}x{count}")
    for dmap in (PLASMA, SPRAY)
    for address, count in (
        (_gaps(dmap)[0], 1),  # the first unmapped address
        (_gaps(dmap)[0] - 1, 2),  # a mapped register and the gap after it
        (dmap.size, 1),  # just past the map
        (0, dmap.size),  # the whole map in one read, across its gaps
    )
]


@pytest.mark.parametrize(("dmap", "address", "count"), READ_GAPS)
async def test_reads_of_unmapped_addresses_get_exception_2(
    bus: tuple[ServedSim, Client], dmap: DeviceMap, address: int, count: int
) -> None:
    _, client = bus
    rr = await client.read_holding_registers(address, count=count, device_id=dmap.unit_id)
    assert rr.isError() and rr.exception_code == 2, rr


async def test_only_holding_register_function_codes(bus: tuple[ServedSim, Client]) -> None:
    _, client = bus
    rr = await client.read_input_registers(0, count=1, device_id=PLASMA.unit_id)
    assert rr.isError() and rr.exception_code == 1
    rr = await client.read_coils(0, count=1, device_id=PLASMA.unit_id)
    assert rr.isError() and rr.exception_code == 1


async def test_pulse_longer_than_the_hardware_limit_is_refused() -> None:
    async with served(rig(hw_max_pulse_ms=100.0)) as sim, modbus_client(sim, "tcp") as client:
        rr = await write(client, PLASMA, "PULSE_SET", 12_000)  # 120 ms: inside the map, over this generator
        assert rr.isError() and rr.exception_code == 3
        await configure(client, 1.0, 100.0)
        assert await read(client, PLASMA, "PULSE_SET") == 10_000


async def test_safety_inputs_come_from_the_fault_schedule() -> None:
    faults = scenario(
        {"device": "safety", "kind": "estop", "at_s": 0.0},
        {"device": "safety", "kind": "footswitch_release", "at_s": 0.0},
        {"device": "safety", "kind": "tip_lift", "at_s": 0.0, "value": 3.25},
    )
    async with served() as sim, modbus_client(sim, "tcp") as client:
        safety = await read(client, PLASMA, "SAFETY")
        assert not bit(safety, SafetyBit.ESTOP) and bit(safety, SafetyBit.FOOTSWITCH)
        assert await read(client, PLASMA, "TIP_DISTANCE") == 50
    async with served(faults=faults) as sim, modbus_client(sim, "tcp") as client:
        safety = await read(client, PLASMA, "SAFETY")
        assert bit(safety, SafetyBit.ESTOP) and not bit(safety, SafetyBit.FOOTSWITCH)
        assert await read(client, PLASMA, "TIP_DISTANCE") == 325


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert all(r.exc_info is None for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert "Traceback" not in caplog.text


async def test_unknown_unit_on_tcp_gets_gateway_exception_0x0b(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with served() as sim, modbus_client(sim, "tcp") as client:
        for unit in (0, 3, 7, 247):
            rr = await client.read_holding_registers(0, count=10, device_id=unit)
            assert rr.isError() and rr.exception_code == 0x0B, rr
        rr = await client.write_register(10, 1, device_id=9)
        assert rr.isError() and rr.exception_code == 0x0B
        assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [0x504C]
    _no_traceback(caplog)


async def test_unknown_unit_on_rtu_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with served(tcp=False, rtu=True) as sim, modbus_client(sim, "rtu", timeout_s=0.1) as client:
        for unit in (0, 3, 247):
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=10, device_id=unit)
        # the bus is fine afterwards
        assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [0x504C]
    _no_traceback(caplog)


async def test_rtu_on_a_given_port() -> None:
    """Served on a port it is given (here the slave of a pty pair the test holds the master of)."""
    master, slave = os.openpty()
    try:
        async with served(tcp=False, rtu=os.ttyname(slave), baud=115200) as sim:
            assert sim.modbus_rtu is not None and sim.modbus_rtu.port == os.ttyname(slave)
            loop = asyncio.get_running_loop()
            request = bytes([1, 3, 0, 0, 0, 2])
            request += FramerRTU.compute_CRC(request).to_bytes(2, "big")
            t0 = time.perf_counter()
            os.write(master, request)
            reply = b""
            while len(reply) < 9:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(master, ready.set_result, None)
                try:
                    await asyncio.wait_for(ready, 1.0)
                finally:
                    loop.remove_reader(master)
                reply += os.read(master, 64)
            elapsed = time.perf_counter() - t0
            assert reply[:7] == bytes([1, 3, 4, 0x50, 0x4C, 0x01, 0x01])
            assert FramerRTU.check_CRC(reply[:-2], (reply[-2] << 8) | reply[-1])
            assert elapsed >= (8 + 9 + 7) * 11 / 115200  # a given pty is paced too
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    ("pdu", "code"),
    [
        (bytes([3, 0, 0, 0, 0]), 3),  # count 0
        (bytes([3, 0, 0, 0, 126]), 3),  # count above 125
        (bytes([3, 0, 0, 0]), 3),  # short
        (bytes([6, 0, 10, 0]), 3),
        (bytes([16, 0, 10, 0, 2, 2, 0, 1]), 3),  # byte count does not match the count
        (bytes([16, 0, 10, 0, 1, 2, 0]), 3),  # fewer data bytes than the byte count
        (bytes([16, 0, 10, 0, 124, 248, *([0] * 248)]), 3),  # above 123 registers
        (bytes([4, 0, 0, 0, 1]), 1),  # input registers: not in the contract
        (bytes([0x2B, 0x0E, 1, 0]), 1),  # device identification
        (bytes([23, 0, 0, 0, 1, 0, 10, 0, 1, 2, 0, 1]), 1),  # read/write multiple
    ],
)
async def test_malformed_or_foreign_requests(pdu: bytes, code: int) -> None:
    async with served(tcp=False) as sim:
        response = await sim.engine.execute(PLASMA.unit_id, pdu)
        assert response.function_code == pdu[0] | 0x80 and response.exception_code == code
        assert not sim.plasma.plasma.armed


async def test_one_write_configures_then_fires() -> None:
    async with served() as sim, modbus_client(sim, "tcp") as client:
        await write(client, PLASMA, "ENERGY_LIMIT", round(1.8 * PLASMA["ENERGY_LIMIT"].scale))
        await command(client, PlasmaCommand.ARM)
        words = [PlasmaCommand.FIRE, *PLASMA["ENERGY_SET"].encode(1.5), *PLASMA["PULSE_SET"].encode(30.0)]
        rr = await write_words(client, PLASMA, PLASMA["COMMAND"].address, words)
        assert not rr.isError(), rr
        await asyncio.sleep(0.002)
        assert bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.OUTPUT_ON)
        window = sim.plasma.plasma.pulse_window()
        assert window is not None and window[1] - window[0] == pytest.approx(0.030)
