"""What ``plasmactl probe`` runs: the rig's [serve] servers (if any) for the probe's length, then
:func:`plasmactl.drivers.probe.probe_rig` on its devices (imported here, not in the core's modules)."""

from __future__ import annotations

import contextlib
from typing import Any

from plasmactl import clock as clockmod
from plasmactl.rig import Rig, ServeSim
from plasmactl.session import serve_rig
from plasmactl.spawn import SpawnError


class ProbeFailed(Exception):
    """The probe could not reach the devices at all (the rig's [serve] did not start): the message names the
    cause and the rig field to check; the probe reports it as an unhealthy rig (exit 3), not a traceback."""


def serve_problem(serve: ServeSim | None, exc: Exception) -> str:
    """Why the [serve] servers did not start, naming the field behind it: a bind error is ``modbus_tcp``'s
    (the other servers are ptys and a free loopback port), e.g. ``[serve] modbus_tcp 127.0.0.1:5020: address
    already in use``."""
    text = str(exc)
    if serve is not None and serve.modbus_tcp and "bind" in text:
        cause = text.rsplit(": ", 1)[-1].strip()  # "... error while attempting to bind on ...: address already in use"
        hint = " (another program listens there: stop it, or give port 0 for a free one)" if "in use" in cause else ""
        return f"[serve] modbus_tcp {serve.modbus_tcp}: {cause}{hint}"
    what = "serve-sim did not start" if isinstance(exc, SpawnError) else "cannot serve"
    return f"[serve] {what}: {text}"


async def probe_with_serving(rig: Rig, reads: int = 5) -> list[dict[str, Any]]:
    """One report per device (as JSON); ProbeFailed when the rig's [serve] cannot be started."""
    from plasmactl.drivers.probe import probe_rig

    clock = clockmod.LoopClock()
    async with contextlib.AsyncExitStack() as stack:
        try:
            served, ports, _ = await stack.enter_async_context(serve_rig(rig, clock))
        except (SpawnError, OSError) as exc:  # a port in use, an address not of this host, no pty
            raise ProbeFailed(serve_problem(rig.serve, exc)) from None
        try:
            reports = await probe_rig(served, clock, ports, reads)
        except OSError as exc:  # the drivers name a device's own errors; this is what escapes them
            raise ProbeFailed(f"cannot reach the rig's devices: {type(exc).__name__}: {exc}") from None
        return [r.as_json() for r in reports]
