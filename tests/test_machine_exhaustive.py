"""Exhaustive check of the state machine (src/plasmactl/controller/machine_check.py, issue 9 item 1).

The controller's own table must pass with every state reachable, and the counts are printed (``pytest -s``).
The checker must also be able to fail: each mutated table below breaks one safety property and must yield
that property's violation, so a passing run on the real table means something.
"""

from __future__ import annotations

from functools import cache

import pytest

from plasmactl.controller import machine_check as mc
from plasmactl.controller.machine import GUARD_OF, RUNNING, STATES, TRANSITIONS, edges
from plasmactl.controller.machine_check import Row, Table

pytestmark = pytest.mark.hazard("H11")

TRIGGERS = tuple(dict.fromkeys(row[0] for row in TRANSITIONS))


def _replace(trigger: str, *, source: str | tuple[str, ...] | None = None, guard: str | None = "keep") -> Table:
    """The table with the (single) row of ``trigger`` changed."""
    out: list[Row] = []
    for t, src, dest, g in TRANSITIONS:
        if t == trigger:
            src = src if source is None else source
            g = g if guard == "keep" else guard
        out.append((t, src, dest, g))
    return tuple(out)


def _without_source(trigger: str, state: str) -> Table:
    return _replace(trigger, source=tuple(s for s in next(r[1] for r in TRANSITIONS if r[0] == trigger) if s != state))


def _plus(*rows: Row) -> Table:
    return (*TRANSITIONS, *rows)


def test_the_real_table_has_no_violation() -> None:
    report = mc.check()
    print("\n" + report.summary())
    assert report.violations == []
    assert set(report.reachable) == set(STATES) and len(report.reachable) == 11
    assert report.reachable[0] == "disconnected" and report.triggers == TRIGGERS
    # every state x every trigger, and the guarded (state, trigger) pairs once more for the failing outcome
    guarded = sum(1 for _, trigger, _ in edges() if trigger in GUARD_OF)
    assert len(report.edges) == len(STATES) * len(TRIGGERS) + guarded
    moved = sorted((e.src, e.trigger, e.dest) for e in report.edges if e.dest is not None)
    assert moved == sorted(edges())  # the real machine moved on exactly the table's edges
    assert report.refused == len(report.edges) - len(moved) and report.guard_refused == guarded


def test_the_failing_guards_are_refusals_on_the_real_machine() -> None:
    by = {(e.src, e.trigger, e.outcome): e for e in mc.check().edges}
    for src, trigger, dest in edges():
        if trigger in GUARD_OF:
            assert by[src, trigger, True].dest == dest and by[src, trigger, True].taken_guard == GUARD_OF[trigger]
            assert by[src, trigger, False].dest is None and by[src, trigger, False].refusal == mc.GUARD_FAILED
        else:
            assert by[src, trigger, None].dest == dest


def test_path_count_matches_an_independent_count_on_the_table() -> None:
    """Sequences of 1..6 steps, a guarded edge counted twice (passes: moves; fails: stays)."""
    table = edges()

    @cache
    def n(state: str, depth: int) -> int:
        if depth == 0:
            return 0
        total = 0
        for src, trigger, dest in table:
            if src == state:
                total += 1 + n(dest, depth - 1)
                if trigger in GUARD_OF:
                    total += 1 + n(state, depth - 1)
        return total

    assert mc.check().paths == n("disconnected", mc.PATH_DEPTH)


def test_main_prints_the_counts_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert mc.main() == 0
    out = capsys.readouterr().out
    print(out)
    assert "states reachable from 'disconnected': 11 of 11" in out and "violations: 0" in out
    assert f"paths of length <= {mc.PATH_DEPTH} explored: " in out


LATCHED_TO_FIRE = "'pulsing' is reached from latched state 'fault'"
NOT_BY_FIRE = "'pulsing' is reached other than by a passing FIRE guard"

# (id, mutated table, extra declared states, every violation fragment that must appear)
MUTATIONS: list[tuple[str, Table, tuple[str, ...], tuple[str, ...]]] = [
    (
        "fire-from-paused",
        _plus(("fire", "paused", "pulsing", None)),
        (),
        (
            f"'fire' from 'paused' (unguarded) -> 'pulsing': {NOT_BY_FIRE}",
            "reaches 'pulsing' after a failed FIRE guard without a new 'fire' passing it",
        ),
    ),
    (
        "fire-unguarded",
        _replace("fire", guard=None),
        (),
        (f"'fire' from 'armed' (unguarded) -> 'pulsing': {NOT_BY_FIRE}",),
    ),
    (
        "fire-by-the-arm-guard",
        _replace("fire", guard="ARM"),
        (),
        (f"(guard passes) -> 'pulsing': {NOT_BY_FIRE}", "-> fire[fail] -> fire[pass] reaches 'pulsing'"),
    ),
    (
        "fire-from-fault",
        _plus(("fire", "fault", "pulsing", "FIRE")),
        (),
        (f"'fire' from 'fault' (guard passes) -> 'pulsing': {LATCHED_TO_FIRE}",),
    ),
    (
        "reset-unguarded",
        _replace("reset", guard=None),
        (),
        (
            "'reset' from 'fault' (unguarded) -> 'idle': latched state 'fault' may be left only by 'reset' with",
            "'reset' from 'estop' (unguarded) -> 'idle': latched state 'estop' may be left only by 'reset' with",
        ),
    ),
    (
        "reset-falls-through-to-an-unguarded-row",  # only the real machine shows a failed guard still moving
        _plus(("reset", "fault", "idle", None)),
        (),
        (
            "'reset' from 'fault' (guard fails) -> 'idle': a guarded trigger whose guard fails must not change state",
            "'reset' from 'fault' (guard fails) -> 'idle': a 'reset' whose guard fails must keep 'fault' latched",
        ),
    ),
    (
        "arm-out-of-fault",
        _plus(("arm", "fault", "armed", "ARM")),
        (),
        ("'arm' from 'fault' (guard passes) -> 'armed': latched state 'fault' may be left only by 'reset'",),
    ),
    (
        "resume-out-of-fault-unguarded",
        _plus(("resume", "fault", "armed", None)),
        (),
        ("'resume' from 'fault' (unguarded) -> 'armed': latched state 'fault' may be left only by 'reset'",),
    ),
    (
        "estop-downgraded-to-fault",
        _plus(("trip", "estop", "fault", None)),
        (),
        ("'trip' from 'estop' (unguarded) -> 'fault': a latched state must not be downgraded",),
    ),
    (
        "no-reset-from-estop",
        _replace("reset", source=("fault",)),
        (),
        ("latched state 'estop' has no 'reset' out of the latch when its guard passes",),
    ),
    (
        "trip-missing-from-cooling",
        _without_source("trip", "cooling"),
        (),
        ("'trip' from 'cooling' (unguarded) refused (not an edge): from 'cooling' 'trip' must lead to 'fault'",),
    ),
    (
        "no-trip-row-at-all",
        tuple(row for row in TRANSITIONS if row[0] != "trip"),
        (),
        ("'trip' is not a trigger of the table; from 'cooling' it must lead to 'fault'",),
    ),
    (
        "estop-missing-from-paused",
        _without_source("estop_pressed", "paused"),
        (),
        ("'estop_pressed' from 'paused' (unguarded) refused (not an edge): from 'paused' 'estop_pressed' must",),
    ),
    (
        "estop-missing-from-fault",
        _without_source("estop_pressed", "fault"),
        (),
        ("'estop_pressed' from 'fault' (unguarded) refused (not an edge): from 'fault' 'estop_pressed' must",),
    ),
    (
        "trip-guarded",
        _replace("trip", guard="RESET"),
        (),
        (
            "'trip' from 'idle' (guard fails) refused (guard failed): from 'idle' 'trip' must lead to 'fault'",
            "'trip' from 'idle' (guard passes) -> 'fault': from 'idle' 'trip' must lead to 'fault', unguarded",
        ),
    ),
    (
        "complete-not-terminal",
        _plus(("connect", "complete", "self_test", None)),
        (),
        ("'connect' from 'complete' (unguarded) -> 'self_test': terminal state 'complete' must not be left",),
    ),
    ("extra-declared-state", TRANSITIONS, ("limbo",), ("state 'limbo' is not reachable from 'disconnected'",)),
    (
        "extra-state-only-in-the-table",
        _plus(("warp", "limbo", "idle", None)),
        (),
        (
            "state 'limbo' appears in the table but not among the declared states",
            "state 'limbo' is not reachable from 'disconnected'",
            "trigger 'warp' is not used (never moves) from any reachable state",
        ),
    ),
    (
        "unknown-guard",
        _replace("arm", guard="ARM_TYPO"),
        (),
        ("guard 'ARM_TYPO' of trigger 'arm' is not defined in GUARDS",),
    ),
    (
        "self-test-unreachable",
        _replace("connect", source=("self_test",)),  # the only way in starts inside it
        (),
        (
            "state 'self_test' is not reachable from 'disconnected'",
            "trigger 'connect' is not used (never moves) from any reachable state",
            "trigger 'self_test_passed' is not used (never moves) from any reachable state",
        ),
    ),
]


@pytest.mark.parametrize(("table", "extra", "expected"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_a_broken_table_fails_the_check(table: Table, extra: tuple[str, ...], expected: tuple[str, ...]) -> None:
    report = mc.check(table, states=(*STATES, *extra))
    assert report.violations, "the checker passed a broken table"
    for fragment in expected:
        assert any(fragment in v for v in report.violations), (fragment, report.violations)


@pytest.mark.parametrize(("trigger", "safe"), [("trip", "fault"), ("estop_pressed", "estop")])
@pytest.mark.parametrize("state", (*RUNNING, "disconnected"))
def test_removing_the_safe_state_from_any_running_state_is_caught(trigger: str, safe: str, state: str) -> None:
    """Not only cooling and paused: ``trip``/``estop_pressed`` missing from any one running state is caught."""
    report = mc.check(_without_source(trigger, state))
    assert any(f"from {state!r} {trigger!r} must lead to {safe!r}" in v for v in report.violations)


def test_main_exits_1_on_a_violation(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real_check = mc.check
    monkeypatch.setattr(mc, "check", lambda: real_check(_replace("fire", guard=None)))
    assert mc.main() == 1
    assert "violations: 1\n  - 'fire' from 'armed' (unguarded) -> 'pulsing'" in capsys.readouterr().out
