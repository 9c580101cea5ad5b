"""Where the faces of the axisymmetric model's (r, z) tensor grid go, and what each cell is made of.

Apart from the model (axisym.py) because the face placement is geometry alone: fine on the axis, around
the spot edge and at the surface, faces on the layer, deposit and damage depths (axisym.py's module doc,
"Discretisation").
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.axisym_params import AxisymParams
from plasmactl.simulators.skin.layered1d import Layer

FloatArray = npt.NDArray[np.float64]

_FACE_TOL = 1e-9  # m: forced faces closer than this are merged


def _geometric(length: float, first: float, growth: float) -> list[float]:
    """Cell sizes filling ``length``: geometric from about ``first``, scaled to fit exactly."""
    if growth == 1.0:
        n = max(1, round(length / first))
    else:
        n = max(1, round(math.log1p(length * (growth - 1.0) / first) / math.log(growth)))
    sizes = [first * growth**i for i in range(n)]
    scale = length / sum(sizes)
    return [s * scale for s in sizes]


def _uniform(length: float, size: float) -> list[float]:
    n = max(1, math.ceil(length / size - 1e-9))
    return [length / n] * n


def _two_sided(length: float, end: float, growth: float) -> list[float]:
    """Cells of about ``end`` at both ends, growing towards the middle."""
    if length <= 2.0 * end:
        return _uniform(length, end)
    half = _geometric(0.5 * length, end, growth)
    return half + half[::-1]


def _faces(sizes: list[float], start: float = 0.0) -> FloatArray:
    return np.asarray(start + np.concatenate(([0.0], np.cumsum(sizes))), dtype=np.float64)


def _capped_geometric(length: float, first: float, growth: float, cap: float) -> list[float]:
    """Cells filling ``length``: from about ``first``, growing by ``growth`` up to ``cap``."""
    sizes: list[float] = []
    total, size = 0.0, first
    while total + size < length:
        sizes.append(size)
        total += size
        size = min(size * growth, cap)
    sizes.append(size)  # overshoots: scale everything down to fit (cells never exceed the cap)
    return [s * length / (total + size) for s in sizes]


def _radial_faces(p: AxisymParams, a: float) -> FloatArray:
    r_max, g = p.r_max_m, p.r_growth
    dr = min(p.r_cell_m, 0.1 * a)  # at the axis and on the edge
    if a >= r_max:
        faces = _faces(_geometric(r_max, dr, g))
    else:
        inner = max(0.0, a - p.r_inner_margin_m)
        outer = min(r_max, a + p.r_outer_margin_m)
        sizes = _two_sided(inner, dr, g) if inner > 0 else []
        sizes += _uniform(a - inner, dr)
        if outer > a:  # from the edge cell up to r_cell_m, then uniform through the margin
            sizes += _capped_geometric(outer - a, dr, g, max(dr, p.r_cell_m))
        if r_max > outer:
            sizes += _geometric(r_max - outer, sizes[-1] * g, g)
        faces = _faces(sizes)
    faces[-1] = r_max
    return faces


def _depth_faces(p: AxisymParams) -> FloatArray:
    z_max = p.depth_m
    forced = [0.0, z_max, p.deposit_depth_m, p.damage_depth_m]
    zone = min(p.crater_zone_m, z_max) if p.vaporisation else 0.0
    if zone > 0:
        forced.append(zone)
    acc = 0.0
    for layer in p.layers:
        acc += layer.thickness_m
        if acc < z_max:
            forced.append(acc)
    marks: list[float] = []
    for z in sorted(forced):
        if not marks or z - marks[-1] > _FACE_TOL:
            marks.append(z)
    marks[-1] = z_max
    sizes: list[float] = []
    size = p.surface_cell_m
    for lo, hi in itertools.pairwise(marks):
        if hi <= zone + _FACE_TOL:  # where a crater is expected: cells of at most crater_cell_m
            cap = max(p.crater_cell_m, p.surface_cell_m)
            cells = _capped_geometric(hi - lo, min(size, cap), p.z_growth, cap)
        else:
            cells = _geometric(hi - lo, size, p.z_growth)
        sizes.extend(cells)
        size = cells[-1] * p.z_growth
    faces = _faces(sizes)
    # Snap the forced faces exactly (cumsum rounding).
    for z in marks:
        faces[int(np.argmin(np.abs(faces - z)))] = z
    return faces


def _layer_of(p: AxisymParams, z_centres: FloatArray) -> list[Layer]:
    bounds = np.cumsum([layer.thickness_m for layer in p.layers])
    idx = np.minimum(np.searchsorted(bounds, z_centres), len(p.layers) - 1)
    return [p.layers[int(i)] for i in idx]


def _disk_overlap(faces: FloatArray, radius: float) -> FloatArray:
    """Area of each annulus inside the disk of ``radius``, m2."""
    clipped = np.minimum(faces, radius)
    return np.asarray(math.pi * (clipped[1:] ** 2 - clipped[:-1] ** 2), dtype=np.float64)
