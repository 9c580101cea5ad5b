"""The hardware-in-the-loop report: what ran on which rig, what was measured, and what was not verified.

The hil plugin collects one ``TestRecord`` per test and calls ``build_report`` then ``write_reports`` at the
end of the run. Three files come out: ``hil-report.json`` for tools (its top-level keys are fixed: ``rig``,
``software_version``, ``devices``, ``tests``, ``measurements``, ``not_verified``), and ``hil-report.md`` and
``hil-report.html`` for people. The "not verified" list is always written, "nothing" when empty: a bench
report must say what it did not check as plainly as what it did.

Statistics are numpy's linear percentiles over the finite values; a value that is not finite (a NaN, or an
inf standing for "never happened") is counted in ``non_finite``, written as null, and makes
``within_limit`` false, since nothing shows the limit held for it.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, ClassVar

import numpy as np

FORMAT = "plasmactl-hil-report/1"
OUTCOMES = ("passed", "failed", "skipped", "error")
ALWAYS_MEASURED = ("cooling_latency_ms", "estop_reaction_ms")  # present in every report, n == 0 or not
FILES = ("hil-report.json", "hil-report.md", "hil-report.html")


@dataclass
class TestRecord:
    """One hil test as the plugin saw it. ``not_verified`` entries read ``"what: why"``."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    name: str  # pytest node id
    outcome: str  # "passed" | "failed" | "skipped" | "error"
    duration_s: float
    measurements: dict[str, list[float]] = field(default_factory=dict)
    properties: dict[str, object] = field(default_factory=dict)
    not_verified: list[str] = field(default_factory=list)


def json_safe(value: object) -> object:
    """``value`` as plain JSON data: non-finite floats become null, paths and unknown objects strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v) for v in value), key=str)
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def summarise(values: Iterable[float]) -> dict[str, object]:
    """n, p50, p99, max over the finite values (null when there are none), and the raw values."""
    raw = [float(v) for v in values]
    finite = [v for v in raw if math.isfinite(v)]
    stats: dict[str, object] = {"n": len(finite), "p50": None, "p99": None, "max": None}
    if finite:
        arr = np.asarray(finite, dtype=float)
        stats["p50"] = float(np.percentile(arr, 50, method="linear"))
        stats["p99"] = float(np.percentile(arr, 99, method="linear"))
        stats["max"] = float(np.max(arr))
    stats["non_finite"] = len(raw) - len(finite)
    stats["values"] = [v if math.isfinite(v) else None for v in raw]
    return stats


def _judged(stats: dict[str, object], limit: float | None) -> dict[str, object]:
    """The aggregate with its limit: within_limit null with no limit or no values, false on a non-finite one."""
    ok: bool | None = None
    top = stats["max"]
    if limit is not None and math.isfinite(limit):
        if stats["non_finite"]:
            ok = False
        elif isinstance(top, float):
            ok = top <= limit
    else:
        limit = None
    return {**stats, "limit": limit, "within_limit": ok}


def split_not_verified(entry: str) -> tuple[str, str]:
    """``"what: why"`` -> (what, why); without a colon the reason is unknown and says so. A pytest skip
    reason (``"Skipped: why"``) says the test as a whole did not run."""
    if entry.startswith("Skipped:"):
        return "the test (skipped)", entry.removeprefix("Skipped:").strip() or "no reason given"
    what, sep, why = entry.partition(":")
    if not sep or not what.strip():
        return entry.strip(), "no reason given"
    return what.strip(), why.strip() or "no reason given"


def build_report(
    *,
    rig_path: str | None,
    rig_sha256: str | None,
    software_version: str,
    devices: dict[str, dict[str, object]],
    tests: list[TestRecord],
    limits: dict[str, float],
    not_verified: list[dict[str, str]],
    started: str,
    finished: str,
    plan_path: str | None = None,
) -> dict[str, object]:
    """The report as JSON-safe data; ValueError on an outcome outside OUTCOMES (never counted as another)."""
    summary = dict.fromkeys(OUTCOMES, 0)
    rows: list[dict[str, object]] = []
    pooled: dict[str, list[float]] = {name: [] for name in ALWAYS_MEASURED}
    missing: list[dict[str, str]] = []
    for t in tests:
        if t.outcome not in OUTCOMES:
            raise ValueError(f"{t.name}: outcome {t.outcome!r} is not one of {', '.join(OUTCOMES)}")
        summary[t.outcome] += 1
        per_test: dict[str, object] = {}
        for name, values in t.measurements.items():
            per_test[name] = summarise(values)
            pooled.setdefault(name, []).extend(float(v) for v in values)
        own = []
        for entry in t.not_verified:
            what, why = split_not_verified(entry)
            own.append({"what": what, "why": why})
            missing.append({"test": t.name, "what": what, "why": why})
        rows.append(
            {
                "name": t.name,
                "outcome": t.outcome,
                "duration_s": t.duration_s,
                "measurements": per_test,
                "properties": t.properties,
                "not_verified": own,
            }
        )
    for given in not_verified:
        missing.append(
            {
                "test": str(given.get("test", "")),
                "what": str(given.get("what", "")),
                "why": str(given.get("why", "")) or "no reason given",
            }
        )
    for name in limits:
        pooled.setdefault(name, [])
    measurements = {name: _judged(summarise(values), limits.get(name)) for name, values in pooled.items()}
    unique: list[dict[str, str]] = []
    for item in missing:  # the union: an entry the plugin also passed in the given list is listed once
        if item not in unique:
            unique.append(item)
    report: dict[str, object] = {
        "format": FORMAT,
        "rig": {"path": rig_path, "sha256": rig_sha256},
        "plan": {"path": plan_path},
        "software_version": software_version,
        "started": started,
        "finished": finished,
        "devices": devices,
        "summary": {**summary, "total": len(tests)},
        "measurements": measurements,
        "tests": rows,
        "not_verified": unique,
    }
    safe = json_safe(report)
    assert isinstance(safe, dict)
    return safe


# --- rendering -------------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:.3g}"
    return str(value)


def _flat(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """A device's identity (or probe report) as ``key=value`` items, nested ones as ``outer.key``; vendor and
    model codes in hex, as the rig file writes them."""
    items: list[str] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flat(value, f"{name}.")
        elif value is not None:
            code = key in ("vendor", "model") and isinstance(value, int) and not isinstance(value, bool)
            items.append(f"{name}=0x{value:04X}" if code else f"{name}={value}")
    return items


def _seconds(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _verdict(value: Any) -> str:
    return {True: "yes", False: "NO"}.get(value, "-") if isinstance(value, bool) else "-"


def _key_measurements(test: Mapping[str, Any]) -> str:
    parts = []
    for name, stats in (test.get("measurements") or {}).items():
        parts.append(f"{name} max {_num(stats.get('max'))} p50 {_num(stats.get('p50'))} (n={stats.get('n', 0)})")
    return "; ".join(parts)


def _details(test: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in (test.get("properties") or {}).items())


def _lines(report: Mapping[str, Any]) -> dict[str, Any]:
    """The content both human formats show, as plain strings (escaping is each format's job)."""
    rig = report.get("rig") or {}
    s = report.get("summary") or {}
    head = [
        ("Rig", rig.get("path") or "none given (the suite's default rig)"),
        ("Rig sha256", rig.get("sha256") or "-"),
        ("Plan", (report.get("plan") or {}).get("path") or "-"),
        ("Software version", report.get("software_version") or "-"),
        ("Started", report.get("started") or "-"),
        ("Finished", report.get("finished") or "-"),
        ("Tests", ", ".join(f"{s.get(k, 0)} {k}" for k in OUTCOMES) + f" (total {s.get('total', 0)})"),
    ]
    devices = [
        (
            str(name),
            ", ".join(_flat(ident)) if isinstance(ident, Mapping) else str(ident),
        )
        for name, ident in (report.get("devices") or {}).items()
    ]
    meas = [
        [
            name,
            _num(m.get("n")),
            _num(m.get("p50")),
            _num(m.get("p99")),
            _num(m.get("max")),
            _num(m.get("limit")),
            _verdict(m.get("within_limit")),
        ]
        for name, m in (report.get("measurements") or {}).items()
    ]
    tests = [
        [
            str(t.get("name", "")),
            str(t.get("outcome", "")),
            _seconds(t.get("duration_s")),
            _key_measurements(t),
            _details(t),
        ]
        for t in report.get("tests") or []
    ]
    missing = [
        (str(n.get("test") or "whole run"), str(n.get("what", "")), str(n.get("why", "")))
        for n in report.get("not_verified") or []
    ]
    return {"head": head, "devices": devices, "meas": meas, "tests": tests, "missing": missing}


MEAS_HEAD = ["measurement", "n", "p50", "p99", "max", "limit", "within limit"]
TEST_HEAD = ["test", "outcome", "duration", "measurements", "details"]


def _md_cell(text: str) -> str:
    """One table cell or list item: pipes and line breaks would break the table, and a Markdown viewer
    renders raw HTML, so ``&``, ``<`` and ``>`` (a test name can hold them) are written as entities."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") or " "


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(report: Mapping[str, Any]) -> str:
    c = _lines(report)
    out = ["# Hardware-in-the-loop report", ""]
    out += [f"- **{k}:** {_md_cell(str(v))}" for k, v in c["head"]]
    out += ["", "## Not verified on this rig", ""]
    if c["missing"]:
        out += [f"- **{_md_cell(what)}** ({_md_cell(test)}): {_md_cell(why)}" for test, what, why in c["missing"]]
    else:
        out.append("Nothing: every check ran on this rig.")
    out += ["", "## Devices", ""]
    out += _md_table(["device", "identity"], [list(d) for d in c["devices"]]) if c["devices"] else ["None reported."]
    out += ["", "## Measurements", "", *_md_table(MEAS_HEAD, c["meas"])]
    out += ["", "## Tests", ""]
    out += _md_table(TEST_HEAD, c["tests"]) if c["tests"] else ["No tests ran."]
    return "\n".join(out) + "\n"


CSS = """
body { font-family: sans-serif; margin: 2em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.passed { color: #1a7f37; font-weight: bold; }
.failed, .error { color: #cf222e; font-weight: bold; }
.skipped { color: #6e7781; font-weight: bold; }
.bad { color: #cf222e; font-weight: bold; }
.missing { border: 3px solid #bf8700; background: #fff8c5; padding: 0.5em 1em; }
"""


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(head: list[str], rows: list[list[str]], outcome_col: int = -1, verdict_col: int = -1) -> str:
    """A table; the outcome column is coloured by outcome, a "NO" in the verdict column red."""
    out = ["<table>", "<tr>" + "".join(f"<th>{_h(x)}</th>" for x in head) + "</tr>"]
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            klass = value if i == outcome_col and value in OUTCOMES else ""
            klass = "bad" if i == verdict_col and value == "NO" else klass
            attr = f' class="{klass}"' if klass else ""
            cells.append(f"<td{attr}>{_h(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join([*out, "</table>"])


def render_html(report: Mapping[str, Any]) -> str:
    """Self-contained: inline CSS, no scripts, no links; every string from the data escaped."""
    c = _lines(report)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Hardware-in-the-loop report</title>',
        f"<style>{CSS}</style></head><body>",
        "<h1>Hardware-in-the-loop report</h1>",
        "<table>" + "".join(f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in c["head"]) + "</table>",
        '<div class="missing"><h2>Not verified on this rig</h2>',
    ]
    if c["missing"]:
        items = "".join(
            f"<li><strong>{_h(what)}</strong> ({_h(test)}): {_h(why)}</li>" for test, what, why in c["missing"]
        )
        out.append(f"<ul>{items}</ul>")
    else:
        out.append("<p>Nothing: every check ran on this rig.</p>")
    out += ["</div>", "<h2>Devices</h2>"]
    out.append(_html_table(["device", "identity"], [list(d) for d in c["devices"]]) if c["devices"] else "<p>None.</p>")
    out += ["<h2>Measurements</h2>", _html_table(MEAS_HEAD, c["meas"], verdict_col=6), "<h2>Tests</h2>"]
    out.append(_html_table(TEST_HEAD, c["tests"], outcome_col=1) if c["tests"] else "<p>No tests ran.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Readers never see half a report: a temporary file in the same folder, then one rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)  # os.replace: atomic on one file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(out_dir: Path, report: dict[str, object]) -> list[Path]:
    """Write the JSON, Markdown and HTML reports into ``out_dir`` (created); an OSError is the caller's to
    report, never swallowed."""
    safe = json_safe(report)
    assert isinstance(safe, dict)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = (
        json.dumps(safe, indent=2, allow_nan=False) + "\n",
        render_markdown(safe),
        render_html(safe),
    )
    paths = [out_dir / name for name in FILES]
    for path, text in zip(paths, texts, strict=True):
        _write_atomic(path, text)
    return paths
