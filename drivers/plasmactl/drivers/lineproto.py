"""The skin thermometer's ASCII line protocol, declared once for the driver and the simulator.

Frames are NMEA-style: ``$BODY*CS\\r\\n`` where CS is the XOR of the bytes of BODY as two upper-case hex
digits. BODY is comma-separated fields, the first the command or reply tag.

| request | reply | meaning |
|---|---|---|
| ``$ID`` | ``$ID,<vendor>,<model>,<firmware>,<map>`` | identity |
| ``$T`` | ``$T,<seq>,<age_ms>,<celsius>`` | latest sample: counter, its age at reply time, value (0.01 C) |
| ``$P`` | ``$P,<sample_ms>`` | sample period |
| any bad | ``$ERR,<code>,<text>`` | 1 bad checksum, 2 unknown command, 3 no sample yet, 4 malformed |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

VENDOR = "PLASMACTL"
MODEL = "IRT-1"
FIRMWARE = "1.0.0"
MAP_VERSION = "1"
MAX_LINE = 128  # bytes; a longer line is garbage


class ErrorCode(IntEnum):
    BAD_CHECKSUM = 1
    UNKNOWN_COMMAND = 2
    NO_SAMPLE = 3
    MALFORMED = 4


class FrameError(ValueError):
    """A line that is not a valid frame (bad framing or checksum); ``code`` says which."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def checksum(body: bytes) -> int:
    cs = 0
    for b in body:
        cs ^= b
    return cs


def encode(*fields: str) -> bytes:
    body = ",".join(fields).encode("ascii")
    return b"$" + body + b"*" + f"{checksum(body):02X}".encode("ascii") + b"\r\n"


def decode(line: bytes) -> list[str]:
    """A received line (with or without CR LF) -> its fields; FrameError when framing or checksum is wrong."""
    line = line.rstrip(b"\r\n")
    if len(line) > MAX_LINE:
        raise FrameError(ErrorCode.MALFORMED, f"line of {len(line)} bytes is too long")
    if not line.startswith(b"$") or len(line) < 4 or line[-3:-2] != b"*":
        raise FrameError(ErrorCode.MALFORMED, f"not a $...*CS frame: {line[:40]!r}")
    body, cs_text = line[1:-3], line[-2:]
    try:
        cs = int(cs_text.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise FrameError(ErrorCode.MALFORMED, f"checksum {cs_text!r} is not hex") from None
    if cs != checksum(body):
        raise FrameError(ErrorCode.BAD_CHECKSUM, f"checksum {cs:02X} does not match {checksum(body):02X}")
    try:
        return body.decode("ascii").split(",")
    except UnicodeDecodeError:
        raise FrameError(ErrorCode.MALFORMED, "non-ASCII bytes in the frame") from None


@dataclass(frozen=True)
class Sample:
    seq: int
    age_ms: int
    celsius: float


def encode_sample(s: Sample) -> bytes:
    return encode("T", str(s.seq), str(s.age_ms), f"{s.celsius:.2f}")


def decode_sample(fields: list[str]) -> Sample:
    if len(fields) != 4 or fields[0] != "T":
        raise FrameError(ErrorCode.MALFORMED, f"not a sample reply: {fields!r}")
    try:
        return Sample(int(fields[1]), int(fields[2]), float(fields[3]))
    except ValueError:
        raise FrameError(ErrorCode.MALFORMED, f"bad sample fields: {fields!r}") from None


def encode_error(code: ErrorCode, text: str) -> bytes:
    # the text is a field: no separator, no checksum marker, and no frame start (a reader syncs on the last "$")
    return encode("ERR", str(int(code)), text.replace(",", ";").replace("*", "x").replace("$", "S")[:60])
