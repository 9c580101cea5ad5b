"""A session: wire a rig to the controller, run a plan, and leave a complete record whatever happens.

The audit log is opened first and closed last: a bad device, a controller bug, Ctrl-C or a crash all
still end with ``session_end`` in ``OUT/events.jsonl`` and a ``summary.json`` derived from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasmactl import clock as clockmod
from plasmactl.controller.controller import Controller, Devices, SessionResult
from plasmactl.events import AuditLog, Listener, read_events
from plasmactl.faults import FaultScenario
from plasmactl.inputs import LoadedFile
from plasmactl.plan import Plan
from plasmactl.rig import DEVICES, Rig
from plasmactl.summary import summarize
from plasmactl.version import VERSION


@dataclass
class SessionInputs:
    plan: Plan
    plan_file: LoadedFile | None
    rig: Rig = field(default_factory=Rig)
    rig_file: LoadedFile | None = None
    faults: FaultScenario = field(default_factory=FaultScenario)
    faults_file: LoadedFile | None = None
    seed: int = 0


def _file_record(loaded: LoadedFile | None) -> dict[str, Any] | None:
    return None if loaded is None else {"path": loaded.path, "sha256": loaded.sha256}


def build_devices(inputs: SessionInputs, clock: clockmod.Clock) -> Devices:
    """Devices for the rig; imported lazily so the core never depends on simulators or drivers."""
    if inputs.rig.all_simulated:
        from plasmactl.simulators.inprocess import build_devices as build_sim

        devices, _ = build_sim(inputs.rig, inputs.faults, inputs.seed, clock)
        return devices
    raise NotImplementedError("only the in-process simulated rig is available in this build")


async def run_session(
    inputs: SessionInputs,
    out_dir: Path,
    *,
    listeners: tuple[Listener, ...] = (),
    on_controller: Callable[[Controller], None] | None = None,
) -> SessionResult:
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any device is touched
    clock = clockmod.LoopClock()
    log = AuditLog(out_dir / "events.jsonl", clock)
    for listener in listeners:
        log.subscribe(listener)
    result = SessionResult("fault", "did not start", internal_error=True)
    error: str | None = None
    try:
        log.emit(
            "session_start",
            version=VERSION,
            wall_time=clock.wall_time(),
            seed=inputs.seed,
            plan=inputs.plan.model_dump(mode="json"),
            plan_file=_file_record(inputs.plan_file),
            rig=inputs.rig.model_dump(mode="json"),
            rig_file=_file_record(inputs.rig_file),
            faults=inputs.faults.model_dump(mode="json"),
            faults_file=_file_record(inputs.faults_file),
            limits=inputs.plan.limits.model_dump(mode="json"),
            hard_trip_c=inputs.plan.limits.hard_trip_c,
            pulses_planned=inputs.plan.pulse_count,
        )
        devices = build_devices(inputs, clock)
        timing = {d: inputs.rig.timing(d) for d in DEVICES}
        controller = Controller(
            inputs.plan,
            devices,
            timing,
            clock,
            log,
            safety_heartbeat_s=inputs.rig.safety.heartbeat_ms / 1000.0,
        )
        if on_controller is not None:
            on_controller(controller)
        result = await controller.run()
    except asyncio.CancelledError:
        result = SessionResult("aborted", "cancelled")
        error = "session task cancelled"
        raise
    except Exception as exc:  # recorded, then re-raised to the CLI as an internal error
        error = f"{type(exc).__name__}: {exc}"
        result = SessionResult("fault", "internal error", internal_error=True)
        raise
    finally:
        with contextlib.suppress(RuntimeError):
            log.emit(
                "session_end",
                outcome=result.outcome,
                cause=result.cause,
                pulses=result.pulses,
                sprays=result.sprays,
                internal_error=result.internal_error,
                error=error,
                wall_time=clock.wall_time(),
            )
        log.close()
        write_summary(out_dir)
    return result


def write_summary(out_dir: Path) -> dict[str, Any]:
    summary = summarize(read_events(out_dir / "events.jsonl"))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def run_blocking(
    inputs: SessionInputs,
    out_dir: Path,
    *,
    realtime: bool = False,
    listeners: tuple[Listener, ...] = (),
    handle_sigint: bool = True,
) -> SessionResult:
    """Run a session on a virtual-time loop (or the real clock); SIGINT/SIGTERM abort it safely."""

    async def main() -> SessionResult:
        def hook(controller: Controller) -> None:
            if not handle_sigint:
                return
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, controller.request_abort, f"operator interrupt ({sig.name})")

        return await run_session(inputs, out_dir, listeners=listeners, on_controller=hook)

    return clockmod.run(main(), virtual=not realtime)
