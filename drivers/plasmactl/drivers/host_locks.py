"""One controller per device on this host: each endpoint a session talks to (a Modbus TCP address, a serial
port or RS-485 bus) is locked for the session's length, so a second ``plasmactl run`` on the same rig is
refused before it sends a single request, with a message naming the session that holds it.

The locks are ``flock`` locks on files in ``PLASMACTL_LOCK_DIR`` (default: ``plasmactl-locks`` in the
system's temporary directory): the kernel releases them when their process ends, however it ends (SIGKILL
included), so a crashed session never leaves a device locked. They protect against a second controller on
the same host; controllers on other hosts need the device itself to refuse them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from plasmactl.ports import DeviceError


class EndpointBusy(DeviceError):
    """Another session on this host holds the endpoint: nothing was sent to it."""


def lock_dir() -> Path:
    return Path(os.environ.get("PLASMACTL_LOCK_DIR") or Path(tempfile.gettempdir()) / "plasmactl-locks")


def tcp_key(host: str, port: int) -> str:
    """One name per TCP endpoint, whatever spelling of the host reaches it (localhost, 127.0.0.1)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = sorted(str(info[4][0]) for info in infos)[0]
    except (OSError, IndexError):
        address = host
    return f"tcp {address} {port}"


def serial_key(path: str) -> str:
    """One name per serial port, whatever link or alias reaches it (URLs such as socket:// as given)."""
    return f"serial {path if '://' in path else os.path.realpath(path)}"


class HostLocks:
    """The endpoint locks of one session; ``holder`` says who holds them (shown to a refused session)."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self._held: dict[str, int] = {}

    def acquire(self, device: str, key: str) -> None:
        if key in self._held:
            return  # two devices behind one endpoint (plasma and safety on unit 1, one RS-485 bus)
        directory = lock_dir()
        try:
            directory.mkdir(mode=0o777, parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")
            fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise DeviceError(device, f"cannot lock {key} for this session in {directory}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _holder(fd)
            os.close(fd)
            raise EndpointBusy(
                device, f"{key} is in use by another plasmactl session ({other or 'holder unknown'}); nothing sent"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.holder}, pid {os.getpid()}, since {time.strftime('%H:%M:%S')}".encode())
        self._held[key] = fd

    def release(self) -> None:
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.close(fd)  # closing the descriptor releases the lock
        self._held.clear()


HOLDER_WAIT_S = 0.5  # a holder writes its name right after it takes the lock: this long to see it


def _holder(fd: int) -> str:
    """The holder's name; a lock taken an instant ago may not carry it yet (taken, then written)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while not (other := _read(fd)) and time.monotonic() < deadline:
        time.sleep(0.005)
    return other


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    return ""
