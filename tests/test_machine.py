"""Tests for the controller's state machine table (src/plasmactl/controller/machine.py).

The table is the single source of truth: the generated diagram in docs/ must match it, the built machine
has exactly its edges (no auto transitions), the guarded rows refuse when their rule set fails (and without
a snapshot at all), latched states leave only by a guarded reset, and every trigger outside the table is
refused.
"""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path

import pytest

from plasmactl.controller.machine import (
    ACTIVE,
    GUARD_OF,
    GUARDS,
    LATCHED,
    RUNNING,
    STATES,
    TRANSITIONS,
    ControllerModel,
    TransitionRefused,
    build_machine,
    diagram_markdown,
    edges,
    guard_rules,
    mermaid,
)
from plasmactl.controller.trips import Rule
from snapshots import healthy, safety

ROOT = Path(__file__).resolve().parent.parent
DIAGRAM = ROOT / "docs" / "state-machine.md"
TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(row[0] for row in TRANSITIONS))
EDGES = edges()


def _outgoing(state: str) -> set[tuple[str, str]]:
    return {(trigger, dest) for src, trigger, dest in EDGES if src == state}


def _sources(trigger: str) -> set[str]:
    return {src for src, t, _ in EDGES if t == trigger}


def _model_in(state: str) -> ControllerModel:
    model = ControllerModel()
    machine = build_machine(model)
    machine.set_state(state)
    assert model.state == state
    return model


def test_committed_diagram_is_current() -> None:
    assert DIAGRAM.is_file(), "missing: run `plasmactl diagram --write docs/state-machine.md`"
    assert DIAGRAM.read_text(encoding="utf-8") == diagram_markdown(), "stale: run `make diagram`"


def test_mermaid_has_every_edge_once_with_its_guard() -> None:
    lines = mermaid().splitlines()
    assert lines[:2] == ["stateDiagram-v2", "    [*] --> disconnected"] and lines[-1] == "    complete --> [*]"
    body = lines[2:-1]
    assert len(body) == len(EDGES) == len(set(body))
    for src, trigger, dest in EDGES:
        label = f"{trigger} [{GUARD_OF[trigger]}]" if trigger in GUARD_OF else trigger
        assert f"    {src} --> {dest} : {label}" in body
    markdown = diagram_markdown()
    for guard in GUARDS:
        assert f"- **{guard}**: " + ", ".join(f"`{r}`" for r in guard_rules(guard)) in markdown


def test_table_is_well_formed() -> None:
    assert len(set(STATES)) == len(STATES)
    assert set(LATCHED) <= set(STATES) and set(RUNNING) <= set(STATES) and not set(RUNNING) & set(LATCHED)
    for src, trigger, dest in EDGES:
        assert src in STATES and dest in STATES, (src, trigger, dest)
    dests: dict[tuple[str, str], set[str]] = defaultdict(set)
    for src, trigger, dest in EDGES:
        dests[src, trigger].add(dest)
    assert all(len(d) == 1 for d in dests.values()), "a (state, trigger) with two destinations"
    assert len(set(EDGES)) == len(EDGES)
    assert {g for *_, g in TRANSITIONS if g is not None} == set(GUARDS)


def test_the_guard_column() -> None:
    assert GUARD_OF == {"arm": "ARM", "fire": "FIRE", "resume": "RESUME", "reset": "RESET"}


def test_every_state_is_reachable_and_can_end() -> None:
    seen, queue = {"disconnected"}, deque(["disconnected"])
    while queue:
        for _, dest in _outgoing(queue.popleft()):
            if dest not in seen:
                seen.add(dest)
                queue.append(dest)
    assert seen == set(STATES)
    reverse: dict[str, set[str]] = defaultdict(set)
    for src, _, dest in EDGES:
        reverse[dest].add(src)
    can_finish, queue = {"complete"}, deque(["complete"])
    while queue:
        for src in reverse[queue.popleft()]:
            if src not in can_finish:
                can_finish.add(src)
                queue.append(src)
    assert can_finish == set(STATES)


def test_built_machine_has_exactly_the_table_edges() -> None:
    model = ControllerModel()
    machine = build_machine(model)
    built = [
        (src, name, t.dest)
        for name, event in machine.events.items()
        for src, ts in event.transitions.items()
        for t in ts
    ]
    assert sorted(built) == sorted(EDGES)
    assert set(machine.events) == set(TRIGGERS) and set(machine.states) == set(STATES)
    for state in STATES:
        assert f"to_{state}" not in machine.events and not hasattr(model, f"to_{state}")
    for name, event in machine.events.items():
        for transitions in event.transitions.values():
            for t in transitions:
                conditions = [(c.func, c.target) for c in t.conditions]
                assert conditions == ([("guard_passes", True)] if name in GUARD_OF else []), name


def test_trip_estop_and_pause_sources() -> None:
    assert _sources("trip") == {*RUNNING, "disconnected"}
    assert _sources("estop_pressed") == {*RUNNING, "disconnected", "fault"}
    assert _sources("pause") == {"idle", *ACTIVE}
    for state in STATES:
        if state not in ("complete", "estop"):
            assert ("estop_pressed", "estop") in _outgoing(state), state
        if state not in ("complete", "estop", "fault"):
            assert ("trip", "fault") in _outgoing(state), state


def test_latched_states_leave_only_by_reset_and_complete_is_final() -> None:
    assert _outgoing("fault") == {("reset", "idle"), ("estop_pressed", "estop")}
    assert _outgoing("estop") == {("reset", "idle")}
    assert _outgoing("complete") == set()


def test_main_path_runs_on_the_machine() -> None:
    model = ControllerModel()
    build_machine(model)
    snap = healthy()
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
        ("pause", "paused"),
        ("resume", "armed"),
        ("disarm", "idle"),
        ("finish", "complete"),
    ]:
        src = model.state
        assert model.go(trigger, snap) == (src, expected)


@pytest.mark.parametrize("state", STATES)
def test_every_trigger_in_every_state(state: str) -> None:
    """Table edges move to their destination (guarded ones on a healthy snapshot); anything else is refused
    and leaves the state as it was."""
    allowed = dict(_outgoing(state))
    for trigger in TRIGGERS:
        model = _model_in(state)
        if trigger in allowed:
            assert model.go(trigger, healthy()) == (state, allowed[trigger])
        else:
            with pytest.raises(TransitionRefused) as refused:
                model.go(trigger, healthy())
            assert refused.value.trip is None
            assert model.state == state


@pytest.mark.parametrize("trigger", sorted(GUARD_OF))
def test_a_guarded_transition_without_a_snapshot_never_happens(trigger: str) -> None:
    src = next(s for s, t, _ in EDGES if t == trigger)
    model = _model_in(src)
    with pytest.raises(TransitionRefused):
        model.go(trigger)
    assert model.state == src


@pytest.mark.parametrize(
    ("trigger", "snap_changes", "rule"),
    [
        ("fire", {"safety": safety(estop=True)}, Rule.ESTOP),
        ("fire", {"safety": safety(footswitch=False)}, Rule.FOOTSWITCH_RELEASED),
        ("fire", {"spray": None}, Rule.SPRAY_STATUS_STALE),
        ("arm", {"safety": None}, Rule.SAFETY_INPUTS_STALE),
        ("resume", {"safety": safety(footswitch=False)}, Rule.FOOTSWITCH_RELEASED),
        ("reset", {"safety": safety(tip_distance_mm=-1.0)}, Rule.TIP_IMPLAUSIBLE),
    ],
)
def test_a_failing_guard_refuses_and_names_the_rule(trigger: str, snap_changes: dict[str, object], rule: Rule) -> None:
    src = next(s for s, t, _ in EDGES if t == trigger)
    model = _model_in(src)
    with pytest.raises(TransitionRefused) as refused:
        model.go(trigger, healthy(**snap_changes))
    assert refused.value.trip is not None and refused.value.trip.rule == rule
    assert model.state == src and rule in str(refused.value)


def test_latch_sequence_fault_then_estop() -> None:
    model = ControllerModel()
    build_machine(model)
    model.go("connect")
    model.go("trip")
    model.go("estop_pressed")
    assert model.state == "estop"
    for trigger in ("trip", "estop_pressed"):
        with pytest.raises(TransitionRefused):
            model.go(trigger)  # an E-stop is not downgraded to a fault
    assert model.state == "estop"


def test_unknown_trigger_is_a_bug_not_a_refusal() -> None:
    model = ControllerModel()
    build_machine(model)
    with pytest.raises(AttributeError):
        model.go("to_fault")
    assert model.state == "disconnected"


def _outcome(model: ControllerModel, trigger: str, snapshot: object) -> tuple[object, ...]:
    """What ``go`` did: the (src, dest) it returned, or the refusal (its trip's rule, and why in words)."""
    try:
        return ("moved", model.go(trigger, snapshot), model.state)  # type: ignore[arg-type]
    except TransitionRefused as refused:
        rule = None if refused.trip is None else refused.trip.rule
        return ("refused", rule, str(refused), model.state, model.refusal)


@pytest.mark.parametrize("state", STATES)
def test_plain_edges_do_what_the_machine_does(state: str) -> None:
    """``go``'s index of the machine's plain edges against the machine itself (the index emptied): every
    trigger, on a passing, a failing and a missing snapshot, ends the same way in the same state."""
    assert len(_model_in(state).edges) == len(EDGES)  # every edge of the table is a plain one
    for trigger in TRIGGERS:
        for snapshot in (healthy(), healthy(safety=safety(estop=True)), healthy(spray=None), None):
            indexed, machine_only = _model_in(state), _model_in(state)
            machine_only.edges = {}
            assert _outcome(indexed, trigger, snapshot) == _outcome(machine_only, trigger, snapshot)


def test_a_model_with_its_own_guard_goes_through_the_machine() -> None:
    class Probe(ControllerModel):
        def guard_passes(self, event: object) -> bool:
            return True

    model = Probe()
    build_machine(model)
    assert model.edges == {}
