"""The controller's states and transitions, declared once, as a table.

Read it top to bottom: each row is ``(trigger, from, to)``. The latched states (fault, estop) leave only
by ``reset``, whose guard checks that the cause is gone. ``docs/state-machine.md`` is generated from
this table (``plasmactl diagram``) and a test fails when it is stale.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from transitions.extensions.asyncio import AsyncMachine

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

#  trigger                  source(s)                                        dest
TRANSITIONS: tuple[tuple[str, str | tuple[str, ...], str], ...] = (
    ("connect",              "disconnected",                                  "self_test"),
    ("self_test_passed",     "self_test",                                     "idle"),
    ("arm",                  "idle",                                          "armed"),
    ("fire",                 "armed",                                         "pulsing"),
    ("pulse_ended",          "pulsing",                                       "awaiting_cooling"),
    ("pulse_ended_uncooled", "pulsing",                                       "armed"),
    ("spray_confirmed",      "awaiting_cooling",                              "cooling"),
    ("spray_done",           "cooling",                                       "armed"),
    ("pause",                ACTIVE,                                          "paused"),
    ("resume",               "paused",                                        "armed"),
    ("disarm",               ("armed", "paused"),                             "idle"),
    ("finish",               "idle",                                          "complete"),
    ("abort",                RUNNING,                                         "idle"),
    ("trip",                 (*RUNNING, "disconnected"),                     "fault"),
    ("estop_pressed",        (*RUNNING, "disconnected", "fault"),             "estop"),
    ("reset",                LATCHED,                                         "idle"),
)  # fmt: skip


class ControllerModel:
    """The object transitions attaches ``state`` and the trigger methods to."""

    state: str
    trigger: Callable[..., Awaitable[bool]]  # attached by transitions

    def __init__(self) -> None:
        self.history: deque[tuple[str, str, str]] = deque(maxlen=64)
        self.reset_permitted = False

    def can_reset(self) -> bool:
        return self.reset_permitted


def build_machine(model: ControllerModel, **kwargs: Any) -> AsyncMachine:
    """An AsyncMachine over the table; no auto transitions, so only the table's edges exist."""
    transitions: list[dict[str, Any]] = []
    for trigger, source, dest in TRANSITIONS:
        row: dict[str, Any] = {
            "trigger": trigger,
            "source": list(source) if isinstance(source, tuple) else source,
            "dest": dest,
        }
        if trigger == "reset":
            row["conditions"] = "can_reset"
        transitions.append(row)
    return AsyncMachine(
        model=model,
        states=list(STATES),
        transitions=transitions,
        initial="disconnected",
        auto_transitions=False,
        ignore_invalid_triggers=False,
        queued=False,
        **kwargs,
    )


def edges() -> list[tuple[str, str, str]]:
    """Every (source, trigger, dest) edge, sources expanded."""
    out: list[tuple[str, str, str]] = []
    for trigger, source, dest in TRANSITIONS:
        for src in (source,) if isinstance(source, str) else source:
            out.append((src, trigger, dest))
    return out


def mermaid() -> str:
    """The table as a Mermaid state diagram (the committed docs/state-machine.md embeds this)."""
    lines = ["stateDiagram-v2", "    [*] --> disconnected"]
    for src, trigger, dest in edges():
        lines.append(f"    {src} --> {dest} : {trigger}")
    lines.append("    complete --> [*]")
    return "\n".join(lines) + "\n"


def diagram_markdown() -> str:
    return (
        "# Controller state machine\n\n"
        "Generated from `src/plasmactl/controller/machine.py` by `plasmactl diagram`; do not edit by hand.\n"
        "The latched states `fault` and `estop` leave by `reset`, guarded by the cause being gone"
        " (and `fault` escalates to `estop` when the E-stop is pressed).\n\n"
        "```mermaid\n" + mermaid() + "```\n"
    )
