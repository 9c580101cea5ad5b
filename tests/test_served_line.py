"""The thermometer's line protocol on its pty: replies with valid checksums, errors as declared, and the
shared world (a pulse fired over Modbus heats the skin the thermometer reports)."""

from __future__ import annotations

import asyncio

import pytest

from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import PlasmaCommand
from test_served_support import command, configure, line_client, modbus_client, scenario, served


async def test_identity_period_and_sample() -> None:
    async with served(tcp=False, serial=True) as sim, line_client(sim) as line:
        reply = await line.ask("ID")
        assert reply.endswith(b"\r\n")
        assert lineproto.decode(reply) == [
            "ID",
            lineproto.VENDOR,
            lineproto.MODEL,
            lineproto.FIRMWARE,
            lineproto.MAP_VERSION,
        ]
        assert lineproto.decode(await line.ask("P")) == ["P", "100"]
        await asyncio.sleep(0.12)  # the first sample is taken at 0 and reported after the 10 ms latency
        sample = lineproto.decode_sample(lineproto.decode(await line.ask("T")))
        assert 30.0 < sample.celsius < 37.0
        assert 0 <= sample.age_ms <= 100 + 10 + 20
        later = lineproto.decode_sample(lineproto.decode(await line.ask("T")))
        assert later.seq >= sample.seq


async def test_no_sample_while_the_sensor_never_delivered_one() -> None:
    dropout = scenario({"device": "thermometer", "kind": "dropout", "at_s": 0.0, "duration_s": 0.3})
    async with served(faults=dropout, tcp=False, serial=True) as sim, line_client(sim) as line:
        fields = lineproto.decode(await line.ask("T"))
        assert fields[:2] == ["ERR", str(int(lineproto.ErrorCode.NO_SAMPLE))]
        await asyncio.sleep(0.45)
        sample = lineproto.decode_sample(lineproto.decode(await line.ask("T")))
        assert sample.seq >= 3 and sample.age_ms <= 100 + 10 + 20


@pytest.mark.parametrize(
    ("request_line", "code"),
    [
        (b"$T*00\r\n", lineproto.ErrorCode.BAD_CHECKSUM),
        (lineproto.encode("X"), lineproto.ErrorCode.UNKNOWN_COMMAND),
        (lineproto.encode("T", "1"), lineproto.ErrorCode.MALFORMED),
        (b"hello\r\n", lineproto.ErrorCode.MALFORMED),
        (b"$" + b"A" * 200 + b"*00\r\n", lineproto.ErrorCode.MALFORMED),
    ],
)
async def test_bad_requests_get_err_replies(request_line: bytes, code: lineproto.ErrorCode) -> None:
    async with served(tcp=False, serial=True) as sim, line_client(sim) as line:
        fields = lineproto.decode(await line.raw(request_line))  # the ERR reply itself has a valid checksum
        assert fields[0] == "ERR" and fields[1] == str(int(code)), fields
        assert lineproto.decode(await line.ask("ID"))[0] == "ID"


async def test_a_pulse_over_modbus_heats_the_skin_the_thermometer_reports() -> None:
    async with served(serial=True) as sim, line_client(sim) as line, modbus_client(sim, "tcp") as client:
        await asyncio.sleep(0.12)
        before = lineproto.decode_sample(lineproto.decode(await line.ask("T")))
        await configure(client, energy_j=3.0, pulse_ms=50.0)
        await command(client, PlasmaCommand.ARM)
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(0.25)  # the pulse, two samples, the sensor lag
        after = lineproto.decode_sample(lineproto.decode(await line.ask("T")))
        assert after.seq > before.seq
        assert after.celsius > before.celsius + 1.0, (before, after)


async def test_pipelined_requests_are_answered_one_by_one_in_order() -> None:
    """A client that writes ten requests before it reads gets ten replies, in order, paced: a wire does not
    drop what its reader has not read yet (the served line used to flush unread bytes: one reply of ten)."""
    import serial

    async with served(tcp=False, serial=True) as sim:
        assert sim.serial is not None
        port = serial.Serial(sim.serial.thermometer, sim.serial.baud, timeout=0)
        try:
            requests = b"".join(lineproto.encode("ID") if i % 2 == 0 else lineproto.encode("P") for i in range(10))
            port.write(requests)
            t0 = loop_time = asyncio.get_running_loop().time()
            data = b""
            for _ in range(200):
                await asyncio.sleep(0.002)
                data += port.read(4096)
                loop_time = asyncio.get_running_loop().time()
                if data.count(b"\n") >= 10:
                    break
        finally:
            port.close()
    replies = [lineproto.decode(line + b"\n")[0] for line in data.split(b"\n") if line]
    assert replies == ["ID", "P"] * 5
    # paced: the replies took their time on the 8N1 wire one after another (full duplex: the first request,
    # then ten replies back to back), not all at once
    wire_s = (len(requests) / 10 + len(data)) * 10 / sim.serial.baud
    assert loop_time - t0 >= 0.9 * wire_s, (loop_time - t0, wire_s)
