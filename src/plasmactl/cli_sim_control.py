"""``plasmactl sim-control HOST:PORT COMMAND``: talk to the control channel of a running ``plasmactl serve-sim
--control HOST:PORT`` (the protocol is in ``plasmactl.simulators.served_control``).

The client is here, in the core package, and needs only a socket and JSON: the command line never imports the
simulators to send one line. One request per invocation; the reply is printed as indented JSON on stdout.
Exit 0 when the server answered ``ok``, 3 when it refused the request (its ``error`` on stderr), 2 for bad
arguments, or when nothing answers at HOST:PORT within the timeout (a message naming it, no traceback). The
fault's fields are checked by the server (one validator, the one scenario files go through), so a kind the
device does not have is a refusal (3) with pydantic's message naming the field.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Annotated, Any

import typer

from plasmactl.faults import KINDS
from plasmactl.rig import parse_host_port

EXIT_OK, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 2, 3
TIMEOUT_S = 5.0  # to connect, and again for the reply
MAX_REPLY_BYTES = 16 * 1024 * 1024

_KINDS_HELP = "; ".join(f"{device}: {', '.join(kinds)}" for device, kinds in KINDS.items())

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Inject and clear faults in a running serve-sim, read its state (serve-sim --control HOST:PORT).",
)


class Unreachable(Exception):
    """Nothing usable answered at the control channel's address (the message says what happened)."""


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="sim-control")


def request(host: str, port: int, message: dict[str, Any], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Send one request line and return the reply object; ``Unreachable`` for no connection, no reply within
    ``timeout_s``, or a reply that is not the channel's."""
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        raise Unreachable(f"cannot connect to {where}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise Unreachable(f"cannot connect to {where}: {exc.strerror or exc}") from None
    buf = bytearray()
    with sock:
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            deadline = time.monotonic() + timeout_s
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    raise Unreachable(f"{where} closed the connection without a reply")
                buf += chunk
                if len(buf) > MAX_REPLY_BYTES:
                    raise Unreachable(f"{where} sent over {MAX_REPLY_BYTES} bytes without a line end")
        except TimeoutError:
            raise Unreachable(f"no reply from {where} within {timeout_s:g} s") from None
        except OSError as exc:
            raise Unreachable(f"lost the connection to {where}: {exc.strerror or exc}") from None
    line = bytes(buf[: buf.index(b"\n")])
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Unreachable(f"{where} is not a serve-sim control channel (it sent {line[:80]!r})") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise Unreachable(f"{where} is not a serve-sim control channel (it sent {line[:80]!r})")
    return reply


def _fail(text: str, code: int) -> typer.Exit:
    sys.stderr.write(f"sim-control: {text}\n")
    return typer.Exit(code)


def _send(ctx: typer.Context, message: dict[str, Any]) -> None:
    host, port = ctx.obj
    try:
        reply = request(host, port, message)
    except Unreachable as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    sys.stdout.write(json.dumps(reply, indent=2) + "\n")
    if not reply["ok"]:
        raise _fail(f"{host}:{port} refused {message['cmd']}: {reply.get('error')}", EXIT_REFUSED)
    raise typer.Exit(EXIT_OK)


@app.callback()
def _endpoint(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(metavar="HOST:PORT", help="Where serve-sim --control listens.")],
) -> None:
    """Inject and clear faults in a running serve-sim, read its state (serve-sim --control HOST:PORT).

    Prints the server's JSON reply; exit 0 on ok, 3 when the server refused the request (its error on stderr),
    2 for bad arguments or no answer at HOST:PORT."""
    try:
        ctx.obj = parse_host_port(endpoint)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None


@app.command()
def inject(
    ctx: typer.Context,
    device: Annotated[str, typer.Option(help="plasma, spray, thermometer, safety or link.")],
    kind: Annotated[str, typer.Option(help=f"The fault, per device: {_KINDS_HELP}.")],
    duration_s: Annotated[
        float | None, typer.Option("--duration-s", help="How long it lasts (default: until cleared).")
    ] = None,
    value: Annotated[float | None, typer.Option(help="The kind's parameter, for the kinds that take one.")] = None,
    target: Annotated[str | None, typer.Option(help="For device link: whose link (plasma, spray, ...).")] = None,
) -> None:
    """Start a fault now; prints its handle (for clear)."""
    fault: dict[str, Any] = {"device": device, "kind": kind}
    for name, given in (("duration_s", duration_s), ("value", value), ("target", target)):
        if given is not None:
            fault[name] = given
    _send(ctx, {"cmd": "inject", "fault": fault})


@app.command()
def clear(
    ctx: typer.Context,
    handle: Annotated[int, typer.Argument(min=0, help="The fault's handle (from inject or faults).")],
) -> None:
    """End a fault now (cleared: false when it had ended already)."""
    _send(ctx, {"cmd": "clear", "handle": handle})


@app.command()
def faults(ctx: typer.Context) -> None:
    """Every fault (the scenario's and the injected ones) with its handle, window and whether it is active."""
    _send(ctx, {"cmd": "faults"})


@app.command()
def state(ctx: typer.Context) -> None:
    """The simulated world now: skin temperature, reservoir, generator, spray unit, safety inputs."""
    _send(ctx, {"cmd": "state"})


@app.command()
def ping(ctx: typer.Context) -> None:
    """Whether the control channel answers (and its session time)."""
    _send(ctx, {"cmd": "ping"})
