"""The files a session command reads (plan, rig, fault scenario), loaded and checked against each other:
every problem an ``InputError`` before anything runs (the commands map it to exit 2)."""

from __future__ import annotations

from pathlib import Path

from plasmactl.budget import budget_problems
from plasmactl.faults import FaultScenario, check_against_plan, load_faults
from plasmactl.inputs import InputError
from plasmactl.plan import load_plan
from plasmactl.rig import load_rig
from plasmactl.session import SessionInputs


def load_inputs(plan: Path, rig: Path | None, faults: Path | None, seed: int) -> SessionInputs:
    p, pf = load_plan(str(plan))
    r, rf = load_rig(str(rig) if rig else None)
    f, ff = (FaultScenario(), None) if faults is None else load_faults(str(faults))
    problems = check_against_plan(f, p.pulse_count, p.limits.max_session_s)
    if problems:
        raise InputError(str(faults), problems)
    combination = budget_problems(p, r)
    if combination:
        raise InputError(f"{plan} on {rig if rig else 'the default rig'}", combination)
    return SessionInputs(plan=p, plan_file=pf, rig=r, rig_file=rf, faults=f, faults_file=ff, seed=seed)
