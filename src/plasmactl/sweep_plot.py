"""The sweep's picture: basal thermal damage against the varied parameters (matplotlib, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

METRIC = "basal_omega_henriques"
SECOND = "ablation_depth_um"


def _value(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) else float("nan")


def plot_sweep(rows: Sequence[dict[str, Any]], varied: Sequence[str], path: Path, *, title: str = "") -> None:
    """One varied parameter: curves of basal Omega and ablation depth. Two or more: a heat map of basal
    Omega over the first two (the maximum over any further parameters, the worst case)."""
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=110)
    if len(varied) == 1:
        x_name = varied[0]
        pts = sorted((_value(r, x_name), _value(r, METRIC), _value(r, SECOND)) for r in rows)
        x_arr = np.array([p[0] for p in pts])
        omega = np.array([p[1] for p in pts])
        ax.plot(x_arr, omega, "o-", color="tab:red", label="basal Omega (Henriques)")
        ax.axhline(0.53, color="tab:orange", ls=":", lw=1, label="Omega 0.53 (1st degree)")
        ax.axhline(1.0, color="tab:red", ls="--", lw=1, label="Omega 1 (2nd degree)")
        if np.all(omega[np.isfinite(omega)] > 0) and np.isfinite(omega).any():
            ax.set_yscale("log")
        ax.set_xlabel(x_name)
        ax.set_ylabel("basal Omega (Henriques)")
        twin = ax.twinx()
        twin.plot(x_arr, [p[2] for p in pts], "s--", color="tab:blue", ms=3, label="ablation depth")
        twin.set_ylabel("ablation depth (um)", color="tab:blue")
        ax.legend(loc="upper left", fontsize=8)
    else:
        x_name, y_name = varied[0], varied[1]
        xs = sorted({_value(r, x_name) for r in rows})
        ys = sorted({_value(r, y_name) for r in rows})
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in rows:
            i, j = ys.index(_value(r, y_name)), xs.index(_value(r, x_name))
            v = _value(r, METRIC)
            grid[i, j] = v if np.isnan(grid[i, j]) else max(grid[i, j], v)
        with np.errstate(divide="ignore"):
            shown = np.log10(grid)
        mesh = ax.pcolormesh(xs, ys, shown, shading="nearest", cmap="inferno")
        fig.colorbar(mesh, ax=ax, label="log10 basal Omega (Henriques)")
        if np.isfinite(shown).any() and np.nanmin(shown) < 0 < np.nanmax(shown):
            ax.contour(xs, ys, shown, levels=[0.0], colors="cyan", linewidths=1.2)
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        if len(varied) > 2:
            ax.set_title("worst case over " + ", ".join(varied[2:]), fontsize=9)
    fig.suptitle(f"plasmactl sweep: {title}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
