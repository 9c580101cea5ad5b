"""``plasmactl check``: a plan (and rig, faults) validated without running anything; what it found in a
few lines, or with ``--json`` as one JSON object on stdout (the lines on stderr)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from plasmactl.budget import MARGIN_WARN, CoolingBudget, budget_line, cooling_budget
from plasmactl.cli_inputs import load_inputs
from plasmactl.cli_output import JsonCommand, Output, write_json
from plasmactl.console_format import energy, fixed, rounded
from plasmactl.inputs import InputError
from plasmactl.session import SessionInputs


def register(app: typer.Typer) -> None:
    app.command(cls=JsonCommand)(check)


def check(
    plan: Annotated[Path, typer.Argument(help="Plan file (TOML).")],
    rig: Annotated[Path | None, typer.Option(help="Rig file (TOML).")] = None,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario (TOML).")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout (ok, problems, the summary); text on stderr.")
    ] = False,
) -> None:
    """Validate a plan (and rig, faults) without running anything."""
    output = Output(json_mode=json_output)
    try:
        inputs = load_inputs(plan, rig, faults, 0)
    except InputError as exc:
        raise output.bad_input(exc) from None
    budget = cooling_budget(inputs.plan, inputs.rig)
    lines = [plan_line(inputs), pulse_bound_line(inputs), budget_line(budget), *fault_warnings(inputs)]
    for line in lines:
        output.final(line, markup=False)
    if json_output:
        write_json({"ok": True, "problems": [], **check_facts(inputs, budget), "lines": lines})


def fault_warnings(inputs: SessionInputs) -> list[str]:
    """Faults the rig cannot make happen as written: a wire fault on in-process simulators is only silence."""
    if not inputs.rig.all_simulated:
        return []
    wire = sorted({f.kind for f in inputs.faults.fault if f.device == "link" and f.kind != "timeout"})
    if not wire:
        return []
    return [
        f"warning: link fault kind(s) {', '.join(wire)} act on a wire; this rig's in-process simulators have none"
        " and make them silence (as timeout): use a served rig (e.g. examples/rigs/sim-tcp-inprocess.toml)"
    ]


def plan_line(inputs: SessionInputs) -> str:
    """The plan in one line (printed without markup: a name with brackets is shown verbatim)."""
    p, lim = inputs.plan, inputs.plan.limits
    return (
        f"ok: plan {p.name!r}: {len(p.spots.positions())} spots x {p.pulse.pulses_per_spot}"
        f" = {p.pulse_count} pulses"
        f" of {energy(p.pulse.energy_j)} J / {fixed(p.pulse.pulse_ms, 1)} ms ({rounded(p.fluence_j_cm2, 1)} J/cm2 on"
        f" {p.spots.diameter_mm:g} mm), about {rounded(p.estimated_session_s() / 60, 1)} min;"
        f" cooling {fixed(p.cooling.spray_ms, 1)} ms after every {p.cooling.when};"
        f" max cooling delay {fixed(lim.max_cooling_delay_ms, 1)} ms,"
        f" skin limit {fixed(lim.skin_temp_max_c, 1)} C;"
        f" rig {inputs.rig.name!r}; {len(inputs.faults.fault)} fault(s)"
    )


@dataclass(frozen=True)
class PulseBound:
    bound_ms: float
    energy_limit_j: float
    energy_tolerance_pct: float
    stuck_on_worst_pct: float

    @property
    def generator_holds_the_dose(self) -> bool:
        return self.stuck_on_worst_pct > 100.0 + self.energy_tolerance_pct + 1e-6


def pulse_bound(inputs: SessionInputs) -> PulseBound:
    p, lim = inputs.plan, inputs.plan.limits
    lat = inputs.rig.pulse_latencies_s()
    bound_ms = lim.pulse_bound_s(p.pulse.pulse_ms, lat.fire_s, lat.off_s, lat.detect_s) * 1000.0
    worst = lim.stuck_on_pct(p.pulse.pulse_ms, lat.fire_s, lat.off_s, lat.detect_s, lat.earliest_start_s)
    return PulseBound(bound_ms, lim.energy_limit_j(p.pulse.energy_j), lim.energy_tolerance_pct, worst)


def pulse_bound_line(inputs: SessionInputs) -> str:
    """What holds a stuck-on output on this rig: the software pulse bound where the link allows it, else
    the generator's own dose monitor (always set to the plan's energy + tolerance)."""
    b = pulse_bound(inputs)
    line = (
        f"pulse bound: a pulse still on {fixed(b.bound_ms, 1)} ms after its fire command is cut; the generator's"
        f" energy limit is set to {energy(b.energy_limit_j)} J (+{b.energy_tolerance_pct:g} %)"
    )
    if b.generator_holds_the_dose:
        line += (
            f". On this rig's link a stuck-on output at the set power could deliver up to"
            f" {rounded(b.stuck_on_worst_pct, 0)} % before the software bound cuts it: the generator's energy limit is"
            " what holds the dose"
        )
    return line


def check_facts(inputs: SessionInputs, budget: CoolingBudget) -> dict[str, Any]:
    """What ``check`` prints, as numbers (``--json``)."""
    p, lim = inputs.plan, inputs.plan.limits
    b = pulse_bound(inputs)
    return {
        "plan": {
            "name": p.name,
            "file": inputs.plan_file.path if inputs.plan_file else None,
            "spots": len(p.spots.positions()),
            "pulses_per_spot": p.pulse.pulses_per_spot,
            "pulses": p.pulse_count,
            "energy_j": p.pulse.energy_j,
            "pulse_ms": p.pulse.pulse_ms,
            "fluence_j_cm2": p.fluence_j_cm2,
            "spot_diameter_mm": p.spots.diameter_mm,
            "estimated_session_s": p.estimated_session_s(),
            "cooling": {"spray_ms": p.cooling.spray_ms, "when": p.cooling.when, "delay_ms": p.cooling.delay_ms},
            "max_cooling_delay_ms": lim.max_cooling_delay_ms,
            "skin_temp_max_c": lim.skin_temp_max_c,
        },
        "rig": {"name": inputs.rig.name, "file": inputs.rig_file.path if inputs.rig_file else "default"},
        "faults": {
            "count": len(inputs.faults.fault),
            "file": inputs.faults_file.path if inputs.faults_file else None,
        },
        "pulse_bound": {
            "bound_ms": b.bound_ms,
            "energy_limit_j": b.energy_limit_j,
            "energy_tolerance_pct": b.energy_tolerance_pct,
            "stuck_on_worst_pct": b.stuck_on_worst_pct,
            "generator_holds_the_dose": b.generator_holds_the_dose,
        },
        "cooling_budget": {
            "earliest_water_ms": budget.earliest_water_ms,
            "worst_water_ms": budget.worst_water_ms,
            "window_ms": budget.window_ms,
            "margin_ms": budget.margin_ms,
            "margin_warning": budget.margin_ms < MARGIN_WARN * budget.window_ms,
            "valve_known": budget.valve_known,
            "steps_ms": {name: ms for name, ms in budget.parts_ms if ms > 0},
        },
    }
