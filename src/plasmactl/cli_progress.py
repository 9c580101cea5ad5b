"""Progress of a long command (``run``, ``sweep``, ``campaign``) on stderr: a bar with the time left when
stderr is a terminal; in a log (CI) plain lines, every 10 % or every 10 s of wall time, whichever comes
first (``progress: spot 12/30 (40 %), eta 0:00:12``), never only at the end; nothing with ``--quiet``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from plasmactl.console_format import printable

EVERY_PCT = 10.0
EVERY_S = 10.0


def eta_text(seconds: float | None) -> str:
    """H:MM:SS, or ``?`` before there is anything to estimate from."""
    return "?" if seconds is None else str(timedelta(seconds=round(max(seconds, 0.0))))


class Reporter:
    """One command's progress. ``update(done)`` counts what the percentage is of (pulses, combinations,
    sessions); ``shown`` is the count the line names, when another (the spot being treated)."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def update(self, done: int, *, shown: int | None = None, t: float | None = None) -> None:
        del done, shown, t


class Lines(Reporter):
    """Plain lines for a log: one at each 10 % crossed, and one every 10 s of wall time in between."""

    def __init__(
        self,
        console: Console,
        unit: str,
        total: int,
        shown_total: int | None = None,
        *,
        every_pct: float = EVERY_PCT,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console, self._unit, self._total = console, unit, total
        self._shown_total = total if shown_total is None else shown_total
        self._every_pct, self._every_s, self._clock = every_pct, every_s, clock
        self._start = self._last = clock()
        self._step = 0  # the last 10 % step a line was printed for

    def update(self, done: int, *, shown: int | None = None, t: float | None = None) -> None:
        now = self._clock()
        pct = 100.0 * done / self._total if self._total else 100.0
        step = int(pct // self._every_pct)
        if step <= self._step and now - self._last < self._every_s:
            return
        self._step, self._last = max(step, self._step), now
        elapsed = now - self._start
        eta = elapsed * (self._total - done) / done if done else None
        count = done if shown is None else shown
        self._console.print(
            f"progress: {self._unit} {count}/{self._shown_total} ({int(pct)} %), eta {eta_text(eta)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


class Bar(Reporter):
    """rich's bar on a terminal, with the time elapsed and left (and the session's own time for ``run``)."""

    def __init__(self, console: Console, title: str, total: int, *, session_time: bool = False) -> None:
        columns: list[str | ProgressColumn] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
        ]
        if session_time:
            columns.append(TextColumn("session {task.fields[t]:>8.1f} s"))
        columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
        # the human stream on stdout goes above the bar only when it is this terminal too (else to its file)
        self._progress = Progress(*columns, console=console, redirect_stdout=sys.stdout.isatty())
        self._task = self._progress.add_task(escape(printable(title)), total=total, t=0.0)

    def __enter__(self) -> Reporter:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def update(self, done: int, *, shown: int | None = None, t: float | None = None) -> None:
        if t is None:
            self._progress.update(self._task, completed=done)
        else:
            self._progress.update(self._task, completed=done, t=t)


def reporter(
    console: Console,
    *,
    title: str,
    unit: str,
    total: int,
    shown_total: int | None = None,
    session_time: bool = False,
    enabled: bool = True,
) -> Reporter:
    """The progress display for ``console`` (stderr): a bar on a terminal, lines otherwise, or none."""
    if not enabled:
        return Reporter()
    if console.is_terminal:
        return Bar(console, title, total, session_time=session_time)
    return Lines(console, unit, total, shown_total)


def follow_spots(progress: Reporter) -> Callable[[Mapping[str, Any]], None]:
    """A log listener that moves ``progress`` on at each pulse end: pulses done, the spot reached, and the
    session time of the record (for the time left)."""
    spot_of: dict[int, int] = {}
    at = {"pulse": 0, "spot": 0}

    def on_event(e: Mapping[str, Any]) -> None:
        name = e["event"]
        if name == "pulse_start":
            spot_of[e["pulse"]] = e["spot"]
        elif name == "pulse_end":
            at["pulse"], at["spot"] = e["pulse"], spot_of.get(e["pulse"], at["spot"])
        progress.update(at["pulse"], shown=at["spot"], t=e["t"])

    return on_event
