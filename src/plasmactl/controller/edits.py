"""Operator edits of the plan while a session runs: refused, or applied whole between spots, never half.

The Therac-25 lesson: an edit must never race the machine's set-up. Here an edit is a message to the owner
task (:meth:`Controller.request_edit`), so it is taken between two other steps of the session, never in the
middle of one. It is accepted only while the session is ``paused`` (the generator off and disarmed) and no
spot is part-way through its pulses; only the treatment settings may change (``pulse.energy_j``,
``pulse.pulse_ms``, ``cooling.spray_ms``), never the limits or the spot pattern. The edited plan is
validated as a plan file is, and the rig must still reach every cooling window with it (the worst-case
budget ``check`` applies). Then the generator is given the new setpoints and energy limit and they are read
back; only when it holds all of them does the controller switch to the new plan, in one step with no await
in it (plan, knowledge, dose ledger, pulse bound). A generator that does not hold what it acknowledged is a
``device_fault``. Every edit leaves a ``plan_edit`` record, applied or not, with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plasmactl.budget import budget_problems
from plasmactl.controller import interlocks as il
from plasmactl.controller.messages import Changes, Edit, EditResult
from plasmactl.plan import Plan
from plasmactl.ports import DeviceError

if TYPE_CHECKING:
    from plasmactl.controller.owner import Controller

EDITABLE: Mapping[str, frozenset[str]] = {
    "pulse": frozenset({"energy_j", "pulse_ms"}),
    "cooling": frozenset({"spray_ms"}),
}
__all__ = ["EDITABLE", "Edit", "EditResult", "apply", "edited_plan", "plain", "refusal"]


def refusal(c: Controller, changes: Changes) -> str | None:
    """Why the edit cannot be applied now (None: it may be tried)."""
    if not changes or not any(changes.values()):
        return "no change given"
    for section, fields in changes.items():
        allowed = EDITABLE.get(section, frozenset())
        for name in fields:
            if name not in allowed:
                where = f"{section}.{name}"
                if section == "limits":
                    return f"{where}: the limits are fixed for a session"
                editable = ", ".join(f"{s}.{f}" for s, fs in EDITABLE.items() for f in sorted(fs))
                return f"{where} cannot be changed during a session (editable: {editable})"
    if c.result is not None:
        return "the session has ended"
    if c.state != "paused":
        return f"the session is {c.state}: an edit is applied only while paused (release the footswitch)"
    cycle = c.cycle
    if cycle.pulse_in_spot:
        return (
            f"spot {cycle.spot_idx + 1} has had {cycle.pulse_in_spot} of its {cycle.pulses_per_spot} pulses:"
            " an edit applies between spots"
        )
    return None


def edited_plan(plan: Plan, changes: Changes) -> Plan:
    """The plan with ``changes``, validated as a plan file is (``ValidationError`` names what is wrong)."""
    data = plan.model_dump(mode="json")
    for section, fields in changes.items():
        data[section] = {**data[section], **fields}
    return Plan.model_validate(data)


async def apply(c: Controller, edit: Edit) -> EditResult:
    try:
        result = await _apply(c, edit.changes)
    except DeviceError as exc:  # the generator may hold part of it: the owner trips (re-raised), nothing fires
        _answer(c, edit, EditResult(False, f"the generator did not take the edit: {exc}", plain(edit.changes)))
        raise
    return _answer(c, edit, result)


def _answer(c: Controller, edit: Edit, result: EditResult) -> EditResult:
    c.log.emit(
        "plan_edit",
        ok=result.applied,
        reason=result.reason,
        changes=result.changes,
        from_pulse=result.from_pulse,
        **(_settings(c) if result.applied else {}),
    )
    if edit.reply is not None:
        edit.reply(result)
    return result


async def _apply(c: Controller, changes: Changes) -> EditResult:
    asked = plain(changes)
    why = refusal(c, changes)
    if why is not None:
        return EditResult(False, why, asked)
    try:
        new = edited_plan(c.plan, changes)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        return EditResult(False, f"the edited plan is not valid: {problems}", asked)
    combination = budget_problems(new, c.rig)
    if combination:
        return EditResult(False, "; ".join(combination), asked)
    now = await c.calls.plasma_status()
    if now.armed or now.output_on:  # paused means off and disarmed (the monitor judges anything else)
        return EditResult(False, "the generator is not off and disarmed", asked)
    energy_j, pulse_ms = new.pulse.energy_j, new.pulse.pulse_ms
    limit_j = new.limits.energy_limit_j(energy_j)
    await c.calls.command("plasma", lambda: c.d.plasma.configure(energy_j, pulse_ms, limit_j))
    st = await c.calls.plasma_status()
    held = il.setpoints_read_back(c.snapshot()._replace(energy_j=energy_j, pulse_s=pulse_ms / 1000.0))
    problem = held.reason if held is not None else ("the generator is armed" if st.armed else None)
    if problem is not None:  # the generator holds neither plan's settings as acknowledged
        trip = il.setpoints_not_held(problem)
        await c.on_trip(trip)
        return EditResult(False, trip.reason, asked)
    switch_to(c, new)
    return EditResult(True, "applied", asked, c.know.pulses_started + 1)


def plain(changes: Changes) -> dict[str, dict[str, Any]]:
    return {section: dict(fields) for section, fields in changes.items()}


def switch_to(c: Controller, plan: Plan) -> None:
    """Everything the controller derives from the plan, replaced in one step (nothing awaits in here)."""
    c.plan = plan
    c.pulse_s = plan.pulse.pulse_ms / 1000.0
    c.spray_s = plan.cooling.spray_ms / 1000.0
    know = c.know
    know.energy_j, know.pulse_s, know.spray_s = plan.pulse.energy_j, c.pulse_s, c.spray_s
    c.ledger.replan(plan.pulse.energy_j)
    c.cycle.replan()


def _settings(c: Controller) -> dict[str, Any]:
    """The settings in force from the edit on (what the log's readers recompute with)."""
    plan = c.plan
    return {
        "plan": plan.model_dump(mode="json"),
        "energy_limit_j": plan.limits.energy_limit_j(plan.pulse.energy_j),
        "pulse_bound_ms": c.cycle.pulse_bound_ms(),
    }
