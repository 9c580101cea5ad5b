"""The controller's states and transitions, declared once, as a table with its guard column.

Read it top to bottom: each row is ``(trigger, from, to, guard)``. A guard names the rule set that must
pass on a fresh snapshot for the transition to happen (``arm``, ``fire``, ``resume``, ``reset``); the
machine itself re-checks it (the snapshot travels with the trigger), so a transition whose guard fails
is refused even if a caller forgot to ask. The latched states (fault, estop) leave only by ``reset``.
``finish`` from ``paused`` is the plan's end with the footswitch up: nothing left to fire, the last cooling
done (the sequencer decides that, not a snapshot; ``complete`` fires nothing).
``docs/state-machine.md`` is generated from this table (``plasmactl diagram``) and a test fails when it
is stale. The machine is transitions' synchronous ``Machine``: guards are pure and every action (device
I/O) belongs to the one task that triggers it, so nothing here awaits. When the built machine has nothing
but the table (no callbacks; the one guard condition), ``go`` takes its edges from an index of that very
machine (a session takes thousands): the same edges, the same guard on the same snapshot, the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transitions import Event, EventData, Machine
from transitions.core import MachineError

from plasmactl.controller import interlocks as il
from plasmactl.controller.interlocks import Interlock
from plasmactl.controller.trips import Rule, Snapshot, Trip

STATES: tuple[str, ...] = (
    "disconnected",
    "self_test",
    "idle",
    "armed",
    "pulsing",
    "awaiting_cooling",
    "cooling",
    "paused",
    "fault",  # latched
    "estop",  # latched
    "complete",
)
LATCHED = ("fault", "estop")
RUNNING = ("self_test", "idle", "armed", "pulsing", "awaiting_cooling", "cooling", "paused")
ACTIVE = ("armed", "pulsing", "awaiting_cooling", "cooling")  # emission may happen or has just happened

# ----------------------------------------------------------------------------- guard sets
# What must pass (in this order: the first failing rule is the reason given) for each guarded transition.
_EMISSION: tuple[Interlock, ...] = (
    il.estop,
    il.tip_window,
    il.thermometer_stale,
    il.thermometer_plausible,
    il.skin_temp_hard,
    il.skin_temp_before_pulse,
    il.reservoir,
    il.plasma_status_fresh,
    il.unexpected_output,
    il.device_fault_codes,
    il.watchdog,
    il.session_time,
)
GUARDS: Mapping[str, tuple[Interlock, ...]] = {
    "ARM": _EMISSION,
    "FIRE": (
        il.estop,
        il.footswitch,
        *_EMISSION[1:],
        il.thermometer_stuck,
        il.spot_dose,
        il.window_reachable,
    ),
    "RESUME": (il.estop, il.footswitch, *_EMISSION[1:]),
    "RESET": _EMISSION,
}

# ----------------------------------------------------------------------------- watch sets
# What the watches re-check while a session runs (the first trip found is posted to the owner), and the rules
# only events raise (a failed command, a read that did not answer, the safe state's own findings).
EVENT_RULES: tuple[Rule, ...] = (
    Rule.DEVICE_NO_REPLY,
    Rule.CONTROLLER_ERROR,
    Rule.SELF_TEST_FAILED,
    Rule.SAFETY_INPUTS_STALE,
    Rule.VALVE_NOT_CLOSED,
)

SELF_TEST: tuple[Interlock, ...] = (
    il.estop,
    il.device_fault_codes,
    il.thermometer_plausible,
    il.setpoints_read_back,
    il.valve_closed_at_start,
)
# Re-checked by the monitor while a session runs; near emission also what only matters then.
CONTINUOUS: tuple[Interlock, ...] = (
    il.estop,
    il.thermometer_stale,
    il.thermometer_plausible,
    il.skin_temp_hard,
    il.thermometer_stuck,
    il.device_fault_codes,
    il.watchdog,
    il.session_time,
    il.pause_timeout,
    il.unexpected_output,
    il.spray_flowing,
    il.valve_closed,
)
CONTINUOUS_ACTIVE: tuple[Interlock, ...] = (*CONTINUOUS, il.footswitch, il.tip_window)
PULSE_WATCH: tuple[Interlock, ...] = (il.pulse_bound,)
PULSE_END: tuple[Interlock, ...] = (il.pulse_energy,)
COOLING_WATCH: tuple[Interlock, ...] = (il.cooling_deadline, il.valve_closed)
FLOW_WATCH: tuple[Interlock, ...] = (il.spray_flowing,)
DEADLINES: tuple[Interlock, ...] = (il.cooling_deadline, il.pause_timeout)  # judged when a timer says so

#  trigger                  source(s)                                        dest                guard
TRANSITIONS: tuple[tuple[str, str | tuple[str, ...], str, str | None], ...] = (
    ("connect",              "disconnected",                                  "self_test",        None),
    ("self_test_passed",     "self_test",                                     "idle",             None),
    ("arm",                  "idle",                                          "armed",            "ARM"),
    ("fire",                 "armed",                                         "pulsing",          "FIRE"),
    ("pulse_ended",          "pulsing",                                       "awaiting_cooling", None),
    ("pulse_ended_uncooled", "pulsing",                                       "armed",            None),
    ("spray_confirmed",      "awaiting_cooling",                              "cooling",          None),
    ("spray_done",           "cooling",                                       "armed",            None),
    ("pause",                ("idle", *ACTIVE),                               "paused",           None),
    ("resume",               "paused",                                        "armed",            "RESUME"),
    ("disarm",               "armed",                                         "idle",             None),
    ("finish",               ("idle", "paused"),                              "complete",         None),
    ("abort",                RUNNING,                                         "idle",             None),
    ("trip",                 (*RUNNING, "disconnected"),                     "fault",            None),
    ("estop_pressed",        (*RUNNING, "disconnected", "fault"),             "estop",            None),
    ("reset",                LATCHED,                                         "idle",             "RESET"),
)  # fmt: skip

GUARD_OF: Mapping[str, str] = {trigger: guard for trigger, _, _, guard in TRANSITIONS if guard is not None}


class TransitionRefused(Exception):
    """A trigger the table does not allow in the current state, or whose guard failed."""

    def __init__(self, trigger: str, state: str, trip: Trip | None = None) -> None:
        why = f": {trip.rule} ({trip.reason})" if trip is not None else ""
        super().__init__(f"transition {trigger!r} refused in state {state!r}{why}")
        self.trigger = trigger
        self.state = state
        self.trip = trip


class ControllerModel:
    """The object transitions attaches ``state`` to; ``go`` is the only way to change it."""

    state: str
    trigger: Callable[..., bool]  # attached by transitions

    def __init__(self) -> None:
        self.refusal: Trip | None = None  # why the last guarded trigger was refused
        self.events: Mapping[str, Event] = {}  # the machine's events, set by build_machine
        # (state, trigger) -> (dest, guarded) for the machine's plain edges, set by build_machine (see _plain_edges)
        self.edges: Mapping[tuple[str, str], tuple[str, bool]] = {}

    def guard_passes(self, event: EventData) -> bool:
        """The condition of every guarded row: the row's rule set on the snapshot sent with the trigger."""
        snapshot = event.kwargs.get("snapshot")
        if not isinstance(snapshot, Snapshot):
            self.refusal = None
            return False  # fail closed: a guarded transition without a snapshot never happens
        self.refusal = il.first_trip(GUARDS[GUARD_OF[event.event.name]], snapshot)
        return self.refusal is None

    def go(self, trigger: str, snapshot: Snapshot | None = None) -> tuple[str, str]:
        """Fire ``trigger``; returns (source, destination) or raises :class:`TransitionRefused`."""
        src = self.state
        edge = self.edges.get((src, trigger))
        if edge is not None:  # what the machine does on this edge, without its per-trigger bookkeeping
            dest, guarded = edge
            if guarded:
                if not isinstance(snapshot, Snapshot):
                    self.refusal = None
                    raise TransitionRefused(trigger, src, None)  # fail closed, as guard_passes does
                self.refusal = il.first_trip(GUARDS[GUARD_OF[trigger]], snapshot)
                if self.refusal is not None:
                    raise TransitionRefused(trigger, src, self.refusal)
            self.state = dest
            return src, dest
        event = self.events.get(trigger)
        try:
            if event is not None:  # the machine's own event, without model.trigger's lookup by name
                ok = event.trigger(self, snapshot=snapshot)
            else:  # an unknown name: what transitions says about it
                ok = self.trigger(trigger, snapshot=snapshot)
        except MachineError as exc:  # not an edge of the table from this state
            raise TransitionRefused(trigger, src) from exc
        if not ok:
            raise TransitionRefused(trigger, src, self.refusal)
        return src, self.state


def build_machine(
    model: ControllerModel,
    *,
    table: Sequence[tuple[str, str | tuple[str, ...], str, str | None]] = TRANSITIONS,
    states: Sequence[str] = STATES,
    **kwargs: Any,
) -> Machine:
    """A Machine over the table; no auto transitions, so only the table's edges exist.

    ``table``/``states`` default to the controller's own; only ``machine_check`` passes others (broken tables
    it must catch), so the machine it explores is built by this very function.
    """
    rows: list[dict[str, Any]] = []
    for trigger, source, dest, guard in table:
        row: dict[str, Any] = {"trigger": trigger, "source": list(source) if isinstance(source, tuple) else source}
        row["dest"] = dest
        if guard is not None:
            row["conditions"] = "guard_passes"
        rows.append(row)
    machine = Machine(
        model=model,
        states=list(states),
        transitions=rows,
        initial="disconnected",
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=True,
        **kwargs,
    )
    model.events = machine.events
    model.edges = _plain_edges(machine, model)
    return machine


def _plain_edges(machine: Machine, model: ControllerModel) -> dict[tuple[str, str], tuple[str, bool]]:
    """The edges on which the machine would only check ``guard_passes`` and set the state: one row for the
    (state, trigger), no callbacks anywhere, the model's guard the one above. Empty when any of that does
    not hold (a probe model's own guard, callbacks passed in): then every trigger goes through the machine."""
    hooks = ("prepare_event", "before_state_change", "after_state_change", "finalize_event", "on_exception")
    if (
        type(model).guard_passes is not ControllerModel.guard_passes
        or machine.model_attribute != "state"
        or machine.has_queue
        or any(getattr(machine, hook) for hook in (*hooks, "on_final"))
        or any(st.on_enter or st.on_exit or st.final for st in machine.states.values())
    ):
        return {}
    edges: dict[tuple[str, str], tuple[str, bool]] = {}
    for name, event in machine.events.items():
        for src, rows in event.transitions.items():
            if len(rows) != 1:
                continue
            row = rows[0]
            conditions = [(c.func, c.target) for c in row.conditions]
            if (
                row.prepare
                or row.before
                or row.after
                or row.dest is None
                or conditions not in ([], [("guard_passes", True)])
            ):
                continue
            edges[(src, name)] = (row.dest, bool(conditions))
    return edges


def edges() -> list[tuple[str, str, str]]:
    """Every (source, trigger, dest) edge, sources expanded."""
    return [
        (src, trigger, dest)
        for trigger, source, dest, _ in TRANSITIONS
        for src in ((source,) if isinstance(source, str) else source)
    ]


def guard_rules(guard: str) -> list[str]:
    """The rule names a guard set can trip on, in its order."""
    return list(dict.fromkeys(str(r) for fn in GUARDS[guard] for r in il.rules_of(fn)))


def mermaid() -> str:
    """The table as a Mermaid state diagram (the committed docs/state-machine.md embeds this)."""
    lines = ["stateDiagram-v2", "    [*] --> disconnected"]
    guard = {trigger: g for trigger, _, _, g in TRANSITIONS}
    for src, trigger, dest in edges():
        label = f"{trigger} [{guard[trigger]}]" if guard[trigger] else trigger
        lines.append(f"    {src} --> {dest} : {label}")
    lines.append("    complete --> [*]")
    return "\n".join(lines) + "\n"


def diagram_markdown() -> str:
    guards = "\n".join(f"- **{g}**: " + ", ".join(f"`{r}`" for r in guard_rules(g)) for g in GUARDS)
    return (
        "# Controller state machine\n\n"
        "Generated from `src/plasmactl/controller/machine.py` by `plasmactl diagram`; do not edit by hand.\n"
        "The latched states `fault` and `estop` leave by `reset`, guarded by the cause being gone"
        " (and `fault` escalates to `estop` when the E-stop is pressed). A transition in brackets is"
        " guarded: every rule of its set must pass on a fresh snapshot.\n\n"
        "```mermaid\n" + mermaid() + "```\n\n"
        "## Guard sets (the rules each one checks, in order)\n\n" + guards + "\n"
    )
