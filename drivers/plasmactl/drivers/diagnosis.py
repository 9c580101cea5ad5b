"""Why a device could not be reached, in words that point at the rig field to check.

pymodbus reports a failed connect as ``False``; the reason (nothing listening, no such host, no such serial
device, no permission) is found again here with one plain attempt of our own, so the message a bench
engineer reads says what to fix.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from pathlib import Path

from .registers import PLASMA, SPRAY

MODEL_NAMES = {PLASMA.model: "the plasma generator", SPRAY.model: "the spray unit"}


async def tcp_reason(host: str, port: int, device: str, timeout_s: float = 0.5) -> str:
    try:
        await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"unknown host {host!r} ({exc.strerror}); check {device}.host"
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return f"connection refused: nothing listens on {host}:{port}; check {device}.port and that it is on"
    except TimeoutError:
        return f"no answer from {host} within {timeout_s * 1000:g} ms; check {device}.host, the cable or network"
    except OSError as exc:
        return f"{exc.strerror or exc}; check {device}.host and {device}.port"
    writer.close()
    return "the connection was accepted now but not when it was asked for (the device may have just come up)"


def serial_reason(path: str, device: str) -> str:
    if "://" in path:
        return f"cannot open {path}; check {device}.port"
    if not Path(path).exists():
        return f"no such device {path}; check {device}.port (is the adapter plugged in?)"
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        return f"permission denied on {path}; add the user to the group that owns it (often 'dialout')"
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return f"{path} is busy (another program holds it)"
        return f"cannot open {path}: {exc.strerror}; check {device}.port"
    try:
        if not os.isatty(fd):  # /dev/null, a regular file: it opens, but no serial settings apply to it
            return f"{path} is not a serial device (not a tty); check {device}.port"
    finally:
        os.close(fd)
    return f"{path} opens now but did not when it was asked for"


def exception_hint(exception_code: int, device: str) -> str:
    """What a gateway's exception means for the rig file."""
    if exception_code == 0x0B:
        return f" (nothing answers this unit id behind the gateway: check {device}.unit_id)"
    if exception_code == 0x0A:
        return " (the gateway has no path to the device: check its bus wiring and configuration)"
    if exception_code == 0x01:
        return (
            " (on a map v2 device: the write did not carry the owner's token; another controller owns it, or"
            " the lease lapsed)"
        )
    return ""


def identity_hint(expected_model: object, found_model: object, device: str) -> str:
    """A model that belongs to another device of the rig means swapped unit ids (or ports)."""
    if found_model != expected_model and found_model in MODEL_NAMES:
        return f"; that is {MODEL_NAMES[found_model]}'s model: are the unit ids (or ports) of {device} and it swapped?"
    return ""
