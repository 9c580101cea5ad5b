"""A fast, exact-in-time layered 1-D skin conduction model (Pennes bioheat, finite volumes).

Physics (see docs/domain.md, "Skin thermal model"): in each layer

    rho c dT/dt = d/dx(k dT/dx) + w_b rho_b c_b (T_a - T) + q_m + q_ext

with ``w_b`` in 1/s. The top boundary is convective, ``h (T_inf - T_surface)``, with either still air
or the cold spray; the bottom boundary is held at the core temperature. A heat source of power ``P``
spread over the field area ``A`` (a 6 mm circle: the treated patch and the thermometer's field of
view) is deposited uniformly in the top ``deposit_depth_m`` of tissue.

Discretisation: a non-uniform finite-volume grid (fine at the surface, geometric growth with depth,
faces on the layer boundaries), harmonic-mean (series) conductances between cell centres. The top
boundary conductance is the series combination of ``h`` and the half-cell conduction ``dx0/(2 k0)``,
which is ``h`` itself to within 1 % for air and spray (``h`` << ``2 k0/dx0`` ~ 2e5 W/(m2 K)) and
makes a fixed surface temperature when ``h`` is huge (e.g. 1e9). The semi-discrete system is linear,

    dT/dt = A T + b,    A = C^-1 K,

where ``C`` is the diagonal of cell heat capacities and ``K`` is symmetric; ``A`` depends only on the
boundary mode (air or spray) and ``b`` on the mode and the total source power. Between two changes
of mode or power the state is advanced exactly:

    T(t + dt) = T_ss + expm(A dt) (T - T_ss),    T_ss = -A^-1 b.

Speed: ``A`` is similar to the symmetric ``C^-1/2 K C^-1/2 = Q diag(mu) Q^T``, so
``expm(A dt) = C^-1/2 Q diag(exp(mu dt)) Q^T C^1/2`` for every ``dt``. The state is kept in the modal
coordinates ``z = Q^T C^1/2 (T - T_ss)`` of the current mode, so a step of any length is one
element-wise ``z *= exp(mu dt)`` (no time quantisation, no matrix caches); changing mode costs two
matrix-vector products and changing power one vector update. The eigenbasis of a symmetric matrix is
orthogonal, so this is as accurate as ``scipy.linalg.expm`` (the tests compare the two). By
linearity ``T_ss(mode, P) = T_ss(mode, 0) + P * u(mode)``: two vectors per mode replace a cache keyed
on power.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_LAYERS",
    "Layer",
    "Layered1DSkin",
    "SkinParams",
    "TissueParams",
]

from plasmactl.simulators.skin.layered_params import (
    DEFAULT_LAYERS,
    FloatArray,
    Layer,
    SkinParams,
    TissueParams,
    _build_grid,
)


class _Mode:
    """Everything that depends only on the boundary mode (air or spray)."""

    __slots__ = ("a", "b0", "mu", "src", "surface_u", "t_inf", "to_modal", "to_temp", "top", "tss0", "u", "u_modal")

    def __init__(
        self,
        k_sym: FloatArray,
        cap: FloatArray,
        b0: FloatArray,
        src: FloatArray,
        t_inf: float,
        surface_u: float,
    ) -> None:
        # Per unit area: C dT/dt = K T + b0 + P src, with K symmetric.
        self.a: FloatArray = k_sym / cap[:, None]
        self.b0: FloatArray = b0 / cap
        self.src: FloatArray = src / cap
        self.tss0: FloatArray = np.asarray(-np.linalg.solve(k_sym, b0), dtype=np.float64)  # no source
        self.u: FloatArray = np.asarray(-np.linalg.solve(k_sym, src), dtype=np.float64)  # rise per watt
        sq = np.sqrt(cap)
        mu, q = np.linalg.eigh(k_sym / sq[:, None] / sq[None, :])
        self.mu: FloatArray = mu  # all < 0: fixed-temperature bottom
        self.to_modal: FloatArray = np.ascontiguousarray(q.T * sq[None, :])  # Q^T C^1/2
        self.to_temp: FloatArray = np.ascontiguousarray(q / sq[:, None])  # C^-1/2 Q
        self.top: FloatArray = self.to_temp[0]  # its first row (a view): the surface cell, read per sample
        self.u_modal: FloatArray = self.to_modal @ self.u
        self.t_inf = t_inf
        self.surface_u = surface_u  # boundary conductance, cell 0 to T_inf, W/(m2 K)


@dataclass(slots=True)
class _Segment:
    start: float
    end: float
    power_w: float = 0.0


@dataclass(slots=True)
class _Schedule:
    """Pending and active segments of one kind (heat or cool); finished ones are dropped."""

    segments: dict[int, _Segment] = field(default_factory=dict)
    active: set[int] = field(default_factory=set)


class Layered1DSkin:
    """Layered 1-D Pennes conduction model implementing :class:`~plasmactl.simulators.skin.port.SkinModel`.

    Starts at ``start_time`` (session clock, s) in the steady state of the air mode without any source.
    """

    def __init__(self, params: SkinParams | None = None, *, start_time: float = 0.0) -> None:
        self._params = params if params is not None else SkinParams()
        p = self._params
        if not math.isfinite(start_time):
            raise ValueError("start_time must be finite")

        dx, owner = _build_grid(p)
        n = dx.size
        lay = [p.layers[i] for i in owner]
        k = np.array([la.k for la in lay])
        rho_c = np.array([la.rho * la.c for la in lay])
        perf = np.array([la.w_b for la in lay]) * p.rho_b * p.c_b * dx  # W/(m2 K)
        qm = np.array([la.q_m for la in lay]) * dx  # W/m2
        cap = rho_c * dx  # J/(m2 K)

        faces = np.concatenate(([0.0], np.cumsum(dx)))
        faces[-1] = p.total_thickness_m
        self._faces: FloatArray = faces
        self._centres: FloatArray = 0.5 * (faces[:-1] + faces[1:])
        self._rho_c: FloatArray = rho_c
        self._half_r0 = float(dx[0] / (2.0 * k[0]))  # half-cell resistance at the surface, m2 K/W
        self._depth_total = float(faces[-1])

        # Conduction: series resistance between neighbouring cell centres (harmonic mean of k).
        g = 1.0 / (dx[:-1] / (2.0 * k[:-1]) + dx[1:] / (2.0 * k[1:]))
        g_bottom = 2.0 * k[-1] / dx[-1]
        base = np.zeros((n, n))
        idx = np.arange(n - 1)
        base[idx, idx + 1] += g
        base[idx + 1, idx] += g
        base[idx, idx] -= g
        base[idx + 1, idx + 1] -= g
        base[n - 1, n - 1] -= g_bottom
        base[np.arange(n), np.arange(n)] -= perf
        b_base = perf * p.t_arterial_c + qm
        b_base[n - 1] += g_bottom * p.t_core_c

        # Source per watt: uniform over [0, deposit_depth] below the field area, W/m2 per W.
        overlap = np.clip(np.minimum(faces[1:], p.deposit_depth_m) - faces[:-1], 0.0, None)
        src = overlap / p.deposit_depth_m / p.field_area_m2

        def make_mode(h: float, t_inf: float) -> _Mode:
            u = 0.0 if h == 0 else 1.0 / (1.0 / h + self._half_r0)
            k_sym = base.copy()
            k_sym[0, 0] -= u
            b0 = b_base.copy()
            b0[0] += u * t_inf
            return _Mode(k_sym, cap, b0, src, t_inf, u)

        self._modes = (make_mode(p.air_h, p.air_temp_c), make_mode(p.spray_h, p.spray_temp_c))
        self._mode = self._modes[0]
        self._decays: dict[tuple[_Mode, float], FloatArray] = {}  # exp(mu dt) of the step lengths seen
        self._power = 0.0
        self._tss: FloatArray = self._mode.tss0
        self._tss_0 = float(self._tss[0])  # its surface cell, as a float (read per sample)
        self._z: FloatArray = np.zeros(n)  # modal deviation from _tss in the current mode's basis
        self._rest_surface_c = self._surface_from_t0(float(self._tss[0]))

        self._time = float(start_time)
        self._heats = _Schedule()
        self._cools = _Schedule()
        self._events: list[tuple[float, int]] = []  # (time, handle); stale entries are skipped
        self._next_handle = 1

    # ------------------------------------------------------------------ introspection

    @property
    def params(self) -> SkinParams:
        return self._params

    @property
    def time(self) -> float:
        return self._time

    @property
    def faces_m(self) -> FloatArray:
        """Depths of the cell faces (0 = surface), m."""
        return self._faces.copy()

    @property
    def centres_m(self) -> FloatArray:
        """Depths of the cell centres, m."""
        return self._centres.copy()

    @property
    def rho_c(self) -> FloatArray:
        """Volumetric heat capacity of each cell, J/(m3 K)."""
        return self._rho_c.copy()

    def steady_state_c(self) -> float:
        """Surface temperature at rest (air, no source), C: the initial state."""
        return self._rest_surface_c

    def system(self, spray: bool, power_w: float) -> tuple[FloatArray, FloatArray]:
        """``(A, b)`` of ``dT/dt = A T + b`` in a mode, for verification (copies)."""
        mode = self._modes[1 if spray else 0]
        return mode.a.copy(), mode.b0 + power_w * mode.src

    # ------------------------------------------------------------------ schedules

    def heat(self, t_start: float, t_end: float, power_w: float) -> int:
        if not (math.isfinite(power_w) and power_w >= 0):
            raise ValueError(f"power_w must be finite and >= 0, got {power_w!r}")
        return self._schedule(self._heats, t_start, t_end, power_w)

    def end_heat(self, handle: int, t: float) -> None:
        self._truncate(self._heats, handle, t)

    def cool(self, t_start: float, t_end: float) -> int:
        return self._schedule(self._cools, t_start, t_end, 0.0)

    def end_cool(self, handle: int, t: float) -> None:
        self._truncate(self._cools, handle, t)

    # ------------------------------------------------------------------ queries

    def surface_c(self, t: float) -> float:
        events = self._events
        if (events and events[0][0] <= t) or not (t >= self._time and math.isfinite(t)):
            self._advance(t)  # a schedule change on the way (or a bad t: its error)
        else:  # = _advance(t) with no event on the way: one step (once per thermometer sample)
            self._step(t - self._time)
            self._time = t
        mode = self._mode
        t0 = self._tss_0 + float(mode.top.dot(self._z))  # float64 + float64: the same sum as floats
        return t0 + mode.surface_u * (mode.t_inf - t0) * self._half_r0

    def temperature_at_c(self, depth_m: float, t: float) -> float:
        if not 0.0 <= depth_m <= self._depth_total:
            raise ValueError(f"depth_m must be in [0, {self._depth_total}], got {depth_m!r}")
        self._advance(t)
        temp = self._temperatures()
        xs = np.concatenate(([0.0], self._centres, [self._depth_total]))
        ts = np.concatenate(([self._surface_from_t0(float(temp[0]))], temp, [self._params.t_core_c]))
        return float(np.interp(depth_m, xs, ts))

    def profile_c(self, t: float) -> FloatArray:
        """Cell (volume-average) temperatures at ``t``, C, one per cell of :attr:`centres_m`."""
        self._advance(t)
        return self._temperatures()

    # ------------------------------------------------------------------ internals

    def _temperatures(self) -> FloatArray:
        return self._tss + self._mode.to_temp @ self._z

    def _surface_from_t0(self, t0: float) -> float:
        # Face temperature from the convective flux through the top half cell. A source inside the top
        # cell is not included: with volumetric deposition the profile is flat at the surface.
        mode = self._mode
        return t0 + mode.surface_u * (mode.t_inf - t0) * self._half_r0

    def _check_time(self, t: float, what: str) -> None:
        if math.isnan(t) or t < self._time:
            raise ValueError(f"{what} {t!r} is before the model time {self._time!r}")

    def _schedule(self, sched: _Schedule, t_start: float, t_end: float, power_w: float) -> int:
        self._check_time(t_start, "t_start")
        if not math.isfinite(t_start):
            raise ValueError("t_start must be finite")
        if math.isnan(t_end) or t_end < t_start:
            raise ValueError(f"t_end {t_end!r} must be >= t_start {t_start!r}")
        handle = self._next_handle
        self._next_handle += 1
        if t_end == t_start:
            return handle  # empty interval: nothing to do
        sched.segments[handle] = _Segment(float(t_start), float(t_end), power_w)
        heapq.heappush(self._events, (float(t_start), handle))
        if math.isfinite(t_end):
            heapq.heappush(self._events, (float(t_end), handle))
        return handle

    def _truncate(self, sched: _Schedule, handle: int, t: float) -> None:
        self._check_time(t, "t")
        seg = sched.segments.get(handle)
        if seg is None:
            other = self._cools if sched is self._heats else self._heats
            if 0 < handle < self._next_handle and handle not in other.segments:
                return  # already finished (and dropped) or empty: truncating changes nothing
            raise ValueError(f"unknown handle {handle!r}")
        if t >= seg.end:
            return
        seg.end = float(t)
        heapq.heappush(self._events, (seg.end, handle))  # applied at the next advance, even if now

    def _advance(self, t: float) -> None:
        if not (t >= self._time and math.isfinite(t)):  # the checks (and their errors) only when one fails
            self._check_time(t, "t")
            raise ValueError("t must be finite")
        events = self._events
        while events and events[0][0] <= t:
            ev_t = events[0][0]
            self._step(ev_t - self._time)
            self._time = ev_t
            while events and events[0][0] == ev_t:
                _, handle = heapq.heappop(events)
                self._apply_event(handle, ev_t)
            self._refresh_mode()
        self._step(t - self._time)
        self._time = t

    def _apply_event(self, handle: int, now: float) -> None:
        for sched in (self._heats, self._cools):
            seg = sched.segments.get(handle)
            if seg is None:
                continue
            if seg.end <= now:
                del sched.segments[handle]
                sched.active.discard(handle)
            elif seg.start <= now:
                sched.active.add(handle)
            return

    def _refresh_mode(self) -> None:
        segs, active = self._heats.segments, self._heats.active
        if len(active) == 1:  # fsum of one value is that value (+ 0.0: fsum gives 0.0 for -0.0 too)
            power = segs[next(iter(active))].power_w + 0.0
        else:
            power = math.fsum(segs[h].power_w for h in active) if active else 0.0
        mode = self._modes[1] if self._cools.active else self._modes[0]
        if mode is not self._mode:
            temp = self._temperatures()
            self._mode = mode
            self._power = power
            self._tss = mode.tss0 + power * mode.u
            self._tss_0 = float(self._tss[0])
            self._z = mode.to_modal @ (temp - self._tss)
        elif power != self._power:
            # Same basis: only the steady state moves, T_ss += dP u, so z -= dP u_modal.
            self._z = self._z - (power - self._power) * mode.u_modal
            self._tss = mode.tss0 + power * mode.u
            self._tss_0 = float(self._tss[0])
            self._power = power

    def _step(self, dt: float) -> None:
        if dt > 0.0:
            decay = self._decays.get((self._mode, dt))
            self._z = self._z * (decay if decay is not None else self._decay(dt))

    def _decay(self, dt: float) -> FloatArray:
        """``exp(mu dt)`` of the current mode, kept: a few step lengths recur (sample period, pulse, spray)."""
        self._decays = self._decays if len(self._decays) < 512 else {}
        decay = self._decays[(self._mode, dt)] = np.exp(self._mode.mu * dt)
        return decay
