"""Sessions for the hardware-in-the-loop suite: run a plan on the rig under test, put faults into it at the
moments a test names, and keep every record.

A rig with ``[serve]`` has its simulators spawned by the session as ``plasmactl run`` would, with their
control channel on (``serve.control``): the injector reaches it over loopback (``plasmactl.cli_sim_control``'s
JSON lines). An in-process world is reached directly. A real bench has neither: the injector then asks the
operator (``--hil-operator``) or reports the check as not verified on this rig, never as passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from plasmactl import clock as clockmod
from plasmactl import invariants
from plasmactl.controller.owner import Controller
from plasmactl.events import AuditLog, read_events
from plasmactl.faults import Fault, FaultScenario, load_faults
from plasmactl.hang_guard import bounded
from plasmactl.inputs import LoadedFile
from plasmactl.plan import Plan
from plasmactl.ports import Devices, SessionResult
from plasmactl.rig import Rig
from plasmactl.session import SessionInputs, SimulatedWorld, open_rig, run_session
from plasmactl.session_files import LOG_NAME, SUMMARY_NAME

CONTROL_TIMEOUT_S = 5.0
# a device's silence on the real clock (a loaded host): a session that must complete is run again
TIMING_CAUSES = frozenset(
    {"device_no_reply", "device_watchdog", "plasma_status_stale", "spray_status_stale", "safety_inputs_stale"}
)
TIMING_ATTEMPTS = 3
HANG_MARGIN_S = 60.0  # past the plan's own estimate (and any pause a test makes), a session is stuck


def stopped_by_silence(cause: str | None, events: list[dict[str, Any]]) -> bool:
    """Whether a session was stopped by a device's silence on the real clock: a timing cause, or a cooling
    not confirmed while a device on the rig did not answer inside that window (the bus silent for the window's
    length on a loaded host: the spray's feedback never came back, though the unit may well have opened).
    A spray seen closed, with every device answering, is no silence: it is never run again."""
    if cause in TIMING_CAUSES:
        return True
    if cause != "cooling_not_confirmed":
        return False
    names = [e.get("event") for e in events]
    end = names.index("fault") if "fault" in names else len(events)
    ended = [i for i in range(end) if names[i] == "pulse_end"]
    return bool(ended) and "comm_error" in names[ended[-1] : end]


def session_bound_s(plan: Plan) -> float:
    """How long a test's session may take before it counts as hung: its session limit or ten times the plan's
    estimate, whichever is shorter, plus a margin for the safe state and the tests' pauses."""
    return min(plan.limits.max_session_s, 10.0 * plan.estimated_session_s()) + HANG_MARGIN_S


T = TypeVar("T")


class NotInjectable(Exception):
    """The rig has no way to put this fault in (a real bench without an operator at hand)."""


@dataclass
class Trigger:
    """Inject ``fault`` when the ``nth`` record named ``event`` is written (None: as the session starts);
    clear it ``clear_after_s`` later (None: it stays, or ends by its own ``duration_s``)."""

    event: str | None
    fault: Fault
    nth: int = 1
    clear_after_s: float | None = None
    fired_at: float | None = None  # session time of the injection request
    handle: int | None = None
    error: str | None = None  # the injection failed (NotInjectable: the rig cannot; else: it went wrong)
    injectable: bool = True


@dataclass
class HilRun:
    """What one session left: how it ended, its records, where they are, and the moments faults went in."""

    result: SessionResult
    events: list[dict[str, Any]]
    summary: dict[str, Any]
    out_dir: Path
    triggers: list[Trigger]

    def first(self, event: str, **fields: Any) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == event and _has(e, fields)), None)

    def all(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event and _has(e, fields)]

    def trips(self) -> list[str]:
        return [str(e["rule"]) for e in self.events if e["event"] == "interlock_trip"]


def _has(e: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return all(e.get(k) == v for k, v in fields.items())


class FaultInjector:
    """Puts a fault into the rig under test now: into an in-process world, over a served control channel, or
    (a real bench) by asking the operator."""

    def __init__(self, operator: bool = False) -> None:
        self.operator = operator
        self.world: SimulatedWorld | None = None
        self.control: tuple[str, int] | None = None

    @property
    def reachable(self) -> bool:
        return self.world is not None or self.control is not None

    def attach_world(self, world: SimulatedWorld) -> None:
        self.world = world

    def seen(self, event: Mapping[str, Any]) -> None:
        """Learn the control channel from the session's ``serve_sim`` record."""
        if event.get("event") == "serve_sim":
            control = (event.get("report") or {}).get("control")
            if isinstance(control, dict) and isinstance(control.get("port"), int):
                self.control = (str(control.get("host", "127.0.0.1")), int(control["port"]))

    async def inject(self, fault: Fault) -> int:
        if self.world is not None:
            return self.world.inject(fault)
        if self.control is not None:
            fields = fault.model_dump(exclude_none=True, mode="json", exclude={"at_s", "after_pulses"})
            reply = await self._request({"cmd": "inject", "fault": fields})  # it starts now
            return int(reply["handle"])
        if self.operator:
            print(f"\nOPERATOR: {describe_action(fault)} now (the test watches the record for it)", flush=True)
            return -1
        raise NotInjectable(f"{fault.device}/{fault.kind}: no control channel on this rig and no --hil-operator")

    async def clear(self, handle: int) -> None:
        if self.world is not None:
            self.world.clear(handle)
        elif self.control is not None:
            await self._request({"cmd": "clear", "handle": handle})
        elif self.operator:
            print("\nOPERATOR: undo that action now", flush=True)

    async def state(self) -> dict[str, Any] | None:
        """The served world's state (ground truth), or None where there is no control channel."""
        if self.control is None:
            return None
        return await self._request({"cmd": "state"})

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.control is not None
        host, port = self.control
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONTROL_TIMEOUT_S)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), CONTROL_TIMEOUT_S)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"the control channel refused {message.get('cmd')}: {reply.get('error')}")
        return reply


def describe_action(fault: Fault) -> str:
    """What an operator does on a real bench to make this fault."""
    actions = {
        ("safety", "estop"): "press the E-stop",
        ("safety", "footswitch_release"): "release the footswitch",
        ("safety", "tip_lift"): "lift the handpiece tip off the skin",
        ("spray", "reservoir_empty"): "empty the spray reservoir",
        ("spray", "valve_stuck_closed"): "close the spray valve's manual shut-off",
        ("link", "disconnect"): f"unplug the {fault.target} cable",
        ("link", "timeout"): f"unplug the {fault.target} cable",
    }
    return actions.get((fault.device, fault.kind), f"make {fault.device}/{fault.kind} happen")


class HilRunner:
    """Runs sessions of a test on the rig under test; every record is kept in ``out_dir/NAME-N``."""

    def __init__(self, rig: Rig, rig_file: LoadedFile, plan: Plan, plan_file: LoadedFile, out_dir: Path) -> None:
        self.rig = _with_control(rig)
        self.rig_file = rig_file
        self.plan = plan
        self.plan_file = plan_file
        self.out_dir = out_dir
        self.runs: list[HilRun] = []
        self.operator = False
        self.retried: list[str] = []  # sessions run again after a device's silence on the real clock

    @property
    def virtual(self) -> bool:
        """In-process rigs (simulators, or served inside the run) run in virtual time; wires on the real clock."""
        serve = self.rig.serve
        return self.rig.all_simulated or (serve is not None and serve.in_process)

    def run(
        self,
        *,
        plan: Plan | None = None,
        triggers: list[Trigger] | None = None,
        faults: FaultScenario | None = None,
        after_run: Callable[[Controller, FaultInjector], Awaitable[None]] | None = None,
        during: Callable[[FaultInjector, Mapping[str, Any]], None] | None = None,
        seed: int = 0,
        rig: Rig | None = None,
    ) -> HilRun:
        """One session; ``triggers`` inject faults at records, ``during`` sees every record (with the injector),
        ``after_run`` runs once the controller has ended, the devices still open."""
        out = self.out_dir / f"session-{len(self.runs) + 1}"
        injector = FaultInjector(self.operator)
        todo = list(triggers or [])
        counts: dict[str, int] = {}
        clock_box: list[Controller] = []

        def now() -> float:
            return clock_box[0].clock.now() if clock_box else 0.0

        def listener(event: Mapping[str, Any]) -> None:
            injector.seen(event)
            name = str(event.get("event"))
            counts[name] = counts.get(name, 0) + 1
            for t in todo:
                start = t.event is None and name == "plasma_arm" and counts[name] == 1
                if t.fired_at is None and (start or (t.event == name and counts[name] == t.nth)):
                    t.fired_at = now()
                    asyncio.get_running_loop().create_task(_fire(injector, t))
            if during is not None:
                during(injector, event)

        async def finished(c: Controller) -> None:
            if after_run is not None:
                await after_run(c, injector)

        faults_file = _faults_file(out, faults) if faults is not None and faults.fault else None
        inputs = SessionInputs(
            plan=plan or self.plan,
            plan_file=None if plan is not None else self.plan_file,
            rig=rig or self.rig,
            rig_file=self.rig_file,
            faults=faults or FaultScenario(),
            faults_file=faults_file,
            seed=seed,
        )

        async def main() -> SessionResult:
            session = run_session(
                inputs,
                out,
                listeners=(listener,),
                on_controller=clock_box.append,
                on_world=injector.attach_world,
                after_run=finished,
            )
            return await bounded(session, session_bound_s(inputs.plan), f"the session in {out}")

        result = clockmod.run(main(), virtual=self.virtual)
        events = read_events(out / LOG_NAME)
        summary = json.loads((out / SUMMARY_NAME).read_text(encoding="utf-8"))
        run = HilRun(result, events, summary, out, todo)
        self.runs.append(run)
        return run

    def run_to_completion(self, *, plan: Plan | None = None, attempts: int = TIMING_ATTEMPTS) -> HilRun:
        """A session that must complete on the rig. One that a device's silence on the real clock stopped (a
        timeout on a loaded host, as its cause says) is run again, up to ``attempts`` times in all; each one
        stopped must still hold every safety invariant on its record, and is listed in ``retried``."""
        for attempt in range(1, attempts + 1):
            run = self.run(plan=plan)
            silence = stopped_by_silence(run.result.cause, run.events)
            if run.result.outcome == "complete" or not silence or attempt == attempts:
                return run
            problems = invariants.check(run.events, summary=run.summary)
            if problems:
                raise AssertionError(f"{run.out_dir}: stopped by {run.result.cause}; invariants broken: {problems}")
            self.retried.append(f"{run.out_dir}: {run.result.cause}")
        raise AssertionError("unreachable: the last attempt returns")

    def with_devices(self, check: Callable[[Devices], Awaitable[T]]) -> T:
        """Driver-level access for a direct check: the rig's devices opened as a session opens them (served
        ones spawned first, identities checked, this host's endpoint locks held), ``check`` run on them, all
        closed again. Nothing is armed or fired unless ``check`` does it."""
        out = self.out_dir / f"devices-{len(self.runs) + 1}"
        out.mkdir(parents=True, exist_ok=True)
        inputs = SessionInputs(plan=self.plan, plan_file=None, rig=self.rig)

        async def opened() -> T:
            clock = clockmod.LoopClock()
            log = AuditLog(out / LOG_NAME, clock)
            try:
                async with open_rig(inputs, clock, log) as (devices, _):
                    return await check(devices)
            finally:
                log.close()

        async def main() -> T:
            return await bounded(opened(), HANG_MARGIN_S, f"the device check in {out}")

        return clockmod.run(main(), virtual=self.virtual)


async def _fire(injector: FaultInjector, trigger: Trigger) -> None:
    """Inject (then clear) a trigger's fault; what went wrong is kept on the trigger for the test to report."""
    try:
        trigger.handle = await injector.inject(trigger.fault)
        if trigger.clear_after_s is not None:
            await asyncio.sleep(trigger.clear_after_s)
            await injector.clear(trigger.handle)
    except NotInjectable as exc:
        trigger.injectable, trigger.error = False, str(exc)
    except (OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
        trigger.error = f"{type(exc).__name__}: {exc}"


def _faults_file(out: Path, faults: FaultScenario) -> LoadedFile:
    """The scenario as a fault file beside the record (a spawned serve-sim reads its faults from a file)."""
    from plasmactl.random_faults import to_toml

    out.mkdir(parents=True, exist_ok=True)
    path = out / "faults.toml"
    path.write_text(to_toml(faults.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    return load_faults(str(path))[1]


def _with_control(rig: Rig) -> Rig:
    """Spawned served simulators come with their control channel (for the injector)."""
    serve = rig.serve
    if serve is None or not serve.spawn or serve.control:
        return rig
    return rig.model_copy(update={"serve": serve.model_copy(update={"control": True})})


def safe_name(nodeid: str) -> str:
    """A test's node id as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1]).strip("_")[:120] or "test"


@dataclass
class Measurements:
    """A test's measurements (name -> values) and what it could not verify on this rig."""

    values: dict[str, list[float]] = field(default_factory=dict)
    not_verified: list[str] = field(default_factory=list)

    def add(self, name: str, *values: float) -> None:
        self.values.setdefault(name, []).extend(float(v) for v in values)
