"""Random and corrupted frames on the wires (tracker issue 9, item 6).

The drivers: a hostile Modbus TCP server, a hostile Modbus RTU device (pyserial ``socket://``, as in
``test_drivers_modbus.py``) and a thermometer played on a pty answer each request with random bytes, random
PDUs, corrupted, cut, extended, mis-addressed or silent replies. Every call ends within its budget with a
typed :class:`DeviceError` (or the values of a reply that was in fact whole), a reply for another transaction
or unit or with a bad CRC is never taken, the link answers correctly again afterwards, and asyncio logs no
"Fatal error" / "exception was never retrieved".

The served simulators (``serve`` in this process, as ``test_served_*.py`` start them) get random bytes, cut,
oversized, mis-framed and wrong-CRC frames over Modbus TCP, the RTU pty and the thermometer's line: they never
crash (a plain request after each input gets the right answer), never answer an RTU frame whose CRC is wrong,
every reply they send is well framed, and they log no traceback.

Run counts are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import subprocess
import sys
import time
import tty
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from plasmactl.clock import LoopClock
from plasmactl.drivers import lineproto
from plasmactl.drivers.errors import DeviceError
from plasmactl.drivers.modbus import ModbusLink, RequestPolicy, RtuEndpoint, TcpEndpoint
from plasmactl.drivers.registers import PLASMA, SPRAY
from plasmactl.drivers.thermometer import SerialThermometer
from plasmactl.faults import FaultScenario
from plasmactl.rig import Rig
from plasmactl.simulators.served import ServedSim, serve
from test_drivers_modbus import crc16
from test_drivers_serial import FakeThermometer, line_cfg
from test_served_support import modbus_client, read

pytestmark = [pytest.mark.hazard("H13"), pytest.mark.slow]

HOST = "127.0.0.1"
T = TypeVar("T")

TIMEOUT_S = 0.04  # per attempt of a fuzzed driver request
SLACK_S = 0.25  # on top of the attempts' timeouts: scheduling on a loaded 2-core machine
HANG_S = 3.0  # any one example taking this long is a hang
RECOVER_S = 2.0  # a link answers a good reply correctly again within this after any input

FUZZ = settings(
    deadline=None,  # our own bounds: per call (its budget) and per example (HANG_S)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------- harness


class Loop:
    """One event loop for a whole hypothesis run: servers live across examples, each example runs to its end
    (or fails as a hang after ``HANG_S``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], budget_s: float = HANG_S) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, budget_s))

    def close(self) -> None:
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class Records(logging.Handler):
    """Every WARNING and above logged anywhere while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fatal(self) -> list[str]:
        """asyncio's errors (a callback that raised: "Fatal error: protocol.data_received() call failed"), a
        task or future whose exception nobody retrieved, and any traceback our own code logged."""
        out = []
        for r in self.records:
            message = r.getMessage()
            if (
                (r.name == "asyncio" and r.levelno >= logging.ERROR)
                or "Fatal error" in message
                or "never retrieved" in message
                or (r.exc_info is not None and r.name.startswith("plasmactl"))
            ):
                out.append(f"{r.name}: {message}")
        return out


@contextmanager
def watched_logs() -> Iterator[Records]:
    records = Records()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        yield records
        gc.collect()  # "exception was never retrieved" is logged when the future is collected
    finally:
        root.removeHandler(records)


def report(what: str, counts: Counter[str], slowest_s: float) -> None:
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"[fuzz] {what}: {sum(counts.values())} inputs: {detail}; slowest {slowest_s * 1000:.0f} ms")


def outcome(result: object) -> str:
    return "values" if not isinstance(result, BaseException) else type(result).__name__


async def call(coro: Coroutine[Any, Any, T]) -> T | DeviceError:
    """The result, or the typed error (anything else propagates and fails the test)."""
    try:
        return await coro
    except DeviceError as exc:
        return exc


def mbap(tid: int, unit: int, pdu: bytes, *, pid: int = 0, length: int | None = None) -> bytes:
    size = len(pdu) + 1 if length is None else length
    return (tid & 0xFFFF).to_bytes(2, "big") + pid.to_bytes(2, "big") + size.to_bytes(2, "big") + bytes([unit]) + pdu


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    frame = bytes([unit]) + pdu
    return frame + crc16(frame)


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], (frame[-2] << 8) | frame[-1])


def read_reply(values: tuple[int, ...]) -> bytes:
    return bytes([3, 2 * len(values)]) + b"".join(v.to_bytes(2, "big") for v in values)


IDENTITY_VALUES = (0x504C, PLASMA.model)  # VENDOR, MODEL of the generator (unit 1)


# ---------------------------------------------------------------------------------------------- edits


def _flip(frame: bytes, flips: tuple[tuple[int, int], ...], *, end: int = 0) -> bytes:
    """Bits flipped at (position, bit); positions taken modulo the frame's length minus ``end``."""
    out = bytearray(frame)
    span = max(1, len(out) - end)
    for pos, bit in flips:
        out[pos % span] ^= 1 << bit
    return bytes(out)


def _flip_crc(frame: bytes, mask: int) -> bytes:
    return frame[:-2] + bytes([frame[-2] ^ (mask >> 8), frame[-1] ^ (mask & 0xFF)])


def _cut(frame: bytes, keep: int) -> bytes:
    return frame[: keep % len(frame)]


def _same(frame: bytes) -> bytes:
    return frame


flips = st.lists(
    st.tuples(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=7)),
    min_size=1,
    max_size=3,
    unique_by=lambda f: f[0],
).map(tuple)
junk = st.binary(min_size=1, max_size=40)


# ---------------------------------------------------------------------------------------------- driver: TCP


@dataclass(frozen=True)
class Reply:
    """What a hostile device answers to every attempt of one request, and what the driver may make of it."""

    kind: str
    build: Callable[[int], bytes]  # the request's transaction id (TCP) -> bytes on the wire
    values: tuple[int, ...]  # what the faithful reply carries
    must_fail: bool  # never taken: another transaction or unit, a bad CRC, a cut frame, silence
    exact: bool  # if taken, it carries exactly ``values``


def _tcp_build(tid: int, *, unit: int, pdu: bytes, pid: int, length: int | None, delta: int, edit: Any) -> bytes:
    frame: bytes = edit(mbap(tid + delta, unit, pdu, pid=pid, length=length))
    return frame


def _constant(data: bytes, tid: int) -> bytes:
    return data


TCP_KINDS = [
    "random-pdu",
    "fc3-random-count",
    "exception",
    "random-bytes",
    "flipped",
    "truncated",
    "extended",
    "prefixed",
    "wrong-tid",
    "wrong-unit",
    "wrong-pid",
    "length-lie",
    "silence",
    "good",
]


@st.composite
def tcp_replies(draw: st.DrawFn, count: int) -> Reply:
    values = tuple(draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count)))
    kind = draw(st.sampled_from(TCP_KINDS))
    pdu, unit, pid, length, delta = read_reply(values), 1, 0, None, 0
    edit: Callable[[bytes], bytes] = _same
    must_fail, exact = False, False
    if kind == "good":
        exact = True
    elif kind == "random-pdu":
        pdu = draw(st.binary(max_size=260))
    elif kind == "fc3-random-count":
        pdu = bytes([3, draw(st.integers(0, 255))]) + draw(st.binary(max_size=255))
    elif kind == "exception":
        pdu = bytes([draw(st.sampled_from([0x83, 0x86, 0x90, 0x81, 0xFF])), draw(st.integers(0, 255))])
    elif kind == "random-bytes":
        raw = draw(st.binary(max_size=300))
        return Reply(kind, partial(_constant, raw), values, must_fail=False, exact=False)
    elif kind == "flipped":
        edit = partial(_flip, flips=draw(flips))
    elif kind == "truncated":
        edit, must_fail = partial(_cut, keep=draw(st.integers(0, 300))), True
    elif kind == "extended":
        edit, exact = partial(_append, extra=draw(junk)), True
    elif kind == "prefixed":
        edit = partial(_prepend, extra=draw(junk))
    elif kind == "wrong-tid":
        delta, must_fail = draw(st.integers(1, 0xFFFF)), True
    elif kind == "wrong-unit":
        unit, must_fail = draw(st.integers(0, 255).filter(lambda u: u != 1)), True
    elif kind == "wrong-pid":
        pid, must_fail = draw(st.integers(1, 0xFFFF)), True
    elif kind == "length-lie":
        length, must_fail = draw(st.integers(0, 0xFFFF).filter(lambda n: n != len(pdu) + 1)), True
    else:  # silence
        return Reply(kind, partial(_constant, b""), values, must_fail=True, exact=False)
    build = partial(_tcp_build, unit=unit, pdu=pdu, pid=pid, length=length, delta=delta, edit=edit)
    return Reply(kind, build, values, must_fail, exact)


def _append(frame: bytes, extra: bytes) -> bytes:
    return frame + extra


def _prepend(frame: bytes, extra: bytes) -> bytes:
    return extra + frame


def _good_tcp(values: tuple[int, ...]) -> Callable[[int], bytes]:
    return partial(_tcp_build, unit=1, pdu=read_reply(values), pid=0, length=None, delta=0, edit=_same)


class HostileTcp:
    """A Modbus TCP server that answers every request with ``reply(transaction id)``."""

    def __init__(self) -> None:
        self.reply: Callable[[int], bytes] = partial(_constant, b"")
        self.sent: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _request(self, reader: asyncio.StreamReader) -> int:
        """Read one request; its transaction id."""
        head = await reader.readexactly(7)
        await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
        return int.from_bytes(head[0:2], "big")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid = await self._request(reader)
                data = self.reply(tid)  # looked up after the request came: a test may have changed it
                self.sent.append(data)
                if data:
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


async def _recovers(link: ModbusLink, count: int, set_good: Callable[[tuple[int, ...]], None]) -> int:
    """Good replies from now on: the link reads them correctly within RECOVER_S; how many calls it took."""
    values = tuple(range(100, 100 + count))
    set_good(values)
    deadline = time.monotonic() + RECOVER_S
    calls = 0
    while True:
        calls += 1
        result = await call(link.read(1, 30, count, device="plasma"))
        if not isinstance(result, DeviceError):
            assert tuple(result) == values, (result, values)
            return calls
        assert time.monotonic() < deadline, f"no good read within {RECOVER_S} s after the fuzzed reply: {result}"
        await asyncio.sleep(0.01)


def _check_result(
    reply: Reply, result: list[int] | DeviceError, count: int, elapsed: float, budget: float, *, known: bool = False
) -> None:
    assert elapsed < budget, f"{reply.kind}: {elapsed:.3f} s, budget {budget:.3f} s"
    if isinstance(result, DeviceError):
        assert result.device == "plasma", result
        assert reply.kind != "good", f"a good reply refused: {result!r}"
        return
    assert known or not reply.must_fail, f"{reply.kind}: taken as the answer: {result}"
    assert len(result) == count and all(0 <= v <= 0xFFFF for v in result), result
    if reply.exact:
        assert tuple(result) == reply.values, (reply.kind, result, reply.values)


def test_driver_tcp_replies_fuzzed() -> None:
    counts: Counter[str] = Counter()
    slowest = [0.0]
    loop = Loop()
    hostile = HostileTcp()

    async def case(count: int, retries: int, reply: Reply) -> None:
        link = ModbusLink(
            TcpEndpoint(HOST, hostile.port),
            policy=RequestPolicy(TIMEOUT_S, retries),
            reconnect_min_s=0.01,
            reconnect_max_s=0.05,
        )
        try:
            await link.open("plasma")
            hostile.reply, hostile.sent = reply.build, []
            t0 = time.monotonic()
            result = await call(link.read(1, 30, count, device="plasma"))
            elapsed = time.monotonic() - t0
            slowest[0] = max(slowest[0], elapsed)
            counts[f"{reply.kind} -> {outcome(result)}"] += 1
            # known defect (see test_a_reply_with_transaction_id_0_is_not_taken): pymodbus takes a reply whose
            # transaction id is 0 as the answer to any request, and the link does not check it either
            known = reply.kind == "wrong-tid" and any(frame[:2] == b"\0\0" for frame in hostile.sent)
            counts["known defect: transaction id 0 taken"] += known and not isinstance(result, DeviceError)
            _check_result(reply, result, count, elapsed, (retries + 1) * TIMEOUT_S + SLACK_S, known=known)

            def good(values: tuple[int, ...]) -> None:
                hostile.reply = _good_tcp(values)

            counts["recovery calls > 1"] += (await _recovers(link, count, good)) > 1
        finally:
            await link.close()

    @settings(FUZZ, max_examples=150)
    @given(count=st.integers(1, 8), retries=st.integers(0, 1), data=st.data())
    def one(count: int, retries: int, data: st.DataObject) -> None:
        loop.run(case(count, retries, data.draw(tcp_replies(count), label="reply")))

    with watched_logs() as logs:
        try:
            loop.run(hostile.start())
            one()
            loop.run(hostile.stop())
        finally:
            loop.close()
    report("driver: Modbus TCP replies", counts, slowest[0])
    assert not logs.fatal(), logs.fatal()


def test_a_reply_with_transaction_id_0_is_not_taken() -> None:
    loop = Loop()
    hostile = HostileTcp()
    hostile.reply = partial(_tcp_build, unit=1, pdu=read_reply((7, 9)), pid=0, length=None, delta=0, edit=_zero_tid)

    async def case() -> list[int] | DeviceError:
        await hostile.start()
        link = ModbusLink(TcpEndpoint(HOST, hostile.port), policy=RequestPolicy(TIMEOUT_S, 0))
        try:
            await link.open("plasma")
            return await call(link.read(1, 30, 2, device="plasma"))  # the request's transaction id is 1
        finally:
            await link.close()
            await hostile.stop()

    try:
        result = loop.run(case())
    finally:
        loop.close()
    assert isinstance(result, DeviceError), f"a reply with transaction id 0 was taken: {result}"


def _zero_tid(frame: bytes) -> bytes:
    return b"\0\0" + frame[2:]


# ---------------------------------------------------------------------------------------------- driver: RTU


def _rtu_build(tid: int, *, frame: bytes, edit: Any) -> bytes:
    out: bytes = edit(frame)
    return out


RTU_KINDS = [
    "bad-crc",
    "payload-flip",
    "wrong-unit",
    "truncated",
    "extended",
    "prefixed",
    "random-bytes",
    "exception",
    "random-pdu",
    "silence",
    "good",
]


@st.composite
def rtu_replies(draw: st.DrawFn, count: int) -> Reply:
    values = tuple(draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count)))
    kind = draw(st.sampled_from(RTU_KINDS))
    frame = rtu_frame(1, read_reply(values))
    edit: Callable[[bytes], bytes] = _same
    must_fail, exact = False, False
    if kind == "good":
        exact = True
    elif kind == "bad-crc":
        edit, must_fail = partial(_flip_crc, mask=draw(st.integers(1, 0xFFFF))), True
    elif kind == "payload-flip":  # 1-3 bits: CRC-16 catches every such error in a frame this short
        edit, must_fail = partial(_flip, flips=draw(flips), end=2), True
    elif kind == "wrong-unit":
        frame, must_fail = rtu_frame(draw(st.integers(0, 255).filter(lambda u: u != 1)), read_reply(values)), True
    elif kind == "truncated":
        edit, must_fail = partial(_cut, keep=draw(st.integers(0, 300))), True
    elif kind == "extended":
        edit, exact = partial(_append, extra=draw(junk)), True
    elif kind == "prefixed":
        edit, exact = partial(_prepend, extra=draw(junk)), True  # the only frame with a good CRC is the right one
    elif kind == "random-bytes":
        frame = draw(st.binary(max_size=300))
    elif kind == "exception":
        frame = rtu_frame(1, bytes([draw(st.sampled_from([0x83, 0x86, 0x90])), draw(st.integers(0, 255))]))
    elif kind == "random-pdu":
        frame = rtu_frame(1, draw(st.binary(max_size=255)))
    else:
        frame, must_fail = b"", True
    return Reply(kind, partial(_rtu_build, frame=frame, edit=edit), values, must_fail, exact)


class HostileRtu(HostileTcp):
    """An RTU device on a TCP socket (pyserial ``socket://``): answers each 8-byte read request with
    ``reply(0)``."""

    async def _request(self, reader: asyncio.StreamReader) -> int:
        request = await reader.readexactly(8)
        assert crc_ok(request) and request[1] == 3, request.hex()
        return 0


def _good_rtu(values: tuple[int, ...]) -> Callable[[int], bytes]:
    return partial(_rtu_build, frame=rtu_frame(1, read_reply(values)), edit=_same)


def test_driver_rtu_replies_fuzzed() -> None:
    counts: Counter[str] = Counter()
    slowest = [0.0]
    loop = Loop()
    hostile = HostileRtu()

    box: dict[str, ModbusLink] = {}

    async def start() -> None:
        await hostile.start()
        # one link for the whole run (closing an RTU link takes pymodbus 0.3 s): a bus outlives bad replies
        box["link"] = ModbusLink(RtuEndpoint(f"socket://{HOST}:{hostile.port}"), policy=RequestPolicy(TIMEOUT_S, 0))
        await box["link"].open("plasma")

    async def case(count: int, retries: int, reply: Reply) -> None:
        link = box["link"]
        hostile.reply = reply.build
        t0 = time.monotonic()
        result = await call(link.read(1, 30, count, policy=RequestPolicy(TIMEOUT_S, retries), device="plasma"))
        elapsed = time.monotonic() - t0
        slowest[0] = max(slowest[0], elapsed)
        counts[f"{reply.kind} -> {outcome(result)}"] += 1
        _check_result(reply, result, count, elapsed, (retries + 1) * TIMEOUT_S + SLACK_S)

        def good(values: tuple[int, ...]) -> None:
            hostile.reply = _good_rtu(values)

        counts["recovery calls > 1"] += (await _recovers(link, count, good)) > 1

    @settings(FUZZ, max_examples=150)
    @given(count=st.integers(1, 8), retries=st.integers(0, 1), data=st.data())
    def one(count: int, retries: int, data: st.DataObject) -> None:
        loop.run(case(count, retries, data.draw(rtu_replies(count), label="reply")))

    with watched_logs() as logs:
        try:
            loop.run(start())
            one()
            loop.run(box["link"].close())
            loop.run(hostile.stop())
        finally:
            loop.close()
    report("driver: Modbus RTU replies", counts, slowest[0])
    assert not logs.fatal(), logs.fatal()


# ---------------------------------------------------------------------------------------------- driver: line


def test_line_decoders_take_any_bytes() -> None:
    """``lineproto.decode`` and ``decode_sample`` on any bytes: fields, or a FrameError, at once."""
    counts: Counter[str] = Counter()

    @settings(FUZZ, max_examples=500)
    @given(
        line=st.one_of(
            st.binary(max_size=200),
            st.builds(
                lambda fields, cs: b"$" + fields + b"*" + cs + b"\r\n",
                st.binary(max_size=140),
                st.binary(min_size=2, max_size=2),
            ),
            st.lists(st.text(st.characters(max_codepoint=127), max_size=12), min_size=1, max_size=5).map(
                lambda f: lineproto.encode(*f)
            ),
        )
    )
    def one(line: bytes) -> None:
        t0 = time.monotonic()
        try:
            fields = lineproto.decode(line)
        except lineproto.FrameError as exc:
            assert exc.code in (lineproto.ErrorCode.MALFORMED, lineproto.ErrorCode.BAD_CHECKSUM)
            counts[f"FrameError {exc.code.name}"] += 1
            return
        assert isinstance(fields, list) and all(isinstance(f, str) for f in fields)
        try:
            sample = lineproto.decode_sample(fields)
        except lineproto.FrameError:
            counts["fields, not a sample"] += 1
        else:
            assert isinstance(sample.celsius, float)
            counts["sample"] += 1
        assert time.monotonic() - t0 < 0.1

    one()
    report("driver: line decoders", counts, 0.0)


class FuzzThermometer(FakeThermometer):
    """The fake thermometer of ``test_drivers_serial.py`` answering each request line with ``reply``."""

    reply: bytes = b""

    def _respond(self, line: bytes) -> None:
        if self.reply:
            self.write(self.reply)


def _sample_line(seq: str, age: str, celsius: str) -> bytes:
    return lineproto.encode("T", seq, age, celsius)


number_text = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "", " ", "0x10", "1_0", "3.", "-0"]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=",*$"), max_size=8),
)


@st.composite
def line_replies(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(
            ["sample", "odd-sample", "bad-checksum", "other-tag", "error", "garbage", "long", "prefixed", "silence"]
        )
    )
    good = _sample_line("7", "40", "33.25")
    if kind == "sample":
        return kind, good
    if kind == "odd-sample":
        return kind, _sample_line(draw(number_text), draw(number_text), draw(number_text))
    if kind == "bad-checksum":
        return kind, good[:-4] + draw(st.sampled_from([b"00", b"ZZ", b"5", b"5A5"])) + b"\r\n"
    if kind == "other-tag":
        return kind, lineproto.encode(draw(st.sampled_from(["ID", "P", "X", "t", ""])), "1")
    if kind == "error":
        return kind, lineproto.encode("ERR", draw(number_text), draw(number_text))
    if kind == "garbage":
        return kind, draw(st.binary(min_size=1, max_size=200))
    if kind == "long":
        return kind, b"$" + b"A" * draw(st.integers(129, 2000)) + draw(st.sampled_from([b"", b"\r\n"]))
    if kind == "prefixed":
        return kind, draw(st.binary(max_size=40)) + good
    return kind, b""


def test_driver_line_replies_fuzzed() -> None:
    counts: Counter[str] = Counter()
    slowest = [0.0]
    loop = Loop()
    box: dict[str, Any] = {}

    async def start() -> None:
        fake = FuzzThermometer()
        clock = LoopClock()
        therm = SerialThermometer(line_cfg(fake.path), clock)
        fake.reply = lineproto.encode("ID", *fake.identity)
        await therm.connect()
        box.update(fake=fake, therm=therm, clock=clock)

    async def case(kind: str, reply: bytes) -> None:
        fake: FuzzThermometer = box["fake"]
        therm: SerialThermometer = box["therm"]
        clock: LoopClock = box["clock"]
        fake.reply = reply
        t0 = time.monotonic()
        result = await call(therm.read())
        elapsed = time.monotonic() - t0
        slowest[0] = max(slowest[0], elapsed)
        counts[f"{kind} -> {outcome(result)}"] += 1
        assert elapsed < 2 * 0.05 + SLACK_S, f"{kind}: {elapsed:.3f} s"
        if not isinstance(result, DeviceError):
            assert kind in ("sample", "odd-sample", "prefixed"), (kind, result)
            assert math.isfinite(result.value_c) and result.t <= clock.now()
        elif kind == "sample":
            raise AssertionError(f"a good sample refused: {result!r}")
        fake.reply = _sample_line("8", "10", "34.50")
        deadline = time.monotonic() + RECOVER_S
        while isinstance(again := await call(therm.read()), DeviceError):
            assert time.monotonic() < deadline, f"no good reading within {RECOVER_S} s: {again}"
        assert again.value_c == 34.5

    @settings(FUZZ, max_examples=120)
    @given(case_=line_replies())
    def one(case_: tuple[str, bytes]) -> None:
        loop.run(case(*case_))

    with watched_logs() as logs:
        try:
            loop.run(start())
            one()
            loop.run(box["therm"].close())
            box["fake"].close()
        finally:
            loop.close()
    report("driver: thermometer line replies", counts, slowest[0])
    assert not logs.fatal(), logs.fatal()


# ---------------------------------------------------------------------------------------------- served: TCP

UNITS = st.sampled_from([1, 2, 0, 3, 247, 255])


@st.composite
def pdus(draw: st.DrawFn) -> bytes:
    address = draw(st.one_of(st.integers(0, 40), st.integers(0, 0xFFFF)))
    kind = draw(st.sampled_from(["read", "write-one", "write-many", "other", "random"]))
    if kind == "read":
        return bytes([3]) + address.to_bytes(2, "big") + draw(st.integers(0, 200)).to_bytes(2, "big")
    if kind == "write-one":
        return bytes([6]) + address.to_bytes(2, "big") + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    if kind == "write-many":
        count = draw(st.integers(0, 130))
        data = draw(st.binary(max_size=260))
        byte_count = draw(st.sampled_from([len(data) & 0xFF, 2 * count & 0xFF, draw(st.integers(0, 255))]))
        return bytes([16]) + address.to_bytes(2, "big") + count.to_bytes(2, "big") + bytes([byte_count]) + data
    if kind == "other":
        return bytes([draw(st.integers(0, 255))]) + draw(st.binary(max_size=20))
    return draw(st.binary(max_size=253))


@st.composite
def tcp_inputs(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(["random", "request", "truncated", "length-lie", "wrong-pid", "oversized", "pipelined"])
    )
    tid = draw(st.integers(0, 0xFFFF))
    request = mbap(tid, draw(UNITS), draw(pdus()))
    if kind == "random":
        return kind, draw(st.binary(min_size=1, max_size=300))
    if kind == "request":
        return kind, request
    if kind == "truncated":
        return kind, request[: draw(st.integers(1, max(1, len(request) - 1)))]
    if kind == "length-lie":
        return kind, request[:4] + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big") + request[6:]
    if kind == "wrong-pid":
        return kind, request[:2] + draw(st.integers(1, 0xFFFF)).to_bytes(2, "big") + request[4:]
    if kind == "oversized":
        pdu = draw(st.binary(min_size=253, max_size=2000))
        return kind, mbap(tid, draw(UNITS), pdu, length=min(len(pdu) + 1, 0xFFFF))
    parts = [mbap(draw(st.integers(0, 0xFFFF)), draw(UNITS), draw(pdus())) for _ in range(draw(st.integers(2, 5)))]
    return kind, b"".join(parts) + draw(st.binary(max_size=20))


def _mbap_frames(data: bytes) -> list[bytes]:
    """Split what a Modbus TCP server sent into frames, checking each is well framed."""
    frames = []
    while data:
        assert len(data) >= 8, f"a cut frame: {data.hex()}"
        pid, length = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big")
        assert pid == 0 and 2 <= length <= 254 and len(data) >= 6 + length, data.hex()
        frames.append(data[: 6 + length])
        data = data[6 + length :]
    return frames


async def _read_for(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Whatever arrives within ``seconds`` (until EOF)."""
    data = b""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


async def _tcp_identity(sim: ServedSim) -> None:
    """A plain request on a new connection gets the generator's identity, exactly."""
    assert sim.modbus_tcp is not None
    reader, writer = await asyncio.open_connection(HOST, sim.modbus_tcp.port)
    try:
        writer.write(mbap(0x4242, 1, bytes([3, 0, 0, 0, 2])))
        reply = await asyncio.wait_for(reader.readexactly(13), 1.0)
        assert reply == mbap(0x4242, 1, read_reply(IDENTITY_VALUES)), reply.hex()
    finally:
        writer.close()


async def _plain_client_reads_identities(sim: ServedSim, transport: str) -> None:
    async with modbus_client(sim, "tcp" if transport == "tcp" else "rtu") as client:
        assert await read(client, PLASMA, "VENDOR") == 0x504C and await read(client, PLASMA, "MODEL") == PLASMA.model
        assert await read(client, SPRAY, "MODEL") == SPRAY.model


async def _serve(**kw: Any) -> ServedSim:
    return await serve(Rig(), FaultScenario(), seed=1, **kw)


def test_served_tcp_survives_fuzzed_frames() -> None:
    counts: Counter[str] = Counter()
    slowest = [0.0]
    loop = Loop()
    box: dict[str, ServedSim] = {}

    async def case(kind: str, data: bytes) -> None:
        sim = box["sim"]
        assert sim.modbus_tcp is not None and sim._tcp is not None
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection(HOST, sim.modbus_tcp.port)
        try:
            writer.write(data)
            await writer.drain()
            replies = _mbap_frames(await _read_for(reader, 0.03))
        finally:
            writer.close()
        counts[f"{kind} -> {len(replies)} replies"] += 1
        for _ in range(500):  # the server notices the closed connection (its cap is 8 at once)
            if not sim._tcp._handlers:
                break
            await asyncio.sleep(0.002)
        await _tcp_identity(sim)
        slowest[0] = max(slowest[0], time.monotonic() - t0)

    @settings(FUZZ, max_examples=150)
    @given(case_=tcp_inputs())
    def one(case_: tuple[str, bytes]) -> None:
        loop.run(case(*case_))

    with watched_logs() as logs:
        try:
            box["sim"] = loop.run(_serve(modbus_tcp=(HOST, 0)))
            one()
            loop.run(_plain_client_reads_identities(box["sim"], "tcp"))
            loop.run(box["sim"].stop())
        finally:
            loop.close()
    report("served Modbus TCP: fuzzed frames", counts, slowest[0])
    assert not logs.fatal(), logs.fatal()


# ---------------------------------------------------------------------------------------------- served: RTU

RTU_BAUD = 460800


@st.composite
def rtu_inputs(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(
            ["random", "request", "bad-crc", "payload-flip", "truncated", "unknown-unit", "oversized", "pipelined"]
        )
    )
    unit = draw(st.sampled_from([1, 2]))
    request = rtu_frame(unit, draw(pdus()))
    if kind == "random":
        return kind, draw(st.binary(min_size=1, max_size=300))
    if kind == "request":
        return kind, request
    if kind == "bad-crc":
        return kind, _flip_crc(request, draw(st.integers(1, 0xFFFF)))
    if kind == "payload-flip":
        return kind, _flip(request, draw(flips), end=2)
    if kind == "truncated":
        return kind, request[: draw(st.integers(1, len(request) - 1))]
    if kind == "unknown-unit":
        return kind, rtu_frame(draw(st.sampled_from([0, 3, 17, 247, 255])), draw(pdus()))
    if kind == "oversized":
        return kind, rtu_frame(unit, draw(st.binary(min_size=254, max_size=600)))
    return kind, request + rtu_frame(draw(st.sampled_from([1, 2])), draw(pdus()))


class PtyClient:
    """The client end of a served pty, raw and non-blocking."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def read_now(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return b""

    async def read_until(self, done: Callable[[bytes], bool], within_s: float) -> bytes:
        data = b""
        deadline = time.monotonic() + within_s
        while not done(data):
            assert time.monotonic() < deadline, f"no answer within {within_s} s: {data.hex()}"
            await asyncio.sleep(0.001)
            data += self.read_now()
        return data

    async def read_for(self, seconds: float) -> bytes:
        data = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.001)
            data += self.read_now()
        return data

    def close(self) -> None:
        os.close(self.fd)


def test_served_rtu_survives_fuzzed_frames_and_never_answers_a_bad_crc() -> None:
    counts: Counter[str] = Counter()
    slowest = [0.0]
    loop = Loop()
    box: dict[str, Any] = {}
    health = rtu_frame(1, bytes([3, 0, 0, 0, 2]))
    health_reply = rtu_frame(1, read_reply(IDENTITY_VALUES))
    window_s = (600 + 260 + 7) * 11 / RTU_BAUD + 0.015  # the longest request and reply on the paced wire

    async def case(kind: str, frame: bytes) -> None:
        pty: PtyClient = box["pty"]
        t0 = time.monotonic()
        pty.write(frame)
        got = await pty.read_for(window_s)
        # a plain request after it; the bus answers in order, so anything before its reply is the input's
        pty.write(health)
        got += await pty.read_until(lambda d: d.endswith(health_reply), 1.0)
        reply = got[: -len(health_reply)]
        slowest[0] = max(slowest[0], time.monotonic() - t0)
        answered = crc_ok(frame) and frame[0] in (1, 2)
        counts[f"{kind} -> {'reply' if reply else 'silence'}"] += 1
        if not answered:
            assert reply == b"", f"{kind}: {frame.hex()} (CRC ok: {crc_ok(frame)}) was answered: {reply.hex()}"
            return
        assert crc_ok(reply) and reply[0] == frame[0], f"{kind}: {frame.hex()} -> {reply.hex()}"
        assert reply[1] in (frame[1], frame[1] | 0x80), reply.hex()

    @settings(FUZZ, max_examples=150)
    @given(case_=rtu_inputs())
    def one(case_: tuple[str, bytes]) -> None:
        loop.run(case(*case_))

    with watched_logs() as logs:
        try:
            sim = box["sim"] = loop.run(_serve(modbus_rtu=True, baud=RTU_BAUD))
            assert sim.modbus_rtu is not None
            box["pty"] = PtyClient(sim.modbus_rtu.port)
            one()
            box["pty"].close()
            loop.run(_plain_client_reads_identities(sim, "rtu"))
            loop.run(sim.stop())
        finally:
            loop.close()
    report("served Modbus RTU (pty): fuzzed frames", counts, slowest[0])
    assert not logs.fatal(), logs.fatal()


# ---------------------------------------------------------------------------------------------- served: line

LINE_BAUD = 460800


@st.composite
def line_inputs(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(["random", "request", "bad-checksum", "fields", "long", "no-newline", "non-ascii", "many"])
    )
    command = draw(st.sampled_from(["ID", "T", "P", "X", "ERR", "", "id", "T,1"]))
    request = lineproto.encode(command)
    if kind == "random":
        return kind, draw(st.binary(min_size=1, max_size=300))
    if kind == "request":
        return kind, request
    if kind == "bad-checksum":
        return kind, request[:-4] + draw(st.sampled_from([b"00", b"zz", b"0", b"000"])) + b"\r\n"
    if kind == "fields":
        fields = draw(st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10), max_size=6))
        return kind, lineproto.encode(command, *fields)
    if kind == "long":
        return kind, b"$" + b"T" * draw(st.integers(129, 3000)) + b"*00\r\n"
    if kind == "no-newline":
        return kind, draw(st.binary(min_size=1, max_size=700).map(lambda b: b.replace(b"\n", b"")))
    if kind == "non-ascii":
        return kind, b"$T\xff\xfe*00\r\n"
    return kind, b"".join(lineproto.encode(draw(st.sampled_from(["ID", "T", "P"]))) for _ in range(5))


def _line_ok(line: bytes) -> bool:
    try:
        fields = lineproto.decode(line)
    except lineproto.FrameError:
        return False
    return fields[0] in ("ID", "T", "P", "ERR")


def test_served_line_survives_fuzzed_input() -> None:
    counts: Counter[str] = Counter()
    slowest = [0.0]
    loop = Loop()
    box: dict[str, Any] = {}
    health = b"\r\n" + lineproto.encode("ID")

    def ends_with_id(data: bytes) -> bool:
        lines = data.split(b"\n")
        return len(lines) >= 2 and lines[-1] == b"" and lineproto.decode(lines[-2] + b"\n")[0] == "ID"

    async def case(kind: str, data: bytes) -> None:
        pty: PtyClient = box["pty"]
        t0 = time.monotonic()
        pty.write(data)
        got = await pty.read_for(0.01)
        pty.write(health)
        got += await pty.read_until(ends_with_id, 1.0)
        got += await pty.read_for(0.005)  # nothing more may follow the health reply's line
        assert ends_with_id(got), got
        slowest[0] = max(slowest[0], time.monotonic() - t0)
        lines = [line + b"\n" for line in got.split(b"\n")[:-1]]
        bad = [line for line in lines if not _line_ok(line)]
        assert not bad, f"{kind}: {data[:80]!r} -> replies that are not frames: {bad}"
        # the driver reads a reply from its last "$": an ERR text with a "$" in it reads as a bad checksum there
        counts["replies with a '$' in their text"] += sum(line.count(b"$") > 1 for line in lines)
        counts[f"{kind} -> {len(lines) - 1} replies"] += 1

    @settings(FUZZ, max_examples=120)
    @given(case_=line_inputs())
    def one(case_: tuple[str, bytes]) -> None:
        loop.run(case(*case_))

    with watched_logs() as logs:
        try:
            sim = loop.run(_serve(serial=True, baud=LINE_BAUD))
            assert sim.serial is not None
            box["pty"] = PtyClient(sim.serial.thermometer)
            one()
            box["pty"].close()
            loop.run(sim.stop())
        finally:
            loop.close()
    report("served thermometer line (pty): fuzzed input", counts, slowest[0])
    assert not logs.fatal(), logs.fatal()


PYMODBUS_CONSOLE_SCRIPT = r"""
import asyncio
from plasmactl.drivers.modbus import ModbusLink, RequestPolicy, TcpEndpoint

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readexactly(7)
            await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
            tid = (int.from_bytes(head[:2], "big") ^ 0x5555).to_bytes(2, "big")  # another request's answer
            writer.write(tid + bytes([0, 0, 0, 7]) + head[6:7] + bytes([3, 4, 0, 7, 0, 9]))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = ModbusLink(TcpEndpoint("127.0.0.1", port), policy=RequestPolicy(0.05, 1))
    await link.open("plasma")
    try:
        print("taken:", await link.read(1, 30, 2, device="plasma"))
    except Exception as exc:
        print("failed as expected:", type(exc).__name__)
    await link.close()
    server.close()
    await server.wait_closed()

asyncio.run(main())
"""


def test_pymodbus_own_log_stays_out_of_the_console() -> None:
    """Before: pymodbus's records were printed on stderr by Python's last-resort handler, past --quiet and
    --json: 'request ask for transaction_id=... Skipping' and dumps of its last 20 frames on every error.
    (In a process of its own: pytest attaches its capture handlers to the pymodbus logger itself.)"""
    done = subprocess.run([sys.executable, "-c", PYMODBUS_CONSOLE_SCRIPT], capture_output=True, text=True, timeout=60)
    assert "failed as expected" in done.stdout, (done.stdout, done.stderr)
    assert done.stderr == "", done.stderr[:2000]
