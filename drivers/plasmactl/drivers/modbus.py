"""One Modbus link (a TCP endpoint or an RTU bus) shared by the device drivers behind it.

Every request has its own timeout and bounded retries (pymodbus' own retries are off), runs inside
:func:`plasmactl.clock.io_hold` so it also works on the virtual-time loop, checks that the reply answers the
request (a late reply to an earlier, timed-out request on an RTU bus must not be taken for this one), and
fails with a typed :mod:`plasmactl.drivers.errors` error. A lost connection is re-established in the
background with exponential backoff (capped at ``reconnect_max_s``) while requests fail fast with
:class:`LinkDown`: a driver never blocks the controller for longer than its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from plasmactl import bus_priority
from plasmactl.clock import io_hold

from .diagnosis import serial_reason, tcp_reason
from .errors import BadChecksum, DeviceError, DeviceTimeout, ExceptionResponse, LinkDown
from .modbus_client import Client, UndecodableReply, rtu_client, set_reply_timeout, tcp_client
from .modbus_endpoints import Endpoint, LinkStats, RequestPolicy, RtuEndpoint, TcpEndpoint, endpoint_for
from .priority_gate import PriorityGate

# fmt: off
__all__ = ["DEFAULT_POLICY", "Endpoint", "LinkStats", "ModbusLink", "RequestPolicy", "RtuEndpoint", "TcpEndpoint",
           "TracePacket", "endpoint_for"]
# fmt: on

_log = logging.getLogger(__name__)

TracePacket = Callable[[bool, bytes], bytes]

FC_READ_HOLDING = 3
FC_WRITE_SINGLE = 6
FC_WRITE_MULTIPLE = 16


DEFAULT_POLICY = RequestPolicy(0.05, 1)  # the rig's defaults for a device on a wire
LATE_REPLY_GRACE_S = 0.010  # RTU: after a timeout, the line is quiet this long (at most the timeout) first


class _AttemptTimeout(Exception):
    pass


class _Lost(Exception):
    pass


class _Undecodable(Exception):
    pass


class ModbusLink:
    """A pymodbus async client for one endpoint, with typed errors, bounded retries and reconnection."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        policy: RequestPolicy = DEFAULT_POLICY,
        reconnect_max_s: float = 2.0,
        reconnect_min_s: float = 0.05,
        connect_timeout_s: float = 1.0,
        max_silent: int = 3,
        name: str | None = None,
        trace_packet: TracePacket | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.reconnect_max_s = reconnect_max_s
        self.reconnect_min_s = min(reconnect_min_s, reconnect_max_s)
        self.connect_timeout_s = connect_timeout_s
        self.max_silent = max_silent  # TCP: this many requests in a row without a reply drop the connection
        self.name = name if name is not None else str(endpoint)
        self.stats = LinkStats()
        self._trace_packet = trace_packet
        self._client: Client | None = None
        self._up = False
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._open_lock = asyncio.Lock()
        self._silent = 0
        self._gate = PriorityGate()  # the order requests reach the wire in: see plasmactl.bus_priority
        # RTU has no transaction id: after a timeout the line goes quiet first, so a reply that was only late
        # lands while nothing is pending (pymodbus drops it), not as the next answer (later: still refused)
        self._quiet_until = 0.0

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._up

    def _make_client(self) -> Client:
        # pymodbus' own timeout only bounds connecting (each request attempt is bounded here, shorter);
        # its retries and its automatic reconnection are off: both are done here.
        timeout = max(self.connect_timeout_s, 2 * self.policy.timeout_s)
        ep, trace = self.endpoint, {"trace_packet": self._trace_packet, "trace_connect": self._on_trace_connect}
        if isinstance(ep, TcpEndpoint):
            return tcp_client(ep.host, ep.port, timeout, name=self.name, **trace)
        return rtu_client(ep.path, ep.baud, ep.parity, ep.stopbits, timeout, name=self.name, **trace)

    async def open(self, device: str | None = None) -> None:
        """Connect now (idempotent); :class:`LinkDown` if the endpoint cannot be reached."""
        async with self._open_lock:
            if self._up:
                return
            if self._closing:
                raise LinkDown(device or self.name, f"{self.endpoint} is closed")
            if self._reconnect_task is not None:
                raise LinkDown(device or self.name, f"{self.endpoint} is down (reconnecting)")
            if self._client is None:
                self._client = self._make_client()
            if not await self._connect_once():
                who = device or self.name
                ep = self.endpoint
                if isinstance(ep, TcpEndpoint):
                    why = await tcp_reason(ep.host, ep.port, who)
                else:
                    why = serial_reason(ep.path, who)
                raise LinkDown(who, f"cannot connect to {ep}: {why}")

    async def _connect_once(self) -> bool:
        client = self._client
        assert client is not None
        set_reply_timeout(client, max(self.connect_timeout_s, 2 * self.policy.timeout_s))
        try:
            with io_hold():
                ok = await client.connect()
        except (OSError, ModbusException) as exc:
            _log.debug("connect to %s failed: %s", self.endpoint, exc)
            ok = False
        if self._closing:
            client.close()  # closed while connecting: leave nothing open behind
            return False
        if not ok or not client.connected:
            return False
        # Connected: pymodbus' own reply wait ends with ours (no orphaned wait_for left behind).
        set_reply_timeout(client, self.policy.timeout_s)
        self._up = True
        self._silent = 0
        return True

    def _on_trace_connect(self, up: bool) -> None:
        """pymodbus reports a (dis)connection; a loss we did not ask for starts the reconnection."""
        if not up:
            self._mark_down("connection lost")

    def _mark_down(self, reason: str) -> None:
        if not self._up:
            return
        self._up = False
        self.stats.disconnects += 1
        _log.warning("modbus link %s down: %s", self.endpoint, reason)
        if not self._closing and self._reconnect_task is None:
            self._reconnect_task = asyncio.get_running_loop().create_task(
                self._reconnect(), name=f"reconnect {self.endpoint}"
            )

    def _drop(self, reason: str) -> None:
        """Close a connection that no longer answers; the background task opens a new one."""
        if self._client is not None:
            self._client.close()
        self._mark_down(reason)

    async def _reconnect(self) -> None:
        delay = self.reconnect_min_s
        try:
            while not self._closing:
                if self._client is not None:
                    self._client.close()  # a clean slate: no half-closed transport, no serial lock held
                if await self._connect_once():
                    self.stats.reconnects += 1
                    _log.warning("modbus link %s up again", self.endpoint)
                    return
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.reconnect_max_s)
        finally:
            self._reconnect_task = None

    async def close(self) -> None:
        self._closing = True
        task = self._reconnect_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._up = False
        if self._client is not None:
            self._client.close()

    # ------------------------------------------------------------------ requests

    async def read(
        self,
        unit: int,
        address: int,
        count: int,
        *,
        policy: RequestPolicy | None = None,
        device: str | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> list[int]:
        """Read ``count`` holding registers (FC3) from ``address`` of ``unit``. ``on_send`` is called as the
        request goes on the wire (its turn on the link come; again at a retry): what the reply holds is no
        older than that moment."""

        def check(rr: ModbusPDU) -> str | None:
            if rr.function_code != FC_READ_HOLDING or len(rr.registers) != count:
                return f"FC{rr.function_code} with {len(rr.registers)} registers"
            return None

        def send(client: Client) -> Awaitable[ModbusPDU]:
            return client.read_holding_registers(address, count=count, device_id=unit)

        what = f"read {address}+{count} @{unit}"
        rr = await self._request(send, check, FC_READ_HOLDING, what, policy, device, on_send)
        return list(rr.registers)

    async def write(
        self,
        unit: int,
        address: int,
        values: Sequence[int],
        *,
        policy: RequestPolicy | None = None,
        device: str | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> None:
        """Write holding registers: FC6 for one value, FC16 (one request) for several (``on_send``: as for
        :meth:`read`)."""
        words = [int(v) for v in values]
        if not words:
            raise ValueError("nothing to write")
        if any(not 0 <= w <= 0xFFFF for w in words):
            raise ValueError(f"register values must be 16-bit: {words!r}")
        if len(words) == 1:
            fc = FC_WRITE_SINGLE

            def check(rr: ModbusPDU) -> str | None:
                if rr.function_code != fc or rr.address != address or list(rr.registers) != words:
                    return f"FC{rr.function_code} at {rr.address}"
                return None

            def send(client: Client) -> Awaitable[ModbusPDU]:
                return client.write_register(address, words[0], device_id=unit)

        else:
            fc = FC_WRITE_MULTIPLE

            def check(rr: ModbusPDU) -> str | None:
                if rr.function_code != fc or rr.address != address or rr.count != len(words):
                    return f"FC{rr.function_code} at {rr.address} count {rr.count}"
                return None

            def send(client: Client) -> Awaitable[ModbusPDU]:
                return client.write_registers(address, words, device_id=unit)

        await self._request(send, check, fc, f"write {address}={words} @{unit}", policy, device, on_send)

    async def _request(
        self,
        send: Callable[[Client], Awaitable[ModbusPDU]],
        check: Callable[[ModbusPDU], str | None],
        fc: int,
        what: str,
        policy: RequestPolicy | None,
        device: str | None,
        on_send: Callable[[], None] | None = None,
    ) -> ModbusPDU:
        pol = policy if policy is not None else self.policy
        who = device if device is not None else self.name
        self.stats.requests += 1
        attempts = pol.retries + 1
        bad: str | None = None
        for _ in range(attempts):
            client = self._client
            if not self._up or client is None:
                raise LinkDown(who, f"{self.endpoint} is down (reconnecting); {what} not sent")
            self.stats.attempts += 1
            try:
                async with self._gate.hold(bus_priority.current()):
                    with io_hold():
                        await self._let_line_go_quiet()
                        if on_send is not None:
                            on_send()
                        rr = await self._attempt(send, client, pol.timeout_s)
            except _AttemptTimeout:
                self.stats.timeouts += 1
                bad = None
                if isinstance(self.endpoint, RtuEndpoint):
                    self._quiet_until = asyncio.get_running_loop().time() + min(pol.timeout_s, LATE_REPLY_GRACE_S)
                continue
            except _Lost:
                raise LinkDown(who, f"{self.endpoint} lost during {what}") from None
            except _Undecodable as exc:
                self._silent = 0
                self.stats.bad_replies += 1
                bad = f"undecodable: {exc}"
                continue
            self._silent = 0
            if rr.isError():
                if rr.function_code == fc | 0x80:
                    self.stats.exceptions += 1
                    raise ExceptionResponse(who, fc, rr.exception_code, what)
                problem: str | None = f"exception FC{rr.function_code}"
            else:
                problem = check(rr)
            if problem is None and rr.transaction_id == 0 and isinstance(self.endpoint, TcpEndpoint):
                # pymodbus takes a TCP reply with transaction id 0 for the answer to any request; its ids run
                # 1..65000, so such a reply answers none of ours
                problem = "transaction id 0"
            if problem is None:
                return rr
            self.stats.bad_replies += 1
            bad = problem
        if bad is not None:
            raise BadChecksum(who, f"{what}: the reply does not answer the request ({bad})")
        self._silent += 1
        if isinstance(self.endpoint, TcpEndpoint) and self._silent >= self.max_silent:
            self._drop(f"{self._silent} requests in a row without a reply")
        raise DeviceTimeout(who, attempts, pol.timeout_s, what)

    async def _let_line_go_quiet(self) -> None:
        wait = self._quiet_until - asyncio.get_running_loop().time()
        if wait > 0:
            self.stats.quiet_waits += 1
            await asyncio.sleep(wait)

    async def _attempt(
        self, send: Callable[[Client], Awaitable[ModbusPDU]], client: Client, timeout_s: float
    ) -> ModbusPDU:
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        try:
            return await self._attempt_once(send, client, timeout_s)
        finally:
            if task is not None and task.cancelling() > asked:
                # the task was cancelled as the reply (or an error) came in, and pymodbus' asyncio.wait_for
                # (Python 3.11) returned that instead: the cancellation is the caller's and must not be lost (a
                # helper told to stop would go on, and whoever awaits its end would wait for ever)
                raise asyncio.CancelledError  # replaces the reply or error that hid it

    async def _attempt_once(
        self, send: Callable[[Client], Awaitable[ModbusPDU]], client: Client, timeout_s: float
    ) -> ModbusPDU:
        # The request is awaited directly (no extra task: ~50 us less per request). A connection lost while
        # it is in flight ends it by its timeout; the next attempt then fails fast with LinkDown.
        try:
            # Our own timer, always: pymodbus may try to reconnect inside a call, unbounded by its reply timeout.
            async with asyncio.timeout(timeout_s):
                return await send(client)
        except TimeoutError:
            raise _AttemptTimeout from None
        except ConnectionException:
            self._mark_down("not connected")
            raise _Lost from None
        except UndecodableReply as exc:
            raise _Undecodable(str(exc)) from None
        except ModbusIOException:
            raise _AttemptTimeout from None
        except ModbusException as exc:
            raise DeviceError(self.name, f"modbus error: {exc}") from None
