"""A request/reply link for the thermometer's ASCII line protocol (:mod:`plasmactl.drivers.lineproto`).

A reader task splits what arrives into lines and stamps each with the clock time it arrived. A request
first throws away whatever is queued (stray bytes, late replies to a timed-out request), then sends one
frame and waits for the reply whose tag it expects: garbage before it is skipped (a frame starts at its
last ``$``), a valid frame with another tag is skipped, a bad checksum ends the attempt, ``$ERR`` raises
:class:`ErrorReply`. Each attempt waits ``timeout_s`` inside :func:`plasmactl.clock.io_hold`; ``retries``
more attempts follow. A port that goes away (EOF, I/O error) is reopened in the background with
exponential backoff while requests fail fast with :class:`LinkDown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import serial_asyncio_fast

from plasmactl.clock import io_hold

from . import lineproto
from .diagnosis import serial_reason
from .errors import BadChecksum, DeviceTimeout, ErrorReply, LinkDown
from .modbus import DEFAULT_POLICY, RequestPolicy

__all__ = ["LineLink", "LineStats"]

_log = logging.getLogger(__name__)

_LIMIT = 4 * lineproto.MAX_LINE  # a longer run of bytes without a newline is discarded as garbage


@dataclass
class LineStats:
    requests: int = 0
    attempts: int = 0
    timeouts: int = 0
    bad_checksums: int = 0
    garbage: int = 0  # lines (or runs of bytes) that were not frames, and frames with an unexpected tag
    flushed: int = 0  # lines thrown away before a request was sent
    disconnects: int = 0
    reconnects: int = 0


_Line = tuple[bytes, float] | None  # (line, arrival time); None: the port went away


class LineLink:
    """One serial port (or pty) speaking the line protocol; one request at a time."""

    def __init__(
        self,
        url: str,
        baud: int,
        now: Callable[[], float],
        *,
        policy: RequestPolicy = DEFAULT_POLICY,
        reconnect_max_s: float = 2.0,
        reconnect_min_s: float = 0.05,
        name: str = "thermometer",
    ) -> None:
        self.url = url
        self.baud = baud
        self.policy = policy
        self.reconnect_max_s = reconnect_max_s
        self.reconnect_min_s = min(reconnect_min_s, reconnect_max_s)
        self.name = name
        self.stats = LineStats()
        self._now = now
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[_Line] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._up = False
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._up

    async def open(self) -> None:
        if self._up:
            return
        if not await self._open_once():
            raise LinkDown(self.name, f"cannot open {self.url}: {serial_reason(self.url, self.name)}")

    async def _open_once(self) -> bool:
        try:
            with io_hold():
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.url, baudrate=self.baud, limit=_LIMIT
                )
        except OSError as exc:  # serial.SerialException is an OSError
            _log.debug("open %s failed: %s", self.url, exc)
            return False
        if self._closing:
            writer.close()
            return False
        self._writer = writer
        self._queue = asyncio.Queue()
        self._up = True
        self._reader_task = asyncio.get_running_loop().create_task(self._read_lines(reader), name=f"read {self.url}")
        return True

    async def _read_lines(self, reader: asyncio.StreamReader) -> None:
        queue = self._queue
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as exc:
                    await reader.readexactly(exc.consumed)  # no newline in sight: garbage
                    self.stats.garbage += 1
                    continue
                queue.put_nowait((line, self._now()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - EOF, I/O error, whatever: the port is gone, reopen it
            queue.put_nowait(None)
            self._lost(f"{type(exc).__name__}: {exc}")

    def _lost(self, reason: str) -> None:
        if not self._up:
            return
        self._up = False
        self.stats.disconnects += 1
        _log.warning("serial link %s down: %s", self.url, reason)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._closing and self._reconnect_task is None:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(), name=f"reopen {self.url}")

    async def _reconnect(self) -> None:
        delay = self.reconnect_min_s
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                if await self._open_once():
                    self.stats.reconnects += 1
                    return
                delay = min(2 * delay, self.reconnect_max_s)
        finally:
            self._reconnect_task = None

    async def close(self) -> None:
        self._closing = True
        self._up = False
        for task in (self._reconnect_task, self._reader_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._queue.put_nowait(None)

    async def request(
        self, fields: tuple[str, ...], expect: str, *, policy: RequestPolicy | None = None
    ) -> tuple[list[str], float]:
        """Send one frame; the fields of the reply tagged ``expect``, and the clock time it arrived."""
        pol = policy if policy is not None else self.policy
        frame = lineproto.encode(*fields)
        what = f"${fields[0]}"
        async with self._lock:
            self.stats.requests += 1
            bad: str | None = None
            for _ in range(pol.retries + 1):
                writer = self._writer
                if not self._up or writer is None:
                    raise LinkDown(self.name, f"{self.url} is down (reopening); {what} not sent")
                queue = self._queue
                self._flush(queue)
                self.stats.attempts += 1
                writer.write(frame)
                try:
                    with io_hold():
                        async with asyncio.timeout(pol.timeout_s):
                            return await self._reply(queue, expect, what)
                except TimeoutError:
                    self.stats.timeouts += 1
                    bad = None
                except _Garbled as exc:
                    self.stats.bad_checksums += 1
                    bad = str(exc)
            if bad is not None:
                raise BadChecksum(self.name, f"{what}: {bad}")
            raise DeviceTimeout(self.name, pol.retries + 1, pol.timeout_s, what)

    def _flush(self, queue: asyncio.Queue[_Line]) -> None:
        while not queue.empty():
            item = queue.get_nowait()
            if item is None:
                queue.put_nowait(None)  # keep the loss visible
                return
            self.stats.flushed += 1

    async def _reply(self, queue: asyncio.Queue[_Line], expect: str, what: str) -> tuple[list[str], float]:
        while True:
            item = await queue.get()
            if item is None:
                queue.put_nowait(None)
                raise LinkDown(self.name, f"{self.url} went away during {what}")
            line, t = item
            start = line.rfind(b"$")
            if start < 0:
                self.stats.garbage += 1
                continue
            try:
                fields = lineproto.decode(line[start:])
            except lineproto.FrameError as exc:
                if exc.code == lineproto.ErrorCode.BAD_CHECKSUM:
                    raise _Garbled(str(exc)) from None
                self.stats.garbage += 1
                continue
            tag = fields[0]
            if tag == expect:
                return fields, t
            if tag == "ERR":
                code, text = _error_fields(fields)
                if code == lineproto.ErrorCode.BAD_CHECKSUM:
                    raise _Garbled(f"the device received a garbled request ({text})")
                raise ErrorReply(self.name, code, text)
            self.stats.garbage += 1  # a valid frame that does not answer this request


class _Garbled(Exception):
    pass


def _error_fields(fields: list[str]) -> tuple[int, str]:
    try:
        code = int(fields[1])
    except (IndexError, ValueError):
        code = 0
    text = ",".join(fields[2:]) if len(fields) > 2 else "error"
    return code, text
