"""``plasmactl monitor RUN_DIR``: the live dashboard of a session, from its audit log alone.

It follows ``RUN_DIR/events.jsonl`` as the session writes it (complete lines only), waits for it when the
session has not started yet, and shows a finished record just as well. It only reads: it never writes to
RUN_DIR and has no way to reach the session, so it can run beside any session, as many times as wanted.
``--web`` serves the same dashboard as a web page (textual-serve, on the loopback interface only: each
browser tab runs its own ``plasmactl monitor RUN_DIR``); the URL is printed on stdout.

Bad input (no such folder, a file that is not an audit log) is one ``error:`` line on stderr and exit 2.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_BAD_INPUT = 0, 2  # as in plasmactl.cli
HOST = "127.0.0.1"

RunDir = Annotated[
    Path,
    typer.Argument(metavar="RUN_DIR", help="A session's output folder (its events.jsonl may not exist yet)."),
]


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


def monitor(
    run_dir: RunDir,
    web: Annotated[bool, typer.Option("--web", help="Serve the dashboard as a web page (loopback only).")] = False,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="The --web port (default, or 0: a free one).")
    ] = None,
) -> None:
    """Show the live dashboard of the session writing RUN_DIR (or of a finished one): state, interlock lamps,
    skin temperature, progress, cooling delays and the dose ledger. Read-only; q quits.

    Exit 0 when closed, 2 for bad input."""
    from plasmactl.dashboard_source import NotALog, check_log
    from plasmactl.session_files import LOG_NAME

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if port is not None and not web:
        raise typer.BadParameter("--port is the port of --web", param_hint="'--port'")
    if not run_dir.exists():
        raise _fail(err, f"{run_dir}: no such folder")
    path = run_dir / LOG_NAME if run_dir.is_dir() else run_dir
    try:
        if path.exists():
            check_log(path)
            if path == run_dir and path.stat().st_size == 0:
                raise NotALog("it is empty")
    except NotALog as exc:
        raise _fail(err, f"{path}: not a session's audit log: {exc}") from None
    if web:
        _serve(err, run_dir, port or 0)
        raise typer.Exit(EXIT_OK)
    from plasmactl.dashboard import Dashboard
    from plasmactl.dashboard_source import LogFollower

    Dashboard(LogFollower(path), where=str(run_dir)).run()  # it closes the file when it closes
    raise typer.Exit(EXIT_OK)


def _fail(err: Console, message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(EXIT_BAD_INPUT)


def _serve(err: Console, run_dir: Path, port: int) -> None:
    """The dashboard over HTTP on the loopback interface until Ctrl-C (the socket is bound first, so the URL
    printed is the one served, also for port 0)."""
    from aiohttp import web
    from textual_serve.server import Server

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise _fail(err, f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    bound = int(sock.getsockname()[1])
    url = f"http://{HOST}:{bound}"
    command = shlex.join([sys.executable, "-m", "plasmactl.entry", "monitor", str(run_dir.resolve())])

    class _Served(Server):
        async def on_startup(self, app: web.Application) -> None:
            sys.stdout.write(url + "\n")
            sys.stdout.flush()
            err.print(f"serving the dashboard of {escape(str(run_dir))} on {url} (Ctrl-C to stop)")

        def serve(self, debug: bool = False) -> None:
            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_exit)
            web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop, print=None)

    _Served(command, host=HOST, port=bound, title=f"plasmactl monitor {run_dir}", public_url=url).serve()
