"""Start ``plasmactl serve-sim`` for a rig that asks for it, and learn where it put the devices.

The server prints one JSON line saying where each device is; the run waits for that line (bounded),
then fills the rig's ``@rtu``/``@serial`` placeholders (and TCP ``port = 0``) from it. The server is stopped
with SIGTERM (then SIGKILL) when the session ends, whatever way it ends. It runs in a session of its own, so
a Ctrl-C in the terminal reaches only the controller (which shuts down against live devices), and it holds
the read end of a pipe from the run (``--lifeline``): when the run dies, even by SIGKILL, the pipe closes and
the server stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from plasmactl.faults import FaultScenario
from plasmactl.rig import ServeSim

START_TIMEOUT_S = 20.0


class SpawnError(RuntimeError):
    """serve-sim did not start (its stderr is in the message)."""


# serve-sim's own entry point (``plasmactl serve-sim`` calls the same function): it spares each spawned
# server the CLI's imports, 0.45 of its 1.35 s start-up measured (every spawned-rig session waits for it)
SERVER_MODULE = "plasmactl.simulators.served"


def serve_args(serve: ServeSim, seed: int) -> list[str]:
    """The arguments of :data:`SERVER_MODULE` for this rig's ``[serve]`` (a flag with no value: a new pty)."""
    args = ["--json", "--seed", str(seed), "--baud", str(serve.baud)]
    if serve.modbus_tcp:
        args += ["--modbus-tcp", serve.modbus_tcp]
    if serve.modbus_rtu:
        args += ["--modbus-rtu"]
    if serve.serial:
        args += ["--serial"]
    if serve.control:
        args += ["--control", "127.0.0.1:0"]
    return args


def served_ports(report: dict[str, Any]) -> dict[str, str]:
    """``@rtu``/``@serial`` -> the pty paths the server reported."""
    ports: dict[str, str] = {}
    rtu = report.get("modbus_rtu")
    if isinstance(rtu, dict) and isinstance(rtu.get("port"), str):
        ports["@rtu"] = rtu["port"]
    serial = report.get("serial")
    if isinstance(serial, dict) and isinstance(serial.get("thermometer"), str):
        ports["@serial"] = serial["thermometer"]
    return ports


@contextlib.asynccontextmanager
async def spawned_server(
    serve: ServeSim, seed: int, faults: FaultScenario, faults_path: str | None
) -> AsyncIterator[dict[str, Any]]:
    args = [*serve_args(serve, seed), "--lifeline"]
    if faults.fault and faults_path:
        args += ["--faults", faults_path]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        SERVER_MODULE,
        *args,
        stdin=asyncio.subprocess.PIPE,  # the lifeline: only this process holds its write end
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            raise SpawnError(f"serve-sim did not report its endpoints: {err[-800:] or 'no output'}")
        try:
            report: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            raise SpawnError(f"serve-sim printed something that is not its JSON report: {line[:200]!r}") from None
        # both pipes read for the server's whole life: a full pipe would block the server (and its devices)
        drains = [asyncio.create_task(_drain(proc.stdout)), asyncio.create_task(_drain(proc.stderr))]
        try:
            yield report
        finally:
            for task in drains:
                task.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read a pipe to its end (what the server prints after its report is not needed)."""
    while await stream.read(65536):
        pass
