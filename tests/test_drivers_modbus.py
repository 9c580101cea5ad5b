"""Modbus drivers against a PLAIN pymodbus server holding only the register maps' defaults (no device logic),
a silent socket, and a server that goes away and comes back.

The plain server speaks register map version 2's write rule and nothing more: a direct write is refused
(exception 1) except a claim, and the owner's write at WRITE_TOKEN lands its values where it points. It keeps
no lease (any token is taken; the lease itself is ``test_lease``'s), checks no range, runs no device. The
drivers are given a session token, as ``open_devices`` gives them one."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plasmactl import clock as clockmod
from plasmactl.clock import LoopClock
from plasmactl.drivers.devices import ModbusPlasma, ModbusSafety, ModbusSpray
from plasmactl.drivers.errors import (
    BadChecksum,
    DeviceError,
    DeviceTimeout,
    ExceptionResponse,
    IdentityMismatch,
    LinkDown,
)
from plasmactl.drivers.link_registry import LinkRegistry
from plasmactl.drivers.modbus import ModbusLink, RequestPolicy, RtuEndpoint, TcpEndpoint
from plasmactl.drivers.registers import NOT_OWNER, PLASMA, SPRAY, DeviceMap, PlasmaCommand, SprayCommand, split
from plasmactl.drivers.rig import open_devices
from plasmactl.rig import Identity, ModbusRtu, ModbusTcp, Rig

HOST = "127.0.0.1"
TOKEN = 0x7E57_0D01  # the drivers' session token
CLAIM, WRITE_TOKEN = PLASMA["LEASE_CLAIM"].address, PLASMA["WRITE_TOKEN"].address  # the same on every v2 map

# ---------------------------------------------------------------------------------------------- helpers


def map_words(m: DeviceMap, **overrides: int) -> list[int]:
    """The map's defaults over 0..size-1 (gaps read 0), with some registers' raw values replaced."""
    words = [0] * m.size
    for reg in m:
        for i, w in enumerate(split(overrides.get(reg.name, reg.default), reg.words)):
            words[reg.address + i] = w
    return words


async def owner_writes(
    function_code: int, start: int, address: int, count: int, registers: list[int], values: Any
) -> ExcCodes | None:
    """Map v2's write rule on a plain server: a claim is stored as written, the owner's write lands its values
    where it points (whatever its token: a plain server keeps no lease), any other write is refused."""
    del function_code, count
    if values is None or address == CLAIM:
        return None
    words = [int(v) for v in values]
    if address != WRITE_TOKEN or len(words) < 5:
        return ExcCodes(NOT_OWNER)
    target, n = words[2], words[3]
    if n != len(words) - 4:
        return ExcCodes.ILLEGAL_VALUE
    registers[target - start : target - start + n] = words[4:]
    return None


def sim_device(m: DeviceMap, map_version: int = 2, **overrides: int) -> SimDevice:
    """A plain unit of map version 2 (the owner's write taken), or 1 (older firmware: direct writes)."""
    return SimDevice(
        id=m.unit_id,
        simdata=[
            SimData(address=0, values=map_words(m, MAP_VERSION=map_version, **overrides), datatype=DataType.REGISTERS)
        ],
        action=owner_writes if map_version >= 2 else None,
    )


def bound_port(server: ModbusTcpServer) -> int:
    sock = cast(asyncio.Server, server.transport).sockets[0]
    return int(sock.getsockname()[1])


async def serve(
    devices: list[SimDevice], port: int = 0, framer: FramerType = FramerType.SOCKET
) -> tuple[ModbusTcpServer, int]:
    server = ModbusTcpServer(devices, address=(HOST, port), framer=framer)
    await server.serve_forever(background=True)
    return server, bound_port(server)


async def stop(server: ModbusTcpServer) -> None:
    await server.shutdown()  # type: ignore[no-untyped-call]


def tcp(port: int, unit: int, **kw: Any) -> ModbusTcp:
    return ModbusTcp(kind="modbus-tcp", host=HOST, port=port, unit_id=unit, **kw)


async def raw_read(port: int, unit: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient(HOST, port=port, timeout=1, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        rr = await client.read_holding_registers(address, count=count, device_id=unit)
        assert not rr.isError(), rr
        return list(rr.registers)
    finally:
        client.close()


@dataclass
class Trace:
    """Every frame the client sends (True) and receives (False), with an optional rewrite of replies."""

    frames: list[tuple[bool, bytes]] = field(default_factory=list)
    rewrite: Callable[[bytes], bytes] | None = None

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if not sending and self.rewrite is not None:
            data = self.rewrite(data)
        self.frames.append((sending, bytes(data)))
        return data

    def sent(self) -> list[bytes]:
        return [d for s, d in self.frames if s]


def mbap(tid: int, unit: int, pdu: str) -> bytes:
    body = bytes.fromhex(pdu)
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(body) + 1).to_bytes(2, "big") + bytes([unit]) + body


def crc16(frame: bytes) -> bytes:
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def rtu(unit: int, pdu: str) -> bytes:
    frame = bytes([unit]) + bytes.fromhex(pdu)
    return frame + crc16(frame)


def is_heartbeat(frame: bytes, tcp_frame: bool = True) -> bool:
    """A heartbeat write (PLASMA's HEARTBEAT on unit 1, SPRAY's on unit 2): the owner's write (FC16 at
    WRITE_TOKEN carrying the HEARTBEAT address) on map v2, FC6 to HEARTBEAT on map v1."""
    unit, pdu = (frame[6], frame[7:]) if tcp_frame else (frame[0], frame[1:-2])
    address = (PLASMA if unit == PLASMA.unit_id else SPRAY)["HEARTBEAT"].address
    if pdu[:1] == b"\x10" and int.from_bytes(pdu[1:3], "big") == WRITE_TOKEN:
        return int.from_bytes(pdu[10:12], "big") == address  # after FC, address, count, byte count, token
    return pdu[:1] == b"\x06" and int.from_bytes(pdu[1:3], "big") == address


IDENTITY_REPLY = "0314" + "504C 0101 0001 0000 0000 0002 0000 0001 0000 0000"  # map v2, CAPABILITIES 0
TOKEN_HEX = f"{TOKEN:08X}"


def owner_pdu(address: int, *words: int) -> str:
    """The PDU (hex) of the owner's write of ``words`` at ``address`` with TOKEN."""
    n = 4 + len(words)
    body = " ".join(f"{w:04X}" for w in (address, len(words), *words))
    return f"10 {WRITE_TOKEN:04X} {n:04X} {2 * n:02X} {TOKEN_HEX} {body}"


CLAIM_PDU = f"10 {CLAIM:04X} 0002 04 {TOKEN_HEX}"


def status_after_setpoint(beats: int) -> str:
    """The status block's reply after configure(0.06 J, 5 ms, limit 0.072 J) and ``beats`` heartbeats."""
    return "0320" + f"0000 0000 EA60 01F4 {beats:04X} 012C 0001 1940 0000 0000 0000 0000 0000 FFFF FFFF 0000"


@pytest.fixture
async def plain() -> AsyncIterator[int]:
    """A plain server: PLASMA on unit 1 and SPRAY on unit 2, defaults only; yields its port."""
    server, port = await serve([sim_device(PLASMA), sim_device(SPRAY)])
    yield port
    await stop(server)


# ---------------------------------------------------------------------------------------------- tests


async def test_identity_and_default_status(plain: int) -> None:
    clock = LoopClock()
    links = LinkRegistry()
    plasma_cfg, safety_cfg, spray_cfg = tcp(plain, 1), tcp(plain, 1), tcp(plain, 2)
    plasma = ModbusPlasma(links.acquire(plasma_cfg), plasma_cfg, clock, token=TOKEN)
    safety = ModbusSafety(links.acquire(safety_cfg), safety_cfg, clock)
    spray = ModbusSpray(links.acquire(spray_cfg), spray_cfg, clock, token=TOKEN)
    assert len(links.links) == 1  # one client for the endpoint
    try:
        ident = await plasma.connect()
        assert (ident.vendor, ident.model, ident.map_version, ident.firmware) == (0x504C, 0x0101, 2, (1, 0, 0))
        assert plasma.owned
        assert (await spray.connect()).model == 0x0201
        assert (await safety.connect()).model == 0x0101

        before = clock.now()
        st = await plasma.status()
        assert before <= st.t <= clock.now()
        assert (st.armed, st.output_on, st.pulse_count, st.last_energy_j, st.fault_code) == (False, False, 0, None, 0)
        assert st.energy_setpoint_j == 0.0 and st.pulse_ms_setpoint == 0.0

        cs = await spray.status()
        assert (cs.valve_open, cs.spray_commanded, cs.spray_count, cs.fault_code) == (False, False, 0, 0)
        assert cs.reservoir_ml == pytest.approx(500.0) and cs.flow_ml_s == pytest.approx(0.5)

        ss = await safety.read()
        assert (ss.estop, ss.footswitch) == (False, True) and ss.tip_distance_mm == pytest.approx(0.5)
        # Nothing changes on a plain server: wait_change returns the same state after its timeout.
        t0 = clock.now()
        ss2 = await safety.wait_change(0.15)
        assert (ss2.estop, ss2.footswitch) == (False, True) and 0.14 <= clock.now() - t0 < 0.5
    finally:
        for d in (plasma, spray, safety):
            await d.close()
        await links.close()


@pytest.mark.parametrize("map_version", [2, 1], ids=["v2-owner-writes", "v1-direct"])
async def test_commands_land_in_the_registers(map_version: int) -> None:
    """Map v2: the claim, then every write as the owner's write (landed by the plain server where it points;
    a direct write would be refused). Map v1 (older firmware, no lease): the same writes, direct."""
    server, plain = await serve([sim_device(PLASMA, map_version), sim_device(SPRAY, map_version)])
    clock = LoopClock()
    links = LinkRegistry()
    identity = Identity(map_version=map_version)
    plasma_cfg = tcp(plain, 1, heartbeat_ms=100, identity=identity)
    spray_cfg = tcp(plain, 2, heartbeat_ms=800, identity=identity)
    plasma = ModbusPlasma(links.acquire(plasma_cfg), plasma_cfg, clock, token=TOKEN)
    spray = ModbusSpray(links.acquire(spray_cfg), spray_cfg, clock, token=TOKEN)
    await plasma.connect()
    await spray.connect()
    assert plasma.owned == spray.owned == (map_version >= 2)
    claimed = split(TOKEN, 2) if map_version >= 2 else [0, 0]
    assert await raw_read(plain, 1, CLAIM, 2) == claimed and await raw_read(plain, 2, CLAIM, 2) == claimed
    try:
        await plasma.configure(0.06, 5.0, 0.072)
        assert await raw_read(plain, 1, 11, 3) == [0x0000, 0xEA60, 500]
        assert await raw_read(plain, 1, 16, 2) == [0x0001, 0x1940]  # the dose monitor's limit, 72000 uJ
        st = await plasma.status()
        assert st.energy_setpoint_j == pytest.approx(0.06) and st.pulse_ms_setpoint == pytest.approx(5.0)
        assert st.energy_limit_j == pytest.approx(0.072)
        await plasma.arm()
        assert await raw_read(plain, 1, 10, 1) == [1]
        await plasma.fire()
        assert await raw_read(plain, 1, 10, 1) == [3]
        await spray.spray(0.2)
        assert await raw_read(plain, 2, 10, 2) == [1, 200]
        await spray.stop()
        assert await raw_read(plain, 2, 10, 2) == [2, 200]
    finally:
        await spray.close()
        await plasma.close()
        await links.close()
    try:
        # Closing leaves the generator off, disarmed and released (the commands written: OUTPUT_OFF, DISARM,
        # RELEASE), and the spray unit released.
        assert await raw_read(plain, 1, 10, 1) == [int(PlasmaCommand.RELEASE)]
        assert await raw_read(plain, 2, 10, 1) == [int(SprayCommand.RELEASE)]
        if map_version >= 2:  # the last write on each unit, as the owner's write: token, address, count, value
            assert await raw_read(plain, 1, WRITE_TOKEN, 5) == [*split(TOKEN, 2), 10, 1, int(PlasmaCommand.RELEASE)]
            assert await raw_read(plain, 2, WRITE_TOKEN, 5) == [*split(TOKEN, 2), 10, 1, int(SprayCommand.RELEASE)]
    finally:
        await stop(server)


async def test_identity_mismatch_refuses() -> None:
    # a generator of another model; a spray unit of older firmware (map v1) where the rig expects map v2
    server, port = await serve([sim_device(PLASMA, MODEL=0x0999), sim_device(SPRAY, map_version=1)])
    clock = LoopClock()
    links = LinkRegistry()
    try:
        cfg = tcp(port, 1)
        plasma = ModbusPlasma(links.acquire(cfg), cfg, clock, token=TOKEN)
        with pytest.raises(IdentityMismatch) as info:
            await plasma.connect()
        assert info.value.expected["model"] == 0x0101 and info.value.found["model"] == 0x0999
        assert "expected model=0x0101, found model=0x0999" in str(info.value)
        assert plasma._heartbeat_task is None  # nothing started for a refused device

        spray_cfg = tcp(port, 2)
        spray = ModbusSpray(links.acquire(spray_cfg), spray_cfg, clock, token=TOKEN)
        with pytest.raises(IdentityMismatch, match="expected map_version=0x0002, found map_version=0x0001"):
            await spray.connect()
        assert not plasma.owned and not spray.owned  # refused before any claim
        assert await raw_read(port, 1, CLAIM, 2) == [0, 0] and await raw_read(port, 2, CLAIM, 2) == [0, 0]

        # The rig may name another model explicitly.
        other = tcp(port, 1, identity=Identity(model=0x0999))
        safety = ModbusSafety(links.acquire(other), other, clock)
        assert (await safety.connect()).model == 0x0999
    finally:
        await links.close()
        await stop(server)


async def test_heartbeat_must_beat_the_device_watchdog(plain: int) -> None:
    links = LinkRegistry()
    # PLASMA's WATCHDOG_MS is 300: a beat every 200 ms, held back up to 100 ms by a cooling chain, can come late
    cfg = tcp(plain, 1, heartbeat_ms=200)
    plasma = ModbusPlasma(links.acquire(cfg), cfg, LoopClock(), token=TOKEN)
    try:
        with pytest.raises(
            DeviceError,
            match=r"heartbeat_ms \(200\) plus the longest routine hold of a cooling chain \(100 ms\) must be below"
            r" the device's WATCHDOG_MS \(300\)",
        ):
            await plasma.connect()
        assert plasma._heartbeat_task is None
    finally:
        await links.close()


async def test_out_of_range_raises_before_sending(plain: int) -> None:
    trace = Trace()
    clock = LoopClock()
    links = LinkRegistry(trace_packet=trace)
    plasma_cfg, spray_cfg = tcp(plain, 1, heartbeat_ms=100), tcp(plain, 2, heartbeat_ms=800)
    plasma = ModbusPlasma(links.acquire(plasma_cfg), plasma_cfg, clock, token=TOKEN)
    spray = ModbusSpray(links.acquire(spray_cfg), spray_cfg, clock, token=TOKEN)
    await plasma.connect()
    await spray.connect()
    await asyncio.sleep(0.01)  # let the first heartbeats go out

    def commands() -> list[bytes]:
        return [f for f in trace.sent() if not is_heartbeat(f)]

    sent = len(commands())
    try:
        cases: list[tuple[float, float, float]] = [
            (10.5, 5.0, 0.07),
            (0.0, 5.0, 0.07),
            (0.06, 150.01, 0.07),
            (0.06, 0.0, 0.07),
            (math.nan, 5.0, 0.07),
            (0.06, math.inf, 0.07),
            (0.06, 5.0, 10.5),
            (0.06, 5.0, 0.0),
            (0.06, 5.0, math.nan),
        ]
        for energy, pulse, limit in cases:
            with pytest.raises(ValueError):
                await plasma.configure(energy, pulse, limit)
        for duration in (0.0, 10.001, -1.0, math.inf):
            with pytest.raises(ValueError):
                await spray.spray(duration)
        assert len(commands()) == sent
        assert await raw_read(plain, 1, 11, 3) == [0, 0, 0]
        assert await raw_read(plain, 1, 16, 2) == [0, 0]
    finally:
        await spray.close()
        await plasma.close()
        await links.close()


async def test_exact_tcp_frames(plain: int) -> None:
    trace = Trace()
    clock = LoopClock()
    links = LinkRegistry(trace_packet=trace)
    cfg = tcp(plain, 1, heartbeat_ms=100)
    plasma = ModbusPlasma(links.acquire(cfg), cfg, clock, token=TOKEN)
    await plasma.connect()
    await plasma.configure(0.06, 5.0, 0.072)
    await plasma.status()
    await plasma.close()
    await links.close()

    frames = trace.frames
    tids = [int.from_bytes(d[:2], "big") for s, d in frames if s]
    assert tids == list(range(1, len(tids) + 1))  # one transaction id per request, in order
    # Pair each request with its reply and drop the heartbeat and closing commands.
    pairs = [(frames[i][1], frames[i + 1][1]) for i in range(0, len(frames), 2)]
    assert all(frames[i][0] and not frames[i + 1][0] for i in range(0, len(frames), 2))
    heartbeat = [p for p in pairs if is_heartbeat(p[0])]
    assert heartbeat
    first_beat = int.from_bytes(heartbeat[0][0][:2], "big")
    assert heartbeat[0][0] == mbap(first_beat, 1, owner_pdu(0x0E, 1))  # HEARTBEAT = 1
    main = [p for p in pairs if not is_heartbeat(p[0])]

    def tid(frame: bytes) -> int:
        return int.from_bytes(frame[:2], "big")

    (id_req, id_rep), (claim_req, claim_rep), (wd_req, wd_rep) = main[:3]
    (set_req, set_rep), (lim_req, lim_rep), (st_req, st_rep) = main[3:6]
    assert id_req == mbap(1, 1, "03 0000 000A")
    assert id_req.hex() == "00010000000601030000000a"
    assert id_rep == mbap(1, 1, IDENTITY_REPLY)
    # map v2: the claim (the token to LEASE_CLAIM, 42) before anything else is written
    assert claim_req == mbap(2, 1, CLAIM_PDU) and claim_rep == mbap(2, 1, "10 002A 0002")
    assert wd_req == mbap(3, 1, "03 000F 0001") and wd_rep == mbap(3, 1, "03 02 012C")  # WATCHDOG_MS = 300
    assert first_beat > tid(claim_req)  # the heartbeat, an owner's write, starts after the claim
    # every write after it: the owner's write at WRITE_TOKEN (50), carrying the token, the address and the count
    assert set_req == mbap(tid(set_req), 1, owner_pdu(0x0B, 0x0000, 0xEA60, 0x01F4))
    assert set_req == mbap(tid(set_req), 1, f"10 0032 0007 0E {TOKEN_HEX} 000B 0003 0000 EA60 01F4")
    assert set_rep == mbap(tid(set_req), 1, "10 0032 0007")
    assert lim_req == mbap(tid(lim_req), 1, owner_pdu(0x10, 0x0001, 0x1940))  # ENERGY_LIMIT, rounded down to a uJ
    assert lim_rep == mbap(tid(lim_req), 1, "10 0032 0006")
    assert st_req == mbap(tid(st_req), 1, "03 000A 0010")
    beats = sum(1 for r, _ in heartbeat if tid(r) < tid(st_req))
    assert beats >= 1 and st_rep == mbap(tid(st_req), 1, status_after_setpoint(beats))
    # close(): OUTPUT_OFF, DISARM, then RELEASE, owner's writes of one register, not retried.
    assert [r for r, _ in main[6:]] == [
        mbap(tid(r), 1, owner_pdu(0x0A, c)) for (r, _), c in zip(main[6:], (4, 2, 6), strict=True)
    ]


async def test_exact_rtu_frames() -> None:
    """The same requests over an RTU bus (pymodbus' serial client on a pyserial socket:// URL, served by an
    RTU-framed server): unit id + PDU + CRC-16, the CRC computed here independently."""
    server, port = await serve([sim_device(PLASMA), sim_device(SPRAY)], framer=FramerType.RTU)
    trace = Trace()
    clock = LoopClock()
    links = LinkRegistry(trace_packet=trace)
    cfg = ModbusRtu(kind="modbus-rtu", port=f"socket://{HOST}:{port}", unit_id=1, heartbeat_ms=100)
    spray_cfg = ModbusRtu(kind="modbus-rtu", port=f"socket://{HOST}:{port}", unit_id=2, heartbeat_ms=100)
    try:
        plasma = ModbusPlasma(links.acquire(cfg), cfg, clock, token=TOKEN)
        spray = ModbusSpray(links.acquire(spray_cfg), spray_cfg, clock, token=TOKEN)
        assert len(links.links) == 1
        assert isinstance(links.links[0].endpoint, RtuEndpoint)
        await plasma.connect()
        await plasma.configure(0.06, 5.0, 0.072)
        st = await plasma.status()
        assert st.energy_setpoint_j == pytest.approx(0.06) and st.pulse_ms_setpoint == pytest.approx(5.0)
        await spray.connect()
        await spray.spray(0.15)
        await spray.close()
        await plasma.close()
    finally:
        await links.close()
        await stop(server)
    sent = [d for d in trace.sent() if not is_heartbeat(d, tcp_frame=False)]
    assert rtu(1, "03 0000 000A").hex() == "01030000000ac5cd"
    assert sent[:6] == [
        rtu(1, "03 0000 000A"),
        rtu(1, CLAIM_PDU),
        rtu(1, "03 000F 0001"),
        rtu(1, owner_pdu(0x0B, 0x0000, 0xEA60, 0x01F4)),
        rtu(1, owner_pdu(0x10, 0x0001, 0x1940)),
        rtu(1, "03 000A 0010"),
    ]
    assert sent[6:10] == [
        rtu(2, "03 0000 000A"),
        rtu(2, CLAIM_PDU),
        rtu(2, "03 000D 0001"),
        rtu(2, owner_pdu(0x0A, 0x0001, 0x0096)),  # [SPRAY, 150 ms]
    ]
    received = [d for s, d in trace.frames if not s]
    assert rtu(1, IDENTITY_REPLY) in received and rtu(1, status_after_setpoint(1)) in received
    assert rtu(1, "10 002A 0002") in received and rtu(1, "10 0032 0007") in received


@pytest.mark.hazard("H13")
async def test_late_rtu_reply_is_never_taken_for_the_next_request() -> None:
    """RTU has no transaction id: a reply to a timed-out request that arrives during the next request must be
    recognised (function code, length, address) and skipped, never decoded as the next request's answer."""

    one_at_a_time = asyncio.Lock()  # like a real RTU device (the pymodbus server would answer concurrently)

    async def slow_status(fc: int, start: int, address: int, count: int, regs: list[int], values: Any) -> None:
        async with one_at_a_time:
            if fc == 3 and address == 10:
                await asyncio.sleep(0.06)

    device = SimDevice(
        id=1, simdata=[SimData(address=0, values=map_words(PLASMA), datatype=DataType.REGISTERS)], action=slow_status
    )
    server, port = await serve([device], framer=FramerType.RTU)
    link = ModbusLink(RtuEndpoint(f"socket://{HOST}:{port}"), policy=RequestPolicy(0.1, 2))
    try:
        await link.open()
        with pytest.raises(DeviceTimeout):
            await link.read(1, 10, 16, policy=RequestPolicy(0.03, 0))
        assert await link.read(1, 30, 2) == [2, 50]  # SAFETY, TIP_DISTANCE: not the late 16-register reply
        assert await link.read(1, 0, 2) == [0x504C, 0x0101]
        assert link.stats.bad_replies == 1
    finally:
        await link.close()
        await stop(server)


@pytest.mark.hazard("H13")
async def test_a_reply_only_a_little_late_does_not_cost_the_next_command() -> None:
    """The RTU hil run's finding: a status read timed out, its reply came 3 ms later, during the FIRE that
    followed, and the FIRE (no retries: a command is not sent twice) failed as not answered. After a timeout
    the line now goes quiet first (at most 10 ms): the late reply lands with nothing pending and is dropped."""
    one_at_a_time = asyncio.Lock()

    async def slow_status(fc: int, start: int, address: int, count: int, regs: list[int], values: Any) -> None:
        async with one_at_a_time:
            if fc == 3 and address == 10:
                await asyncio.sleep(0.034)  # 4 ms after the 30 ms timeout

    device = SimDevice(
        id=1, simdata=[SimData(address=0, values=map_words(PLASMA), datatype=DataType.REGISTERS)], action=slow_status
    )
    server, port = await serve([device], framer=FramerType.RTU)
    link = ModbusLink(RtuEndpoint(f"socket://{HOST}:{port}"), policy=RequestPolicy(0.1, 0))
    try:
        await link.open()
        with pytest.raises(DeviceTimeout):
            await link.read(1, 10, 16, policy=RequestPolicy(0.03, 0))
        await link.write(1, 14, [7], policy=RequestPolicy(0.1, 0))  # one attempt: it must get its own reply
        assert link.stats.bad_replies == 0 and link.stats.quiet_waits == 1
    finally:
        await link.close()
        await stop(server)


@dataclass
class Silent:
    """A TCP server that accepts and reads requests but never answers."""

    received: list[bytes] = field(default_factory=list)
    connections: int = 0
    open: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        while data := await reader.read(1024):
            self.received.append(data)
        writer.close()
        await writer.wait_closed()
        self.open -= 1

    async def wait_idle(self) -> None:
        for _ in range(100):
            if self.open == 0:
                return
            await asyncio.sleep(0.01)


async def test_timeout_after_bounded_retries() -> None:
    silent = Silent()
    server = await asyncio.start_server(silent.handle, HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    link = ModbusLink(TcpEndpoint(HOST, port), policy=RequestPolicy(0.05, 2), reconnect_max_s=0.05)
    try:
        await link.open("plasma")
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout) as info:
            await link.read(1, 10, 16, device="plasma")
        elapsed = time.monotonic() - t0
        assert info.value.attempts == 3 and info.value.device == "plasma"
        assert 3 * 0.05 <= elapsed < 3 * 0.05 + 0.1
        await asyncio.sleep(0.01)
        frames = b"".join(silent.received)
        assert len(frames) == 3 * 12  # three attempts of the same 12-byte request, new transaction ids
        assert frames[2:12] == frames[14:24] == frames[26:36]  # the same request...
        assert len({frames[0:2], frames[12:14], frames[24:26]}) == 3  # ...with a new transaction id each time

        # A connection that stays silent is dropped after max_silent requests and opened again.
        one = RequestPolicy(0.02, 0)
        for _ in range(link.max_silent - 1):
            with pytest.raises(DeviceTimeout):
                await link.read(1, 0, 1, policy=one)
        assert link.stats.disconnects == 1
        with pytest.raises(LinkDown):
            await link.read(1, 0, 1, policy=one)
        for _ in range(100):
            if link.connected:
                break
            await asyncio.sleep(0.01)
        assert link.connected and link.stats.reconnects == 1 and silent.connections == 2
    finally:
        await link.close()
        await silent.wait_idle()
        server.close()
        await server.wait_closed()


async def test_exception_response_and_bad_reply(plain: int) -> None:
    trace = Trace()
    link = ModbusLink(TcpEndpoint(HOST, plain), policy=RequestPolicy(0.05, 1), trace_packet=trace)
    await link.open()
    try:
        with pytest.raises(ExceptionResponse) as info:
            await link.read(1, 100, 1, device="plasma")
        assert info.value.code == 2 and info.value.function_code == 3 and isinstance(info.value, DeviceError)
        with pytest.raises(ExceptionResponse) as info:
            await link.read(2, SPRAY.size - 5, 6)  # one past the end of SPRAY's map
        assert info.value.code == 2
        with pytest.raises(ExceptionResponse) as info:
            await link.write(1, 14, [7])  # a direct write on map v2
        assert info.value.code == NOT_OWNER and info.value.function_code == 6
        assert await link.read(1, 30, 2) == [2, 50]

        # A reply that does not answer the request (here: 2 registers for a 16-register read) is never taken.
        def short(data: bytes) -> bytes:
            return data[:4] + (7).to_bytes(2, "big") + data[6:8] + b"\x04\x00\x01\x00\x02"

        trace.rewrite = short
        with pytest.raises(BadChecksum):
            await link.read(1, 10, 16)
        trace.rewrite = None
        assert len(await link.read(1, 10, 16)) == 16
        assert link.stats.bad_replies == 2
    finally:
        await link.close()


async def test_unreachable_endpoint_refuses_at_once() -> None:
    server, port = await serve([sim_device(PLASMA)])
    await stop(server)  # nothing listens on the port any more
    links = LinkRegistry()
    cfg = tcp(port, 1)
    plasma = ModbusPlasma(links.acquire(cfg), cfg, LoopClock())
    t0 = time.monotonic()
    with pytest.raises(LinkDown, match="cannot connect"):
        await plasma.connect()
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(LinkDown):
        await plasma.status()
    await plasma.close()
    await links.close()


async def test_reconnects_by_itself() -> None:
    server, port = await serve([sim_device(PLASMA)])
    clock = LoopClock()
    links = LinkRegistry()
    cfg = tcp(port, 1, timeout_ms=50, retries=1, reconnect_max_ms=200, heartbeat_ms=20)
    plasma = ModbusPlasma(links.acquire(cfg), cfg, clock, token=TOKEN)
    link = links.links[0]
    try:
        await plasma.connect()
        await plasma.status()
        await stop(server)
        failures = 0
        for _ in range(20):
            t0 = time.monotonic()
            try:
                await plasma.status()
            except (LinkDown, DeviceTimeout):
                failures += 1
            assert time.monotonic() - t0 < 2 * 0.05 + 0.05  # never longer than the bounded retries
            await asyncio.sleep(0.01)
        assert failures == 20 and not link.connected
        assert plasma.heartbeat_failures > 0  # counted, and the heartbeat task is still alive
        assert plasma._heartbeat_task is not None and not plasma._heartbeat_task.done()

        server, _ = await serve([sim_device(PLASMA)], port=port)
        t_up = time.monotonic()
        while True:
            try:
                st = await plasma.status()
                break
            except (LinkDown, DeviceTimeout):
                assert time.monotonic() - t_up < 0.2 + 0.3, "did not recover within the backoff"
                await asyncio.sleep(0.01)
        assert st.fault_code == 0 and link.stats.reconnects >= 1
        beats = plasma.heartbeats
        await asyncio.sleep(0.1)
        assert plasma.heartbeats > beats
    finally:
        await plasma.close()
        await links.close()
        await stop(server)


async def test_heartbeat_period(plain: int) -> None:
    clock = LoopClock()
    links = LinkRegistry()
    cfg = tcp(plain, 1, heartbeat_ms=50)
    plasma = ModbusPlasma(links.acquire(cfg), cfg, clock, token=TOKEN)
    watcher = AsyncModbusTcpClient(HOST, port=plain, timeout=1, retries=0, reconnect_delay=0)
    assert await watcher.connect()
    address = PLASMA["HEARTBEAT"].address

    async def sample(duration: float) -> list[tuple[float, int]]:
        changes: list[tuple[float, int]] = []
        end = time.monotonic() + duration
        while time.monotonic() < end:
            rr = await watcher.read_holding_registers(address, count=1, device_id=1)
            value = rr.registers[0]
            if not changes or value != changes[-1][1]:
                changes.append((time.monotonic(), value))
            await asyncio.sleep(0.002)
        return changes

    try:
        await plasma.connect()
        changes = await sample(0.6)
        values = [v for _, v in changes]
        assert values == list(range(values[0], values[0] + len(values)))  # +1 per beat, none skipped
        intervals = [b[0] - a[0] for a, b in itertools.pairwise(changes[1:])]  # the first is no change
        assert len(intervals) >= 8
        assert statistics.median(intervals) == pytest.approx(0.05, abs=0.01)
        assert plasma.heartbeat_failures == 0
        await plasma.close()
        after = await sample(0.15)
        assert len(after) == 1  # stopped
    finally:
        watcher.close()
        await links.close()


def test_driver_on_virtual_time_loop() -> None:
    """The server runs in another thread (real time); the driver on the virtual-time loop still gets every
    reply (io_hold), while its own sleeps take no real time."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run_server() -> None:
        async def main() -> None:
            server, port = await serve([sim_device(PLASMA), sim_device(SPRAY)])
            done = asyncio.Event()
            box.update(port=port, done=done, loop=asyncio.get_running_loop())
            ready.set()
            await done.wait()
            await stop(server)

        asyncio.run(main())

    thread = threading.Thread(target=run_server, daemon=True)
    thread.start()
    assert ready.wait(5)

    async def main() -> tuple[int, float, int]:
        clock = LoopClock()
        links = LinkRegistry()
        cfg = tcp(box["port"], 1, timeout_ms=20, retries=0, heartbeat_ms=100)
        plasma = ModbusPlasma(links.acquire(cfg), cfg, clock, token=TOKEN)
        await plasma.connect()
        ok = 0
        for _ in range(100):
            await plasma.status()
            ok += 1
        t0 = clock.now()
        await clock.sleep(60.0)  # virtual: about 600 heartbeats go out meanwhile, each held in real time
        elapsed = clock.now() - t0
        beats = plasma.heartbeats
        await plasma.close()
        await links.close()
        return ok, elapsed, beats

    real0 = time.monotonic()
    try:
        ok, elapsed, beats = clockmod.run(main(), virtual=True)
    finally:
        box["loop"].call_soon_threadsafe(box["done"].set)
        thread.join(5)
    assert ok == 100 and elapsed >= 60.0
    assert 500 <= beats <= 700
    assert time.monotonic() - real0 < 5.0


async def test_open_devices_refuses_sim_devices() -> None:
    with pytest.raises(ValueError, match="sim"):
        await open_devices(Rig(), LoopClock())
    rig = Rig.model_construct(plasma=tcp(1, 1))  # a mixed rig, refused before any connection is tried
    with pytest.raises(ValueError, match="spray, thermometer, safety"):
        await open_devices(rig, LoopClock())


def test_registry_rejects_conflicting_bus_settings() -> None:
    links = LinkRegistry()
    a = ModbusRtu(kind="modbus-rtu", port="/dev/ttyX", unit_id=1)
    b = ModbusRtu(kind="modbus-rtu", port="/dev/ttyX", unit_id=2, baud=9600)
    links.acquire(a)
    with pytest.raises(ValueError, match="conflicting"):
        links.acquire(b)
    with pytest.raises(ValueError, match="placeholder"):
        links.acquire(ModbusRtu(kind="modbus-rtu", port="@rtu", unit_id=1))
    assert links.acquire(a, port=None) is links.links[0]


@dataclass
class Hostile:
    """A TCP server that answers every request with the frame ``reply(pdu_of_request)`` makes (MBAP header
    fixed up to the transaction id and the length of what it returns)."""

    reply: Callable[[bytes], bytes]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                request = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                pdu = self.reply(request)
                writer.write(head[0:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("name", "pdu"),
    [
        ("unknown function code", bytes([0x55, 1, 2, 3])),
        ("byte count larger than the data", bytes([0x03, 200, 0, 1, 0, 2])),
        ("exception function code with no code", bytes([0x83])),
    ],
)
async def test_an_undecodable_reply_is_a_typed_error_at_once(
    name: str, pdu: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """pymodbus raises inside data_received on these: asyncio logged "Fatal error", dropped the connection,
    and the request only ended by its timeout. Now the request fails at once with a typed error, the
    connection stays, and a good reply after it is read normally."""
    good = bytes([0x03, 4, 0, 2, 0, 50])
    replies = iter([pdu, pdu, good])
    hostile = Hostile(lambda _request: next(replies))
    server = await asyncio.start_server(hostile.handle, HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    link = ModbusLink(TcpEndpoint(HOST, port), policy=RequestPolicy(0.2, 1))
    try:
        await link.open("plasma")
        t0 = time.monotonic()
        with pytest.raises(BadChecksum, match="undecodable") as info:
            await link.read(1, 30, 2, device="plasma")
        assert time.monotonic() - t0 < 0.2, name  # not by the timeout
        assert info.value.device == "plasma"
        assert await link.read(1, 30, 2, device="plasma") == [2, 50]
        assert link.stats.bad_replies == 2 and link.stats.disconnects == 0 and link.connected
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"], caplog.text


@pytest.mark.parametrize("arrives", ["reply", "error"])
def test_a_cancellation_that_comes_with_the_reply_is_not_lost(arrives: str) -> None:
    """A task cancelled in the loop step its reply (or a garbled one's error) arrives: pymodbus awaits the reply
    with ``asyncio.wait_for``, which on Python 3.11 then returns the reply (or raises the error) and drops the
    cancellation. The link re-raises it: before, a controller helper told to stop at that instant went on as
    if never told (its further errors unlogged, as a repeated comm error is), and the session's end,
    awaiting it, waited for ever (a hil run on the RTU rig hung in CI after a fault on the shared bus)."""
    from pymodbus.exceptions import ModbusIOException

    async def main() -> str:
        link = ModbusLink(TcpEndpoint("127.0.0.1", 1))
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None

        async def send(client: Any) -> Any:
            del client
            reply: asyncio.Future[str] = loop.create_future()

            def arrive_and_cancel() -> None:
                if arrives == "reply":
                    reply.set_result("the reply")
                else:
                    reply.set_exception(ModbusIOException("bad CRC"))
                me.cancel()

            loop.call_soon(arrive_and_cancel)
            return await asyncio.wait_for(reply, 5.0)

        try:
            await link._attempt(send, cast(Any, None), 1.0)
        except asyncio.CancelledError:
            return "cancelled"
        except Exception as exc:  # noqa: BLE001 - what the test reports
            return f"went on with {type(exc).__name__}"
        return "went on"

    assert asyncio.run(main()) == "cancelled"
