"""The serial thermometer driver against a device played on a pty master (same event loop), and the rig
factory over a plain Modbus server plus that pty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator

import pytest

from plasmactl.clock import LoopClock
from plasmactl.drivers import lineproto
from plasmactl.drivers.devices import ModbusPlasma, ModbusSafety, ModbusSpray
from plasmactl.drivers.errors import BadChecksum, DeviceError, DeviceTimeout, ErrorReply, IdentityMismatch, LinkDown
from plasmactl.drivers.registers import PLASMA, SPRAY
from plasmactl.drivers.rig import open_devices
from plasmactl.drivers.thermometer import SerialThermometer
from plasmactl.rig import Rig, SerialLine, ServeSim
from test_drivers_modbus import serve, sim_device, stop, tcp


class FakeThermometer:
    """Plays the thermometer on the master side of a pty: answers each request line per ``mode``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.mode = "ok"  # ok | silent | err | badcs
        self.prefix = b""  # sent before each reply (garbage)
        self.identity = (lineproto.VENDOR, lineproto.MODEL, lineproto.FIRMWARE, lineproto.MAP_VERSION)
        self.sample = lineproto.Sample(seq=7, age_ms=40, celsius=33.25)
        self.requests: list[bytes] = []
        self._buf = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 1024)
        except OSError:
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self.requests.append(line + b"\n")
            self._respond(line)

    def _respond(self, line: bytes) -> None:
        if self.mode == "silent":
            return
        tag = lineproto.decode(line)[0]
        if tag == "ID":
            reply = lineproto.encode("ID", *self.identity)
        elif self.mode == "err":
            reply = lineproto.encode_error(lineproto.ErrorCode.NO_SAMPLE, "no sample yet")
        elif self.mode == "badcs":
            good = lineproto.encode_sample(self.sample)
            reply = good[:-4] + (b"00" if good[-4:-2] != b"00" else b"11") + b"\r\n"
        else:
            reply = lineproto.encode_sample(self.sample)
        self.write(self.prefix + reply)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self._loop.remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
async def fake() -> AsyncIterator[FakeThermometer]:
    dev = FakeThermometer()
    yield dev
    dev.close()


def line_cfg(port: str, **kw: object) -> SerialLine:
    return SerialLine.model_validate({"kind": "serial", "port": port, "timeout_ms": 50, "retries": 1, **kw})


async def test_identity_and_reading(fake: FakeThermometer) -> None:
    clock = LoopClock()
    therm = SerialThermometer(line_cfg(fake.path), clock)
    try:
        assert await therm.connect() == ("PLASMACTL", "IRT-1", "1.0.0", "1")
        before = clock.now()
        reading = await therm.read()
        after = clock.now()
        assert reading.value_c == pytest.approx(33.25)
        assert before - 0.040 <= reading.t <= after - 0.040  # arrival time minus the sample's age
        assert fake.requests == [b"$ID*0D\r\n", b"$T*54\r\n"]  # exact bytes on the wire
    finally:
        await therm.close()


async def test_identity_mismatch(fake: FakeThermometer) -> None:
    fake.identity = (lineproto.VENDOR, "IRT-2", "1.0.0", lineproto.MAP_VERSION)
    therm = SerialThermometer(line_cfg(fake.path), LoopClock())
    try:
        with pytest.raises(IdentityMismatch, match="expected model='IRT-1', found model='IRT-2'"):
            await therm.connect()
    finally:
        await therm.close()


async def test_error_reply_and_bad_checksum(fake: FakeThermometer) -> None:
    therm = SerialThermometer(line_cfg(fake.path), LoopClock())
    await therm.connect()
    try:
        fake.mode = "err"
        with pytest.raises(ErrorReply) as info:
            await therm.read()
        assert info.value.code == lineproto.ErrorCode.NO_SAMPLE and isinstance(info.value, DeviceError)

        fake.mode = "badcs"
        n = len(fake.requests)
        with pytest.raises(BadChecksum):
            await therm.read()
        assert len(fake.requests) - n == 2  # retried once, then refused
        assert therm.link.stats.bad_checksums == 2

        fake.mode = "ok"
        assert (await therm.read()).value_c == pytest.approx(33.25)
    finally:
        await therm.close()


async def test_garbage_and_stray_lines_are_never_readings(fake: FakeThermometer) -> None:
    therm = SerialThermometer(line_cfg(fake.path), LoopClock())
    await therm.connect()
    try:
        # Garbage before the reply, on its own lines and glued to the reply's start.
        fake.prefix = b"\x00\xff\xfenoise\r\n$T,1,2*ZZ\r\n" + b"x" * 600 + b"\r\n$$$junk"
        assert (await therm.read()).value_c == pytest.approx(33.25)
        fake.prefix = b""
        # A stray (stale) sample arriving between requests is thrown away, not taken for the next reply.
        fake.write(lineproto.encode_sample(lineproto.Sample(seq=1, age_ms=0, celsius=99.0)))
        await asyncio.sleep(0.02)
        assert (await therm.read()).value_c == pytest.approx(33.25)
        assert therm.link.stats.flushed == 1 and therm.link.stats.garbage >= 2
    finally:
        await therm.close()


async def test_silence_times_out_after_retries(fake: FakeThermometer) -> None:
    therm = SerialThermometer(line_cfg(fake.path, retries=2), LoopClock())
    await therm.connect()
    try:
        fake.mode = "silent"
        n = len(fake.requests)
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout) as info:
            await therm.read()
        elapsed = time.monotonic() - t0
        assert info.value.attempts == 3 and len(fake.requests) - n == 3
        assert 3 * 0.05 <= elapsed < 3 * 0.05 + 0.1
    finally:
        await therm.close()


async def test_port_going_away_fails_fast(fake: FakeThermometer) -> None:
    therm = SerialThermometer(line_cfg(fake.path), LoopClock())
    await therm.connect()
    try:
        fake.close()
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        with pytest.raises(LinkDown):
            await therm.read()
        assert time.monotonic() - t0 < 0.05
        assert not therm.link.connected
    finally:
        await therm.close()


def full_rig(port: int) -> Rig:
    return Rig(
        plasma=tcp(port, 1),
        spray=tcp(port, 2),
        safety=tcp(port, 1),
        thermometer=line_cfg("@serial"),
        serve=ServeSim(spawn=False, serial=True),
    )


async def test_open_devices_shares_one_link(fake: FakeThermometer) -> None:
    server, port = await serve([sim_device(PLASMA), sim_device(SPRAY)])
    clock = LoopClock()
    try:
        devices, close = await open_devices(full_rig(port), clock, {"@serial": fake.path})
        try:
            assert isinstance(devices.plasma, ModbusPlasma) and isinstance(devices.spray, ModbusSpray)
            assert isinstance(devices.safety, ModbusSafety) and isinstance(devices.thermometer, SerialThermometer)
            assert devices.plasma.link is devices.safety.link is devices.spray.link
            assert (await devices.plasma.status()).armed is False
            assert (await devices.spray.status()).reservoir_ml == pytest.approx(500.0)
            assert (await devices.safety.read()).footswitch is True
            assert (await devices.thermometer.read()).value_c == pytest.approx(33.25)
        finally:
            await close()
        assert not devices.plasma.link.connected and not devices.thermometer.link.connected
    finally:
        await stop(server)


async def test_open_devices_refuses_and_cleans_up(fake: FakeThermometer) -> None:
    server, port = await serve([sim_device(PLASMA), sim_device(SPRAY)])
    fake.identity = ("OTHER", lineproto.MODEL, "1.0.0", lineproto.MAP_VERSION)
    try:
        with pytest.raises(IdentityMismatch, match="vendor"):
            await open_devices(full_rig(port), LoopClock(), {"@serial": fake.path})
        await asyncio.sleep(0)
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert not [t.get_name() for t in leftovers if "heartbeat" in t.get_name() or "reconnect" in t.get_name()]
        with pytest.raises(ValueError, match="no served port"):
            await open_devices(full_rig(port), LoopClock())
    finally:
        await stop(server)
