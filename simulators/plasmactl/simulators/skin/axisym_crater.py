"""The vaporisation state of one axisymmetric run: pinned cells, latent heat, ablation and the crater.

Apart from the run (axisym.py) because the correction after each linear step (pin, clamp, ablate,
cascade) is its own piece of physics; see axisym.py's module doc, "Vaporisation" and "Time stepping".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


class _Crater:
    """Vaporisation state of one run: latent heat, pinned cells, ablated cells and the crater per column."""

    __slots__ = (
        "budget",
        "cap",
        "latent",
        "nz",
        "pinned",
        "removed",
        "top",
        "tv",
        "vapour",
        "vapour_in",
    )

    def __init__(self, cap: FloatArray, budget: FloatArray, nr: int, nz: int, tv: float) -> None:
        n = cap.size
        self.cap = cap
        self.budget = budget
        self.nz = nz
        self.tv = tv
        self.latent: FloatArray = np.zeros(n)
        self.pinned: BoolArray = np.zeros(n, dtype=np.bool_)
        self.removed: BoolArray = np.zeros(n, dtype=np.bool_)
        self.top: IntArray = np.zeros(nr, dtype=np.intp)  # first live cell of each column
        self.vapour: list[int] = []  # ablated cells still in the operator: held at tv (flat indices)
        self.vapour_in = 0.0

    @property
    def hot(self) -> bool:
        """Is anything at the vaporisation temperature (the nonlinear steps are needed)?"""
        return bool(self.vapour) or bool(self.pinned.any())

    def settle(self, temp: FloatArray, dt: float, src_w: FloatArray) -> list[int]:
        """Correct ``temp`` (in place) after a linear step of ``dt`` that left the source ``src_w`` (W per cell)
        of the pinned cells out; returns the columns whose crater deepened."""
        tv, cap = self.tv, self.cap
        if self.vapour:
            v = np.asarray(self.vapour, dtype=np.intp)
            self.vapour_in += float(cap[v] @ (tv - temp[v]))
            temp[v] = tv
        pin = np.flatnonzero(self.pinned)
        if pin.size:
            # Net heat of a pinned cell over the step: its source share minus what conduction took below 100 C.
            gain = dt * src_w[pin] - cap[pin] * (tv - temp[pin])
            leaving = gain < 0.0
            temp[pin] = np.where(leaving, tv + gain / cap[pin], tv)
            self.latent[pin] += np.where(leaving, 0.0, gain)
            if leaving.any():
                self.pinned[pin[leaving]] = False
        over = np.flatnonzero(temp > tv)
        if over.size:
            over = over[~self.removed[over]]
            self.latent[over] += cap[over] * (temp[over] - tv)
            temp[over] = tv
            self.pinned[over] = True
        tops = np.arange(self.top.size) * self.nz + self.top
        used = np.flatnonzero(self.latent[tops] >= self.budget[tops])
        for i in used:
            self._ablate(int(i), temp)
        return [int(i) for i in used]

    def _ablate(self, i: int, temp: FloatArray) -> None:
        """Remove the used-up top cells of column ``i``; each surplus goes to the cell below (as in :mod:`.spot`)."""
        tv, cap, latent, budget = self.tv, self.cap, self.latent, self.budget
        j = int(self.top[i])
        f = i * self.nz + j
        while latent[f] >= budget[f]:
            if j + 1 >= self.nz - 1:
                raise RuntimeError("the spot was ablated through the whole domain")
            surplus = float(latent[f] - budget[f])
            latent[f] = budget[f]
            self.removed[f] = True
            self.pinned[f] = False
            temp[f] = tv
            self.vapour.append(f)
            j, f = j + 1, f + 1
            if not self.pinned[f]:
                sensible = min(surplus, float(cap[f] * (tv - temp[f])))
                temp[f] += sensible / cap[f]
                surplus -= sensible
                if surplus > 0.0 or temp[f] >= tv:
                    temp[f] = tv
                    self.pinned[f] = True
            latent[f] += surplus
        self.top[i] = j
