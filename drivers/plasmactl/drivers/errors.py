"""Typed driver errors.

All of them are :class:`plasmactl.ports.DeviceError`, so the controller's existing handling (a comm error
counted, the watchdog tripping on silence, a refused start) covers them without knowing about wires.
"""

from __future__ import annotations

from collections.abc import Mapping

from plasmactl.ports import DeviceError

from .diagnosis import exception_hint, identity_hint

__all__ = [
    "BadChecksum",
    "DeviceError",
    "DeviceTimeout",
    "ErrorReply",
    "ExceptionResponse",
    "IdentityMismatch",
    "LinkDown",
]

MODBUS_EXCEPTIONS: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


class DeviceTimeout(DeviceError):
    """No (valid) reply within the request timeout, after the bounded retries."""

    def __init__(self, device: str, attempts: int, timeout_s: float, what: str = "request") -> None:
        super().__init__(device, f"no reply to {what} after {attempts} attempt(s) of {timeout_s * 1000:g} ms")
        self.attempts = attempts
        self.timeout_s = timeout_s


class ExceptionResponse(DeviceError):
    """The Modbus device answered with an exception response; ``code`` is the exception code."""

    def __init__(self, device: str, function_code: int, exception_code: int, what: str = "request") -> None:
        name = MODBUS_EXCEPTIONS.get(exception_code, "unknown exception") + exception_hint(exception_code, device)
        super().__init__(device, f"{what}: exception response to FC{function_code}: {name}", exception_code)
        self.function_code = function_code
        self.exception_code = exception_code


class ErrorReply(DeviceError):
    """A line-protocol device answered ``$ERR,<code>,<text>``; ``code`` is the device's error code."""

    def __init__(self, device: str, code: int, text: str) -> None:
        super().__init__(device, f"error reply: {text}", code)
        self.text = text


class BadChecksum(DeviceError):
    """A reply that failed its checksum, or garbage / a reply that does not answer the request."""


class IdentityMismatch(DeviceError):
    """The device's identity is not the one the rig expects: the session must not start."""

    def __init__(self, device: str, expected: Mapping[str, object], found: Mapping[str, object]) -> None:
        diff = [k for k in expected if expected[k] != found.get(k)]
        exp = ", ".join(f"{k}={_fmt(expected[k])}" for k in diff)
        got = ", ".join(f"{k}={_fmt(found.get(k))}" for k in diff)
        hint = identity_hint(expected.get("model"), found.get("model"), device)
        super().__init__(device, f"identity mismatch: expected {exp}, found {got}{hint}")
        self.expected = dict(expected)
        self.found = dict(found)


class LinkDown(DeviceError):
    """The link is not connected (or is reconnecting): the request was not sent."""


def _fmt(value: object) -> str:
    return f"0x{value:04X}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)
