"""What the tissue went through at each spot of a simulated session.

The simulated generator and spray unit report what they physically did (pulse on/off times and energy,
valve open/close times); the recorder groups the pulses of a spot with the spray that cooled them and
runs the per-spot physics: the 1-D column with ablation and damage integrals, and the axisymmetric 2-D
model for the lateral damage radius. Spots of a session receive nearly the same dose, so results are
cached by a quantised dose (times to 0.1 ms, energy to 2 %, i.e. within 1 % of the energy delivered): the
cost of a session grows with the number of distinct doses, and a fresh dose costs one spot simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plasmactl.rig import Skin
from plasmactl.simulators.skin.axisym import AxisymParams, simulate_lateral
from plasmactl.simulators.skin.from_rig import tissue_fields
from plasmactl.simulators.skin.spot import SpotDose, SpotParams, SpotResult, simulate_spot
from plasmactl.summary import TISSUE_METRICS

TIME_QUANTUM_S = 1e-4
ENERGY_QUANTUM = math.log(1.02)
# The 2-D lateral model costs ~0.3 s for a new dose (a new crater): coarser bins for it (1 ms, 5 %).
LATERAL_TIME_QUANTUM_S = 1e-3
LATERAL_ENERGY_QUANTUM = math.log(1.05)
LATERAL_SKIP_OMEGA = 0.1  # 1-D basal Omega below this: the lateral radius is 0 without the 2-D model
METRICS_MAX = TISSUE_METRICS

Emit = Callable[[dict[str, Any]], None]


@dataclass
class _Group:
    pulses: list[list[float]] = field(default_factory=list)  # [t_on, t_off, energy_j, number]
    sprays: list[list[float]] = field(default_factory=list)  # [t_open, t_close]


def _key(group: _Group, q: float = TIME_QUANTUM_S, eq: float = ENERGY_QUANTUM) -> tuple[tuple[int, ...], ...]:
    t0 = group.pulses[0][0]
    pulses = tuple(
        (round((on - t0) / q), round((off - t0) / q), round(math.log(max(e, 1e-12)) / eq))
        for on, off, e, _ in group.pulses
    )
    sprays = tuple((round((o - t0) / q), round((c - t0) / q)) for o, c in group.sprays)
    return (*pulses, (-1,), *sprays)


class TissueRecorder:
    """Collects doses as the devices act; computes each spot's result when its cooling is over."""

    def __init__(self, skin: Skin, spot_diameter_m: float, emit: Emit | None = None) -> None:
        self.skin = skin
        self.spot_diameter_m = spot_diameter_m
        self._emit = emit
        fields = {**tissue_fields(skin), "deposit_depth_m": skin.deposit_depth_um * 1e-6}
        self.spot_params = SpotParams(**fields)
        self.axisym_params = AxisymParams(**fields)
        self._group = _Group()
        self._pending: list[_Group] = []  # closed spots waiting for the physics (a few numbers each)
        self._spots = 0
        self._cache: dict[tuple[tuple[int, ...], ...], dict[str, float]] = {}
        self._lateral_cache: dict[tuple[tuple[int, ...], ...], float] = {}
        self.computed = 0  # distinct doses simulated
        self.maxima: dict[str, float] = {}
        self.counts = {"spots": 0, "spots_omega_ge_1": 0, "spots_omega_ge_0_53": 0, "spots_ablated": 0}

    # ---------------------------------------------------------------- reported by the devices

    def pulse(self, number: int, t_on: float, t_off: float, energy_j: float) -> None:
        if self._group.sprays:
            self._close()
        if energy_j > 0 and t_off > t_on:
            self._group.pulses.append([t_on, t_off, energy_j, float(number)])

    def cut_pulse(self, t: float) -> None:
        if self._group.pulses:
            p = self._group.pulses[-1]
            if t < p[1]:
                full = p[1] - p[0]
                p[2] = p[2] * max(0.0, t - p[0]) / full if full > 0 else 0.0
                p[1] = max(t, p[0])
                if p[1] <= p[0]:  # cut as it started: nothing delivered (and no zero-length pulse for the physics)
                    self._group.pulses.pop()

    def spray(self, t_open: float, t_close: float) -> None:
        if self._group.pulses:
            self._group.sprays.append([t_open, t_close])

    def stop_spray(self, t: float) -> None:
        if self._group.sprays:
            s = self._group.sprays[-1]
            s[1] = max(s[0], min(s[1], t))
            if s[1] <= s[0]:  # stopped as it opened (the session ending): no water, and the physics takes none
                self._group.sprays.pop()

    # ---------------------------------------------------------------- results

    def finish(self) -> dict[str, Any]:
        """Close the last spot, simulate every spot's dose, emit each result, return the session summary.

        The physics runs here, after the session, not while the devices act: on the real clock a spot's
        simulation (milliseconds, more for a new dose) would otherwise stall the controller's loop."""
        self._close()
        pending, self._pending = self._pending, []
        for group in pending:
            self._evaluate(group)
        return {**{k: self.maxima.get(k) for k in METRICS_MAX}, **self.counts, "doses_simulated": self.computed}

    def _close(self) -> None:
        group, self._group = self._group, _Group()
        group.pulses = [p for p in group.pulses if p[1] > p[0] and p[2] > 0]
        if group.pulses:
            self._pending.append(group)

    def _evaluate(self, group: _Group) -> None:
        key = _key(group)
        result = self._cache.get(key)
        if result is None:
            result = self._simulate(group)
            self._cache[key] = result
            self.computed += 1
        self._spots += 1
        t0 = group.pulses[0][0]
        first_end = group.pulses[0][1]
        record: dict[str, Any] = {
            "spot": self._spots,
            "pulses": [int(p[3]) for p in group.pulses],
            "energy_j": sum(p[2] for p in group.pulses),
            "spray_delay_ms": (group.sprays[0][0] - first_end) * 1000.0 if group.sprays else None,
            "t_first_pulse": t0,
            **result,
        }
        self._account(result)
        if self._emit is not None:
            self._emit(record)

    def _simulate(self, group: _Group) -> dict[str, float]:
        t0 = group.pulses[0][0]
        pulses = tuple((on - t0, off - t0, e) for on, off, e, _ in group.pulses)
        sprays = tuple((o - t0, c - t0) for o, c in group.sprays)
        spot: SpotResult = simulate_spot(SpotDose(pulses, sprays, self.spot_diameter_m), self.spot_params)
        out: dict[str, float] = {
            "max_surface_c": spot.max_surface_c,
            "max_basal_c": spot.max_basal_c,
            "basal_omega_henriques": spot.basal_omega_henriques,
            "basal_omega_weaver_stoll": spot.basal_omega_weaver_stoll,
            "cem43_min": spot.cem43_min,
            "ablation_depth_um": spot.ablation_depth_um,
        }
        if self.skin.lateral and spot.basal_omega_henriques < LATERAL_SKIP_OMEGA:
            # The lateral radius is where Omega >= 1 at the basal depth. Omega is largest on the axis, and
            # the 1-D column (no sideways loss) bounds the axis from above: far below 1 there, nothing
            # anywhere reaches 1, so the 2-D model (~0.3 s for a new crater) need not run.
            out["lateral_damage_radius_um"] = 0.0
        elif self.skin.lateral:
            key = _key(group, LATERAL_TIME_QUANTUM_S, LATERAL_ENERGY_QUANTUM)
            radius = self._lateral_cache.get(key)
            if radius is None:
                lateral = simulate_lateral(pulses, sprays, self.spot_diameter_m, self.axisym_params)
                radius = self._lateral_cache[key] = lateral.lateral_damage_radius_um
            out["lateral_damage_radius_um"] = radius
        return out

    def _account(self, result: dict[str, float]) -> None:
        for k, v in result.items():
            if k in METRICS_MAX and (k not in self.maxima or v > self.maxima[k]):
                self.maxima[k] = v
        self.counts["spots"] += 1
        omega = result.get("basal_omega_henriques", 0.0)
        self.counts["spots_omega_ge_1"] += omega >= 1.0
        self.counts["spots_omega_ge_0_53"] += omega >= 0.53
        self.counts["spots_ablated"] += result.get("ablation_depth_um", 0.0) > 0.0
