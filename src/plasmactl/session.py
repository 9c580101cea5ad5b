"""A session: wire a rig to the controller, run a plan, and leave a complete record whatever happens.

The audit log is opened first and closed last: a bad device, a controller bug, Ctrl-C or a crash all
still end with ``session_end`` in ``OUT/events.jsonl`` and a ``summary.json`` derived from it. Signals are
taken from the first moment of the session: one that arrives before the controller exists is kept and
becomes the controller's first message, so the devices are switched off and disarmed before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from plasmactl import clock as clockmod
from plasmactl.controller import interlocks as il
from plasmactl.controller.owner import Controller
from plasmactl.events import AuditLog, Listener
from plasmactl.faults import Fault, FaultScenario
from plasmactl.inputs import LoadedFile
from plasmactl.log_chain import ANCHOR_KEY, anchor_of
from plasmactl.out_dir import write_whole
from plasmactl.plan import Plan
from plasmactl.ports import DeviceError, Devices, SessionResult
from plasmactl.rig import DEVICES, Rig
from plasmactl.session_files import LOG_NAME, SIMULATOR_RECORD, SUMMARY_NAME
from plasmactl.spawn import SpawnError
from plasmactl.stop_signals import STOP_SIGNALS
from plasmactl.summary import records_of, summarize
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
    resume_of: dict[str, Any] | None = None  # the earlier record this session continues (plasmactl resume)


class StopRequest:
    """A signal's request to stop, kept until there is a controller to take it."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._controller: Controller | None = None

    def request(self, signame: str) -> None:
        if self.signal is None:
            self.signal = signame
        if self._controller is not None:
            self._controller.request_abort(f"operator interrupt ({signame})", signame)

    def attach(self, controller: Controller) -> None:
        self._controller = controller
        if self.signal is not None:
            controller.request_abort(f"operator interrupt ({self.signal})", self.signal)


@dataclass
class SimulatedWorld:
    """What an in-process world tells after the session (the tissue results and the devices' own record),
    and, while it runs, how faults get into it (``inject`` starts one now and returns its handle, ``clear``
    ends it): for property tests of the live controller and the served simulators' control channel."""

    tissue: Callable[[], dict[str, Any] | None]
    record: Callable[[], dict[str, Any]]
    inject: Callable[[Fault], int]
    clear: Callable[[int], bool]


def _file_record(loaded: LoadedFile | None) -> dict[str, Any] | None:
    return None if loaded is None else {"path": loaded.path, "sha256": loaded.sha256}


def build_devices(inputs: SessionInputs, clock: clockmod.Clock, log: AuditLog) -> tuple[Devices, SimulatedWorld]:
    """In-process simulated devices. Imported lazily: the core never depends on simulators at module level."""
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
    return devices, simulated(world, lambda: tissue_summary(world))


class _World(Protocol):
    """What the session needs of a simulators' world (``plasmactl.simulators.world.SimWorld``)."""

    def record_json(self) -> dict[str, Any]: ...
    def inject(self, fault: Fault) -> int: ...
    def clear(self, handle: int) -> bool: ...


def simulated(world: _World, tissue: Callable[[], dict[str, Any] | None]) -> SimulatedWorld:
    return SimulatedWorld(tissue, world.record_json, world.inject, world.clear)


@contextlib.asynccontextmanager
async def open_rig(
    inputs: SessionInputs, clock: clockmod.Clock, log: AuditLog
) -> AsyncIterator[tuple[Devices, SimulatedWorld | None]]:
    """The rig's devices for the length of a session: in-process simulators, or drivers over wires
    (with ``serve-sim`` spawned first when the rig asks for it); closed again whatever happens."""
    if inputs.rig.all_simulated:
        yield build_devices(inputs, clock, log)
        return
    from plasmactl.drivers.modbus_device import new_token
    from plasmactl.drivers.rig import open_devices

    faults_path = inputs.faults_file.path if inputs.faults_file else None
    served = serve_rig(inputs.rig, clock, faults=inputs.faults, seed=inputs.seed, faults_path=faults_path, log=log)
    async with served as (rig, ports, world):
        token = new_token()
        holder = f"the session writing {log.path.parent}"
        devices, close = await open_devices(rig, clock, ports, holder=holder, token=token)
        leased = [d for d in ("plasma", "spray") if getattr(getattr(devices, d), "owned", False)]
        log.emit("device_lease", token=f"0x{token:08X}", devices=leased)
        try:
            yield devices, world
        finally:
            await close()


@contextlib.asynccontextmanager
async def serve_rig(
    rig: Rig,
    clock: clockmod.Clock,
    *,
    faults: FaultScenario | None = None,
    seed: int = 0,
    faults_path: str | None = None,
    log: AuditLog | None = None,
) -> AsyncIterator[tuple[Rig, dict[str, str], SimulatedWorld | None]]:
    """The served simulators a rig's ``[serve]`` asks for (inside this loop, or a spawned ``serve-sim``),
    for as long as the block runs: the rig pointed at where they are, the ``@rtu``/``@serial`` ports, and the
    served world's record (in-process only). A rig without ``[serve]`` yields itself unchanged."""
    async with contextlib.AsyncExitStack() as stack:
        ports: dict[str, str] = {}
        scenario = faults if faults is not None else FaultScenario()
        serve = rig.serve
        world: SimulatedWorld | None = None
        if serve is not None and serve.spawn and serve.in_process:
            from plasmactl.rig import parse_host_port
            from plasmactl.simulators.served import serve as serve_here

            sim = await serve_here(
                rig,
                scenario,
                seed,
                modbus_tcp=parse_host_port(serve.modbus_tcp) if serve.modbus_tcp else None,
                modbus_rtu=serve.modbus_rtu,
                serial=serve.serial,
                baud=serve.baud,
                clock=clock,
                control=("127.0.0.1", 0) if serve.control else None,
            )
            stack.push_async_callback(sim.stop)
            report = sim.as_json()
            ports = _served(log, report, in_process=True)
            rig = rig.with_served_tcp(report)
            world = simulated(sim.world, lambda: None)
        elif serve is not None and serve.spawn:
            from plasmactl.spawn import spawned_server

            report = await stack.enter_async_context(spawned_server(serve, seed, scenario, faults_path))
            ports = _served(log, report, in_process=False)
            rig = rig.with_served_tcp(report)
        yield rig, ports, world


def _served(log: AuditLog | None, report: dict[str, Any], *, in_process: bool) -> dict[str, str]:
    """Record where serve-sim put the devices; the ``@rtu``/``@serial`` ports the rig refers to."""
    from plasmactl.spawn import served_ports

    if log is not None:
        log.emit("serve_sim", report=report, in_process=in_process)
    return served_ports(report)


def session_start_fields(inputs: SessionInputs) -> dict[str, Any]:
    plan, rig = inputs.plan, inputs.rig
    limits = plan.limits
    latencies = rig.pulse_latencies_s()
    return {
        "version": VERSION,
        "seed": inputs.seed,
        "plan": plan.model_dump(mode="json"),
        "plan_file": _file_record(inputs.plan_file),
        "rig": rig.model_dump(mode="json"),
        "rig_file": _file_record(inputs.rig_file),
        "faults": inputs.faults.model_dump(mode="json"),
        "faults_file": _file_record(inputs.faults_file),
        "limits": limits.model_dump(mode="json"),
        "hard_trip_c": limits.hard_trip_c,
        "fluence_j_cm2": plan.fluence_j_cm2,
        "energy_limit_j": limits.energy_limit_j(plan.pulse.energy_j),
        "pulse_bound_ms": limits.pulse_bound_s(plan.pulse.pulse_ms, *latencies[:3]) * 1000.0,
        "max_age_ms": {d: rig.max_age_s(d, limits.reading_max_age_ms) * 1000.0 for d in DEVICES},
        "pulses_planned": plan.pulse_count,
        "spots_planned": plan.spots.count,
        **({"resume_of": inputs.resume_of} if inputs.resume_of is not None else {}),
    }


async def run_session(
    inputs: SessionInputs,
    out_dir: Path,
    *,
    listeners: tuple[Listener, ...] = (),
    on_controller: Callable[[Controller], None] | None = None,
    on_world: Callable[[SimulatedWorld], None] | None = None,
    after_run: Callable[[Controller], Awaitable[None]] | None = None,
    stop: StopRequest | None = None,
) -> SessionResult:
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any device is touched
    # an earlier session's summary (--overwrite) must not stand beside this log as its anchor if this one is cut
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
    clock = clockmod.LoopClock()
    log = AuditLog(out_dir / LOG_NAME, clock)
    for listener in listeners:
        log.subscribe(listener)
    result = SessionResult("fault", "did not start", internal_error=True)
    error: str | None = None
    world: SimulatedWorld | None = None
    record: dict[str, Any] | None = None
    controller: Controller | None = None
    try:
        log.emit("session_start", wall_time=clock.wall_time(), **session_start_fields(inputs))
        async with contextlib.AsyncExitStack() as stack:
            try:
                devices, world = await stack.enter_async_context(open_rig(inputs, clock, log))
            except (DeviceError, SpawnError, OSError) as exc:
                # unreachable device, wrong identity, no serve-sim: the session is refused, nothing was armed
                trip = il.session_refused(f"{type(exc).__name__}: {exc}", getattr(exc, "device", None))
                log.emit("self_test", ok=False, problems=[trip.reason])
                log.emit(
                    "interlock_trip",
                    rule=trip.rule,
                    reason=trip.reason,
                    device=trip.device,
                    state="disconnected",
                    latch="fault",
                )
                result = SessionResult("fault", str(trip.rule), signal=None if stop is None else stop.signal)
                if stop is not None and stop.signal is not None:
                    result = SessionResult("aborted", "operator interrupt", signal=stop.signal)
                return result
            controller = Controller(inputs.plan, devices, inputs.rig, clock, log)
            if stop is not None:
                stop.attach(controller)
            if on_controller is not None:
                on_controller(controller)
            if on_world is not None and world is not None:
                on_world(world)
            try:
                result = await controller.run()
                if after_run is not None:  # with the devices still open (a test's reset of a latched session)
                    await after_run(controller)
            finally:
                record = _record(world)  # before the rig closes (served devices switch themselves off then)
            if world is not None:
                _emit_tissue(log, world)
    except asyncio.CancelledError:
        result = SessionResult("aborted", "cancelled")
        error = "session task cancelled"
        raise
    except BaseException as exc:  # anything else (SystemExit too): recorded, then re-raised as an internal error
        error = f"{type(exc).__name__}: {exc}"
        pulses, sprays = (
            (0, 0) if controller is None else (controller.know.pulses_started, controller.cycle.sprays_confirmed)
        )
        result = SessionResult("fault", "internal error", internal_error=True, pulses=pulses, sprays=sprays)
        raise
    finally:
        with contextlib.suppress(RuntimeError):
            emit_session_end(log, result, error, clock)
        log.close()
        write_summary(out_dir, anchor=log.anchor)
        if record is not None:  # whole or not at all, as the summary (a full disk left it at 0 bytes)
            write_whole(out_dir / SIMULATOR_RECORD, json.dumps(record) + "\n")
    return result


def emit_session_end(log: AuditLog, result: SessionResult, error: str | None, clock: clockmod.Clock) -> None:
    """The record's last line: how the session ended."""
    log.emit(
        "session_end",
        outcome=result.outcome,
        cause=result.cause,
        pulses=result.pulses,
        sprays=result.sprays,
        internal_error=result.internal_error,
        signal=result.signal,
        error=error,
        wall_time=clock.wall_time(),
    )


def _emit_tissue(log: AuditLog, world: SimulatedWorld) -> None:
    try:
        tissue = world.tissue()
    except Exception as exc:  # noqa: BLE001 - the physics must not cost the record its session_end
        log.emit("tissue_error", error=f"{type(exc).__name__}: {exc}")
    else:
        if tissue is not None:
            log.emit("tissue_summary", **tissue)


def _record(world: SimulatedWorld | None) -> dict[str, Any] | None:
    """The simulated devices' own record of what they did, written beside the log (for checks against it)."""
    if world is None:
        return None
    try:
        return world.record()
    except Exception as exc:  # noqa: BLE001 - a record of the simulation, never worth the session's result
        return {"error": f"{type(exc).__name__}: {exc}"}


def write_summary(out_dir: Path, anchor: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json from the log, with the log's anchor (``log``: records and the last line's hash) as the
    writer gives it (else as the file holds it); replaced whole, so a crash never leaves half an anchor."""
    log = out_dir / LOG_NAME
    summary = summarize(records_of(log, anchor))
    summary[ANCHOR_KEY] = anchor if anchor is not None else anchor_of(log)
    write_whole(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def run_blocking(
    inputs: SessionInputs,
    out_dir: Path,
    *,
    realtime: bool = False,
    listeners: tuple[Listener, ...] = (),
    handle_sigint: bool = True,
) -> SessionResult:
    """Run a session on a virtual-time loop (or the real clock); SIGINT/SIGTERM/SIGHUP/SIGQUIT abort it safely."""

    async def main() -> SessionResult:
        stop = StopRequest()
        if handle_sigint:
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, stop.request, sig.name)
        try:
            return await run_session(inputs, out_dir, listeners=listeners, stop=stop)
        finally:
            if handle_sigint:  # closing the loop restores the default handlers: hold signals until ours is back
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    # What exists before the session (the imported modules, most of what a full collection scans) lives on
    # anyway: it is left out of the collector's scans while the session runs (a full collection otherwise
    # comes every session or two and stalls the loop for tens of ms). Not if the caller froze objects itself.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        return clockmod.run(main(), virtual=not realtime)
    finally:
        if freeze:
            gc.unfreeze()
        if handle_sigint:
            for sig in STOP_SIGNALS:
                signal.signal(sig, _after_the_session)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


LATE_SIGNALS: list[str] = []  # signals that came after the session had ended (its record is complete)


def _after_the_session(signum: int, frame: object) -> None:
    """A signal once the session has ended and its record is written: the command finishes printing and exits
    with the session's own code; a second one ends the process at once."""
    del frame
    name = signal.Signals(signum).name
    if LATE_SIGNALS:
        os._exit(128 + signum)
    LATE_SIGNALS.append(name)
    os.write(2, f"plasmactl: {name} after the session had ended; its record is complete\n".encode())
