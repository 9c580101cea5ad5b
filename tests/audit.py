"""Checks of a session's audit log, from the log alone (what a reviewer of a record would check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plasmactl.events import read_events
from plasmactl.session import SessionInputs, run_blocking

Event = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ACTIONS = ("plasma_off", "plasma_disarm", "pulse_start", "spray_command", "spray_start")


def run_to_log(inputs: SessionInputs, out: Path) -> list[Event]:
    run_blocking(inputs, out, handle_sigint=False)
    return read_events(out / "events.jsonl")


def limits_of(events: list[Event]) -> dict[str, Any]:
    start = events[0]
    assert start["event"] == "session_start"
    limits: dict[str, Any] = start["limits"]
    return limits


def first(events: list[Event], name: str, **match: Any) -> int | None:
    for i, e in enumerate(events):
        if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
            return i
    return None


def cooling_violations(events: list[Event]) -> list[str]:
    """Every pulse_end must be followed by a spray_start that covers it within max_cooling_delay."""
    limit_s = limits_of(events)["max_cooling_delay_ms"] / 1000.0
    problems: list[str] = []
    ends = {e["pulse"]: e for e in events if e["event"] == "pulse_end"}
    cooled: dict[int, Event] = {}
    for e in events:
        if e["event"] == "spray_start":
            for p in e["pulses"]:
                cooled[p] = e
    for p, end in ends.items():
        spray = cooled.get(p)
        if spray is None:
            problems.append(f"pulse {p} never cooled")
            continue
        if spray["t"] < end["t"]:
            problems.append(f"pulse {p}: spray_start before pulse_end")
        if spray["t_open"] - end["t_end"] > limit_s + 1e-9:
            problems.append(f"pulse {p}: valve open {spray['t_open'] - end['t_end']:.4f} s after the pulse end")
        if spray["t"] - end["t"] > limit_s + 1e-9:
            problems.append(f"pulse {p}: spray_start logged {spray['t'] - end['t']:.4f} s after pulse_end")
    return problems


def skin_violations(events: list[Event]) -> list[str]:
    """No pulse may start with the skin at or over its limit, or without a fresh reading."""
    limits = limits_of(events)
    problems: list[str] = []
    for e in events:
        if e["event"] != "pulse_start":
            continue
        if e["skin_c"] is None or e["skin_c"] >= limits["skin_temp_max_c"]:
            problems.append(f"pulse {e['pulse']} started at skin {e['skin_c']} C")
        elif (e["t"] - e["skin_t"]) * 1000.0 > limits["reading_max_age_ms"]:
            problems.append(f"pulse {e['pulse']} started on a stale reading")
    return problems


def names(events: list[Event]) -> list[str]:
    return [e["event"] for e in events]
