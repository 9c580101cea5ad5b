"""Exhaustive check of the controller's state machine (tracker issue 9, item 1).

Why: the table in :mod:`plasmactl.controller.machine` is the safety argument, and the ``transitions`` library
decides what the table means (row order, several rows per trigger, unknown sources). So this drives a REAL
machine, built by ``build_machine`` itself, through every state x every trigger x every guard outcome (a
guard is a free boolean: a model subclass answers "passes" or "fails"), records each edge, and checks the
safety properties on what the machine did, not on what the table seems to say. It takes any table of the
same shape, so tests can prove it fails on broken ones.

Definitions used by the checks:

* terminal: ``complete``. No trigger leaves it (the session is over; nothing is powered from it).
* latched: ``fault`` < ``estop`` (in that order of severity).
* non-terminal: every state except the terminal one. From each non-terminal, non-latched state ``trip``
  must reach ``fault``; from each non-terminal state except ``estop`` ``estop_pressed`` must reach ``estop``.
  Both must be unconditional: a guard on them (whatever its outcome) would let a failing guard block it.
* A latched state leaves to a non-latched state only by ``reset`` with its RESET guard passing; any other
  move out of a latched state (``reset`` included) must go to the same or a more severe latched state (an
  E-stop is never downgraded to a fault), and a ``reset`` whose guard fails must not move at all.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from transitions import EventData
from transitions.core import MachineError

from plasmactl.controller.interlocks import Interlock
from plasmactl.controller.machine import GUARDS, LATCHED, STATES, TRANSITIONS, ControllerModel, TransitionRefused
from plasmactl.controller.machine import build_machine as _build_machine

Row = tuple[str, str | tuple[str, ...], str, str | None]
Table = Sequence[Row]

INITIAL = "disconnected"
TERMINAL: tuple[str, ...] = ("complete",)
PULSING, FIRE, FIRE_SOURCE, FIRE_GUARD = "pulsing", "fire", "armed", "FIRE"
RESET, RESET_GUARD = "reset", "RESET"
TRIP, FAULT = "trip", "fault"
ESTOP_PRESSED, ESTOP = "estop_pressed", "estop"
PATH_DEPTH = 6

NOT_AN_EDGE = "not an edge"  # transitions raised MachineError: the table has no row for it here
GUARD_FAILED = "guard failed"  # every row that applied had a guard, and it failed


@dataclass(frozen=True)
class Edge:
    """What the real machine did for one (state, trigger, guard outcome)."""

    src: str
    trigger: str
    outcome: bool | None  # the guard's answer; None when no guarded row was consulted (outcome irrelevant)
    dest: str | None  # None: refused, the state did not change
    refusal: str | None = None  # NOT_AN_EDGE or GUARD_FAILED when refused
    taken_guard: str | None = None  # the guard column of the row that moved, if that row was guarded

    def describe(self) -> str:
        """The edge in words, for a violation sentence."""
        how = {None: "unguarded", True: "guard passes", False: "guard fails"}[self.outcome]
        to = f"refused ({self.refusal})" if self.dest is None else f"-> {self.dest!r}"
        return f"{self.trigger!r} from {self.src!r} ({how}) {to}"


@dataclass
class Report:
    """Counts of what was explored and every property violation found (empty: the table is sound)."""

    states: tuple[str, ...]
    triggers: tuple[str, ...]
    reachable: tuple[str, ...]  # in breadth-first order from INITIAL
    edges: tuple[Edge, ...]
    paths: int  # trigger sequences of length 1..path_depth explored (no-op refusals skipped)
    path_depth: int
    violations: list[str] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return sum(e.dest is None for e in self.edges)

    @property
    def guard_refused(self) -> int:
        return sum(e.refusal == GUARD_FAILED for e in self.edges)

    def summary(self) -> str:
        """The counts the issue asks to print, then the violations."""
        lines = [
            f"states reachable from {INITIAL!r}: {len(self.reachable)} of {len(self.states)}",
            f"triggers: {len(self.triggers)}",
            f"edges explored (state x trigger x guard outcome): {len(self.edges)}",
            f"refused edges: {self.refused} ({self.guard_refused} by a failing guard)",
            f"paths of length <= {self.path_depth} explored: {self.paths}",
            f"violations: {len(self.violations)}",
        ]
        return "\n".join(lines + [f"  - {v}" for v in self.violations])


class _ProbeModel(ControllerModel):
    """A controller model whose every guard answers ``outcome``, noting which guarded rows were asked."""

    def __init__(self, outcome: bool) -> None:
        super().__init__()
        self.outcome = outcome
        self.asked: list[int] = []  # index of each consulted row among the event's rows for this source

    def guard_passes(self, event: EventData) -> bool:
        row = event.transition  # set by transitions before it evaluates the row's conditions
        assert row is not None and event.event is not None
        self.asked.append(event.event.transitions[row.source].index(row))
        self.refusal = None
        return self.outcome


def _sources(source: str | tuple[str, ...]) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else tuple(source)


def _rows_from(table: Table, trigger: str, src: str) -> list[Row]:
    """The rows transitions holds for (trigger, src), in its order (the table's order)."""
    return [row for row in table if row[0] == trigger and src in _sources(row[1])]


def _probe(table: Table, states: Sequence[str], src: str, trigger: str, outcome: bool) -> tuple[Edge, bool]:
    """Fire ``trigger`` in ``src`` on a fresh real machine; returns the edge and whether a guard was asked."""
    model = _ProbeModel(outcome)
    machine = _build_machine(model, table=table, states=states)
    machine.set_state(src)
    try:
        _, dest = model.go(trigger)
    except TransitionRefused as exc:
        kind = NOT_AN_EDGE if isinstance(exc.__cause__, MachineError) else GUARD_FAILED
        return Edge(src, trigger, outcome if model.asked else None, None, kind), bool(model.asked)
    taken = None
    if model.asked and outcome:  # the first row consulted passed, so it is the row that moved
        taken = _rows_from(table, trigger, src)[model.asked[0]][3]
    return Edge(src, trigger, outcome if model.asked else None, dest, None, taken), bool(model.asked)


def explore(table: Table, states: Sequence[str], triggers: Sequence[str]) -> tuple[tuple[str, ...], list[Edge]]:
    """Breadth-first from INITIAL over the real machine; then the unreachable states, so all are probed."""
    edges: list[Edge] = []
    seen, queue = {INITIAL}, deque([INITIAL])
    reachable: list[str] = []

    def probe_all(src: str) -> list[Edge]:
        out: list[Edge] = []
        for trigger in triggers:
            edge, asked = _probe(table, states, src, trigger, True)
            out.append(edge)
            if asked:  # the guard mattered: the other outcome too
                out.append(_probe(table, states, src, trigger, False)[0])
        return out

    while queue:
        src = queue.popleft()
        reachable.append(src)
        for edge in probe_all(src):
            edges.append(edge)
            if edge.dest is not None and edge.dest not in seen:
                seen.add(edge.dest)
                queue.append(edge.dest)
    for src in states:
        if src not in seen:
            edges.extend(probe_all(src))
    return tuple(reachable), edges


def _pulse_ok(edge: Edge) -> bool:
    return edge.src == FIRE_SOURCE and edge.trigger == FIRE and edge.outcome is True and edge.taken_guard == FIRE_GUARD


def _edge_violations(edges: Sequence[Edge], states: Sequence[str], latched: Sequence[str]) -> list[str]:
    """Properties of single edges: the pulse gate, failed guards, the safe state, the latch, the end."""
    out: list[str] = []
    by: dict[tuple[str, str], list[Edge]] = {}
    for e in edges:
        by.setdefault((e.src, e.trigger), []).append(e)
        if e.dest == PULSING and not _pulse_ok(e):
            where = f"from latched state {e.src!r}" if e.src in latched else "other than by a passing FIRE guard"
            out.append(
                f"{e.describe()}: {PULSING!r} is reached {where}; only {FIRE!r} from {FIRE_SOURCE!r} with its "
                f"{FIRE_GUARD} guard passing may start a pulse"
            )
        if e.outcome is False and e.dest is not None:
            out.append(f"{e.describe()}: a guarded trigger whose guard fails must not change state")
        if e.src in TERMINAL and e.dest is not None:
            out.append(f"{e.describe()}: terminal state {e.src!r} must not be left by any trigger")
        if e.src in latched and e.dest is not None:
            if e.dest in latched:
                if latched.index(e.dest) < latched.index(e.src):
                    out.append(f"{e.describe()}: a latched state must not be downgraded to a less severe one")
            elif not (e.trigger == RESET and e.outcome is True and e.taken_guard == RESET_GUARD):
                out.append(
                    f"{e.describe()}: latched state {e.src!r} may be left only by {RESET!r} with its "
                    f"{RESET_GUARD} guard passing"
                )
    for src in states:
        if src in TERMINAL:
            continue
        musts = [] if src in latched else [(TRIP, FAULT)]
        if src != ESTOP:
            musts.append((ESTOP_PRESSED, ESTOP))
        for trigger, safe in musts:
            if (src, trigger) not in by:  # not even a trigger of the table, so never probed
                out.append(f"{trigger!r} is not a trigger of the table; from {src!r} it must lead to {safe!r}")
            for e in by.get((src, trigger), []):
                if e.dest != safe or e.outcome is not None:
                    out.append(f"{e.describe()}: from {src!r} {trigger!r} must lead to {safe!r}, unguarded")
        if src in latched:
            resets = by.get((src, RESET), [])
            if not any(e.outcome is True and e.dest is not None and e.dest not in latched for e in resets):
                out.append(f"latched state {src!r} has no {RESET!r} out of the latch when its guard passes")
            for e in resets:
                if e.outcome is False and e.dest is not None and e.dest not in latched:
                    out.append(f"{e.describe()}: a {RESET!r} whose guard fails must keep {src!r} latched")
    return out


def count_paths(edges: Sequence[Edge], depth: int) -> tuple[int, list[str]]:
    """Every trigger sequence of length 1..depth from INITIAL, both guard outcomes, on the recorded edges.

    The machine is memoryless apart from its state, so the recorded edges are what it does along any path.
    A trigger that is not an edge changes neither state nor history, so such steps are skipped (a sequence
    with them is the same run as one without). Tracks "a FIRE guard failed and no passing fire since": a
    sequence that then reaches ``pulsing`` other than by a new passing fire is a violation.
    """
    moves: dict[str, list[Edge]] = {}
    for e in edges:
        if e.refusal != NOT_AN_EDGE:
            moves.setdefault(e.src, []).append(e)
    found: dict[Edge, tuple[str, ...]] = {}
    count = 0

    def walk(state: str, failed_fire: bool, path: tuple[str, ...]) -> None:
        nonlocal count
        if len(path) == depth:
            return
        for e in moves.get(state, []):
            count += 1
            step = (*path, e.trigger if e.outcome is None else f"{e.trigger}[{'pass' if e.outcome else 'fail'}]")
            if failed_fire and e.dest == PULSING and not _pulse_ok(e) and e not in found:
                found[e] = step
            failed = (failed_fire or (e.trigger == FIRE and e.outcome is False)) and not _pulse_ok(e)
            walk(state if e.dest is None else e.dest, failed, step)

    walk(INITIAL, False, ())
    return count, [
        f"path {' -> '.join(p)} reaches {PULSING!r} after a failed {FIRE_GUARD} guard without a new {FIRE!r} passing it"
        for p in found.values()
    ]


def check(
    table: Table = TRANSITIONS,
    *,
    states: Sequence[str] = STATES,
    latched: Sequence[str] = LATCHED,
    guards: Mapping[str, tuple[Interlock, ...]] = GUARDS,
    path_depth: int = PATH_DEPTH,
) -> Report:
    """Explore ``table`` exhaustively and check every property; the report lists each violation found."""
    named = [s for trigger, source, dest, _ in table for s in (*_sources(source), dest)]
    extra = [s for s in dict.fromkeys(named) if s not in states]
    all_states = (*states, *extra)
    triggers = tuple(dict.fromkeys(row[0] for row in table))
    reachable, edges = explore(table, all_states, triggers)
    violations = [f"state {s!r} appears in the table but not among the declared states" for s in extra]
    violations += [f"state {s!r} is not reachable from {INITIAL!r}" for s in all_states if s not in reachable]
    violations += [
        f"trigger {t!r} is not used (never moves) from any reachable state"
        for t in triggers
        if not any(e.trigger == t and e.dest is not None and e.src in reachable for e in edges)
    ]
    violations += [
        f"guard {g!r} of trigger {t!r} is not defined in GUARDS"
        for t, _, _, g in table
        if g is not None and g not in guards
    ]
    violations += _edge_violations(edges, all_states, latched)
    paths, path_violations = count_paths(edges, path_depth)
    violations += path_violations
    return Report(all_states, triggers, reachable, tuple(edges), paths, path_depth, violations)


def main() -> int:
    """Print the counts and violations of the controller's own table; exit 1 if any."""
    report = check()
    print(report.summary())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
