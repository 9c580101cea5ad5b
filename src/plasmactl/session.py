"""A session: wire a rig to the controller, run a plan, and leave a complete record whatever happens.

The audit log is opened first and closed last: a bad device, a controller bug, Ctrl-C or a crash all
still end with ``session_end`` in ``OUT/events.jsonl`` and a ``summary.json`` derived from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasmactl import clock as clockmod
from plasmactl.controller.controller import Controller, Devices, SessionResult
from plasmactl.events import AuditLog, Listener, read_events
from plasmactl.faults import FaultScenario
from plasmactl.inputs import LoadedFile
from plasmactl.plan import Plan
from plasmactl.ports import DeviceError
from plasmactl.rig import DEVICES, Rig
from plasmactl.spawn import SpawnError
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


Finisher = Callable[[], dict[str, Any] | None]


def build_devices(inputs: SessionInputs, clock: clockmod.Clock, log: AuditLog) -> tuple[Devices, Finisher]:
    """In-process simulated devices, and what to ask at the end (the simulated tissue results).

    Imported lazily so that the core never depends on simulators or drivers at module level."""
    from plasmactl.simulators.inprocess import build_devices as build_sim
    from plasmactl.simulators.inprocess import tissue_summary

    def emit(record: dict[str, Any]) -> None:
        log.emit("tissue", **record)

    devices, world = build_sim(
        inputs.rig,
        inputs.faults,
        inputs.seed,
        clock,
        spot_diameter_m=inputs.plan.spots.diameter_mm / 1000.0,
        emit_tissue=emit,
    )
    return devices, lambda: tissue_summary(world)


@contextlib.asynccontextmanager
async def open_rig(
    inputs: SessionInputs, clock: clockmod.Clock, log: AuditLog
) -> AsyncIterator[tuple[Devices, Finisher | None]]:
    """The rig's devices for the length of a session: in-process simulators, or drivers over wires
    (with ``serve-sim`` spawned first when the rig asks for it); closed again whatever happens."""
    if inputs.rig.all_simulated:
        yield build_devices(inputs, clock, log)
        return
    from plasmactl.drivers.rig import open_devices

    async with contextlib.AsyncExitStack() as stack:
        ports: dict[str, str] = {}
        serve = inputs.rig.serve
        if serve is not None and serve.spawn and serve.in_process:
            from plasmactl.rig import parse_host_port
            from plasmactl.simulators.served import serve as serve_here

            sim = await serve_here(
                inputs.rig,
                inputs.faults,
                inputs.seed,
                modbus_tcp=parse_host_port(serve.modbus_tcp) if serve.modbus_tcp else None,
                modbus_rtu=serve.modbus_rtu,
                serial=serve.serial,
                baud=serve.baud,
                clock=clock,
            )
            stack.push_async_callback(sim.stop)
            ports = _served(log, sim.as_json(), in_process=True)
        elif serve is not None and serve.spawn:
            from plasmactl.spawn import spawned_server

            faults_path = inputs.faults_file.path if inputs.faults_file else None
            report = await stack.enter_async_context(spawned_server(serve, inputs.seed, inputs.faults, faults_path))
            ports = _served(log, report, in_process=False)
        devices, close = await open_devices(inputs.rig, clock, ports)
        stack.push_async_callback(close)
        yield devices, None


def _served(log: AuditLog, report: dict[str, Any], *, in_process: bool) -> dict[str, str]:
    """Record where serve-sim put the devices; the ``@rtu``/``@serial`` ports the rig refers to."""
    from plasmactl.spawn import served_ports

    log.emit("serve_sim", report=report, in_process=in_process)
    return served_ports(report)


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
        async with contextlib.AsyncExitStack() as stack:
            try:
                devices, finisher = await stack.enter_async_context(open_rig(inputs, clock, log))
            except (DeviceError, SpawnError, OSError) as exc:
                # unreachable device, wrong identity, no serve-sim: the session is refused, nothing was armed
                reason = f"{type(exc).__name__}: {exc}"
                log.emit("self_test", ok=False, problems=[reason])
                log.emit("interlock_trip", rule="self_test_failed", reason=reason, state="disconnected", latch="fault")
                result = SessionResult("fault", "self_test_failed")
                return result
            timing = {d: inputs.rig.timing(d) for d in DEVICES}
            heartbeat_ms = getattr(inputs.rig.safety, "heartbeat_ms", 250.0)
            controller = Controller(inputs.plan, devices, timing, clock, log, safety_heartbeat_s=heartbeat_ms / 1000.0)
            if on_controller is not None:
                on_controller(controller)
            result = await controller.run()
            if finisher is not None:
                _emit_tissue(log, finisher)
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


def _emit_tissue(log: AuditLog, finisher: Finisher) -> None:
    try:
        tissue = finisher()
    except Exception as exc:  # noqa: BLE001 - the physics must not cost the record its session_end
        log.emit("tissue_error", error=f"{type(exc).__name__}: {exc}")
    else:
        if tissue is not None:
            log.emit("tissue_summary", **tissue)


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
