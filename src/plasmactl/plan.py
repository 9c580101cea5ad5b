"""The treatment plan (TOML): what to deliver, where, how it is cooled, and limits within the hard caps."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from plasmactl.inputs import LoadedFile, load_model
from plasmactl.limits import Caps, Limits, fluence_j_cm2

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
MAX_SPOTS = 100_000  # far above a full face at 1 mm pitch; keeps validation and memory bounded
MJ_HINT_MIN_J_CM2 = 0.5  # the energy read as millijoules must give at least a dose anyone treats with
UM_HINT_MIN_MM = 0.05  # the diameter read as micrometres must give at least a spot anyone treats with


def _spot_diameter(mm: float) -> float:
    """At most the hard cap, with a hint when the number looks like micrometres."""
    if mm <= Caps.MAX_SPOT_DIAMETER_MM:
        return mm
    message = f"spot diameter {mm:g} mm is over the cap of {Caps.MAX_SPOT_DIAMETER_MM:g} mm"
    if UM_HINT_MIN_MM <= mm / 1000.0 <= Caps.MAX_SPOT_DIAMETER_MM:
        message += f"; did you mean {mm:g} um = {mm / 1000.0:g} mm?"
    raise ValueError(message)


SpotDiameter = Annotated[float, Field(gt=0, allow_inf_nan=False), AfterValidator(_spot_diameter)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class Grid(_Strict):
    """A fractional grid over a rectangular area: give the spacing, or the density and spot size."""

    width_mm: PosFloat
    height_mm: PosFloat
    spacing_mm: PosFloat | None = None
    density_pct: Annotated[float, Field(gt=0, le=78.5)] | None = None  # pi/4: circles touching
    spot_diameter_mm: SpotDiameter = 0.3

    @model_validator(mode="after")
    def _one_of(self) -> Grid:
        if (self.spacing_mm is None) == (self.density_pct is None):
            raise ValueError("give exactly one of spacing_mm or density_pct")
        nx, ny = self.shape
        if nx * ny > MAX_SPOTS:
            raise ValueError(
                f"the grid has {nx:.4g} x {ny:.4g} = {float(nx) * ny:.4g} spots, over the {MAX_SPOTS} a plan may hold"
            )
        if self.pitch_mm < self.spot_diameter_mm:
            raise ValueError(
                f"spacing {self.pitch_mm:g} mm is smaller than the spot diameter {self.spot_diameter_mm:g} mm"
                " (spots would overlap)"
            )
        return self

    @property
    def pitch_mm(self) -> float:
        if self.spacing_mm is not None:
            return self.spacing_mm
        assert self.density_pct is not None
        # density = spot area / pitch^2 on a square grid
        spot_area = math.pi * (self.spot_diameter_mm / 2) ** 2
        return math.sqrt(spot_area / (self.density_pct / 100.0))

    @property
    def shape(self) -> tuple[int, int]:
        """Columns and rows, computed without building the grid."""
        nx = math.floor(self.width_mm / self.pitch_mm + 1e-9) + 1
        ny = math.floor(self.height_mm / self.pitch_mm + 1e-9) + 1
        return nx, ny

    def points(self) -> list[tuple[float, float]]:
        nx, ny = self.shape
        pts: list[tuple[float, float]] = []
        for j in range(ny):
            row = range(nx) if j % 2 == 0 else range(nx - 1, -1, -1)  # serpentine path
            pts.extend((round(i * self.pitch_mm, 6), round(j * self.pitch_mm, 6)) for i in row)
        return pts


def _pairs(value: Any) -> Any:
    """TOML has arrays, not tuples: accept [x, y] pairs (their numbers are still checked strictly)."""
    return [tuple(v) if isinstance(v, list) else v for v in value] if isinstance(value, list) else value


MAX_POSITION_MM = 1000.0  # a spot position over a metre from the origin is no position on a patient
OVERLAP_SLACK_MM = 1e-5  # spots this much closer than touching still count as touching (rounded positions)


def _no_overlap(points: list[tuple[float, float]], diameter_mm: float) -> None:
    """No two spots closer than a spot diameter, centre to centre: where they overlap the skin would be pulsed
    twice (an exact repeat, or one a micrometre off, gave the same skin its plan two or three times). As a
    grid's spacing may not be smaller than its spots. One pass over a hash of diameter-sized cells."""
    limit = diameter_mm - OVERLAP_SLACK_MM
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(points):
        if not (abs(x) <= MAX_POSITION_MM and abs(y) <= MAX_POSITION_MM):
            raise ValueError(
                f"spots.points[{i}] = {[x, y]} lies over {MAX_POSITION_MM:g} mm from the origin: positions are in mm"
            )
        cx, cy = math.floor(x / diameter_mm), math.floor(y / diameter_mm)
        for nx in (cx - 1, cx, cx + 1):
            for ny in (cy - 1, cy, cy + 1):
                for j in cells.get((nx, ny), ()):
                    px, py = points[j]
                    distance = math.hypot(x - px, y - py)
                    if distance == 0.0:
                        raise ValueError(
                            f"spots.points[{i}] = {[x, y]} repeats an earlier spot (spots.points[{j}]): it would be"
                            " pulsed twice"
                        )
                    if distance < limit:
                        raise ValueError(
                            f"spots.points[{i}] = {[x, y]} is {distance:.3g} mm from spots.points[{j}] = {[px, py]},"
                            f" closer than the spot diameter {diameter_mm:g} mm: the spots would overlap and their"
                            " shared skin be pulsed twice"
                        )
        cells.setdefault((cx, cy), []).append(i)


class Spots(_Strict):
    """Either an explicit list of (x, y) mm positions or a fractional grid."""

    points: Annotated[list[tuple[float, float]], BeforeValidator(_pairs)] | None = None
    grid: Grid | None = None
    spot_diameter_mm: SpotDiameter = 0.3  # for a list of points (a grid has its own)

    @model_validator(mode="after")
    def _one_of(self) -> Spots:
        if (self.points is None) == (self.grid is None):
            raise ValueError("give exactly one of spots.points or spots.grid")
        if self.points is not None:
            if not self.points:
                raise ValueError("spots.points is empty")
            if len(self.points) > MAX_SPOTS:
                raise ValueError(f"spots.points has {len(self.points)} spots, over the {MAX_SPOTS} a plan may hold")
            _no_overlap(self.points, self.spot_diameter_mm)
        return self

    @property
    def count(self) -> int:
        if self.points is not None:
            return len(self.points)
        assert self.grid is not None
        nx, ny = self.grid.shape
        return nx * ny

    @property
    def diameter_mm(self) -> float:
        return self.grid.spot_diameter_mm if self.grid is not None else self.spot_diameter_mm

    def positions(self) -> list[tuple[float, float]]:
        if self.points is not None:
            return list(self.points)
        assert self.grid is not None
        return self.grid.points()


class Pulse(_Strict):
    energy_j: Annotated[float, Field(ge=Caps.MIN_ENERGY_J, allow_inf_nan=False)]
    pulse_ms: Annotated[float, Field(ge=Caps.MIN_PULSE_MS, allow_inf_nan=False)]
    pulses_per_spot: Annotated[int, Field(ge=1, le=20)] = 1
    # Minimum time from one pulse's start to the next pulse's start (a cycle that takes longer waits).
    interval_s: PosFloat = 1.0
    # Minimum time from a spot's first pulse to the next spot's first pulse (default: interval_s).
    spot_interval_s: PosFloat | None = None

    @property
    def spot_interval(self) -> float:
        return self.interval_s if self.spot_interval_s is None else self.spot_interval_s


def _spray_ms(ms: float) -> float:
    """At least the shortest spurt that cools, with a hint when the number looks like seconds."""
    if ms >= Caps.MIN_SPRAY_MS:
        return ms
    message = f"{ms:g} ms is under the {Caps.MIN_SPRAY_MS:g} ms a spray needs to cool"
    if ms < 1.0 and ms * 1000.0 >= Caps.MIN_SPRAY_MS:
        message += f"; did you mean {ms:g} s = {ms * 1000.0:g} ms?"
    raise ValueError(message)


class Cooling(_Strict):
    spray_ms: Annotated[float, Field(gt=0, allow_inf_nan=False), AfterValidator(_spray_ms)]
    when: Literal["pulse", "spot"] = "pulse"
    # A deliberate wait from the end of the (first uncooled) pulse to the spray command, for studies
    # of how timing matters (``plasmactl sweep --vary cooling_delay_ms=...``). 0 in treatment plans.
    delay_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class Plan(_Strict):
    """A validated plan. ``limits`` are the effective limits (defaults tightened by the plan)."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    spots: Spots
    pulse: Pulse
    cooling: Cooling
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        lim, p = self.limits, self.pulse
        fluence_problem = self._fluence_problem()  # first: it names a millijoule slip
        if fluence_problem is not None:
            raise ValueError(fluence_problem)
        if p.energy_j > lim.max_energy_j:
            raise ValueError(f"pulse.energy_j = {p.energy_j:g} exceeds limits.max_energy_j = {lim.max_energy_j:g}")
        if p.pulse_ms > lim.max_pulse_ms:
            raise ValueError(f"pulse.pulse_ms = {p.pulse_ms:g} exceeds limits.max_pulse_ms = {lim.max_pulse_ms:g}")
        if p.interval_s * 1000.0 < p.pulse_ms:
            raise ValueError(f"pulse.interval_s = {p.interval_s:g} is shorter than the pulse itself")
        if self.cooling.delay_ms >= lim.max_cooling_delay_ms:
            raise ValueError(
                f"cooling.delay_ms = {self.cooling.delay_ms:g} is not below limits.max_cooling_delay_ms ="
                f" {lim.max_cooling_delay_ms:g}: every pulse would trip cooling_not_confirmed"
            )
        if self.cooling.when == "spot" and p.pulses_per_spot > 1:
            # The window runs from the end of the spot's first pulse until the spray is confirmed.
            needed_ms = (p.pulses_per_spot - 1) * p.interval_s * 1000.0
            if needed_ms >= lim.max_cooling_delay_ms:
                raise ValueError(
                    f"cooling.when = 'spot' with {p.pulses_per_spot} pulses {p.interval_s:g} s apart needs"
                    f" {needed_ms:g} ms before the spray, over limits.max_cooling_delay_ms ="
                    f" {lim.max_cooling_delay_ms:g}; cool after every pulse or shorten the interval"
                )
        needed_s = self.estimated_session_s()
        if needed_s > lim.max_session_s:
            raise ValueError(
                f"the plan needs about {needed_s:.4g} s, over limits.max_session_s = {lim.max_session_s:g}"
            )
        return self

    @property
    def fluence_j_cm2(self) -> float:
        """Energy per area of one pulse on the plan's spot."""
        return fluence_j_cm2(self.pulse.energy_j, self.spots.diameter_mm)

    def _fluence_problem(self) -> str | None:
        """The fluence cap, with a hint when the energy looks like millijoules typed into a joule field."""
        cap = self.limits.max_fluence_j_cm2
        energy, diameter = self.pulse.energy_j, self.spots.diameter_mm
        fluence = self.fluence_j_cm2
        if fluence <= cap:
            # the setting is under the cap; a pulse the energy check accepts (setting x (1 + tolerance)) must be
            # too, or a generator running 10 % high delivers over the cap pulse after pulse, never tripping
            worst = self.limits.energy_limit_j(energy)
            if fluence_j_cm2(worst, diameter) <= cap:
                return None
            return (
                f"pulse.energy_j = {energy:g} J on a {diameter:g} mm spot is {fluence:.3g} J/cm2, and a pulse"
                f" within the energy tolerance of {self.limits.energy_tolerance_pct:g} %"
                f" (limits.energy_tolerance_pct) delivers up to {fluence_j_cm2(worst, diameter):.3g} J/cm2, over"
                f" the fluence cap of {cap:g} J/cm2 (limits.max_fluence_j_cm2); set pulse.energy_j to at most"
                f" {_floor_3(energy * cap / fluence_j_cm2(worst, diameter)):g} J"
            )
        message = (
            f"pulse.energy_j = {energy:g} J on a {diameter:g} mm spot is {fluence:.4g} J/cm2, over the fluence"
            f" cap of {cap:g} J/cm2 (limits.max_fluence_j_cm2)"
        )
        if MJ_HINT_MIN_J_CM2 <= fluence_j_cm2(energy / 1000.0, diameter) <= cap:  # read as mJ, a treatment dose
            message += f"; did you mean {energy:g} mJ = {energy / 1000.0:g} J?"
        return message

    @property
    def pulse_count(self) -> int:
        return self.spots.count * self.pulse.pulses_per_spot

    def estimated_session_s(self) -> float:
        """Lower bound on the session length, from its first pulse to the last spray's end: pulses at their
        intervals, a spot's first pulse at its spot interval, and no pulse before the spray after the one
        before it has run (pulse, cooling delay, spray; the valve's own latency comes on top)."""
        p, cool = self.pulse, self.cooling
        cycle_s = (p.pulse_ms + cool.delay_ms + cool.spray_ms) / 1000.0
        step_s = max(p.interval_s, cycle_s) if cool.when == "pulse" else p.interval_s  # within a spot
        spot_s = (p.pulses_per_spot - 1) * step_s  # a spot's first pulse to its last
        per_spot_s = max(p.spot_interval, spot_s + max(p.interval_s, cycle_s))
        return (self.spots.count - 1) * per_spot_s + spot_s + cycle_s


def load_plan(path: str) -> tuple[Plan, LoadedFile]:
    return load_model(Plan, path, "plan")


def _floor_3(x: float) -> float:
    """``x`` rounded down to three significant digits (a suggested setting that is itself accepted)."""
    step = 10.0 ** (math.floor(math.log10(x)) - 2)
    return math.floor(x / step * (1.0 + 1e-12)) * step if x > 0 else x
