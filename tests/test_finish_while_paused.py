"""The footswitch lifted at the end of a plan: with nothing left to fire and the last cooling done, the session
finishes as a normal finish does (plasma disarmed, the generator read back off), not after the pause limit as
a ``pause_timeout`` fault. A release with spots left still pauses and times out; an E-stop is still an E-stop.

Why: lifting the foot after the last pulse is what operators do; a fully delivered treatment recorded as a
fault (exit 3, two minutes later on the real clock) is a record that says something other than what happened.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasmactl import clock as clockmod
from plasmactl.cli import exit_code
from plasmactl.events import read_events
from plasmactl.faults import FaultScenario
from plasmactl.invariants import check
from plasmactl.invariants_outcome import EXIT_CODES
from plasmactl.log_chain import verify_file
from plasmactl.plan import Plan
from plasmactl.random_campaign import rig_for
from plasmactl.session import SessionInputs, run_session
from safety_run import example_plan

pytestmark = pytest.mark.hazard("H9")

SPOTS = 6  # the short plan: one 5 ms pulse a second on each of six spots, a 150 ms spray after each
RELEASE = {"device": "safety", "kind": "footswitch_release"}


def _plan(max_pause_s: float | None = 2.0) -> Plan:
    plan = example_plan("short")
    if max_pause_s is None:
        return plan
    return plan.model_copy(update={"limits": plan.limits.model_copy(update={"max_pause_s": max_pause_s})})


class Session:
    """One session on the in-process simulators (virtual time), its record judged by the strict invariants."""

    def __init__(self, faults: list[dict[str, Any]], transport: str = "inprocess", plan: Plan | None = None) -> None:
        scenario = FaultScenario.model_validate({"fault": faults})
        inputs = SessionInputs(plan=plan or _plan(), plan_file=None, rig=rig_for(transport), faults=scenario, seed=0)
        with tempfile.TemporaryDirectory(prefix="finish-paused-") as tmp:
            out = Path(tmp)
            result = clockmod.run(run_session(inputs, out), virtual=True)
            self.events = read_events(out / "events.jsonl")
            self.chain_ok = verify_file(out / "events.jsonl").ok
            self.summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            record = out / "simulator.json"
            self.simulator = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
        self.outcome, self.cause, self.rc = result.outcome, result.cause, exit_code(result)
        self.violations = check(self.events, summary=self.summary, simulator=self.simulator, exit_code=self.rc)

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event and all(e.get(k) == v for k, v in match.items())]

    @property
    def end(self) -> dict[str, Any]:
        return self.events[-1]


@functools.cache
def moments(transport: str) -> dict[str, float]:
    """The last two pulses of a fault-free run: start, end, water on the skin, valve closed."""
    r = Session([], transport)
    assert r.outcome == "complete"
    out: dict[str, float] = {}
    for n in (SPOTS - 1, SPOTS):
        out[f"start{n}"] = r.named("pulse_start", pulse=n)[0]["t"]
        out[f"end{n}"] = r.named("pulse_end", pulse=n)[0]["t_end"]
        out[f"wet{n}"] = next(e for e in r.named("spray_start") if n in e["pulses"])["t_open"]
        out[f"closed{n}"] = r.named("spray_end", spray=n)[0]["t_closed"]
    return out


def assert_finished_as_planned(r: Session) -> None:
    """Ended as a normal finish ends, whatever the footswitch: the record holds, every spot had its one pulse,
    the generator was disarmed for the plan's end and read back off, no pause ran to its limit."""
    assert r.violations == {}, r.violations
    assert r.chain_ok
    interrupted = [e["pulse"] for e in r.named("pulse_end") if e["interrupted"]]
    # a pulse the release cut is never fired again: its spot is short, which a normal finish calls incomplete
    assert (r.outcome, r.cause) == (("incomplete", r.cause) if interrupted else ("complete", None))
    assert r.rc in EXIT_CODES[r.outcome]
    assert r.end["event"] == "session_end" and r.end["outcome"] == r.outcome
    assert sorted(e["spot"] for e in r.named("pulse_start")) == list(range(1, SPOTS + 1))
    assert len(r.named("pulse_end")) == SPOTS
    assert not r.named("interlock_trip", rule="pause_timeout")
    assert not r.named("fault") and not r.named("cooling_missed")
    disarm = r.named("plasma_disarm", cause="plan delivered")
    assert len(disarm) == 1 and disarm[0]["ok"]
    # the plan's end comes after the last cooling (its spray seen closed) and the generator read back
    last_spray = r.named("spray_end")[-1]
    assert last_spray["t_closed"] is not None and not last_spray.get("stopped")
    assert r.events.index(last_spray) < r.events.index(disarm[0])
    assert r.named("state", dest="complete")[0]["t"] <= last_spray["t_closed"] + 0.1
    assert r.summary["outcome"] == r.outcome and r.summary["pulses"] == SPOTS and r.summary["sprays"] == SPOTS
    if not interrupted:
        assert r.summary["ledger"]["spots_complete"] == SPOTS


@pytest.mark.parametrize("transport", ["inprocess", "trigger"])
@pytest.mark.parametrize(
    "when",
    ["start6", "inside6", "awaiting6", "wet6", "spray6", "end_of_spray6", "closed6", "after_pulses"],
)
def test_a_release_at_the_end_finishes(transport: str, when: str) -> None:
    m = moments(transport)
    at = {
        "start6": m["start6"],
        "inside6": m["start6"] + 0.0025,
        "awaiting6": m["end6"] + 0.003,
        "wet6": m["wet6"],
        "spray6": m["wet6"] + 0.05,
        "end_of_spray6": m["closed6"] - 0.002,
        "closed6": m["closed6"],
    }
    fault = {**RELEASE, "after_pulses": SPOTS} if when == "after_pulses" else {**RELEASE, "at_s": round(at[when], 6)}
    r = Session([fault], transport)
    assert_finished_as_planned(r)
    if when in ("awaiting6", "wet6", "spray6", "end_of_spray6", "after_pulses"):
        assert r.outcome == "complete"
        assert r.named("interlock_trip", rule="footswitch_released")  # the release was a pause first


def test_the_reported_release_completes_at_once_with_the_plans_own_pause_limit() -> None:
    """The adversarial tester's case: ``at_s=5.1`` on the plan as written (120 s pause limit)."""
    r = Session([{**RELEASE, "at_s": 5.1}], plan=_plan(None))
    assert_finished_as_planned(r)
    assert r.outcome == "complete" and r.rc == 0
    assert r.end["t"] < 5.5


@pytest.mark.parametrize("at_s", ["before6", "inside5", "spray5"])
def test_a_release_with_spots_left_still_pauses_and_times_out(at_s: str) -> None:
    m = moments("inprocess")
    at = {"before6": m["start6"] - 0.3, "inside5": m["start5"] + 0.0025, "spray5": m["wet5"] + 0.05}[at_s]
    r = Session([{**RELEASE, "at_s": round(at, 6)}])
    assert r.violations == {}, r.violations
    assert (r.outcome, r.cause, r.rc) == ("fault", "pause_timeout", 3)
    assert len(r.named("pulse_start")) < SPOTS
    assert not r.named("plasma_disarm", cause="plan delivered")
    pause = r.named("interlock_trip", rule="footswitch_released")[0]
    timeout = r.named("interlock_trip", rule="pause_timeout")[0]
    assert 2.0 <= timeout["t"] - pause["t"] <= 2.0 + 1e-6


def test_a_release_with_spots_left_resumes_when_pressed_again() -> None:
    m = moments("inprocess")
    r = Session([{**RELEASE, "at_s": round(m["start6"] - 0.3, 6), "duration_s": 0.5}])
    assert r.violations == {}, r.violations
    assert (r.outcome, r.rc) == ("complete", 0)
    assert r.named("resume")


@pytest.mark.parametrize("press", ["spray6", "end_of_spray6"])
def test_an_estop_with_the_footswitch_up_at_the_end_is_an_estop(press: str) -> None:
    """Released inside the last spray, the E-stop pressed before the plan's end is recorded: an E-stop."""
    m = moments("inprocess")
    release = {**RELEASE, "at_s": round(m["wet6"] + 0.02, 6)}
    estop_at = {"spray6": m["wet6"] + 0.06, "end_of_spray6": m["closed6"] - 0.005}[press]
    r = Session([release, {"device": "safety", "kind": "estop", "at_s": round(estop_at, 6)}])
    assert r.violations == {}, r.violations
    assert (r.outcome, r.rc) == ("estop", 3)
    assert not r.named("state", dest="complete")


def test_a_pause_at_the_end_with_the_safety_inputs_silent_does_not_finish() -> None:
    """Fail closed: a pause ends finished only on an E-stop seen released; a silent safety link is not that."""
    m = moments("inprocess")
    faults = [
        {**RELEASE, "at_s": round(m["wet6"] + 0.02, 6)},
        {"device": "link", "kind": "timeout", "target": "safety", "at_s": round(m["wet6"] + 0.03, 6)},
    ]
    r = Session(faults)
    assert r.violations == {}, r.violations
    assert r.outcome == "fault" and r.rc == 3
    assert not r.named("state", dest="complete")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fraction=st.floats(min_value=0.0, max_value=1.0))
def test_any_release_across_the_last_two_pulses(fraction: float) -> None:
    """Anywhere from just before pulse 5 to after the last spray: spots left, the pause times out as before;
    none left, the session finishes as planned; never both, never a broken record."""
    m = moments("inprocess")
    lo, hi = m["start5"] - 0.05, m["closed6"] + 0.05
    r = Session([{**RELEASE, "at_s": round(lo + fraction * (hi - lo), 6)}])
    if len(r.named("pulse_start")) < SPOTS:
        assert r.violations == {}, r.violations
        assert (r.outcome, r.cause) == ("fault", "pause_timeout")
    else:
        assert_finished_as_planned(r)
