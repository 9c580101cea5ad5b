"""What the served simulators' wires do: link faults from the scenario, serial wire time, serial ports.

Link faults (``device = "link"``) act here, at the wire, so the production drivers see them exactly as they
would on a real bus; the device models behind the wire never block on them.

| kind         | Modbus TCP                               | Modbus RTU (pty)                   | line protocol (pty)   |
|--------------|------------------------------------------|------------------------------------|-----------------------|
| timeout      | no reply; the request never reaches the device (the connection stays open)                    |||
| delay        | the device acts at once; its reply leaves ``value`` ms later                                 |||
| corrupt      | MBAP protocol id 0xDEAD (TCP has no CRC) | CRC bytes inverted                 | checksum inverted     |
| garbage      | random bytes of the reply's length       | random bytes of the reply's length | a random-bytes line   |
| disconnect   | the connection is closed                 | no reply, buffered bytes dropped   | same as RTU           |

Corrupt and garbage replies come from a device that did act on the request (the damage is on the way back).
"""

from __future__ import annotations

import os
import random
import termios
import tty
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plasmactl.rig import rtu_char_s, rtu_intervals_s
from plasmactl.simulators.world import FaultSchedule

LINE_BITS_PER_CHAR = 10  # 8N1 ASCII: start + 8 data + stop


@dataclass(frozen=True)
class WireEffect:
    """What the active link faults do to one request and its reply."""

    silent: bool = False  # timeout: the request is lost before the device
    disconnect: bool = False
    delay_s: float = 0.0
    corrupt: bool = False
    garbage: bool = False

    @property
    def reaches_device(self) -> bool:
        return not (self.silent or self.disconnect)


NO_EFFECT = WireEffect()


def wire_effect(faults: FaultSchedule, targets: Iterable[str], t: float) -> WireEffect:
    """The combined effect of the link faults active at ``t`` on any of ``targets``; delays add up."""
    wanted = set(targets)
    kinds: set[str] = set()
    delay_ms = 0.0
    for item in faults.items:
        fault = item.fault
        if fault.device != "link" or fault.target not in wanted or not item.active(t):
            continue
        kinds.add(fault.kind)
        if fault.kind == "delay" and fault.value is not None:
            delay_ms += max(0.0, fault.value)
    if not kinds:
        return NO_EFFECT
    return WireEffect(
        silent="timeout" in kinds,
        disconnect="disconnect" in kinds,
        delay_s=delay_ms / 1000.0,
        corrupt="corrupt" in kinds,
        garbage="garbage" in kinds,
    )


def rtu_wire_time(request_bytes: int, reply_bytes: int, baud: int) -> float:
    """Request on the wire, its silent interval, the reply, and the reply's silent interval (seconds)."""
    return (request_bytes + reply_bytes) * rtu_char_s(baud) + 2 * rtu_intervals_s(baud)[1]


def line_wire_time(request_bytes: int, reply_bytes: int, baud: int) -> float:
    """An ASCII request line and its reply line on an 8N1 wire (seconds)."""
    return (request_bytes + reply_bytes) * LINE_BITS_PER_CHAR / baud


# ------------------------------------------------------------------------------------------ damage


def corrupt_rtu(frame: bytes) -> bytes:
    """The same frame with its CRC inverted: always fails the check."""
    return frame[:-2] + bytes(b ^ 0xFF for b in frame[-2:])


def corrupt_tcp(frame: bytes) -> bytes:
    """The same frame with a damaged MBAP protocol id (both bytes non-zero, so every client notices)."""
    return frame[:2] + b"\xde\xad" + frame[4:]


def corrupt_line(line: bytes) -> bytes:
    """The same ``$BODY*CS\\r\\n`` line with its checksum inverted (still two hex digits)."""
    star = line.rfind(b"*")
    if star < 0 or len(line) < star + 3:
        return line
    cs = int(line[star + 1 : star + 3], 16) ^ 0xFF
    return line[: star + 1] + f"{cs:02X}".encode("ascii") + line[star + 3 :]


def garbage_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(max(1, n)))


def garbage_line(rng: random.Random, n: int) -> bytes:
    """Random bytes without a line end, then CR LF: one line that is not a frame."""
    body = bytes(b for b in garbage_bytes(rng, max(1, n - 2) * 2) if b not in (0x0A, 0x0D))
    return body[: max(1, n - 2)] + b"\r\n"


# ------------------------------------------------------------------------------------------- ports


class SerialPort:
    """The server's end of a serial line: a pty pair it created, or a port it was given.

    For a pty pair the server holds the master and also keeps the slave open (so the master never reads
    EIO while no client is attached); ``path`` is the slave, where clients connect. The pty carries bytes
    instantly, so ``pace`` is True and the servers add the wire time themselves. A given port that is a
    real UART is paced by the hardware (``pace`` False); a given pty (``/dev/pts/N``) is paced like ours.
    """

    def __init__(self, fd: int, path: str, *, pace: bool, slave_fd: int | None = None, owner: Any = None) -> None:
        self.fd = fd
        self.path = path
        self.pace = pace
        self._slave_fd = slave_fd
        self._owner = owner  # a pyserial Serial keeping a given port open
        self.closed = False
        # Drop what the client has not read before each reply (the RTU bus: a late reply never waits in the
        # client's buffer to be taken for the next one). A line protocol keeps them: a wire does not drop.
        self.flush_unread = True

    @classmethod
    def open(cls, spec: str | bool, baud: int) -> SerialPort:
        """``True``: a new pty pair; a string: that port (a serial device or a pty)."""
        if spec is True:
            master, slave = os.openpty()
            tty.setraw(slave)  # clients normally set raw mode themselves; a bare `cat` gets it too
            os.set_blocking(master, False)
            return cls(master, os.ttyname(slave), pace=True, slave_fd=slave)
        if not isinstance(spec, str) or not spec:
            raise ValueError(f"not a serial port: {spec!r}")
        import serial

        ser = serial.Serial(spec, baudrate=baud, timeout=0)
        fd = int(ser.fileno())
        os.set_blocking(fd, False)
        pace = str(Path(spec).resolve()).startswith("/dev/pts/")
        return cls(fd, spec, pace=pace, owner=ser)

    def read(self) -> bytes:
        """What is waiting (b"" if nothing); never blocks."""
        try:
            return os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""

    def write(self, data: bytes) -> None:
        """Write a reply; with ``flush_unread``, stale bytes the client never read are flushed first (they
        belong to an old reply)."""
        if self._slave_fd is not None and self.flush_unread:
            termios.tcflush(self._slave_fd, termios.TCIFLUSH)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except (BlockingIOError, InterruptedError):
                return  # the client is not reading: a real wire would lose the bytes too
            view = view[n:]

    def drop_input(self) -> None:
        """Discard whatever is buffered towards the server."""
        while self.read():
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._owner is not None:
            self._owner.close()
        else:
            os.close(self.fd)
        if self._slave_fd is not None:
            os.close(self._slave_fd)
