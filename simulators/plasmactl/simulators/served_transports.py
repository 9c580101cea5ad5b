"""The served simulators' wires: Modbus TCP, Modbus RTU on a serial port or pty, the thermometer's line.

All three share one shape: take a request off the wire, look up the link faults of the device it is for
(``served_wire.wire_effect``), let the device answer, damage or delay the reply as the faults say, and
(on a serial line) hold it back until the real wire would have carried request and reply.

Unknown unit ids: the TCP server is a gateway and answers exception 0x0B (gateway target device failed to
respond), at once and without logging; on RTU nobody on the bus has that address, so there is silence (as
for a frame with a bad CRC). Broadcasts (unit 0) are ignored on both: these devices take no broadcast
commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse

from plasmactl.clock import Clock
from plasmactl.drivers import lineproto
from plasmactl.rig import rtu_intervals_s
from plasmactl.simulators.served_modbus import ModbusEngine
from plasmactl.simulators.served_wire import (
    SerialPort,
    WireEffect,
    corrupt_line,
    corrupt_rtu,
    corrupt_tcp,
    garbage_bytes,
    garbage_line,
    line_wire_time,
    rtu_wire_time,
    wire_effect,
)
from plasmactl.simulators.world import SimWorld

log = logging.getLogger("plasmactl.served")

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id


async def stop_server(server: asyncio.Server | None, handlers: set[asyncio.Task[None]]) -> None:
    """Stop listening, cancel every connection's handler and wait for them, then for the server to close."""
    if server is not None:
        server.close()
    for task in list(handlers):
        task.cancel()
    if handlers:
        await asyncio.wait(list(handlers))
    if server is not None:
        await server.wait_closed()


class ModbusTcpServer:
    """Modbus TCP: every unit on one port; each connection's requests are answered in order.

    As a device's TCP stack is, it is bounded: at most ``max_connections`` at once (a further one is closed
    at once), a frame whose first byte came must be complete within ``partial_frame_s``, and a connection
    with no request for ``idle_s`` is closed."""

    max_connections = 8
    partial_frame_s = 1.0
    idle_s = 60.0

    def __init__(self, engine: ModbusEngine, world: SimWorld, rng: random.Random) -> None:
        self.engine = engine
        self.world = world
        self.rng = rng
        self._framer = FramerSocket(DecodePDU(is_server=True))
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()  # one per connection
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        await stop_server(self._server, self._handlers)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= self.max_connections:
            log.warning("modbus tcp: %d connections open already: refusing another", len(self._handlers))
            writer.close()
            return
        self._handlers.add(task)
        try:
            while True:
                async with asyncio.timeout(self.idle_s):
                    first = await reader.readexactly(1)
                async with asyncio.timeout(self.partial_frame_s):
                    tid, pid, length, unit = MBAP.unpack(first + await reader.readexactly(MBAP.size - 1))
                    if pid != 0 or not 2 <= length <= 254:
                        log.info("modbus tcp: not a Modbus frame (protocol id %d, length %d): closing", pid, length)
                        return
                    pdu = await reader.readexactly(length - 1)
                if not await self._request(writer, tid, unit, pdu):
                    return
                # one request, then the other connections' turn: a client that pipelined thousands of requests
                # held every other client (a running session's too) for seconds, and one that never reads its
                # replies is held at its transport's buffer, then closed as idle
                async with asyncio.timeout(self.idle_s):
                    await writer.drain()
                await asyncio.sleep(0)
        except TimeoutError:
            log.info("modbus tcp: a connection idle or a frame incomplete for too long: closing")
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except asyncio.CancelledError:
            # The server is stopping. End normally: on Python 3.11 asyncio logs a traceback for a cancelled
            # client_connected_cb task (its done-callback calls task.exception()).
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _request(self, writer: asyncio.StreamWriter, tid: int, unit: int, pdu: bytes) -> bool:
        """Answer one request; False closes the connection."""
        if not self.engine.known(unit):
            reply = ExceptionResponse(pdu[0] if pdu else 0, ExcCodes.GATEWAY_NO_RESPONSE, device_id=unit)
            reply.transaction_id = tid
            writer.write(self._framer.buildFrame(reply))
            return True
        effect = wire_effect(self.world.faults, self.engine.targets(unit, pdu), self.world.clock.now())
        if effect.silent:
            return True
        if effect.disconnect:
            return False
        response = await self.engine.execute(unit, pdu)
        response.transaction_id = tid
        frame = self._framer.buildFrame(response)
        if effect.garbage:
            frame = garbage_bytes(self.rng, len(frame))
        elif effect.corrupt:
            frame = corrupt_tcp(frame)
        if effect.delay_s > 0:  # a delay past the idle time is silence: no client waits that long
            await asyncio.sleep(min(effect.delay_s, self.idle_s))
        if writer.is_closing():
            return False
        writer.write(frame)
        return True


class _SerialServer(ABC):
    """A serial line served one request at a time: bytes in, requests out by ``_split``, replies paced."""

    def __init__(self, port: SerialPort, world: SimWorld, baud: int, rng: random.Random) -> None:
        self.port = port
        self.world = world
        self.clock: Clock = world.clock
        self.baud = baud
        self.rng = rng
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._t_first = 0.0  # loop time the first byte of the pending request arrived
        self._line_free = 0.0  # loop time the previous reply was all on the wire (one reply at a time)
        self._queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._reading = False

    def start(self) -> None:
        self._loop.add_reader(self.port.fd, self._readable)
        self._reading = True
        self._task = self._loop.create_task(self._serve(), name=f"served {type(self).__name__}")

    async def stop(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.port.fd)
            self._reading = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.port.close()

    def _readable(self) -> None:
        try:
            data = self.port.read()
        except OSError as exc:  # the port went away (a USB adapter pulled out)
            log.warning("serial %s: %s; no longer reading", self.port.path, exc)
            self._loop.remove_reader(self.port.fd)
            self._reading = False
            return
        if not data:
            return
        if not self._buf:
            self._t_first = self._loop.time()
        self._buf += data
        self._received()

    @abstractmethod
    def _received(self) -> None:
        """Split the buffer into requests (framing is the protocol's) and ``_emit`` each."""

    def _emit(self, request: bytes) -> None:
        self._queue.put_nowait((request, self._t_first))
        self._t_first = self._loop.time()

    def _drop_input(self) -> None:
        """Disconnect: whatever is buffered or queued is lost."""
        self._buf.clear()
        self.port.drop_input()
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _serve(self) -> None:
        while True:
            request, t_first = await self._queue.get()
            try:
                await self._handle(request, t_first)
            except Exception:
                log.exception("serial %s: failed on %r", self.port.path, request[:64])

    @abstractmethod
    async def _handle(self, request: bytes, t_first: float) -> None:
        """Answer one request (paced, with the wire faults applied)."""

    async def _send(self, reply: bytes, due: float, effect: WireEffect, reply_s: float = 0.0) -> None:
        """Write ``reply`` at loop time ``due`` (the paced wire time) plus the link delay, and never sooner
        than ``reply_s`` (its own time on the wire) after the previous reply: pipelined requests get their
        replies one after another, as a wire carries them."""
        if self.port.pace:
            due = max(due, self._line_free + reply_s)
            self._line_free = due
        wait = due + effect.delay_s - self._loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self.port.write(reply)


class ModbusRtuServer(_SerialServer):
    """Modbus RTU as the spec frames it: a frame ends after a silence of t3.5; a silence over t1.5 inside a
    frame makes it invalid, and it is discarded (both fixed at 750 us / 1.75 ms above 19200 baud); replies
    are paced at 11 bits per character."""

    def __init__(self, engine: ModbusEngine, port: SerialPort, world: SimWorld, baud: int, rng: random.Random) -> None:
        super().__init__(port, world, baud, rng)
        self.engine = engine
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._t15_s, self._gap_s = rtu_intervals_s(baud)
        self._gap: asyncio.TimerHandle | None = None
        self._last_rx = 0.0  # loop time of the last bytes of the frame in progress
        self._broken = False  # a silence over t1.5 inside the frame in progress
        self.frames = 0  # frames ended by t3.5
        self.discarded = 0  # of which discarded for a gap over t1.5

    def _received(self) -> None:
        now = self._loop.time()
        if self._gap is not None:  # bytes of a frame in progress: the silence since its last bytes
            self._gap.cancel()
            if now - self._last_rx > self._t15_s:
                self._broken = True
        self._last_rx = now
        self._gap = self._loop.call_later(self._gap_s, self._end_of_frame)

    def _end_of_frame(self) -> None:
        self._gap = None
        if self._buf:
            frame = bytes(self._buf)
            self._buf.clear()
            self.frames += 1
            if self._broken:
                self.discarded += 1
            else:
                self._emit(frame)
        self._broken = False

    def _drop_input(self) -> None:
        if self._gap is not None:
            self._gap.cancel()
            self._gap = None
        self._broken = False
        super()._drop_input()

    async def _handle(self, frame: bytes, t_first: float) -> None:
        if len(frame) < 4 or not FramerRTU.check_CRC(frame[:-2], (frame[-2] << 8) | frame[-1]):
            return  # line noise: a slave ignores it
        unit, pdu = frame[0], frame[1:-2]
        if not self.engine.known(unit):
            return  # nobody on this bus has the address
        effect = wire_effect(self.world.faults, self.engine.targets(unit, pdu), self.clock.now())
        if effect.silent:
            return
        if effect.disconnect:
            self._drop_input()
            return
        response = await self.engine.execute(unit, pdu)
        reply = self._framer.buildFrame(response)
        if effect.garbage:
            reply = garbage_bytes(self.rng, len(reply))
        elif effect.corrupt:
            reply = corrupt_rtu(reply)
        due = t_first + rtu_wire_time(len(frame), len(reply), self.baud) if self.port.pace else 0.0
        await self._send(reply, due, effect)


class LineServer(_SerialServer):
    """A line protocol: one CR LF terminated request line, one reply line; paced at 10 bits per character."""

    def __init__(
        self,
        answer: Callable[[bytes], Awaitable[bytes]],
        target: str,
        port: SerialPort,
        world: SimWorld,
        baud: int,
        rng: random.Random,
    ) -> None:
        super().__init__(port, world, baud, rng)
        self.answer = answer
        self.target = target
        port.flush_unread = False  # pipelined requests each get their reply, in order

    def _received(self) -> None:
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            self._emit(line)
        if len(self._buf) > 4 * lineproto.MAX_LINE:  # no line end in sight: noise
            self._buf.clear()

    async def _handle(self, line: bytes, t_first: float) -> None:
        if not line.strip():
            return
        effect = wire_effect(self.world.faults, (self.target,), self.clock.now())
        if effect.silent:
            return
        if effect.disconnect:
            self._drop_input()
            return
        reply = await self.answer(line)
        if effect.garbage:
            reply = garbage_line(self.rng, len(reply))
        elif effect.corrupt:
            reply = corrupt_line(reply)
        due = t_first + line_wire_time(len(line), len(reply), self.baud) if self.port.pace else 0.0
        await self._send(reply, due, effect, line_wire_time(0, len(reply), self.baud))
