"""The thermal damage parameter sets and burn thresholds (the integrals over a history: damage.py).

Kept apart so that the kernels (damage_kernels.py) and the public integrals share one definition of each
set without importing each other. See docs/domain.md, "Thermal damage".

Arrhenius damage integral ``Omega = int A exp(-(E/R) / T) dt``:

- :data:`HENRIQUES` (1947): ``A = 3.1e98 1/s``, ``Ea = 6.28e5 J/mol``. ``E/R`` is computed as
  ``Ea / R`` with ``R = 8.314462618 J/(mol K)`` (75,531.04 K; with R rounded to 8.314 it would be 75,535 K)
  and never rounded: rounding it to 75,000 K moves the 44 C threshold time five-fold.
- :data:`WEAVER_STOLL` (1969), piecewise: ``44 <= T < 50 C``: ``A = 2.185e124``, ``E/R = 93,534.9 K``;
  ``T >= 50 C``: ``A = 1.823e51``, ``E/R = 39,109.8 K``. **Convention: the rate is 0 below 44 C** (the
  fit starts at 44 C; the 44-50 C rate at 44 C is 1.8e-4 1/s, i.e. Omega = 1 after 1.5 h, so the cut-off
  is below any burn of interest). The two bands do not meet exactly at 50 C (0.043 vs 0.050 1/s); the
  published values are kept as they are.

Thresholds (Henriques): Omega 0.53 first degree, 1 second degree, 1e4 third degree.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Final

R_GAS: Final = 8.314462618  # J/(mol K), CODATA 2018 (exact SI value)
ZERO_C_IN_K: Final = 273.15
CEM43_REFERENCE_C: Final = 43.0

OMEGA_FIRST_DEGREE: Final = 0.53
OMEGA_SECOND_DEGREE: Final = 1.0
OMEGA_THIRD_DEGREE: Final = 1e4


@dataclass(frozen=True, slots=True)
class ArrheniusBand:
    """``rate = a_per_s * exp(-e_over_r_k / T_K)`` for ``t_min_c <= T < t_max_c`` (C)."""

    a_per_s: float
    e_over_r_k: float
    t_min_c: float = -math.inf
    t_max_c: float = math.inf

    def __post_init__(self) -> None:
        if not (self.a_per_s > 0 and math.isfinite(self.a_per_s) and self.e_over_r_k > 0):
            raise ValueError("need a finite A > 0 and E/R > 0")
        if not self.t_min_c < self.t_max_c:
            raise ValueError("need t_min_c < t_max_c")

    @classmethod
    def from_activation_energy(
        cls, a_per_s: float, ea_j_per_mol: float, t_min_c: float = -math.inf, t_max_c: float = math.inf
    ) -> ArrheniusBand:
        """A band from the activation energy: ``E/R = Ea / R_GAS``, unrounded."""
        return cls(a_per_s, ea_j_per_mol / R_GAS, t_min_c, t_max_c)


@dataclass(frozen=True, slots=True)
class ArrheniusParams:
    """A named Arrhenius parameter set: non-overlapping bands in increasing temperature; rate 0 outside."""

    name: str
    bands: tuple[ArrheniusBand, ...]

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError("at least one band is needed")
        for lo, hi in itertools.pairwise(self.bands):
            if hi.t_min_c < lo.t_max_c:
                raise ValueError("bands must be sorted and must not overlap")


HENRIQUES: Final = ArrheniusParams("Henriques 1947", (ArrheniusBand.from_activation_energy(3.1e98, 6.28e5),))
WEAVER_STOLL: Final = ArrheniusParams(
    "Weaver-Stoll 1969",
    (
        ArrheniusBand(2.185e124, 93534.9, 44.0, 50.0),
        ArrheniusBand(1.823e51, 39109.8, 50.0, math.inf),
    ),
)
