"""Tests for the controller's state machine table (src/plasmactl/controller/machine.py).

The table is the single source of truth: the generated diagram in docs/ must match it, the built
machine must have exactly its edges (no auto transitions), latched states leave only by a guarded
reset, and every trigger outside the table is an error.
"""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import pytest
from transitions.core import MachineError

from plasmactl.controller.machine import (
    LATCHED,
    RUNNING,
    STATES,
    TRANSITIONS,
    ControllerModel,
    build_machine,
    diagram_markdown,
    edges,
    mermaid,
)

ROOT = Path(__file__).resolve().parent.parent
DIAGRAM = ROOT / "docs" / "state-machine.md"
TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(trigger for trigger, _, _ in TRANSITIONS))
EDGES = edges()


def _outgoing(state: str) -> set[tuple[str, str]]:
    return {(trigger, dest) for src, trigger, dest in EDGES if src == state}


def _sources(trigger: str) -> set[str]:
    return {src for src, t, _ in EDGES if t == trigger}


def _machine_in(state: str) -> tuple[ControllerModel, Any]:
    model = ControllerModel()
    machine = build_machine(model)
    machine.set_state(state)
    assert model.state == state
    return model, machine


# ----------------------------------------------------------------------------------------- diagram


def test_committed_diagram_is_current() -> None:
    assert DIAGRAM.is_file(), "missing: run `plasmactl diagram --write docs/state-machine.md`"
    assert DIAGRAM.read_text(encoding="utf-8") == diagram_markdown(), (
        "stale: run `plasmactl diagram --write docs/state-machine.md`"
    )


def test_mermaid_has_every_edge_once() -> None:
    lines = mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert lines[1] == "    [*] --> disconnected"
    assert lines[-1] == "    complete --> [*]"
    body = lines[2:-1]
    assert body == [f"    {src} --> {dest} : {trigger}" for src, trigger, dest in EDGES]
    assert len(set(body)) == len(body)
    assert "```mermaid\n" + mermaid() + "```\n" in diagram_markdown()


# ------------------------------------------------------------------------------------------- table


def test_table_is_well_formed() -> None:
    assert len(set(STATES)) == len(STATES)
    assert set(LATCHED) <= set(STATES)
    assert set(RUNNING) <= set(STATES)
    assert not set(RUNNING) & set(LATCHED)
    for src, trigger, dest in EDGES:
        assert src in STATES, (src, trigger)
        assert dest in STATES, (trigger, dest)
    # one destination per (source, trigger): the machine is deterministic
    dests: dict[tuple[str, str], set[str]] = defaultdict(set)
    for src, trigger, dest in EDGES:
        dests[src, trigger].add(dest)
    assert all(len(d) == 1 for d in dests.values())
    assert len(set(EDGES)) == len(EDGES)


def test_every_state_is_reachable_from_disconnected() -> None:
    seen = {"disconnected"}
    queue = deque(["disconnected"])
    while queue:
        state = queue.popleft()
        for _, dest in _outgoing(state):
            if dest not in seen:
                seen.add(dest)
                queue.append(dest)
    assert seen == set(STATES)


def test_every_state_can_reach_complete_or_a_latch() -> None:
    # no dead ends: from every state but complete, some sequence of events leads to complete
    reverse: dict[str, set[str]] = defaultdict(set)
    for src, _, dest in EDGES:
        reverse[dest].add(src)
    can_finish = {"complete"}
    queue = deque(["complete"])
    while queue:
        for src in reverse[queue.popleft()]:
            if src not in can_finish:
                can_finish.add(src)
                queue.append(src)
    assert can_finish == set(STATES)


def test_built_machine_has_exactly_the_table_edges() -> None:
    model = ControllerModel()
    machine = build_machine(model)
    built: list[tuple[str, str, str]] = []
    for name, event in machine.events.items():
        for src, transitions in event.transitions.items():
            for t in transitions:
                assert t.dest is not None, (src, name)  # no internal (dest-less) transitions
                built.append((src, name, t.dest))
    assert sorted(built) == sorted(EDGES)
    assert set(machine.events) == set(TRIGGERS)
    assert set(machine.states) == set(STATES)
    assert model.state == "disconnected"
    # no auto transitions: nothing like to_fault exists, neither as an event nor on the model
    for state in STATES:
        assert f"to_{state}" not in machine.events
        assert not hasattr(model, f"to_{state}")


def test_only_reset_is_guarded() -> None:
    machine = build_machine(ControllerModel())
    for name, event in machine.events.items():
        for transitions in event.transitions.values():
            for t in transitions:
                conditions = [(c.func, c.target) for c in t.conditions]
                assert conditions == ([("can_reset", True)] if name == "reset" else []), name


def test_trip_and_estop_sources() -> None:
    assert _sources("trip") == {*RUNNING, "disconnected"}
    assert _sources("estop_pressed") == {*RUNNING, "disconnected", "fault"}
    assert {dest for _, t, dest in EDGES if t == "trip"} == {"fault"}
    assert {dest for _, t, dest in EDGES if t == "estop_pressed"} == {"estop"}
    # every state but complete reaches estop in one step (or is it)
    for state in STATES:
        if state not in ("complete", "estop"):
            assert ("estop_pressed", "estop") in _outgoing(state), state
        if state not in ("complete", "estop", "fault"):
            assert ("trip", "fault") in _outgoing(state), state


def test_latched_states_leave_only_by_reset() -> None:
    assert LATCHED == ("fault", "estop")
    assert _outgoing("fault") == {("reset", "idle"), ("estop_pressed", "estop")}
    assert _outgoing("estop") == {("reset", "idle")}


def test_complete_is_terminal() -> None:
    assert _outgoing("complete") == set()


def test_main_path() -> None:
    path = [
        ("disconnected", "connect", "self_test"),
        ("self_test", "self_test_passed", "idle"),
        ("idle", "arm", "armed"),
        ("armed", "fire", "pulsing"),
        ("pulsing", "pulse_ended", "awaiting_cooling"),
        ("awaiting_cooling", "spray_confirmed", "cooling"),
        ("cooling", "spray_done", "armed"),
        ("armed", "disarm", "idle"),
        ("idle", "finish", "complete"),
    ]
    assert set(path) <= set(EDGES)


# ----------------------------------------------------------------------------------- the machine


async def test_main_path_runs_on_the_machine() -> None:
    model = ControllerModel()
    build_machine(model)
    for trigger, expected in [
        ("connect", "self_test"),
        ("self_test_passed", "idle"),
        ("arm", "armed"),
        ("fire", "pulsing"),
        ("pulse_ended", "awaiting_cooling"),
        ("spray_confirmed", "cooling"),
        ("spray_done", "armed"),
        ("fire", "pulsing"),
        ("pulse_ended_uncooled", "armed"),
        ("disarm", "idle"),
        ("finish", "complete"),
    ]:
        assert await model.trigger(trigger) is True
        assert model.state == expected


@pytest.mark.parametrize("state", STATES)
async def test_every_trigger_in_every_state(state: str) -> None:
    """Table edges move to their destination; everything else raises MachineError and stays put."""
    allowed = dict(_outgoing(state))
    for trigger in TRIGGERS:
        model, _ = _machine_in(state)
        model.reset_permitted = True
        if trigger in allowed:
            assert await model.trigger(trigger) is True, (state, trigger)
            assert model.state == allowed[trigger], (state, trigger)
        else:
            with pytest.raises(MachineError):
                await model.trigger(trigger)
            assert model.state == state, (state, trigger)


@pytest.mark.parametrize("latched", LATCHED)
async def test_reset_is_refused_until_permitted(latched: str) -> None:
    model, _ = _machine_in(latched)
    assert model.reset_permitted is False
    assert await model.trigger("reset") is False
    assert model.state == latched
    assert await model.trigger("reset") is False  # refusing does not change anything
    assert model.state == latched
    model.reset_permitted = True
    assert await model.trigger("reset") is True
    assert model.state == "idle"


async def test_latch_sequence_fault_then_estop() -> None:
    model = ControllerModel()
    build_machine(model)
    assert await model.trigger("connect")
    assert await model.trigger("trip")
    assert model.state == "fault"
    assert await model.trigger("estop_pressed")
    assert model.state == "estop"
    with pytest.raises(MachineError):
        await model.trigger("trip")  # an E-stop is not downgraded to a fault
    with pytest.raises(MachineError):
        await model.trigger("estop_pressed")
    assert model.state == "estop"


async def test_invalid_trigger_raises() -> None:
    model = ControllerModel()
    build_machine(model)
    with pytest.raises(MachineError):
        await model.trigger("fire")
    with pytest.raises(MachineError):
        await model.trigger("reset")
    assert model.state == "disconnected"


async def test_unknown_trigger_raises() -> None:
    model = ControllerModel()
    build_machine(model)
    with pytest.raises(AttributeError):
        await model.trigger("to_fault")
    assert model.state == "disconnected"


async def test_complete_accepts_nothing() -> None:
    for trigger in TRIGGERS:
        model, _ = _machine_in("complete")
        model.reset_permitted = True
        with pytest.raises(MachineError):
            await model.trigger(trigger)
        assert model.state == "complete"
