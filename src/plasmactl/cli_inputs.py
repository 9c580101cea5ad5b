"""The files a session command reads (plan, rig, fault scenario), loaded and checked against each other:
every problem an ``InputError`` before anything runs (the commands map it to exit 2)."""

from __future__ import annotations

from pathlib import Path

from plasmactl.budget import budget_problems
from plasmactl.faults import FaultScenario, check_against_plan, load_faults
from plasmactl.inputs import InputError
from plasmactl.plan import Plan, load_plan
from plasmactl.rig import Rig, load_rig
from plasmactl.session import SessionInputs


def load_inputs(plan: Path, rig: Path | None, faults: Path | None, seed: int) -> SessionInputs:
    p, pf = load_plan(str(plan))
    r, rf = load_rig(str(rig) if rig else None)
    f, ff = (FaultScenario(), None) if faults is None else load_faults(str(faults))
    check_together(p, r, f, faults_source=str(faults), combination=f"{plan} on {rig if rig else 'the default rig'}")
    return SessionInputs(plan=p, plan_file=pf, rig=r, rig_file=rf, faults=f, faults_file=ff, seed=seed)


def check_together(plan: Plan, rig: Rig, faults: FaultScenario, *, faults_source: str, combination: str) -> None:
    """The faults must fit the plan, and the plan's cooling budget the rig; InputError naming what does not."""
    problems = check_against_plan(faults, plan.pulse_count, plan.limits.max_session_s)
    if problems:
        raise InputError(faults_source, problems)
    budget = budget_problems(plan, rig)
    if budget:
        raise InputError(combination, budget)
