"""Device contract v2: the owner lease, as the served units keep it and as the drivers use it.

One controller at a time writes to a device: it claims the lease with its session token, every later write
carries the token (the owner's write), and the lease lapses with the owner's heartbeat or at RELEASE. A
direct write, a write with another token, or a claim while someone else owns the device is refused with
exception 1 and changes nothing.
"""

from __future__ import annotations

import asyncio

import pytest

from plasmactl.clock import LoopClock
from plasmactl.drivers.devices import LeaseHeld, ModbusPlasma, ModbusSpray
from plasmactl.drivers.modbus import ModbusLink, TcpEndpoint
from plasmactl.drivers.registers import NOT_OWNER, PLASMA, SPRAY, DeviceMap, PlasmaCommand, join, owner_write, split
from plasmactl.rig import ModbusTcp
from test_served_support import Client, modbus_client, read, served

pytestmark = [pytest.mark.hazard("H13")]

A, B = 0x1234_5678, 0x0BAD_F00D


async def _claim(client: Client, dmap: DeviceMap, token: int) -> int | None:
    """The exception code of a claim (None: accepted)."""
    reg = dmap["LEASE_CLAIM"]
    rr = await client.write_registers(reg.address, split(token, 2), device_id=dmap.unit_id)
    return rr.exception_code if rr.isError() else None


async def _owner_write(client: Client, dmap: DeviceMap, token: int, name: str, raw: int) -> int | None:
    reg = dmap[name]
    address, words = owner_write(token, reg.address, split(raw, reg.words))
    rr = await client.write_registers(address, words, device_id=dmap.unit_id)
    return rr.exception_code if rr.isError() else None


@pytest.mark.parametrize("dmap", [PLASMA, SPRAY], ids=["plasma", "spray"])
async def test_only_the_owner_writes(dmap: DeviceMap) -> None:
    async with served() as sim, modbus_client(sim, "tcp") as c:
        assert await read(c, dmap, "MAP_VERSION") == 2
        assert await read(c, dmap, "LEASE_OWNER") == 0
        heartbeat = dmap["HEARTBEAT"]
        # a direct write is refused on a v2 device, owned or not, and changes nothing
        rr = await c.write_register(heartbeat.address, 7, device_id=dmap.unit_id)
        assert rr.isError() and rr.exception_code == NOT_OWNER
        assert await read(c, dmap, "HEARTBEAT") == 0
        assert await _owner_write(c, dmap, A, "HEARTBEAT", 7) == NOT_OWNER  # not claimed yet
        assert await _claim(c, dmap, A) is None
        assert await read(c, dmap, "LEASE_OWNER") == A
        assert await read(c, dmap, "LEASE_CLAIM") == 0  # a token is never read back where it was written
        assert await _owner_write(c, dmap, A, "HEARTBEAT", 8) is None
        assert await read(c, dmap, "HEARTBEAT") == 8
        assert await read(c, dmap, "WRITE_TOKEN") == 0
        # another controller: its claim and its writes are refused, and change nothing
        assert await _claim(c, dmap, B) == NOT_OWNER
        assert await _owner_write(c, dmap, B, "HEARTBEAT", 9) == NOT_OWNER
        assert await read(c, dmap, "HEARTBEAT") == 8
        assert await read(c, dmap, "LEASE_OWNER") == A
        # the owner's write keeps every check of a direct one
        assert await _owner_write(c, dmap, A, "COMMAND", dmap["COMMAND"].high + 1) == 3
        address, words = owner_write(A, dmap["LEASE_OWNER"].address, [0, 0])
        rr = await c.write_registers(address, words, device_id=dmap.unit_id)
        assert rr.isError() and rr.exception_code == 2  # the lease is not written through the owner's write
        assert await _claim(c, dmap, A) is None  # the owner's claim again renews it


@pytest.mark.parametrize("dmap", [PLASMA, SPRAY], ids=["plasma", "spray"])
async def test_a_direct_write_answers_as_the_contract_orders_its_checks(dmap: DeviceMap) -> None:
    """Every address 0-69, FC6 and FC16, owner claimed or not: a writable register (but the claim and the owner's
    write block) answers 1, a read-only or unmapped one 2 (address before execution), and nothing changes."""
    writable = {a for r in dmap for a in r.addresses if r.access == "RW"}
    through = set(dmap["LEASE_CLAIM"].addresses) | {a for r in dmap if r.name.startswith("WRITE_") for a in r.addresses}
    async with served() as sim, modbus_client(sim, "tcp") as c:
        moving = {"LEASE_OWNER", "DEVICE_US", "FLOW", "RESERVOIR", "SAFETY", "TIP_DISTANCE"}
        kept = [r.name for r in dmap if r.name not in moving]
        before = [await read(c, dmap, name) for name in kept]
        for claimed in (False, True):
            if claimed:
                assert await _claim(c, dmap, A) is None
            for address in range(70):
                if address in through:
                    continue
                want = NOT_OWNER if address in writable else 2
                one = await c.write_register(address, 1, device_id=dmap.unit_id)
                assert one.isError() and one.exception_code == want, (claimed, address, "FC6")
                reg = next((r for r in dmap if address in r.addresses), None)
                words = [1] * (reg.words if reg is not None and reg.address == address else 1)
                many = await c.write_registers(address, words, device_id=dmap.unit_id)
                assert many.isError() and many.exception_code == want, (claimed, address, "FC16")
        assert [await read(c, dmap, name) for name in kept] == before  # nothing changed


async def test_the_lease_lapses_with_the_heartbeat_and_at_release() -> None:
    async with served() as sim, modbus_client(sim, "tcp") as c:
        window_s = await read(c, PLASMA, "LEASE_MS") / 1000.0
        assert window_s == pytest.approx(0.3)
        assert await _claim(c, PLASMA, A) is None
        for beat in range(1, 6):  # heartbeats renew it for longer than one window
            await asyncio.sleep(window_s / 3)
            assert await _owner_write(c, PLASMA, A, "HEARTBEAT", beat) is None
        assert await _claim(c, PLASMA, B) == NOT_OWNER
        await asyncio.sleep(window_s * 1.3)  # silence: it lapses, and another may claim
        assert await read(c, PLASMA, "LEASE_OWNER") == 0
        assert await _owner_write(c, PLASMA, A, "HEARTBEAT", 9) == NOT_OWNER
        assert await _claim(c, PLASMA, B) is None
        assert await _owner_write(c, PLASMA, B, "COMMAND", PlasmaCommand.RELEASE) is None
        assert await read(c, PLASMA, "LEASE_OWNER") == 0
        assert await _claim(c, PLASMA, A) is None


async def test_a_map_v1_unit_takes_direct_writes() -> None:
    """Older firmware (map version 1): no lease; the driver writes directly (and says so in probe)."""
    from plasmactl.faults import FaultScenario
    from plasmactl.rig import Rig
    from plasmactl.simulators.served import serve

    sim = await serve(Rig(), FaultScenario(), seed=1, modbus_tcp=("127.0.0.1", 0), map_version=1)
    try:
        async with modbus_client(sim, "tcp") as c:
            assert await read(c, PLASMA, "MAP_VERSION") == 1
            assert await read(c, PLASMA, "CAPABILITIES") == 0
            rr = await c.write_register(PLASMA["HEARTBEAT"].address, 7, device_id=1)
            assert not rr.isError()
            # v1 firmware has no lease block nor trigger registers, and its spray COMMAND ends at RELEASE (3)
            rr = await c.read_holding_registers(PLASMA["LEASE_OWNER"].address, count=2, device_id=1)
            assert rr.isError() and rr.exception_code == 2
            rr = await c.write_registers(PLASMA["LEASE_CLAIM"].address, split(A, 2), device_id=1)
            assert rr.isError() and rr.exception_code == 2
            rr = await c.write_register(SPRAY["TRIGGER_DELAY"].address, 1, device_id=2)
            assert rr.isError() and rr.exception_code == 2
            rr = await c.write_register(SPRAY["COMMAND"].address, 4, device_id=2)
            assert rr.isError() and rr.exception_code == 3
            assert await read(c, PLASMA, "END_COUNT") == 0  # v1's reserved 18-19, read in every status block
        assert sim.modbus_tcp is not None
        cfg = _cfg(sim.modbus_tcp.port, 1, map_version=1)
        link = ModbusLink(TcpEndpoint("127.0.0.1", sim.modbus_tcp.port))
        plasma = ModbusPlasma(link, cfg, LoopClock(), token=A)
        try:
            await plasma.connect()
            assert not plasma.owned
            await plasma.arm()
        finally:
            await plasma.close()
            await link.close()
    finally:
        await sim.stop()


def _cfg(port: int, unit: int, map_version: int = 2) -> ModbusTcp:
    return ModbusTcp.model_validate(
        {"kind": "modbus-tcp", "port": port, "unit_id": unit, "identity": {"map_version": map_version}}
    )


async def test_a_second_driver_is_refused_naming_the_owner_and_may_claim_after_release() -> None:
    async with served() as sim:
        assert sim.modbus_tcp is not None
        port = sim.modbus_tcp.port
        clock = LoopClock()
        links = [ModbusLink(TcpEndpoint("127.0.0.1", port)) for _ in range(2)]
        first = ModbusPlasma(links[0], _cfg(port, 1), clock, token=A)
        second = ModbusPlasma(links[1], _cfg(port, 1), clock, token=B)
        spray = ModbusSpray(links[1], _cfg(port, 2), clock, token=B)
        try:
            await first.connect()
            assert first.owned
            await first.arm()
            with pytest.raises(LeaseHeld, match=r"owned by another controller \(session token 0x12345678\)") as e:
                await second.connect()
            assert "lapses 300 ms after" in str(e.value) and not second.owned
            await spray.connect()  # the spray unit has its own lease: free
            assert spray.owned
            async with modbus_client(sim, "tcp") as c:
                assert await read(c, PLASMA, "STATUS") & 1  # the refused one changed nothing: still armed
            await first.close()  # off, disarmed, released
            await second.connect()
            assert second.owned
            await second.arm()
        finally:
            for device in (first, second, spray):
                await device.close()
            for link in links:
                await link.close()


async def test_a_controller_that_died_frees_the_device_within_its_heartbeat_window() -> None:
    """No RELEASE (a killed controller): its heartbeat stops, the generator's watchdog switches off and
    latches FAULT 1, the lease lapses in the same window, and the next controller may claim."""
    async with served() as sim:
        assert sim.modbus_tcp is not None
        port = sim.modbus_tcp.port
        clock = LoopClock()
        link = ModbusLink(TcpEndpoint("127.0.0.1", port))
        dead = ModbusPlasma(link, _cfg(port, 1), clock, token=A)
        await dead.connect()
        await dead.arm()
        await asyncio.sleep(0.25)  # heartbeats flowing (the first one arms the generator's watchdog)
        assert dead.heartbeats >= 2
        task = dead._heartbeat_task  # it dies without a word: the heartbeat task and the link just stop
        assert task is not None
        task.cancel()
        await link.close()
        await asyncio.sleep(0.45)
        async with modbus_client(sim, "tcp") as c:
            assert await read(c, PLASMA, "LEASE_OWNER") == 0
            assert join([await read(c, PLASMA, "FAULT_CODE")]) == 1
        link2 = ModbusLink(TcpEndpoint("127.0.0.1", port))
        after = ModbusPlasma(link2, _cfg(port, 1), clock, token=B)
        try:
            await after.connect()
            assert after.owned
        finally:
            await after.close()
            await link2.close()


async def test_probe_names_the_lease_owner() -> None:
    from plasmactl.drivers.probe import probe_rig
    from plasmactl.rig import Rig

    async with served(serial=True) as sim:
        assert sim.modbus_tcp is not None and sim.serial is not None
        port = sim.modbus_tcp.port
        rig = Rig.model_validate(
            {
                "plasma": {"kind": "modbus-tcp", "port": port, "unit_id": 1},
                "spray": {"kind": "modbus-tcp", "port": port, "unit_id": 2},
                "safety": {"kind": "modbus-tcp", "port": port, "unit_id": 1},
                "thermometer": {"kind": "serial", "port": sim.serial.thermometer},
            }
        )
        link = ModbusLink(TcpEndpoint("127.0.0.1", port))
        owner = ModbusPlasma(link, _cfg(port, 1), LoopClock(), token=A)
        try:
            await owner.connect()
            reports = {r.device: r for r in await probe_rig(rig, LoopClock(), reads=1)}
        finally:
            await owner.close()
            await link.close()
        assert reports["plasma"].status["lease_owner"] == "0x12345678"
        assert reports["spray"].status["lease_owner"] == "free"
        assert all(r.ok for r in reports.values()), reports
