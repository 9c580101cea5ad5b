"""Two audit logs compared event by event: the recorded session's and its replay's (``plasmactl replay``).

Never compared: the chain's ``prev_sha256`` (it hashes the previous line, wall time included) and wall-clock
fields (``wall_time``, any ``wall_*``). Session times (``t``, ``t_*``, ``*_t``, in seconds) and durations in
milliseconds (``*_ms``: a spray delay is a difference of two session times) agree within an absolute
tolerance (``--tolerance-ms``); other floats within a relative and an absolute tolerance; everything else
(names, integers, strings, booleans, nulls, the shape of lists and tables) exactly, nested fields too.

A session that cannot be replayed deterministically (on the real clock, or on devices on wires) is compared
as a *sequence*: the events whose number depends on timing and transport (readings, communication errors,
the served simulators' address, the tissue physics) are left out of both logs, and so are all floats
(times, and values measured at a time the clock chose); what is compared is the order of the other events
and their non-float fields: states, pulse and spot numbers, causes, outcomes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plasmactl.log_chain import PREV_FIELD

Mode = Literal["exact", "sequence"]
Numbered = tuple[int, Mapping[str, Any]]  # (1-based line in its file, the record)

NEVER_COMPARED = frozenset({PREV_FIELD, "wall_time"})
# left out of a sequence comparison: how many there are depends on the clock and the transport
TIMING_EVENTS = frozenset(
    {
        "reading",
        "comm_error",
        "fire_held",
        "serve_sim",
        "device_lease",
        "tissue",
        "tissue_summary",
        "tissue_error",
        "listener_error",
    }
)
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "(absent)"})()
SHOWN_CHARS = 400  # of a whole event in the divergence report


@dataclass(frozen=True)
class Tolerances:
    time_ms: float = 1.0
    rel: float = 1e-6
    abs: float = 1e-9


@dataclass(frozen=True)
class FieldDiff:
    path: str
    expected: Any
    got: Any
    note: str = ""

    def __str__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.path}: expected {show(self.expected)}, got {show(self.got)}{note}"


@dataclass(frozen=True)
class Divergence:
    """The first difference: ``line`` in the recorded file (one past its end when the replay has more)."""

    line: int
    replay_line: int | None
    expected: Mapping[str, Any] | None
    got: Mapping[str, Any] | None
    fields: list[FieldDiff] = field(default_factory=list)

    def headline(self) -> str:
        want = "the end of the record" if self.expected is None else str(self.expected.get("event"))
        got = "the end of the replay" if self.got is None else str(self.got.get("event"))
        if want == got:
            names = ", ".join(f.path for f in self.fields)
            return f"divergence at line {self.line}: {want}: {len(self.fields)} field(s) differ: {names}"
        return f"divergence at line {self.line}: expected {want}, got {got}"


@dataclass(frozen=True)
class Comparison:
    mode: Mode
    compared: int  # events compared (both logs), up to the divergence
    divergence: Divergence | None


def show(value: Any, limit: int = 120) -> str:
    """A value as compact JSON, cut to ``limit`` characters."""
    text = repr(value) if value is MISSING else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_event(event: Mapping[str, Any] | None) -> str:
    if event is None:
        return "(none)"
    return show({k: v for k, v in event.items() if k != PREV_FIELD}, SHOWN_CHARS)


def is_time(key: str) -> bool:
    """A session time in seconds (``t``, ``t_end``, ``sample_t``) or a duration in milliseconds."""
    return key == "t" or key.startswith("t_") or key.endswith("_t") or key.endswith("_ms")


def _ignored(key: str) -> bool:
    return key in NEVER_COMPARED or key.startswith("wall_")


class _Differ:
    def __init__(self, mode: Mode, tol: Tolerances, limit: int = 20) -> None:
        self.mode, self.tol, self.limit = mode, tol, limit
        self.out: list[FieldDiff] = []

    def add(self, path: str, a: Any, b: Any, note: str = "") -> None:
        if len(self.out) < self.limit:
            self.out.append(FieldDiff(path, a, b, note))

    def value(self, path: str, key: str, a: Any, b: Any) -> None:
        numbers = (int, float)
        if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
            self.number(path, key, a, b)
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            self.table(path, a, b, ())
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                self.add(path, a, b, f"{len(a)} items, got {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self.value(f"{path}[{i}]", key, x, y)
        elif self.mode == "sequence" and (isinstance(a, float) or isinstance(b, float)):
            return  # a float against a non-number (a null reading): still a measured value
        elif type(a) is not type(b) or a != b:
            self.add(path, a, b)

    def number(self, path: str, key: str, a: float, b: float) -> None:
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                self.add(path, a, b)
            return
        if self.mode == "sequence":
            return
        if is_time(key):
            tol = self.tol.time_ms if key.endswith("_ms") else self.tol.time_ms / 1000.0
            if not abs(a - b) <= tol:
                unit = "ms" if key.endswith("_ms") else "s"
                self.add(path, a, b, f"off by {abs(a - b):.6g} {unit}, tolerance {self.tol.time_ms:g} ms")
        elif not math.isclose(a, b, rel_tol=self.tol.rel, abs_tol=self.tol.abs):
            self.add(path, a, b, f"tolerance rel {self.tol.rel:g}, abs {self.tol.abs:g}")

    def table(self, prefix: str, a: Mapping[str, Any], b: Mapping[str, Any], skip: Iterable[str]) -> None:
        skipped = set(skip)
        keys = [k for k in a if not _ignored(k) and k not in skipped]
        keys += [k for k in b if k not in a and not _ignored(k) and k not in skipped]
        for key in keys:
            path = f"{prefix}.{key}" if prefix else key
            x, y = a.get(key, MISSING), b.get(key, MISSING)
            if x is MISSING or y is MISSING:
                self.add(path, x, y)
            else:
                self.value(path, key, x, y)


def diff_events(
    expected: Mapping[str, Any],
    got: Mapping[str, Any],
    mode: Mode = "exact",
    tol: Tolerances | None = None,
    skip: Mapping[str, Iterable[str]] | None = None,
) -> list[FieldDiff]:
    """The fields in which two records differ (``skip``: per event name, top-level fields not compared)."""
    differ = _Differ(mode, tol or Tolerances())
    name = expected.get("event")
    if name != got.get("event"):
        differ.add("event", name, got.get("event"))
        return differ.out
    differ.table("", expected, got, (skip or {}).get(str(name), ()))
    return differ.out


def selected(events: Sequence[Numbered], mode: Mode) -> list[Numbered]:
    """The records a comparison in ``mode`` looks at."""
    if mode == "exact":
        return list(events)
    return [(n, e) for n, e in events if e.get("event") not in TIMING_EVENTS]


def compare(
    recorded: Sequence[Numbered],
    replayed: Sequence[Numbered],
    mode: Mode = "exact",
    tol: Tolerances | None = None,
    *,
    skip: Mapping[str, Iterable[str]] | None = None,
    before_line: int | None = None,
) -> Comparison:
    """Compare the logs in order; the first divergence ends it. ``before_line``: only the recorded lines
    before it (and as many of the replay's) are compared: the record took an outside input there."""
    want, got = selected(recorded, mode), selected(replayed, mode)
    if before_line is not None:
        want = [(n, e) for n, e in want if n < before_line]
        got = got[: len(want)]
    compared = 0
    for (line, a), (replay_line, b) in zip(want, got, strict=False):
        fields = diff_events(a, b, mode, tol, skip)
        if fields:
            return Comparison(mode, compared, Divergence(line, replay_line, a, b, fields))
        compared += 1
    if len(want) > len(got):
        line, a = want[len(got)]
        return Comparison(mode, compared, Divergence(line, None, a, None))
    if len(got) > len(want):
        end = recorded[-1][0] + 1 if recorded else 1
        replay_line, b = got[len(want)]
        return Comparison(mode, compared, Divergence(end, replay_line, None, b))
    return Comparison(mode, compared, None)
