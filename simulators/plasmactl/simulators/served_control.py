"""The served simulators' control channel (``serve-sim --control HOST:PORT``): faults started and ended while
the devices are served, and the simulated world's state read, from a test or a terminal.

Why a side channel: a fault scenario file fixes every fault before the run, but a test of the controller often
needs a fault at the moment something happens (an E-stop pressed during a pulse, a link lost while a spray is
open), and ground truth to judge the reaction by (is the generator really off, how warm is the skin, how much
water is left) that the devices' own registers cannot give while a link fault silences them. The channel
never passes a device's wire, so no link fault ever touches it; it reads the models directly and never reads
the skin ahead of the world's clock.

Protocol: TCP, UTF-8 JSON lines. One JSON object per line in, exactly one JSON object per line out, in
order. Every reply has ``ok``; a refused request gets ``{"ok": false, "error": "..."}`` and the connection
stays usable (bad JSON, not an object, an unknown ``cmd`` or field, a fault that fails validation, an unknown
handle, a line over 64 KiB, bytes that are not UTF-8). Times are the world's session seconds (0 = when
serving started); ``null`` stands for "not yet" (start) or "never" (end)::

    {"cmd": "ping"}               -> {"ok": true, "t": 1.5}
    {"cmd": "inject", "fault": {"device": "safety", "kind": "estop"}}
                                  -> {"ok": true, "handle": 0, "start": 1.6}
    {"cmd": "inject", "fault": {"device": "link", "kind": "delay", "target": "plasma", "value": 50.0,
                                "duration_s": 2.0}}
                                  -> {"ok": true, "handle": 1, "start": 1.7}
    {"cmd": "clear", "handle": 0} -> {"ok": true, "cleared": true}   (false: it had ended already)
    {"cmd": "faults"}             -> {"ok": true, "t": 1.8, "faults": [{"handle": 0, "device": "safety",
                                      "kind": "estop", "target": null, "value": null, "duration_s": null,
                                      "start": 1.6, "end": 1.7, "active": false}, ...]}
    {"cmd": "state"}              -> {"ok": true, "t": 1.9, "skin_c": 35.3, "reservoir_ml": 500.0,
                                      "plasma": {"armed", "output_on", "pulse_count", "fault_code",
                                                 "watchdog_tripped", "energy_set_j", "pulse_set_ms",
                                                 "energy_limit_j"},
                                      "spray": {"valve_open", "spray_count", "fault_code", "reservoir_level_ml"},
                                      "safety": {"estop", "footswitch", "tip_distance_mm"},
                                      "active_faults": [1]}

``inject``'s ``fault`` has the fields of a scenario's ``[[fault]]`` entry (``plasmactl.faults.Fault``: device,
kind, and as the kind needs value, target, duration_s) but no ``at_s`` / ``after_pulses``: it starts when the
request arrives and lasts ``duration_s``, else until cleared. Handles index the world's fault list, so the
scenario's own faults have handles too (``faults`` lists them) and ``clear`` ends those as well (one still
pending never starts). ``reservoir_ml`` is what the unit reports (0 under ``reservoir_empty``),
``reservoir_level_ml`` the water left by consumption alone; ``fault_code`` is the code the unit latches (its
FAULT_CODE register).

Bounded as the served Modbus stack is: at most 8 connections (a further one gets one refusal line and is
closed), a connection silent for 60 s is closed (after one line saying so).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from plasmactl.faults import Fault
from plasmactl.simulators.served_transports import stop_server
from plasmactl.simulators.served_units import ServedPlasma, ServedSpray
from plasmactl.simulators.world import SimWorld

__all__ = ["COMMANDS", "MAX_LINE_BYTES", "ControlEndpoint", "ControlServer", "Refused", "is_loopback"]

log = logging.getLogger("plasmactl.served.control")

MAX_LINE_BYTES = 64 * 1024  # a request line longer than this is refused (and its bytes dropped to its end)
_CHUNK = 64 * 1024
_SHOWN = 120  # characters of a client's own text quoted back in an error

# cmd -> the request fields it takes besides "cmd"
COMMANDS: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "inject": frozenset({"fault"}),
    "clear": frozenset({"handle"}),
    "faults": frozenset(),
    "state": frozenset(),
}


@dataclass(frozen=True)
class ControlEndpoint:
    host: str
    port: int


class Refused(Exception):
    """A request the channel answers with ``ok: false``; the message is the reply's ``error``."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _time(t: float) -> float | None:
    """A session time for JSON: inf (not yet / never) and nan as null."""
    return t if math.isfinite(t) else None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _validation_message(exc: ValidationError) -> str:
    """pydantic's complaints, one per field, named as ``fault.FIELD`` (``fault`` alone: the combination)."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(["fault", *(str(p)[:_SHOWN] for p in error["loc"])])
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts) or "fault: invalid"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ControlServer:
    """The JSON-lines control channel over one served world (see the module docstring for the protocol)."""

    max_clients = 8
    idle_s = 60.0
    write_s = 10.0  # a client that does not read its replies for this long is dropped

    def __init__(self, world: SimWorld, plasma: ServedPlasma, spray: ServedSpray) -> None:
        self.world = world
        self.plasma = plasma
        self.spray = spray
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.endpoint: ControlEndpoint | None = None

    async def start(self, host: str, port: int) -> ControlEndpoint:
        """Listen on ``host:port`` (port 0: a free one) and return where it listens. The host is bound as given,
        as the served Modbus server's is (the command line's addresses are loopback unless told otherwise);
        anything but loopback is said on the log, since the channel has no authentication."""
        self._server = await asyncio.start_server(self._connection, host, port)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self.endpoint = ControlEndpoint(str(bound_host), int(bound_port))
        if not is_loopback(self.endpoint.host):
            log.warning(
                "control channel on %s:%d: anyone who reaches this address can inject faults (no authentication)",
                self.endpoint.host,
                self.endpoint.port,
            )
        return self.endpoint

    async def stop(self) -> None:
        await stop_server(self._server, self._handlers)

    # ------------------------------------------------------------------------------------ connections

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._handlers) >= self.max_clients:
                log.warning("control: %d connections open already: refusing another", len(self._handlers))
                await self._send(writer, _refusal(f"too many control connections ({self.max_clients} open)"))
                return
            self._handlers.add(task)
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            return
        except asyncio.CancelledError:
            # the server is stopping; end normally (on 3.11 asyncio logs a cancelled client_connected_cb)
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer line after line; an over-long line is answered once and its bytes dropped to its newline, so
        the buffer never holds more than a line's limit and one read."""
        buf = bytearray()
        dropping = False  # inside an over-long line already refused
        while True:
            try:
                async with asyncio.timeout(self.idle_s):
                    chunk = await reader.read(_CHUNK)
            except TimeoutError:
                log.info("control: a connection idle for %.0f s: closing", self.idle_s)
                await self._send(writer, _refusal(f"idle for {self.idle_s:g} s: closing"))
                return
            if not chunk:
                return
            buf += chunk
            while (end := buf.find(b"\n")) >= 0:
                line = bytes(buf[:end])
                del buf[: end + 1]
                if dropping:
                    dropping = False  # the tail of the refused line
                elif len(line) > MAX_LINE_BYTES:
                    await self._send(writer, _refusal(f"line over {MAX_LINE_BYTES} bytes"))
                else:
                    await self._send(writer, self.answer(line))
            if len(buf) > MAX_LINE_BYTES:
                if not dropping:
                    await self._send(writer, _refusal(f"line over {MAX_LINE_BYTES} bytes"))
                dropping = True
                buf.clear()

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        try:
            text = json.dumps(reply, allow_nan=False)
        except (TypeError, ValueError):
            log.exception("control: a reply that is not JSON: %r", reply)
            text = json.dumps(_refusal("internal error: the reply was not JSON (see the server's log)"))
        writer.write(text.encode() + b"\n")
        async with asyncio.timeout(self.write_s):
            await writer.drain()

    # ------------------------------------------------------------------------------------ requests

    def answer(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line (without its newline); never raises."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _refusal(f"not UTF-8: {exc.reason} at byte {exc.start}")
        if not text.strip():
            return _refusal("empty line: expected one JSON object")
        try:
            request = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            return _refusal("not JSON: nested too deeply")
        except ValueError as exc:
            return _refusal(f"not JSON: {exc}")
        try:
            return self.handle(request)
        except Refused as exc:
            return _refusal(str(exc))
        except Exception:  # a bug here must not end the channel: say so, keep serving
            log.exception("control: request %s failed", _short(text))
            return _refusal("internal error (see the server's log)")

    def handle(self, request: object) -> dict[str, Any]:
        """One decoded request; ``Refused`` for one the channel does not take."""
        if not isinstance(request, dict):
            raise Refused(f"expected a JSON object, got {type(request).__name__}: {_short(request)}")
        cmd = request.get("cmd")
        known = ", ".join(COMMANDS)
        if not isinstance(cmd, str):
            raise Refused(f'expected "cmd": one of {known}')
        fields = COMMANDS.get(cmd)
        if fields is None:
            raise Refused(f"unknown cmd {_short(cmd)}; known: {known}")
        extra = sorted(set(request) - fields - {"cmd"})
        if extra:
            raise Refused(f"{cmd} takes no field {_short(extra[0])}")
        if cmd == "inject":
            return self._inject(request.get("fault"))
        if cmd == "clear":
            return self._clear(request.get("handle"))
        if cmd == "faults":
            return {"ok": True, "t": self.world.clock.now(), "faults": self.faults()}
        if cmd == "state":
            return self.state()
        return {"ok": True, "t": self.world.clock.now()}

    def _inject(self, raw: object) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise Refused('inject needs "fault": an object with device, kind (and value, target, duration_s)')
        timing = sorted({"at_s", "after_pulses"} & set(raw))
        if timing:
            raise Refused(
                f"fault.{timing[0]}: an injected fault starts now; leave out at_s and after_pulses"
                " (duration_s says how long it lasts)"
            )
        try:
            fault = Fault.model_validate({**raw, "at_s": 0.0})
        except ValidationError as exc:
            raise Refused(_validation_message(exc)) from None
        handle = self.world.inject(fault)
        return {"ok": True, "handle": handle, "start": _time(self.world.faults.items[handle].start)}

    def _clear(self, handle: object) -> dict[str, Any]:
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise Refused(f'clear needs "handle": an integer from inject or faults, got {_short(handle)}')
        known = len(self.world.faults.items)
        if not 0 <= handle < known:
            span = f"handles 0..{known - 1}" if known else "no faults yet"
            raise Refused(f"unknown handle {_short(handle)} ({span})")
        return {"ok": True, "cleared": self.world.clear(handle)}

    # ------------------------------------------------------------------------------------ the world

    def faults(self) -> list[dict[str, Any]]:
        """Every fault of the world, the scenario's and the injected ones, with its handle and window."""
        now = self.world.clock.now()
        return [
            {
                "handle": handle,
                "device": item.fault.device,
                "kind": item.fault.kind,
                "target": item.fault.target,
                "value": item.fault.value,
                "duration_s": item.fault.duration_s,
                "start": _time(item.start),
                "end": _time(item.end),
                "active": item.active(now),
            }
            for handle, item in enumerate(self.world.faults.items)
        ]

    def state(self) -> dict[str, Any]:
        """The world now, read from the models (no wire, no link fault, nothing read ahead of the clock)."""
        world = self.world
        now = world.clock.now()
        skin = world.skin
        # the skin's own time never passes the clock (every reader reads at or before now); reading there
        # rather than at now can only be an ulp after a query made at now
        skin_c = skin.surface_c(max(now, skin.time))
        generator = world.record.generator_state() if world.record.generator_state is not None else {}
        p = self.plasma.plasma
        sp = self.spray.spray
        inputs = self.plasma.safety._state(now)  # as they are, not through their link
        return {
            "ok": True,
            "t": now,
            "skin_c": skin_c if math.isfinite(skin_c) else None,
            "reservoir_ml": sp._reservoir(now),
            "plasma": {
                "armed": bool(generator.get("armed", p.armed)),
                "output_on": bool(generator.get("output_on", False)),
                "pulse_count": p.count,
                "fault_code": int(self.plasma.fault),
                "watchdog_tripped": self.plasma.watchdog_tripped,
                "energy_set_j": p.energy_j,
                "pulse_set_ms": p.pulse_ms,
                "energy_limit_j": p.energy_limit_j,
            },
            "spray": {
                "valve_open": sp._open <= now < sp._close,
                "spray_count": sp.count,
                "fault_code": int(self.spray.fault),
                "reservoir_level_ml": sp._level(now),
            },
            "safety": {
                "estop": inputs.estop,
                "footswitch": inputs.footswitch,
                "tip_distance_mm": inputs.tip_distance_mm,
            },
            "active_faults": [h for h, item in enumerate(world.faults.items) if item.active(now)],
        }


def _refusal(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}
