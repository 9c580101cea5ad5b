"""The finite-volume column of the per-spot model, and how its cells are read at given depths.

Apart from the operators (spot_model.py) because the grid is fixed by the parameters alone; see spot.py's
module doc for its construction (fine at the surface, geometric growth, faces on the layer boundaries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.spot_types import SpotParams

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class _Grid:
    dx: FloatArray
    faces: FloatArray
    centres: FloatArray
    k: FloatArray
    cap: FloatArray  # J/(m2 K)
    perf: FloatArray  # W/(m2 K)
    qm: FloatArray  # W/m2
    g: FloatArray  # conductance between cell i and i + 1, W/(m2 K)
    g_bottom: float
    budget: FloatArray  # latent budget per cell, J/m2
    layer: npt.NDArray[np.int64]


def _layer_cells(thickness: float, first: float, growth: float, cap: float) -> list[float]:
    sizes: list[float] = []
    size, total = first, 0.0
    while total < thickness:
        sizes.append(size)
        total += size
        size = min(size * growth, cap)
    if len(sizes) > 1 and total - thickness > 0.5 * sizes[-1]:
        sizes.pop()  # fit by stretching rather than by a sliver
    scale = thickness / sum(sizes)
    return [s * scale for s in sizes]


def _build_grid(p: SpotParams) -> _Grid:
    widths: list[float] = []
    owner: list[int] = []
    size = p.surface_cell_m
    for i, layer in enumerate(p.layers):
        cells = _layer_cells(layer.thickness_m, size, p.growth, p.max_cell_m)
        widths.extend(cells)
        owner.extend([i] * len(cells))
        size = min(cells[-1] * p.growth, p.max_cell_m)
    dx = np.asarray(widths)
    lay = [p.layers[i] for i in owner]
    k = np.array([la.k for la in lay])
    rho = np.array([la.rho for la in lay])
    faces = np.concatenate(([0.0], np.cumsum(dx)))
    faces[-1] = p.total_thickness_m
    return _Grid(
        dx=dx,
        faces=faces,
        centres=0.5 * (faces[:-1] + faces[1:]),
        k=k,
        cap=rho * np.array([la.c for la in lay]) * dx,
        perf=np.array([la.w_b for la in lay]) * p.rho_b * p.c_b * dx,
        qm=np.array([la.q_m for la in lay]) * dx,
        g=1.0 / (dx[:-1] / (2.0 * k[:-1]) + dx[1:] / (2.0 * k[1:])),
        g_bottom=float(2.0 * k[-1] / dx[-1]),
        budget=p.water_fraction * rho * p.latent_heat_j_per_kg * dx,
        layer=np.asarray(owner, dtype=np.int64),
    )


def _probe_rows(gr: _Grid, m: int, depths: tuple[float, ...]) -> FloatArray:
    """Rows interpolating the active-cell temperatures at absolute depths: linear within half cells, with
    the face temperature from flux continuity (so the kink at a material interface is respected).
    Ablated depths (above the current surface) read the top cell."""
    n = gr.dx.size
    rows = np.zeros((len(depths), n - m))
    half = 2.0 * gr.k / gr.dx  # conductance of a half cell
    for r, x in enumerate(depths):
        j = int(np.clip(np.searchsorted(gr.faces, x, side="right") - 1, 0, n - 1))
        if j < m or (j == m and x <= gr.centres[m]) or m == n - 1:
            rows[r, 0] = 1.0
        elif x >= gr.centres[j]:
            if j == n - 1:
                rows[r, j - m] = 1.0
                continue
            a, b = half[j], half[j + 1]
            s = (x - gr.centres[j]) / (gr.faces[j + 1] - gr.centres[j])  # 0 at the centre, 1 at the face
            rows[r, j - m] += 1.0 - s * b / (a + b)
            rows[r, j + 1 - m] += s * b / (a + b)
        else:
            a, b = half[j - 1], half[j]
            s = (x - gr.faces[j]) / (gr.centres[j] - gr.faces[j])  # 0 at the face, 1 at the centre
            rows[r, j - 1 - m] += (1.0 - s) * a / (a + b)
            rows[r, j - m] += (1.0 - s) * b / (a + b) + s
    return rows
