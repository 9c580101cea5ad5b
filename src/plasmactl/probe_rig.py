"""What ``plasmactl probe`` runs: the rig's [serve] servers (if any) for the probe's length, then
:func:`plasmactl.drivers.probe.probe_rig` on its devices (imported here, not in the core's modules)."""

from __future__ import annotations

from typing import Any

from plasmactl import clock as clockmod
from plasmactl.rig import Rig
from plasmactl.session import serve_rig


async def probe_with_serving(rig: Rig, reads: int = 5) -> list[dict[str, Any]]:
    from plasmactl.drivers.probe import probe_rig

    clock = clockmod.LoopClock()
    async with serve_rig(rig, clock) as (served, ports, _):
        return [r.as_json() for r in await probe_rig(served, clock, ports, reads)]
