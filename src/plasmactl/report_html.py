"""The session report as one self-contained HTML page: inline CSS, the figures embedded as base64 PNG, no
script, no link and no web address anywhere in the file (it is read on machines with no network, and
archived with the record).

Text from the log is escaped, and any ``http`` in it is written with a character reference for its first
``t`` (it reads the same, but nothing in the file is an address). The summary table's cells carry
``data-key`` (the dotted key in summary.json) and ``data-value`` (the exact value, as JSON), the spot rows
``data-spot`` and ``data-status``, so tools and tests can read the numbers back.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from plasmactl.report_data import ReportData, SpotDose, TimelineRow, flatten

MAX_SPOT_ROWS = 300  # more spots than this: the table lists only those not delivered as planned

CSS = """
body{font-family:sans-serif;margin:1.5em auto;max-width:1250px;color:#222;line-height:1.35}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-family:monospace;word-break:break-all}td.mono{font-family:monospace}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.5em 1em}
.bad{color:#b00020;font-weight:bold}.good{color:#1b7f2a;font-weight:bold}
tr.under_dosed td,tr.over_dosed td{background:#fde2e2}tr.not_started td{color:#888}
p.absent{font-style:italic;color:#555}img{max-width:100%;border:1px solid #ddd}
"""

_HTTP = re.compile(r"(h)(t)(tp)", re.IGNORECASE)


def esc(value: object) -> str:
    """Text for the page: escaped, control and direction characters (NUL, ESC, a right-to-left override in a
    plan's name) written as escapes as the console shows them, and never a literal ``http``."""
    raw = str(value)
    if not raw.isprintable():
        raw = "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in raw)
    text = html.escape(raw, quote=True)
    return _HTTP.sub(lambda m: f"{m[1]}&#{ord(m[2])};{m[3]}", text)


def img(element_id: str, data: bytes, alt: str) -> str:
    """An embedded PNG. Whitespace inside a data URL is dropped by readers and decoders alike: a newline
    goes into any ``http`` the base64 text happens to spell."""
    b64 = re.sub(r"(ht)(tp)", r"\1\n\2", base64.b64encode(data).decode("ascii"), flags=re.IGNORECASE)
    return f'<p><img id="{esc(element_id)}" alt="{esc(alt)}" src="data:image/png;base64,{b64}"></p>'


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def table(head: Sequence[str], rows: Iterable[Sequence[object]], table_id: str = "") -> str:
    ident = f' id="{esc(table_id)}"' if table_id else ""
    out = [f"<table{ident}><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*out, "</table>"])


def _absent(element_id: str, text: str) -> str:
    return f'<p class="absent" id="{esc(element_id)}">{esc(text)}</p>'


def _summary_table(summary: Mapping[str, Any]) -> str:
    rows = []
    for key, value in flatten(summary):
        exact = json.dumps(value)
        shown = esc(exact)
        if isinstance(value, list) and len(exact) > 200:  # e.g. the per-spot ledger: folded, still exact
            shown = f"<details><summary>{len(value)} entries</summary>{shown}</details>"
        rows.append(
            f'<tr><th>{esc(key)}</th><td class="num" id="summary-{esc(key)}" data-key="{esc(key)}"'
            f' data-value="{esc(exact)}">{shown}</td></tr>'
        )
    return '<table id="summary-table"><tr><th>summary.json key</th><th>value</th></tr>\n' + "\n".join(rows) + "</table>"


def _timeline(rows: Sequence[TimelineRow], table_id: str, empty: str) -> str:
    if not rows:
        return _absent(f"{table_id}-empty", empty)
    out = [
        f'<table id="{esc(table_id)}"><tr><th>t (s)</th><th>event</th><th>rule</th><th>reason</th><th>details</th></tr>'
    ]
    for r in rows:
        out.append(
            f'<tr class="{esc(r.event)}" data-event="{esc(r.event)}" data-rule="{esc(r.rule)}"><td class="num">'
            f"{r.t:.3f}</td><td>{esc(r.event)}</td><td>{esc(r.rule)}</td><td>{esc(r.reason)}</td>"
            f'<td class="mono">{esc(r.details)}</td></tr>'
        )
    return "\n".join([*out, "</table>"])


def _spot_rows(spots: Sequence[SpotDose]) -> tuple[str, list[SpotDose]]:
    if len(spots) <= MAX_SPOT_ROWS:
        return "", list(spots)
    shown = [s for s in spots if s.status != "complete"][:MAX_SPOT_ROWS]
    return f"{len(spots)} spots: the table lists the {len(shown)} first not delivered as planned.", shown


def _spot_table(data: ReportData) -> str:
    note, shown = _spot_rows(data.spots)
    head = ["spot", "x (mm)", "y (mm)", "pulses", "planned J", "delivered J", "% of plan", "cooling delay ms", "status"]
    out = ([f"<p>{esc(note)}</p>"] if note else []) + [
        '<table id="spot-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    ]
    for s in shown:
        status = s.status.replace("_", "-")
        cells = [
            s.spot,
            s.x_mm,
            s.y_mm,
            f"{s.pulses}/{s.pulses_planned}" + (f", {s.cut} cut" if s.cut else ""),
            s.planned_j,
            s.delivered_j,
            s.delivered_pct,
            s.cooling_delay_ms,
        ]
        mark = ' class="bad"' if s.status in ("under_dosed", "over_dosed") else ""
        out.append(
            f'<tr id="spot-{s.spot}" class="{esc(s.status)}" data-spot="{s.spot}" data-status="{esc(s.status)}">'
            + "".join(f'<td class="num">{esc(fmt(c))}</td>' for c in cells)
            + f"<td{mark}>{esc(status)}</td></tr>"
        )
    return "\n".join([*out, "</table>"])


def _dose_line(data: ReportData) -> str:
    counts: dict[str, int] = {}
    for s in data.spots:
        counts[s.status] = counts.get(s.status, 0) + 1
    parts = [
        f"{counts.get(k, 0)} {k.replace('_', '-')}" for k in ("complete", "under_dosed", "over_dosed", "not_started")
    ]
    return f'<p id="dose-counts">{len(data.spots)} spots planned: {esc(", ".join(parts))}.</p>'


def _chain(data: ReportData) -> str:
    cls = "good" if data.chain_ok else "bad"
    out = [f'<p id="chain-result" class="{cls}" data-ok="{str(data.chain_ok).lower()}">{esc(data.chain)}</p>']
    if data.log.chain.anchored:
        out.append("<p>Checked against the anchor of the summary.json beside the log.</p>")
    out += [f"<p>note: {esc(n)}</p>" for n in data.chain_notes]
    return "\n".join(out)


def render(data: ReportData, plots: Mapping[str, bytes | None]) -> str:
    """The page. ``plots``: the PNG of each figure by key (``skin``, ``cooling``, ``dose``, ``tissue``)."""
    s = data.summary
    outcome = s.get("outcome")
    out = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>Session report: {esc(data.plan_name)}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>Session report: {esc(data.plan_name)}</h1>",
        f'<p>Folder {esc(data.log.run_dir)}; outcome <b id="outcome">{esc(outcome)}</b>'
        + (f" ({esc(s.get('cause'))})" if s.get("cause") else "")
        + f"; {esc(s.get('pulses'))} pulses, {esc(s.get('sprays'))} sprays over {fmt(s.get('session_s'))} s of"
        " session time. Built from events.jsonl alone.</p>",
    ]
    warnings = list(data.log.warnings) + ([] if data.chain_ok else [data.chain])
    if warnings:
        out.append('<div class="warn" id="warnings">' + "".join(f"<p>{esc(w)}</p>" for w in warnings) + "</div>")
    out += ["<h2>Summary</h2>", "<p>summarize() of the log: the numbers summary.json holds.</p>"]
    out.append(_summary_table(s))
    out.append("<h2>Skin temperature</h2>")
    skin = plots.get("skin")
    out.append(
        img("plot-skin", skin, "skin temperature") if skin else _absent("skin-absent", "No skin reading in the log.")
    )
    out.append("<h2>Cooling delay</h2>")
    cooling = plots.get("cooling")
    out.append(
        img("plot-cooling", cooling, "cooling delay histogram")
        if cooling
        else _absent("cooling-absent", "No confirmed spray in the log: no cooling delay to show.")
    )
    out += ["<h2>Dose map</h2>", _dose_line(data)]
    if data.dose_sessions:
        logs = ", ".join(esc(path) for path in data.dose_sessions)
        out.append(f'<p id="dose-combined">Combined over {len(data.dose_sessions)} sessions (first first): {logs}.</p>')
    dose = plots.get("dose")
    out.append(img("plot-dose", dose, "dose map") if dose else _absent("dose-absent", "No spot positions in the log."))
    out.append(
        _spot_table(data) if data.spots else _absent("spots-absent", "No dose ledger: no readable session_start.")
    )
    out.append("<h2>Tissue temperature and damage by depth</h2>")
    tissue = plots.get("tissue")
    if tissue:
        out.append(img("plot-tissue", tissue, "tissue temperature and damage by depth"))
    else:
        out.append(_absent("tissue-absent", data.tissue_note or "No tissue results in the log."))
    if data.tissue_summary:
        out.append(
            table(["tissue (maxima over spots, counts)", "value"], data.tissue_summary.items(), "tissue-summary")
        )
    out += ["<h2>Interlocks and faults</h2>"]
    out.append(_timeline(data.timeline, "timeline", "No interlock trip, fault, E-stop, abort, resume or reset."))
    out += ["<h2>Plan and rig</h2>", table(["setting", "value"], data.plan_rows, "plan-table"), "<h3>Input files</h3>"]
    out.append(table(["file", "path", "sha256 (as the session read it)"], data.files, "files-table"))
    out.append(f'<p>Chain genesis (first line\'s prev_sha256): <code id="genesis">{esc(data.genesis)}</code></p>')
    out += ["<h3>Limits</h3>", table(["limit", "value"], data.limit_rows, "limits-table"), "<h3>Plan edits</h3>"]
    out.append(_timeline(data.plan_edits, "plan-edits", "No plan edit during the session."))
    out += ["<h2>Devices</h2>", table(["device", "kind", "where", "identity"], data.devices, "devices-table")]
    out += [f"<p>served: <code>{esc(line)}</code></p>" for line in data.served]
    out += ["<h3>Self-test</h3>", _timeline(data.self_tests, "self-tests", "No self_test record.")]
    out += ["<h3>Identity records</h3>"]
    out.append(
        _timeline(
            data.identities,
            "identities",
            "The log holds no identity record: the drivers check each device's identity block as they connect,"
            " and a mismatch refuses the session (a failed self_test and an interlock_trip above).",
        )
    )
    out += ["<h2>Audit chain</h2>", _chain(data), "</body></html>"]
    return "\n".join(out) + "\n"
