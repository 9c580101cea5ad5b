"""The session report's figures, drawn from :class:`ReportData` as PNG bytes (matplotlib's Agg canvas: no
screen, no pyplot state shared with anything else in the process, no metadata naming a web address).

Each function returns None when the log holds nothing to draw; the page then says so in words, never shows
an empty plot.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from plasmactl.report_data import ReportData, SpotDose

DPI = 100
OMEGA_FLOOR = 1e-12  # a log axis cannot show 0: smaller values are drawn here
MAX_LABELS = 40  # spot numbers written next to the marked spots, at most
FULL_HEIGHT_PULSES = 60  # more pulses than this are drawn as ticks along the top of the temperature plot


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (no Software tag: matplotlib's names its web site)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def skin_temperature(data: ReportData) -> bytes | None:
    """Skin temperature over the session, pulse starts and spray intervals marked, the plan's limits drawn."""
    if not data.skin_t:
        return None
    fig = _figure(10.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(
        data.skin_t,
        data.skin_c,
        color="tab:blue",
        lw=1.2,
        marker="." if len(data.skin_t) < 200 else "",
        label="skin temperature",
        zorder=3,
    )
    band = ax.get_xaxis_transform()
    if data.pulse_t:  # few pulses: lines across the plot; many: ticks along its top, as the sprays along its foot
        low = 0.0 if len(data.pulse_t) <= FULL_HEIGHT_PULSES else 0.94
        ax.vlines(data.pulse_t, low, 1.0, transform=band, colors="tab:orange", lw=0.7, alpha=0.6, label="pulse")
    if data.sprays:
        bars = [(t_open, max(t_close - t_open, 0.0)) for t_open, t_close in data.sprays]
        ax.broken_barh(bars, (0.0, 0.06), transform=band, facecolors="tab:cyan", label="spray (valve open)")
    top = max(data.skin_c)
    if data.skin_limit_c is not None:
        ax.axhline(data.skin_limit_c, color="tab:red", ls="--", lw=1.2, label=f"skin limit {data.skin_limit_c:g} C")
        top = max(top, data.skin_limit_c)
    if data.hard_trip_c is not None:
        ax.axhline(data.hard_trip_c, color="darkred", ls=":", lw=1.0, label=f"hard trip {data.hard_trip_c:g} C")
        top = max(top, data.hard_trip_c)
    ax.set_ylim(min(data.skin_c) - 1.0, top + 1.0)
    ax.set_xlabel("session time (s)")
    ax.set_ylabel("skin temperature (C)")
    ax.set_title("Skin temperature (thermometer), pulses and sprays")
    ax.legend(loc="center right", fontsize=8, ncols=2)
    ax.grid(alpha=0.3)
    return png(fig)


def cooling_delays(data: ReportData) -> bytes | None:
    """Histogram of pulse end -> confirmed spray start, against the plan's maximum cooling delay."""
    if not data.delays_ms:
        return None
    fig = _figure(8.0, 4.0)
    ax = fig.add_subplot()
    delays = np.asarray(data.delays_ms, dtype=float)
    right = float(delays.max())
    if data.max_delay_ms is not None:
        right = max(right, data.max_delay_ms)
    right = right * 1.1 + 1.0
    ax.hist(
        delays,
        bins=[float(b) for b in np.linspace(0.0, right, 56)],
        color="tab:blue",
        edgecolor="white",
        label=f"sprays ({len(delays)})",
    )
    if data.max_delay_ms is not None:
        ax.axvline(
            data.max_delay_ms, color="tab:red", ls="--", lw=1.5, label=f"max cooling delay {data.max_delay_ms:g} ms"
        )
    ax.set_xlim(0.0, right)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cooling delay: pulse end to confirmed spray start (ms)")
    ax.set_ylabel("sprays")
    ax.set_title("Cooling delay")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


def _placed(spots: Sequence[SpotDose]) -> list[SpotDose]:
    return [s for s in spots if s.x_mm is not None and s.y_mm is not None]


def _xy(spots: Sequence[SpotDose]) -> tuple[list[float], list[float]]:
    return [float(s.x_mm or 0.0) for s in spots], [float(s.y_mm or 0.0) for s in spots]


def _label(ax: Axes, spots: Sequence[SpotDose], color: str) -> None:
    for s in list(spots)[:MAX_LABELS]:
        ax.annotate(
            str(s.spot),
            (float(s.x_mm or 0.0), float(s.y_mm or 0.0)),
            xytext=(7, 7),
            textcoords="offset points",
            fontsize=7,
            color=color,
        )


def dose_map(data: ReportData) -> bytes | None:
    """The plan's spot pattern twice: energy delivered (percent of plan) and cooling delay, per spot."""
    spots = _placed(data.spots)
    if not spots:
        return None
    size = float(max(6.0, min(160.0, 9000.0 / len(spots))))
    fig = _figure(12.0, 5.2)
    ax_dose, ax_cool = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    started = [s for s in spots if s.pulses]
    waiting = [s for s in spots if not s.pulses]
    tol = data.tolerance_pct if data.tolerance_pct is not None else 20.0
    for ax in (ax_dose, ax_cool):
        if waiting:
            ax.scatter(*_xy(waiting), s=size, facecolors="none", edgecolors="grey", lw=0.8, label="not started")
    if started:
        pct = [s.delivered_pct if s.delivered_pct is not None else 0.0 for s in started]
        sc = ax_dose.scatter(
            *_xy(started), c=pct, s=size, cmap="viridis", vmin=0.0, vmax=100.0 + 2.0 * tol, edgecolors="black", lw=0.3
        )
        fig.colorbar(sc, ax=ax_dose, label="energy delivered (% of plan)")
    under = [s for s in spots if s.status == "under_dosed"]
    over = [s for s in spots if s.status == "over_dosed"]
    if under:
        ax_dose.scatter(*_xy(under), s=size * 2.5, marker="x", color="tab:red", lw=1.8, label="under-dosed")
        _label(ax_dose, under, "tab:red")
    if over:
        ax_dose.scatter(
            *_xy(over), s=size * 2.5, marker="^", facecolors="none", edgecolors="magenta", lw=1.8, label="over-dosed"
        )
        _label(ax_dose, over, "magenta")
    cooled = [s for s in started if s.cooling_delay_ms is not None]
    limit = data.max_delay_ms
    if cooled:
        delays = [float(s.cooling_delay_ms or 0.0) for s in cooled]
        sc = ax_cool.scatter(
            *_xy(cooled),
            c=delays,
            s=size,
            cmap="plasma",
            vmin=0.0,
            vmax=limit if limit is not None else max(delays),
            edgecolors="black",
            lw=0.3,
        )
        fig.colorbar(sc, ax=ax_cool, label="cooling delay (ms), longest of the spot's pulses")
    late = [s for s in cooled if limit is not None and (s.cooling_delay_ms or 0.0) > limit]
    if late:
        ax_cool.scatter(
            *_xy(late), s=size * 3.0, facecolors="none", edgecolors="tab:red", lw=1.8, label=f"over {limit:g} ms"
        )
    uncooled = [s for s in started if s.cooling_delay_ms is None]
    if uncooled:
        ax_cool.scatter(*_xy(uncooled), s=size * 2.0, marker="x", color="black", lw=1.5, label="no confirmed spray")
    ax_dose.set_title("Dose per spot (dose ledger)")
    ax_cool.set_title("Cooling delay per spot")
    for ax in (ax_dose, ax_cool):
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        ax.margins(0.12)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", markerscale=0.5)
    return png(fig)


def _floor(values: Sequence[float | None]) -> list[float]:
    return [max(v, OMEGA_FLOOR) if v is not None else math.nan for v in values]


def tissue_by_depth(data: ReportData) -> bytes | None:
    """Per treated spot: peak temperature at the surface and the basal layer, the crater (ablation depth) and
    lateral damage radius, and the damage integral Omega at the basal layer against its burn thresholds."""
    if not data.tissue:
        return None
    xs = [t.spot if t.spot is not None else i for i, t in enumerate(data.tissue, start=1)]

    def col(key: str) -> list[float]:
        return [v if (v := t.values.get(key)) is not None else math.nan for t in data.tissue]

    fig = _figure(12.0, 4.4)
    ax_t, ax_d, ax_o = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    style = "o-" if len(xs) <= 60 else "-"
    ax_t.plot(xs, col("max_surface_c"), style, color="tab:red", ms=4, label="surface")
    ax_t.plot(xs, col("max_basal_c"), style, color="tab:purple", ms=4, label="basal layer")
    ax_t.set_ylabel("peak temperature (C)")
    ax_t.set_title("Peak temperature by depth")
    ax_d.plot(xs, col("ablation_depth_um"), style, color="tab:brown", ms=4, label="ablation (crater) depth")
    ax_d.plot(xs, col("lateral_damage_radius_um"), style, color="tab:green", ms=4, label="lateral damage radius")
    ax_d.set_ylabel("um")
    ax_d.set_title("Crater depth and lateral damage")
    ax_o.plot(xs, _floor(col("basal_omega_henriques")), style, color="tab:red", ms=4, label="Henriques")
    ax_o.plot(xs, _floor(col("basal_omega_weaver_stoll")), style, color="tab:blue", ms=4, label="Weaver-Stoll")
    ax_o.axhline(0.53, color="tab:orange", ls=":", lw=1.0, label="0.53: first degree")
    ax_o.axhline(1.0, color="darkred", ls="--", lw=1.0, label="1: second degree")
    ax_o.set_yscale("log")
    ax_o.set_ylabel(f"basal Omega (values under {OMEGA_FLOOR:g} drawn at it)")
    ax_o.set_title("Thermal damage at the basal layer")
    for ax in (ax_t, ax_d, ax_o):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("spot")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png(fig)
