"""One run of the per-spot model: the event schedule, exact linear segments and implicit vaporisation steps.

The stateful part of spot.py's model (temperatures, latent heat, ablation, sampled history, energy), apart
from the shared operators (spot_model.py); the physics and the numerics are in spot.py's module doc.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from plasmactl.simulators.skin.spot_model import _decay, _model, _Op, _tridiag_solve
from plasmactl.simulators.skin.spot_types import EnergyAccount, SpotDose, SpotParams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_MAX_SWITCH_ITERATIONS: Final = 4
_PIN: Final = 1e30  # diagonal of a row held at the vaporisation temperature (penalty form of Dirichlet)
_OVERSHOOT_K: Final = 1e-9  # a free cell this far above 100 C is held and the step solved again


@dataclass(slots=True)
class _Energy:
    deposited: float = 0.0
    surface_in: float = 0.0
    bottom_in: float = 0.0
    perfusion_in: float = 0.0
    metabolic: float = 0.0


@dataclass(slots=True)
class _Segment:
    start: float
    end: float
    power: float  # W/m2
    h: float
    t_inf: float


class _Run:
    def __init__(
        self, p: SpotParams, dose: SpotDose, horizon_s: float, probes: tuple[float, ...], extra_times: FloatArray
    ) -> None:
        self.p = p
        self.model = _model(p)
        self.gr = gr = self.model.grid
        n = gr.dx.size
        self.probes = probes
        self.extra_times = extra_times
        self.area = dose.area_m2
        self.m = 0
        if p.initial_c is None:
            op = self.model.op(0, p.air_h)
            self.temp: FloatArray = op.steady(op.b(p.air_temp_c))
        else:
            self.temp = np.asarray(p.initial_c, dtype=np.float64)[gr.layer]
        self.temp0 = self.temp.copy()
        self.latent: FloatArray = np.zeros(n)
        self.phase: BoolArray = np.zeros(n, dtype=np.bool_)
        self.energy = _Energy()
        self.times: list[FloatArray] = []
        self.samples: list[FloatArray] = []  # blocks of shape (k, n_probes + 1): the probes, then the surface
        self._ctx_key: tuple[int, float, float, float, float] | None = None
        self._ctx: tuple[_Op, FloatArray, FloatArray, FloatArray, FloatArray]
        self.segments = self._schedule(dose, horizon_s)
        first = self.segments[0]
        self._record(np.array([first.start]), self._probe_values(first)[None, :])

    # ------------------------------------------------------------------ schedule

    def _schedule(self, dose: SpotDose, horizon_s: float) -> list[_Segment]:
        """Constant-input segments between events, from the first event (or 0) to the horizon."""
        p = self.p
        edges = {0.0}
        for t_on, t_off, _ in dose.pulses:
            edges.update((t_on, t_off))
        for a, b in (*dose.sprays, *dose.contacts):
            edges.update((a, b))
        times = sorted(edges)
        times.append(times[-1] + horizon_s)
        segs: list[_Segment] = []
        for a, b in itertools.pairwise(times):
            if b <= a:
                continue
            power = math.fsum(e / (t_off - t_on) for t_on, t_off, e in dose.pulses if t_on <= a < t_off) / self.area
            if any(c0 <= a < c1 for c0, c1 in dose.contacts):
                h, t_inf = p.contact_h, p.tip_temp_c
            elif any(s0 <= a < s1 for s0, s1 in dose.sprays):
                h, t_inf = p.spray_h, p.spray_temp_c
            else:
                h, t_inf = p.air_h, p.air_temp_c
            segs.append(_Segment(a, b, power, h, t_inf))
        if not segs:
            segs.append(_Segment(times[0], times[0], 0.0, p.air_h, p.air_temp_c))
        return segs

    def run(self) -> None:
        tv = self.p.vaporisation_c
        for seg in self.segments:
            if seg.end <= seg.start:
                continue
            m = self.m
            if not seg.power:
                # Without a source nothing can stay at (or climb to) 100 C: vaporisation stops.
                self.phase[:] = False
                self._linear(seg)
            elif self.phase[m:].any() or self.temp[m:].max() >= tv:
                self._implicit(seg.start, seg)
            else:
                self._linear(seg)

    # ------------------------------------------------------------------ sampling

    def _record(self, times: FloatArray, values: FloatArray) -> None:
        self.times.append(times)
        self.samples.append(values)

    def _probe_values(self, seg: _Segment) -> FloatArray:
        m = self.m
        op = self.model.op(m, seg.h)
        act = self.temp[m:]
        out = np.empty(len(self.probes) + 1)
        out[:-1] = self.model.probe_matrix(m, self.probes) @ act
        out[-1] = act[0] + op.u * op.half_r * (seg.t_inf - act[0])
        return out

    def _offsets(self, start: float, duration: float) -> FloatArray:
        p = self.p
        first = min(p.first_sample_s, duration)
        span = math.log(duration / first)
        count = max(1, math.ceil(span / math.log(10.0) * p.samples_per_decade))
        taus = first * np.exp(np.arange(count + 1) * (span / count))
        taus[-1] = duration
        extra = self.extra_times
        if extra.size:
            inside = extra[(extra > start) & (extra <= start + duration)] - start
            if inside.size:
                taus = np.union1d(taus, inside)
        return np.asarray(taus, dtype=np.float64)

    # ------------------------------------------------------------------ exact linear steps

    def _hot_count(self) -> int:
        """Cells near the surface that could reach 100 C first (the deposition zone and a margin)."""
        gr, m = self.gr, self.m
        limit = gr.faces[m] + 2.0 * self.p.deposit_depth_m
        return max(3, int(np.searchsorted(gr.faces[m + 1 :], limit, side="left")) + 1)

    def _linear(self, seg: _Segment) -> None:
        """Advance exactly over the segment, or up to the last sample before a cell reaches 100 C."""
        p, m, start = self.p, self.m, seg.start
        op = self.model.op(m, seg.h)
        modes = self.model.modes(m, seg.h)
        b = op.b(seg.t_inf)
        if seg.power:
            b += seg.power * self.model.weights(m)
        tss = op.steady(b)
        z0 = modes.to_modal @ (self.temp[m:] - tss)
        taus = self._offsets(start, seg.end - start)
        keep = -1  # number of samples to keep; -1: all, nothing reaches 100 C
        if seg.power:
            # Does a cell near the surface reach 100 C? A coarse pass first, so that a pulse that starts
            # ablating at once does not pay for the samples of the whole segment.
            nh = min(self._hot_count(), tss.size)
            hot_rows = modes.to_temp[:nh] * z0
            coarse = taus[3::4] if taus.size > 8 else taus
            hot = hot_rows @ _decay(modes.mu, coarse) + tss[:nh, None]
            crossed = np.flatnonzero(hot.max(axis=0) >= p.vaporisation_c)
            if crossed.size:
                taus = taus[taus <= coarse[crossed[0]]]
            decay = _decay(modes.mu, taus)
            hot = hot_rows @ decay + tss[:nh, None]
            over = np.flatnonzero(hot.max(axis=0) >= p.vaporisation_c)
            if over.size:
                keep = int(over[0])
        else:
            decay = _decay(modes.mu, taus)
        plain = self.model.probe_matrix(m, self.probes)
        rows = modes.rows.get(self.probes)
        if rows is None:
            if len(modes.rows) > 16:
                modes.rows.clear()
            rows = modes.rows[self.probes] = np.vstack((plain @ modes.to_temp, modes.to_temp[:1]))
        values = ((rows * z0) @ decay).T
        values[:, :-1] += plain @ tss
        r = op.u * op.half_r  # surface = top cell + r (T_inf - top cell)
        values[:, -1] = (1.0 - r) * (values[:, -1] + tss[0]) + r * seg.t_inf
        if keep < 0:
            keep = taus.size
            done = True
        else:
            done = False
        if keep:
            self._record(start + taus[:keep], values[:keep])
            tau_end = float(taus[keep - 1])
            mu = modes.mu
            self.temp[m:] = tss + modes.to_temp @ (z0 * decay[:, keep - 1])
            integral = tss * tau_end + modes.to_temp @ (z0 * (np.expm1(mu * tau_end) / mu))
            self._account(seg, op, tau_end, integral)
        if not done:
            # A cell is about to reach the vaporisation temperature: hand over to the implicit steps.
            self._implicit(start + (float(taus[keep - 1]) if keep else 0.0), seg)

    def _account(self, seg: _Segment, op: _Op, dt: float, integral: FloatArray) -> None:
        """Exchanges over ``dt`` given ``integral = int T dt`` of the active cells (J/m2)."""
        p, e = self.p, self.energy
        e.deposited += seg.power * dt
        e.surface_in += op.u * (seg.t_inf * dt - float(integral[0]))
        e.bottom_in += self.gr.g_bottom * (p.t_core_c * dt - float(integral[-1]))
        e.perfusion_in += float(op.perf @ (p.t_arterial_c * dt - integral))
        e.metabolic += op.qm_total * dt

    # ------------------------------------------------------------------ implicit steps with vaporisation

    def _implicit(self, start: float, seg: _Segment) -> None:
        """Backward-Euler steps with vaporisation from ``start`` to the end of a pulse segment."""
        end = seg.end
        count = max(1, math.ceil((end - start) / self.p.ablation_dt_s * (1.0 - 1e-9)))
        count = min(count, self.p.max_ablation_steps)
        dt = (end - start) / count
        states = np.empty((count, self.gr.dx.size))  # full columns; ablated cells stay at 100 C
        surface = np.empty(count)
        for i in range(count):
            self._be_step(seg, dt)
            states[i] = self.temp
            op = self.model.op(self.m, seg.h)
            top = float(self.temp[self.m])
            surface[i] = top + op.u * op.half_r * (seg.t_inf - top)
        times = start + dt * np.arange(1, count + 1, dtype=np.float64)
        times[-1] = end
        values = np.empty((count, len(self.probes) + 1))
        # Interpolation on the full grid (ablated cells hold 100 C): the same as on the current column
        # except inside its top cell, where it leans on the crater floor above; probes in ablated tissue
        # are reported as destroyed anyway.
        values[:, :-1] = states @ self.model.probe_matrix(0, self.probes).T
        values[:, -1] = surface
        self._record(times, values)

    def _step_context(self, seg: _Segment, dt: float) -> tuple[_Op, FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(op, b, C/dt, diagonal of C/dt - K, off-diagonal of C/dt - K)`` for the current top cell."""
        key = (self.m, seg.h, seg.t_inf, seg.power, dt)
        if self._ctx_key != key:
            op = self.model.op(self.m, seg.h)
            b = op.b_with_source(seg.t_inf, seg.power, self.model.weights(self.m))
            c_dt, diag = op.backward_euler(dt)
            self._ctx = (op, b, c_dt, diag, op.neg_off)
            self._ctx_key = key
        return self._ctx

    def _be_step(self, seg: _Segment, dt: float) -> None:
        """One backward-Euler step; cells at 100 C are held there and collect latent heat.

        A held cell is a penalty row (``_PIN`` on the diagonal, ``_PIN * 100 C`` on the right): the
        solution there is 100 C to the last bit and its neighbours see an exact Dirichlet value.
        """
        m = self.m
        tv = self.p.vaporisation_c
        op, b, c_dt, diag, neg_off = self._step_context(seg, dt)
        cap = op.cap
        old = self.temp[m:]
        phase = self.phase[m:]
        rhs = c_dt * old
        rhs += b
        pinned_rhs = _PIN * tv
        for _ in range(_MAX_SWITCH_ITERATIONS):
            x = _tridiag_solve(neg_off, np.where(phase, _PIN, diag), neg_off, np.where(phase, pinned_rhs, rhs))
            over = x > tv + _OVERSHOOT_K  # free cells that went past 100 C: hold them too and solve again
            if not np.count_nonzero(over):
                break
            phase = phase | over
        else:
            over = x > tv  # still some after the last iteration: energy-neutral relabelling below
            if np.count_nonzero(over):
                self.latent[m:] += (cap * (x - tv)) * over
                x = np.where(over, tv, x)
                phase = phase | over
        # Exchanges with the boundaries, perfusion and metabolism, from the solved temperatures.
        e = self.energy
        e.deposited += seg.power * dt
        e.surface_in += op.u * (seg.t_inf - float(x[0])) * dt
        e.bottom_in += self.gr.g_bottom * (self.p.t_core_c - float(x[-1])) * dt
        e.perfusion_in += (op.perf_ta - float(op.perf @ x)) * dt
        e.metabolic += op.qm_total * dt
        if np.count_nonzero(phase):
            # Heat received by a held cell beyond what brings it to 100 C goes into latent heat; a held
            # cell that lost heat leaves 100 C with exactly that loss.
            gain = op.apply(x)
            gain += b
            gain *= dt
            gain -= cap * (tv - old)
            gain *= phase
            leaving = gain < 0.0
            if np.count_nonzero(leaving):
                phase = phase & ~leaving
                x = np.where(leaving, tv + gain / cap, x)
                gain *= phase
            self.latent[m:] += gain
        self.temp[m:] = x
        self.phase[m:] = phase
        if phase[0] and self.latent[m] >= self.gr.budget[m]:
            self._ablate()

    def _ablate(self) -> None:
        """Remove the top cell(s) whose latent budget is used up; the surplus cascades down.

        The surplus of the top cell goes to the next cell, which absorbs up to its capacity (sensible heat
        up to 100 C, then the rest of its latent budget) and is removed in turn if the surplus exceeds it,
        and so on: removed cells are exactly those whose cumulative capacity the surplus covers.
        """
        gr, m = self.gr, self.m
        tv = self.p.vaporisation_c
        surplus = float(self.latent[m] - gr.budget[m])
        self.latent[m] = gr.budget[m]
        self.phase[m] = False
        temp, latent, phase = self.temp[m + 1 :], self.latent[m + 1 :], self.phase[m + 1 :]
        capacity = gr.budget[m + 1 :] - latent + np.where(phase, 0.0, gr.cap[m + 1 :] * (tv - temp))
        covered = np.cumsum(capacity)
        stop = np.flatnonzero(covered > surplus)
        if stop.size == 0 or m + 1 + int(stop[0]) >= gr.dx.size - 1:
            raise RuntimeError("the spot was ablated through the whole column")
        k = int(stop[0])  # cells m+1 .. m+k are removed too, cell m+1+k takes the rest
        if k:
            temp[:k] = tv
            latent[:k] = gr.budget[m + 1 : m + 1 + k]
            phase[:k] = False
            surplus -= float(covered[k - 1])
        j = m + 1 + k
        if not self.phase[j]:
            sensible = min(surplus, float(gr.cap[j] * (tv - self.temp[j])))
            self.temp[j] += sensible / gr.cap[j]
            surplus -= sensible
            if surplus > 0.0 or self.temp[j] >= tv:
                self.temp[j] = tv
                self.phase[j] = True
        self.latent[j] += surplus
        self.m = j

    # ------------------------------------------------------------------ results

    def history(self) -> tuple[FloatArray, FloatArray]:
        return np.concatenate(self.times), np.concatenate(self.samples)

    def energy_account(self) -> EnergyAccount:
        gr, e, a = self.gr, self.energy, self.area
        return EnergyAccount(
            deposited_j=e.deposited * a,
            sensible_j=float(gr.cap @ (self.temp - self.temp0)) * a,
            latent_j=float(self.latent.sum()) * a,
            surface_out_j=-e.surface_in * a,
            bottom_out_j=-e.bottom_in * a,
            perfusion_out_j=-e.perfusion_in * a,
            metabolic_in_j=e.metabolic * a,
        )

    @property
    def ablation_depth_m(self) -> float:
        return float(self.gr.faces[self.m])
