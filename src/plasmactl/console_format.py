"""Values on the console rounded to what a person reads; the audit log keeps them at full precision.

Temperatures (``*_c``) to 0.1 C, times in milliseconds (``*_ms``) to 0.1 ms, session times (``t``,
``t_*``, ``*_t``, ``*_s``) to 0.001 s, energies (``*_j``) to 3 significant figures, a ``wall_time`` as the
local time of day (HH:MM:SS); any other number to 4 significant figures. A number too large for its
decimals to mean anything (a fault's 1e300 C offset) is shown to 4 significant figures, not 300 digits, and
a user's text (a plan's name) with its control characters escaped, as ``check`` shows it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

# Fields of an event the console leaves out (the chain's hash and the input files stay in the log).
HIDDEN = frozenset({"t", "event", "plan", "rig", "faults", "prev_sha256"})
RATES = ("_ml_s", "_per_s")  # a rate per second is not a session time


# Beyond this magnitude no reading, time or setting of a session is real: such a number comes from a user's
# extreme input and is shown in significant figures (1e+300), not as hundreds of digits.
LARGE = 1e12


def rounded(value: float, decimals: int) -> str:
    """``f"{value:.{decimals}f}"``, but a huge number (or inf, nan) to 4 significant figures."""
    if not math.isfinite(value) or abs(value) >= LARGE:
        return f"{value:.4g}"
    return f"{value:.{decimals}f}"


def fixed(value: float, decimals: int) -> str:
    """``value`` rounded to ``decimals`` places, without trailing zeros (5.0 -> "5", 16.52 -> "16.5")."""
    text = rounded(value, decimals)
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def printable(text: str) -> str:
    """``text`` with its control characters (ESC, BEL, a newline ...) written as escapes, as ``repr`` (and so
    ``check``) shows them: a plan's name cannot recolour or rewrite the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def energy(value: float) -> str:
    """An energy to 3 significant figures (0.005144369 -> "0.00514")."""
    return f"{value:.3g}"


def wall_clock(value: float) -> str:
    """Seconds since the epoch as the local time of day."""
    return time.strftime("%H:%M:%S", time.localtime(value))


def _is_session_time(key: str) -> bool:
    return key == "t" or key.startswith("t_") or key.endswith("_t") or (key.endswith("_s") and not key.endswith(RATES))


def number(key: str, value: float) -> str:
    """One number of an event, by what its field name says it is."""
    if not math.isfinite(value):
        return str(value)
    if key == "wall_time":
        return wall_clock(value)
    if key.endswith("_c"):
        return fixed(value, 1)
    if key.endswith("_ms"):
        return fixed(value, 1)
    if key.endswith("_j"):
        return energy(value)
    if _is_session_time(key):
        return fixed(value, 3)
    return f"{value:.4g}"


def value_text(key: str, value: Any) -> str:
    """A field's value for the console: numbers rounded by their name, inside lists and tables too."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return number(key, value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {value_text(str(k), v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(key, v) for v in value) + "]"
    return printable(str(value))


def describe(e: Mapping[str, Any]) -> str:
    """One event as a console line: ``   12.345s  plasma_off      ok=True ...``."""
    fields = " ".join(f"{k}={value_text(k, v)}" for k, v in e.items() if k not in HIDDEN)
    return f"{e['t']:10.3f}s  {e['event']:<15} {fields}"
