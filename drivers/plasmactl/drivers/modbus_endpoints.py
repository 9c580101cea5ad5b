"""Where a Modbus link goes (a TCP endpoint or an RTU bus), how each request on it is bounded, and what the
link counts: plain values the drivers, the probe and the tests share."""

from __future__ import annotations

from dataclasses import dataclass

from plasmactl.rig import ModbusRtu, ModbusTcp


@dataclass(frozen=True)
class TcpEndpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class RtuEndpoint:
    path: str  # a serial device, a pty, or any pyserial URL (e.g. socket://host:port)
    baud: int = 115200
    parity: str = "N"
    stopbits: int = 1

    def __str__(self) -> str:
        return f"rtu:{self.path}@{self.baud}/{self.parity}{self.stopbits}"


Endpoint = TcpEndpoint | RtuEndpoint


def endpoint_for(cfg: ModbusTcp | ModbusRtu, port: str | None = None) -> Endpoint:
    """The endpoint a device's rig entry names; ``port`` replaces an RTU ``port`` (a resolved "@rtu")."""
    if isinstance(cfg, ModbusTcp):
        return TcpEndpoint(cfg.host, cfg.port)
    path = port if port is not None else cfg.port
    if path.startswith("@"):
        raise ValueError(f"RTU port {path!r} is a placeholder: give the served port's real path")
    return RtuEndpoint(path, cfg.baud, cfg.parity, cfg.stopbits)


@dataclass(frozen=True)
class RequestPolicy:
    """Per request: each attempt waits ``timeout_s``; ``retries`` more attempts follow a silent one."""

    timeout_s: float
    retries: int

    @classmethod
    def of(cls, cfg: ModbusTcp | ModbusRtu) -> RequestPolicy:
        return cls(cfg.timeout_ms / 1000.0, cfg.retries)


@dataclass
class LinkStats:
    requests: int = 0
    attempts: int = 0
    timeouts: int = 0  # attempts without a reply in time
    bad_replies: int = 0  # replies that did not answer the request (stale, wrong function or length)
    exceptions: int = 0  # exception responses
    disconnects: int = 0
    reconnects: int = 0
    quiet_waits: int = 0  # RTU: requests that waited for a late reply's time after a timeout
