"""The skin-temperature chart as characters: a window of the last readings scrolling with the session, the
plan's limit as a line across it, and a row each for the pulses and the sprays below (no Textual here).

Each column is ``bucket_s`` of session time and shows the highest reading taken in it (the one that matters
for the limit); a column without a reading stays empty rather than being filled in.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

from rich.text import Text

AXIS = 7  # columns of the y-axis labels ("  40.0┤")
BUCKET_S = 0.5  # the period the controller logs readings at
POINT, LIMIT_LINE, PULSE, SPRAY = "•", "─", "▲", "≈"


def column_maxima(
    readings: Sequence[tuple[float, float]], t0: float, bucket_s: float, columns: int
) -> list[float | None]:
    """The highest reading in each column ``[t0 + i * bucket_s, t0 + (i + 1) * bucket_s)``."""
    out: list[float | None] = [None] * columns
    times = [t for t, _ in readings]
    for t, c in readings[bisect_left(times, t0) :]:
        i = int((t - t0) // bucket_s)
        if 0 <= i < columns:
            top = out[i]
            out[i] = c if top is None else max(top, c)
    return out


def column_marks(times: Sequence[float], t0: float, bucket_s: float, columns: int) -> list[bool]:
    marks = [False] * columns
    for t in times[bisect_left(times, t0) :]:
        i = int((t - t0) // bucket_s)
        if 0 <= i < columns:
            marks[i] = True
    return marks


def skin_chart(
    readings: Sequence[tuple[float, float]],
    pulses: Sequence[float],
    sprays: Sequence[float],
    *,
    limit_c: float | None,
    t_end: float,
    width: int,
    height: int,
    bucket_s: float = BUCKET_S,
) -> Text:
    """The chart, ``width`` x ``height`` characters (the plot takes what the marker and time rows leave)."""
    columns = max(width - AXIS, 1)
    plot_rows = max(height - 3, 2)
    # from the session's start until the window is full; then it ends with the bucket holding t_end
    t0 = max(math.floor(t_end / bucket_s) + 1 - columns, 0) * bucket_s
    values = column_maxima(readings, t0, bucket_s, columns)
    seen = [v for v in values if v is not None]
    span = [*seen, *([limit_c] if limit_c is not None else [])]
    lo, hi = (min(span), max(span)) if span else (30.0, 40.0)
    if hi - lo < 2.0:
        mid = (hi + lo) / 2.0
        lo, hi = mid - 1.0, mid + 1.0
    lo, hi = lo - 0.5, hi + 0.5

    def row_of(v: float) -> int:
        return round((hi - v) / (hi - lo) * (plot_rows - 1))

    labels = {0: hi, plot_rows - 1: lo}
    limit_row: int | None = None
    if limit_c is not None:
        limit_row = row_of(limit_c)
        labels[limit_row] = limit_c
    text = Text(no_wrap=True, overflow="crop")
    for r in range(plot_rows):
        label = labels.get(r)
        text.append(f"{label:6.1f}┤" if label is not None else "      │", style="red" if r == limit_row else "dim")
        for v in values:
            if v is not None and row_of(v) == r:
                over = limit_c is not None and v > limit_c
                text.append(POINT, style="bold red" if over else "green")
            elif r == limit_row:
                text.append(LIMIT_LINE, style="red")
            else:
                text.append(" ")
        text.append("\n")
    for name, marks, char, style in (
        ("pulse", column_marks(pulses, t0, bucket_s, columns), PULSE, "magenta"),
        ("spray", column_marks(sprays, t0, bucket_s, columns), SPRAY, "cyan"),
    ):
        text.append(f"{name:>6} ", style="dim")
        text.append("".join(char if m else " " for m in marks), style=style)
        text.append("\n")
    left, right = f"{t0:.1f} s", f"{t0 + columns * bucket_s:.1f} s"
    text.append(" " * AXIS + left + right.rjust(max(columns - len(left), 0)), style="dim")
    return text
