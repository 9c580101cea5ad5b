"""A pulse is decided on safety inputs read at most ``Caps.FIRE_SAFETY_AGE_S`` before it, counted from the
moment the read was sent: a device answers with its inputs as they were somewhere between request and reply,
so a reply that comes late (a slow link, a busy bus, a loaded host) carries an old state even though it is
new to the controller. Stamped at the reply, a 30 ms link delay let every pulse go on inputs 30 ms old; a
footswitch released inside that time was not seen by the decision it should have stopped.

Over Modbus TCP served inside the run (real sockets, real clock).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plasmactl.random_campaign import rig_for
from plasmactl.rig import Rig
from safety_run import Run, example_plan, run

pytestmark = pytest.mark.slow


def _rig() -> Rig:
    """The served TCP rig with room for a 30 ms reply in each device's timeout (its own is 20 ms)."""
    data = rig_for("tcp").model_dump(mode="json", exclude_none=True)
    for device in ("plasma", "spray", "safety"):
        data[device]["timeout_ms"] = 150.0
        data[device]["retries"] = 0
    return Rig.model_validate(data)


def _run(faults: list[dict[str, Any]], tmp: Path) -> Run:
    return run(example_plan("short"), faults, tmp, rig=_rig())


def _safety_delay(ms: float, at_s: float, duration_s: float | None = None) -> dict[str, Any]:
    fault = {"device": "link", "target": "safety", "kind": "delay", "value": ms, "at_s": at_s}
    return fault if duration_s is None else {**fault, "duration_s": duration_s}


def test_a_late_safety_reply_blocks_the_pulse(tmp_path: Path) -> None:
    """From 2.5 s to 3.5 s every safety reply leaves the device 30 ms after it read its inputs: the pulse due
    at 3 s is not decided on such a read; emission pauses (the inputs are as good as unknown) and goes on
    once replies are prompt again."""
    r = _run([_safety_delay(30.0, 2.5, 1.0)], tmp_path)
    assert r.violations == {}
    stale = r.named("interlock_trip", rule="safety_inputs_stale")
    assert stale and stale[0]["latch"] == "pause", r.rules()
    assert "before the pulse (bound 20 ms)" in stale[0]["reason"], stale[0]
    assert 2.9 < stale[0]["t"] < 3.5
    starts = r.named("pulse_start")
    assert all(p["t"] - p["safety_t"] <= 0.020 for p in starts), [p["t"] - p["safety_t"] for p in starts]
    assert not [p for p in starts if 2.5 + 0.020 < p["t"] < 3.5], starts
    assert r.outcome == "complete" and len(starts) == 6


def test_prompt_safety_replies_let_the_session_complete(tmp_path: Path) -> None:
    r = _run([], tmp_path)
    assert r.violations == {}
    assert r.outcome == "complete"
    starts = r.named("pulse_start")
    assert len(starts) == 6
    # the read's stamp is when it was sent: each decision comes after it (by the round trip), within the bound
    assert all(0.0 < p["t"] - p["safety_t"] <= 0.020 for p in starts), [p["t"] - p["safety_t"] for p in starts]


def test_the_checker_flags_a_decision_on_an_old_read(tmp_path: Path) -> None:
    """The invariant's side: a footswitch released 10 ms before a pulse's decision is excused only when the
    read the pulse went on was sent before the release and at most 20 ms before the decision."""
    from plasmactl.invariants import check

    faults = [{"device": "safety", "kind": "footswitch_release", "at_s": 2.5, "duration_s": 0.2}]
    r = _run(faults, tmp_path)
    assert r.violations == {}
    events = [dict(e) for e in r.events]
    third = next(e for e in events if e["event"] == "pulse_start" and e["pulse"] == 3)
    release = next(f for f in r.simulator["faults"] if f["kind"] == "footswitch_release")
    # move the release to 10 ms before pulse 3's decision, after its read was sent: excused
    sim = dict(r.simulator, faults=[dict(release, start=third["t"] - 0.010, end=third["t"] + 0.2)])
    third["safety_t"] = third["t"] - 0.012
    assert "pulse_during_blocking_fault" not in check(events, summary=r.summary, simulator=sim)
    # the same release on a read sent 25 ms before the decision: the controller must not fire on it
    third["safety_t"] = third["t"] - 0.025
    assert "pulse_during_blocking_fault" in check(events, summary=r.summary, simulator=sim)
    # and on a read sent after the release began: the read should have seen it
    third["safety_t"] = third["t"] - 0.005
    assert "pulse_during_blocking_fault" in check(events, summary=r.summary, simulator=sim)


def test_an_older_read_arriving_late_does_not_replace_a_newer_one() -> None:
    """Two reads in flight (the safety listener's and the one before a pulse): the state kept is the one read
    last, whichever reply came last; an E-stop in either is remembered."""
    from plasmactl.controller.knowledge import Knowledge
    from plasmactl.limits import Limits
    from plasmactl.ports import SafetyState
    from plasmactl.rig import DEVICES

    know = Knowledge(Limits(), 0.005, 0.005, 0.15, {d: 0.2 for d in DEVICES}, {d: 0.5 for d in DEVICES})
    newer = SafetyState(t=1.010, estop=False, footswitch=False, tip_distance_mm=0.5)
    older = SafetyState(t=1.000, estop=True, footswitch=True, tip_distance_mm=0.5)
    know.take_safety(newer)
    know.take_safety(older)
    assert know.safety is newer
    assert know.estop_seen is older
