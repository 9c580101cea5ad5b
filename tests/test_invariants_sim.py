"""The invariants against the simulated devices' own record, on the cases a 10,000-session campaign (seed
756846504) found them wrong about, and on the doctored logs that show they still find the defect they are for.

- A pulse whose FIRE never reached the generator (its link dead) emitted nothing: the generator's record has
  no such pulse, so it cannot have been "on 30 ms after a footswitch release" because the controller could
  not see it end.
- An E-stop pressed while the safety link is silent cannot be seen: a session that ends in the safe state
  before the link answers again is right not to call it ``estop``. When the link answers during the press,
  it must.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plasmactl.faults import FaultScenario
from plasmactl.invariants import check
from plasmactl.random_campaign import plan_named
from plasmactl.rig import Rig
from plasmactl.session import SessionInputs, run_blocking
from safety_run import Run

CASES: list[tuple[str, int, list[dict[str, Any]]]] = [
    (
        "triple",
        4826793,
        [
            {"device": "safety", "kind": "footswitch_release", "duration_s": 1.6505, "at_s": 3.600134},
            {"device": "link", "kind": "garbage", "at_s": 3.598541, "target": "plasma", "duration_s": 0.05},
        ],
    ),
    (
        "eyelid",
        792120615,
        [
            {"device": "link", "kind": "disconnect", "after_pulses": 17, "target": "safety"},
            {"device": "safety", "kind": "estop", "at_s": 4.850712},
        ],
    ),
    (
        "short",
        1060589074,
        [
            {"device": "link", "kind": "garbage", "at_s": 4.105, "target": "spray", "duration_s": 0.0143},
            {"device": "safety", "kind": "estop", "at_s": 2.17},
            {"device": "link", "kind": "timeout", "at_s": 2.0006, "target": "safety"},
        ],
    ),
]


def _run(plan: str, seed: int, faults: list[dict[str, Any]], tmp: Path) -> Run:
    scenario = FaultScenario.model_validate({"fault": faults})
    inputs = SessionInputs(plan=plan_named(plan), plan_file=None, rig=Rig(), faults=scenario, seed=seed)
    result = run_blocking(inputs, tmp, handle_sigint=False)
    return Run(tmp, faults, result.outcome)


def test_the_campaign_cases_hold_every_invariant(tmp_path: Path) -> None:
    for i, (plan, seed, faults) in enumerate(CASES):
        r = _run(plan, seed, faults, tmp_path / str(i))
        assert r.violations == {}, (plan, seed, r.violations)
        assert r.outcome == "fault"


def test_a_pulse_the_generator_never_fired_is_not_judged_as_emitting(tmp_path: Path) -> None:
    plan, seed, faults = CASES[0]
    r = _run(plan, seed, faults, tmp_path)
    logged = {e["pulse"] for e in r.named("pulse_start")}
    fired = {p["number"] for p in r.simulator["pulses"]}
    assert logged - fired == {10}  # FIRE of pulse 10 went into the dead link
    # the same pulse in the generator's record, on until the controller saw it off: emission not cut
    end = r.named("pulse_end", pulse=10)[0]
    sim = dict(r.simulator)
    sim["pulses"] = [*sim["pulses"], {"number": 10, "t_on": 3.6, "t_off": end["t_off"], "energy_j": 0.0}]
    found = check(r.events, summary=r.summary, simulator=sim)
    assert "emission_not_cut" in found, found


def test_an_estop_the_safety_link_answered_must_latch(tmp_path: Path) -> None:
    """An E-stop at 2.0 s on a healthy link ends the session ``estop``; the same log with its trip taken out
    breaks the invariant, unless the safety link was silent for the whole press."""
    faults = [{"device": "safety", "kind": "estop", "at_s": 2.0}]
    r = _run("short", 1, faults, tmp_path)
    assert r.violations == {} and r.outcome == "estop"
    events = [e for e in r.events if not (e["event"] == "interlock_trip" and e["rule"] == "estop")]
    end = dict(events[-1], t=events[-1]["t"] + 0.5, outcome="fault", cause="device_watchdog")  # later, as a fault
    events[-1] = end
    summary = dict(r.summary, outcome="fault", cause="device_watchdog")
    assert "estop_not_latched" in check(events, summary=summary, simulator=r.simulator)
    dark = {"device": "link", "kind": "timeout", "target": "safety", "start": 1.9, "end": None}
    sim = dict(r.simulator, faults=[*r.simulator["faults"], dark])
    assert "estop_not_latched" not in check(events, summary=summary, simulator=sim)
    # silent for only part of the press, answering for long enough after: it must be seen
    sim = dict(r.simulator, faults=[*r.simulator["faults"], dict(dark, end=2.05)])
    assert "estop_not_latched" in check(events, summary=summary, simulator=sim)
