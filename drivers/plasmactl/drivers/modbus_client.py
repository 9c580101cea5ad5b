"""The pymodbus client of a :class:`~plasmactl.drivers.modbus.ModbusLink`, built with its own retries and
reconnection off (the link does both), and made unable to raise inside the event loop.

pymodbus 3.16 decodes a reply inside ``data_received``: a frame it cannot decode (an unknown function code,
a byte count larger than the data) raises there, asyncio logs "Fatal error: protocol.data_received() call
failed" with a traceback and closes the connection, and the request in flight only ends by its timeout.
Here such a frame is dropped and the request in flight fails at once with :class:`UndecodableReply`, which
the link reports as a reply that does not answer the request.
"""

from __future__ import annotations

import logging
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

_log = logging.getLogger(__name__)

# pymodbus logs every error it sees through its "pymodbus" logger, with a dump of its last frames (">>>>>
# send: 0x1 0x24 ..."); with no handler configured Python prints those on stderr, past --quiet and --json
# (438 frame lines for one session against a server answering with wrong transaction ids). The link turns
# each failure into a typed DeviceError that the log and the console name, so pymodbus's own records stop
# here: an application that wants them attaches a handler to "pymodbus" itself.
_PYMODBUS_LOG = logging.getLogger("pymodbus")
_PYMODBUS_LOG.addHandler(logging.NullHandler())
_PYMODBUS_LOG.propagate = False

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class UndecodableReply(Exception):
    """What arrived was not a Modbus reply pymodbus could decode (the request in flight gets this)."""


def tcp_client(host: str, port: int, timeout_s: float, **kw: Any) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(host, port=port, reconnect_delay=0, timeout=timeout_s, retries=0, **kw)
    _guard_decoding(client)
    return client


def rtu_client(
    path: str, baud: int, parity: str, stopbits: int, timeout_s: float, **kw: Any
) -> AsyncModbusSerialClient:
    client = AsyncModbusSerialClient(
        path,
        framer=FramerType.RTU,
        baudrate=baud,
        parity=parity,
        stopbits=stopbits,
        reconnect_delay=0,
        timeout=timeout_s,
        retries=0,
        **kw,
    )
    _guard_decoding(client)
    return client


def set_reply_timeout(client: Client, seconds: float) -> None:
    """pymodbus 3.16 bounds connecting and each reply by ``comm_params.timeout_connect``; the transaction
    manager holds its own copy of the parameters, so both are set."""
    client.comm_params.timeout_connect = seconds
    client.ctx.comm_params.timeout_connect = seconds


def _guard_decoding(client: Client) -> None:
    ctx = client.ctx
    decode = ctx.callback_data

    def callback_data(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        try:
            used: int = decode(data, addr)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: the bytes are dropped, the caller told
            _log.warning("%s: undecodable reply dropped (%s): %s", client.comm_params.comm_name, exc, data[:64].hex())
            future = ctx.response_future
            if not future.done():
                future.set_exception(UndecodableReply(str(exc)))
            return len(data)
        return used

    ctx.callback_data = callback_data  # type: ignore[method-assign]
