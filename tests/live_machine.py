"""A hypothesis state machine that drives the live controller: the real ``Controller`` over the in-process
simulated devices on a virtual-time loop, with operator commands, faults injected at random moments and at
pulse and spray edges, and random device latencies; the safety invariants are judged after every step on the
record as it stands then (``plasmactl.invariants.check(until=now)``), and in full when the session is over.

One hypothesis example is one session. Steps: advance the clock; inject a fault (any kind of the fault
file format, for a while or until cleared) now or at the next pulse/spray edge; clear one; release and press
the footswitch; request an abort; edit the plan; reset a latched session. ``STEPS`` counts the steps run.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from plasmactl import clock as clockmod
from plasmactl.budget import budget_problems
from plasmactl.controller.machine import LATCHED
from plasmactl.controller.messages import EditResult
from plasmactl.controller.owner import Controller
from plasmactl.events import AuditLog, read_events
from plasmactl.faults import KINDS, Fault
from plasmactl.invariants import check
from plasmactl.plan import Plan
from plasmactl.ports import SessionResult
from plasmactl.rig import PlasmaSim, Rig, SafetySim, SpraySim, ThermometerSim
from plasmactl.session import (
    SessionInputs,
    SimulatedWorld,
    build_devices,
    emit_session_end,
    session_start_fields,
    write_summary,
)

STEPS = {"steps": 0, "sessions": 0, "pulses": 0, "edits_applied": 0, "edits_refused": 0, "resets": 0}
EDGES = ("pulse_start", "pulse_end", "spray_command", "spray_start", "spray_end", "interlock_trip", "resume")
EDGE_WAIT_S = 3.0  # an edge that does not come within this much clock time is not waited for longer

PLANS: dict[str, dict[str, Any]] = {
    "one_per_spot": {
        "spots": {"points": [[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [0.0, 1.5], [1.5, 1.5], [3.0, 1.5]]},
        "pulse": {"energy_j": 0.005, "pulse_ms": 5.0, "pulses_per_spot": 1, "interval_s": 0.3},
        "cooling": {"spray_ms": 120.0, "when": "pulse"},
    },
    "two_per_spot": {
        "spots": {"grid": {"width_mm": 3.0, "height_mm": 1.0, "spacing_mm": 1.0}},
        "pulse": {
            "energy_j": 0.0025,
            "pulse_ms": 4.0,
            "pulses_per_spot": 2,
            "interval_s": 0.05,
            "spot_interval_s": 0.4,
        },
        "cooling": {"spray_ms": 120.0, "when": "spot"},
    },
}


def _fault_kinds() -> list[tuple[str, str]]:
    return [(device, kind) for device, kinds in KINDS.items() for kind in kinds]


@st.composite
def faults(draw: st.DrawFn) -> Fault:
    """Any fault of the fault file format (its start is the moment it is injected)."""
    device, kind = draw(st.sampled_from(_fault_kinds()))
    needs_value, meaning = KINDS[device][kind]
    value: float | None = None
    if kind == "energy_drift":
        value = draw(st.sampled_from([0.0, 0.5, 0.85, 1.15, 2.0, 3.0]))
    elif kind in ("valve_slow", "delay"):
        value = draw(st.floats(0.0, 150.0))
    elif kind == "offset":
        value = draw(st.sampled_from([-3.0, 0.5, 3.0, 8.0]))
    elif kind == "stuck" and draw(st.booleans()):
        value = draw(st.sampled_from([20.0, 34.0, 45.0, 90.0]))
    elif kind == "tip_lift" and draw(st.booleans()):
        value = draw(st.sampled_from([-1.0, 0.1, 0.8, 3.0, 60.0]))
    assert needs_value <= (value is not None) and (value is None or meaning)
    duration = draw(st.one_of(st.none(), st.floats(0.001, 2.0)))
    target = draw(st.sampled_from(["plasma", "spray", "thermometer", "safety"])) if device == "link" else None
    fields = {"device": device, "kind": kind, "at_s": 0.0, "duration_s": duration, "value": value, "target": target}
    return Fault.model_validate(fields)


@dataclass
class _Edge:
    event: str
    nth: int  # act at the nth such event from now (1: the next)
    action: Callable[[], None]
    fired: bool = False


class LiveController(RuleBasedStateMachine):
    """One session of the real controller on simulated devices, driven step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = clockmod.VirtualTimeLoop()
        self._tmp = tempfile.TemporaryDirectory(prefix="live-machine-")
        self.out = Path(self._tmp.name)
        self.events: list[Mapping[str, Any]] = []
        self.handles: list[int] = []  # injected faults that may still be active
        self.edge: _Edge | None = None
        self.controller: Controller | None = None
        self.world: SimulatedWorld | None = None
        self.task: asyncio.Task[SessionResult] | None = None
        self.log: AuditLog | None = None
        self.plan: Plan | None = None
        self.closed = False

    # ------------------------------------------------------------------ set-up and time

    @initialize(
        plan_name=st.sampled_from(sorted(PLANS)),
        seed=st.integers(0, 2**31 - 1),
        plasma_ms=st.floats(0.0, 3.0),
        valve_ms=st.floats(2.0, 40.0),
        thermometer_ms=st.floats(0.0, 30.0),
        safety_timeout_ms=st.sampled_from([20.0, 50.0]),
    )
    def start(
        self,
        plan_name: str,
        seed: int,
        plasma_ms: float,
        valve_ms: float,
        thermometer_ms: float,
        safety_timeout_ms: float,
    ) -> None:
        plan = Plan.model_validate({"name": plan_name, **PLANS[plan_name]})
        rig = Rig(
            plasma=PlasmaSim(latency_ms=plasma_ms),
            spray=SpraySim(valve_latency_ms=valve_ms),
            thermometer=ThermometerSim(latency_ms=thermometer_ms),
            safety=SafetySim(timeout_ms=safety_timeout_ms),
        )
        if budget_problems(plan, rig):
            rig = Rig()  # a combination `check` refuses is not a session anyone runs
        self.plan = plan
        inputs = SessionInputs(plan=plan, plan_file=None, rig=rig, seed=seed)
        STEPS["sessions"] += 1

        async def begin() -> None:
            clock = clockmod.LoopClock()
            self.log = log = AuditLog(self.out / "events.jsonl", clock)
            log.subscribe(self._seen)
            log.emit("session_start", wall_time=clock.wall_time(), **session_start_fields(inputs))
            devices, self.world = build_devices(inputs, clock, log)
            self.controller = Controller(plan, devices, rig, clock, log)
            self.task = asyncio.get_running_loop().create_task(self.controller.run())

        self.loop.run_until_complete(begin())

    def _seen(self, event: Mapping[str, Any]) -> None:
        """Every record as it is written: the edge trigger acts inside the controller's own step."""
        self.events.append(event)
        edge = self.edge
        if edge is not None and not edge.fired and event.get("event") == edge.event:
            edge.nth -= 1
            if edge.nth <= 0:
                edge.fired = True
                edge.action()

    def _advance(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def _until_edge(self) -> None:
        deadline = self._now() + EDGE_WAIT_S
        while self.edge is not None and not self.edge.fired and self._now() < deadline and not self._ended:
            self._advance(0.002)
        self.edge = None

    def _now(self) -> float:
        assert self.controller is not None
        return self.controller.clock.now()

    @property
    def _ended(self) -> bool:
        return self.controller is not None and self.controller.ended

    # ------------------------------------------------------------------ steps

    def _step(self) -> None:
        STEPS["steps"] += 1

    @rule(seconds=st.one_of(st.floats(0.0, 0.05), st.floats(0.05, 1.5)))
    def wait(self, seconds: float) -> None:
        self._step()
        self._advance(seconds)

    @precondition(lambda self: not self._ended)
    @rule(fault=faults(), edge=st.one_of(st.none(), st.sampled_from(EDGES)), nth=st.integers(1, 3))
    def inject(self, fault: Fault, edge: str | None, nth: int) -> None:
        """A fault now, or at the nth next pulse/spray edge (inside the step that writes that record)."""
        self._step()
        world = self.world
        assert world is not None
        if edge is None:
            self.handles.append(world.inject(fault))
            return
        self.edge = _Edge(edge, nth, lambda: self.handles.append(world.inject(fault)))
        self._until_edge()

    # not once the controller has ended: the record's session_end waits for the teardown here (after the resets,
    # as run_session's after_run), but a real session's follows at once, so nothing may change the world between
    @precondition(lambda self: bool(self.handles) and not self._ended)
    @rule(data=st.data())
    def clear(self, data: st.DataObject) -> None:
        self._step()
        assert self.world is not None
        handle = data.draw(st.sampled_from(self.handles))
        self.handles.remove(handle)
        self.world.clear(handle)

    @precondition(lambda self: not self._ended)
    @rule(held_s=st.floats(0.0005, 3.0), edge=st.one_of(st.none(), st.sampled_from(EDGES[:5])))
    def footswitch(self, held_s: float, edge: str | None) -> None:
        """The operator lifts the foot for a while (a pause), at once or at an edge of the pulse cycle."""
        self._step()
        world = self.world
        assert world is not None
        release = Fault(device="safety", kind="footswitch_release", at_s=0.0, duration_s=held_s)
        if edge is None:
            self.handles.append(world.inject(release))
        else:
            self.edge = _Edge(edge, 1, lambda: self.handles.append(world.inject(release)))
            self._until_edge()

    @precondition(lambda self: not self._ended)
    @rule(edge=st.one_of(st.none(), st.sampled_from(EDGES[:5])))
    def abort(self, edge: str | None) -> None:
        self._step()
        c = self.controller
        assert c is not None
        if edge is None:
            c.request_abort("operator abort (property test)")
        else:
            self.edge = _Edge(edge, 1, lambda: c.request_abort("operator abort at an edge (property test)"))
            self._until_edge()

    @precondition(lambda self: not self._ended)
    @rule(
        energy_factor=st.sampled_from([None, 0.5, 0.8, 1.2, 3.0, 1000.0]),
        pulse_ms=st.sampled_from([None, 2.0, 4.0, 8.0, 500.0]),
        spray_ms=st.sampled_from([None, 80.0, 200.0]),
        other=st.sampled_from([None, ("limits", "skin_temp_max_c", 60.0), ("pulse", "pulses_per_spot", 5)]),
        edge=st.one_of(st.none(), st.sampled_from(EDGES[:5])),
        pause_s=st.one_of(st.none(), st.floats(0.05, 2.0)),
    )
    def edit(
        self,
        energy_factor: float | None,
        pulse_ms: float | None,
        spray_ms: float | None,
        other: tuple[str, str, float] | None,
        edge: str | None,
        pause_s: float | None,
    ) -> None:
        """A plan edit while the session runs (after lifting the foot, or not): refused, or applied whole
        between pulses."""
        self._step()
        c, plan, world = self.controller, self.plan, self.world
        assert c is not None and plan is not None and world is not None
        if pause_s is not None:
            release = Fault(device="safety", kind="footswitch_release", at_s=0.0, duration_s=pause_s)
            self.handles.append(world.inject(release))
            self._advance(0.005)
        changes: dict[str, dict[str, float]] = {}
        if energy_factor is not None:
            changes.setdefault("pulse", {})["energy_j"] = c.plan.pulse.energy_j * energy_factor
        if pulse_ms is not None:
            changes.setdefault("pulse", {})["pulse_ms"] = pulse_ms
        if spray_ms is not None:
            changes.setdefault("cooling", {})["spray_ms"] = spray_ms
        if other is not None:
            changes.setdefault(other[0], {})[other[1]] = other[2]
        results: list[EditResult] = []

        def request() -> None:
            c.request_edit(changes, results.append)

        if edge is None:
            request()
        else:
            self.edge = _Edge(edge, 1, request)
            self._until_edge()
        deadline = self._now() + EDGE_WAIT_S
        while not results and not self._ended and self._now() < deadline:
            self._advance(0.002)
        for r in results:
            STEPS["edits_applied" if r.applied else "edits_refused"] += 1

    @precondition(lambda self: self._ended and self.controller is not None and self.controller.state in LATCHED)
    @rule()
    def reset(self) -> None:
        """Reset of a latched session: refused while a cause is present, and never arms anything."""
        self._step()
        c, world = self.controller, self.world
        assert c is not None and world is not None
        t0 = self._now()
        ok = self.loop.run_until_complete(c.reset())
        STEPS["resets"] += int(ok)
        generator = world.record().get("generator") or {}
        assert not generator.get("armed") and not generator.get("output_on"), f"reset left {generator}"
        if ok:
            assert c.state == "idle"
            blocking = self._blocking(t0, self._now())
            assert not blocking, f"reset accepted while {blocking} was active throughout it"

    def _blocking(self, t0: float, t1: float) -> list[str]:
        """Faults active over all of [t0, t1] that the reset guard must see (E-stop pressed, tip out)."""
        assert self.world is not None and self.plan is not None
        lim = self.plan.limits
        found = []
        for f in self.world.record().get("faults", []):
            start, end = f["start"], f["end"]
            if start is None or start > t0 or (end is not None and end <= t1):
                continue
            lifted = 5.0 if f["value"] is None else f["value"]
            if (f["device"], f["kind"]) == ("safety", "estop") or (
                f["kind"] == "tip_lift" and not lim.tip_min_mm <= lifted <= lim.tip_max_mm
            ):
                found.append(f"{f['device']}/{f['kind']}")
        return found

    # ------------------------------------------------------------------ invariants

    @invariant()
    def safe_so_far(self) -> None:
        """The strict invariants on the record as it stands (what the session has yet to settle aside)."""
        if self.controller is None or self.world is None:
            return
        violations = check(list(self.events), simulator=self.world.record(), until=self._now())
        assert not violations, _describe(violations, self.events)

    def teardown(self) -> None:
        try:
            if self.controller is not None and self.task is not None and not self.closed:
                self._finish()
        finally:
            self.closed = True
            self.loop.close()
            self._tmp.cleanup()

    def _finish(self) -> None:
        c, task, log, world = self.controller, self.task, self.log, self.world
        assert c is not None and task is not None and log is not None and world is not None
        if not task.done():
            c.request_abort("end of the property test's session")
            for _ in range(100):
                if task.done():
                    break
                self._advance(0.05)
        assert task.done(), f"the controller did not end after an abort; state {c.state}"
        result = task.result()
        STEPS["pulses"] += result.pulses
        record = world.record()
        emit_session_end(log, result, None, c.clock)
        log.close()
        summary = write_summary(self.out, anchor=log.anchor)
        events = read_events(self.out / "events.jsonl")
        violations = check(events, summary=summary, simulator=record)
        assert not violations, _describe(violations, events)


def _describe(violations: Mapping[str, list[str]], events: Sequence[Mapping[str, Any]]) -> str:
    tail = "\n".join(
        f"  {e.get('t'):.4f} {e.get('event')} "
        + " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "event", "prev_sha256", "plan", "rig"))[:200]
        for e in events[-40:]
        if isinstance(e.get("t"), int | float) and math.isfinite(float(e["t"]))
    )
    return f"invariants broken: {dict(violations)}\nlast records:\n{tail}"
