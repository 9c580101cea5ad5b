"""Operator plan edits while a session runs: refused while armed, mid-sequence or part-way through a spot,
refused for the limits and for a plan that is not valid, applied whole between spots while paused (the
generator's own setpoints then match every later pulse), and a generator that does not hold the edit
latches a fault with nothing fired on it. Also the defects the live-controller property test found."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from live_machine import LiveController
from plasmactl.controller.messages import EditResult
from plasmactl.faults import Fault
from plasmactl.simulators.devices import SimPlasma

SESSIONS: list[LiveController] = []


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    while SESSIONS:
        m = SESSIONS.pop()
        if not m.closed:
            m.closed = True  # judged by the test itself (or it failed): just stop it
            m.teardown()


def _session(plan: str = "one_per_spot", **rig: Any) -> LiveController:
    m = LiveController()
    SESSIONS.append(m)
    params = {"seed": 1, "plasma_ms": 0.5, "valve_ms": 15.0, "thermometer_ms": 10.0, "safety_timeout_ms": 50.0}
    m.start(plan_name=plan, **{**params, **rig})
    return m


def _edit(m: LiveController, changes: dict[str, dict[str, Any]]) -> EditResult:
    assert m.controller is not None
    got: list[EditResult] = []
    m.controller.request_edit(changes, got.append)
    for _ in range(200):
        if got:
            break
        m._advance(0.001)
    assert got, "the edit was never answered"
    return got[0]


def _pause(m: LiveController, seconds: float) -> None:
    assert m.world is not None
    m.world.inject(Fault(device="safety", kind="footswitch_release", at_s=0.0, duration_s=seconds))
    m._advance(0.005)
    assert m.controller is not None and m.controller.state == "paused"


def _finish(m: LiveController) -> list[dict[str, Any]]:
    """Run the session out and judge it in full (the strict invariants, against the devices' own record)."""
    m._advance(6.0)
    m.safe_so_far()
    m.teardown()  # ends the session: session_end, summary.json, and the full check
    return [dict(e) for e in m.events]


def _pulses(events: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(e["pulse"], e["energy_set_j"]) for e in events if e["event"] == "pulse_start"]


@pytest.mark.hazard("H15")
def test_edit_refused_while_armed_and_nothing_changes() -> None:
    m = _session()
    m._advance(0.2)  # between pulses 1 and 2 (its spray over), armed
    assert m.controller is not None and m.controller.state == "armed"
    result = _edit(m, {"pulse": {"energy_j": 0.004}})
    assert not result.applied and "armed" in result.reason and "paused" in result.reason
    events = _finish(m)
    assert {j for _, j in _pulses(events)} == {0.005}
    refused = [e for e in events if e["event"] == "plan_edit"]
    assert len(refused) == 1 and refused[0]["ok"] is False and "plan" not in refused[0]


@pytest.mark.hazard("H15")
def test_edit_while_paused_applies_whole_from_the_next_pulse() -> None:
    m = _session()
    m._advance(0.1)
    _pause(m, 0.5)
    result = _edit(m, {"pulse": {"energy_j": 0.004, "pulse_ms": 4.0}, "cooling": {"spray_ms": 100.0}})
    assert result.applied, result.reason
    assert result.from_pulse == 2
    c = m.controller
    assert c is not None
    assert (c.plan.pulse.energy_j, c.pulse_s, c.spray_s) == (0.004, 0.004, 0.1)
    assert (c.know.energy_j, c.know.pulse_s, c.know.spray_s) == (0.004, 0.004, 0.1)
    assert m.world is not None
    events = _finish(m)  # the strict invariants include: the generator's setpoints equal the log's, per pulse
    assert _pulses(events) == [(1, 0.005)] + [(n, 0.004) for n in range(2, 7)]
    sprays = [e["spray_ms"] for e in events if e["event"] == "spray_command"]
    assert sprays == [120.0] + [100.0] * 5
    edit = next(e for e in events if e["event"] == "plan_edit")
    assert edit["ok"] and edit["energy_limit_j"] == pytest.approx(0.0048) and edit["from_pulse"] == 2
    end = events[-1]
    assert end["event"] == "session_end" and end["outcome"] == "complete"


@pytest.mark.hazard("H15")
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"limits": {"skin_temp_max_c": 60.0}}, "limits are fixed"),
        ({"pulse": {"pulses_per_spot": 5}}, "cannot be changed"),
        ({"spots": {"points": [[0.0, 0.0]]}}, "cannot be changed"),
        ({"pulse": {"energy_j": 5.0}}, "not valid"),  # over the plan's caps (fluence, energy)
        ({"pulse": {"pulse_ms": -1.0}}, "not valid"),
        ({"pulse": {"energy_j": "5 mJ"}}, "not valid"),
        ({}, "no change"),
    ],
)
def test_edit_refused_with_its_reason_while_paused(changes: dict[str, dict[str, Any]], words: str) -> None:
    m = _session()
    m._advance(0.1)
    _pause(m, 0.3)
    result = _edit(m, changes)
    assert not result.applied and words in result.reason, result.reason
    events = _finish(m)
    assert {j for _, j in _pulses(events)} == {0.005}


@pytest.mark.hazard("H15")
def test_edit_refused_part_way_through_a_spot() -> None:
    m = _session("two_per_spot")
    for _ in range(400):  # to just after the first pulse of a spot
        m._advance(0.001)
        if sum(1 for e in m.events if e["event"] == "pulse_end") == 1:
            break
    _pause(m, 0.3)
    result = _edit(m, {"pulse": {"energy_j": 0.002}})
    assert not result.applied and "spot 1 has had 1 of its 2 pulses" in result.reason
    _finish(m)


class _ForgetfulPlasma(SimPlasma):
    """A generator that acknowledges a new setpoint and keeps the old one."""

    async def configure(self, energy_j: float, pulse_ms: float, energy_limit_j: float) -> None:
        if self.energy_j:
            await self._request()
            return
        await super().configure(energy_j, pulse_ms, energy_limit_j)


@pytest.mark.hazard("H15")
def test_a_generator_that_does_not_hold_the_edit_latches_a_fault() -> None:
    m = _session()
    c = m.controller
    assert c is not None
    plasma = c.d.plasma
    assert isinstance(plasma, SimPlasma)
    plasma.__class__ = _ForgetfulPlasma
    m._advance(0.1)
    _pause(m, 0.3)
    result = _edit(m, {"pulse": {"energy_j": 0.004}})
    assert not result.applied and "after the plan edit: plasma energy read back 0.005" in result.reason
    assert c.plan.pulse.energy_j == 0.005 and c.know.energy_j == 0.005  # the controller kept its plan
    events = _finish(m)
    assert events[-1]["outcome"] == "fault" and events[-1]["cause"] == "device_fault"
    assert len(_pulses(events)) == 1


@pytest.mark.hazard("H15")
def test_a_configure_that_fails_midway_leaves_the_plan_and_fires_nothing() -> None:
    m = _session()
    m._advance(0.1)
    _pause(m, 1.0)
    m._advance(0.1)  # the pause's safe state is over (its spray has run out)
    assert m.world is not None
    m.world.inject(Fault(device="link", kind="timeout", target="plasma", at_s=0.0, duration_s=0.5))
    result = _edit(m, {"pulse": {"energy_j": 0.004}})
    assert not result.applied and "the generator did not take the edit: plasma: did not reply" in result.reason
    c = m.controller
    assert c is not None and c.plan.pulse.energy_j == 0.005 and c.know.energy_j == 0.005
    events = _finish(m)
    edits = [e for e in events if e["event"] == "plan_edit"]
    assert len(edits) == 1 and not edits[0]["ok"]
    assert events[-1]["outcome"] == "fault" and events[-1]["cause"] == "device_no_reply"
    assert len(_pulses(events)) == 1


def test_an_edit_asked_for_after_the_end_is_told_so() -> None:
    m = _session()
    m._advance(6.0)
    assert m.controller is not None and m.controller.ended
    result = _edit(m, {"pulse": {"energy_j": 0.004}})
    assert not result.applied and result.reason == "the session has ended"
    m.teardown()


# ----------------------------------------------------------------------------- found by the property test


def test_zero_latency_devices_pulse_at_thermometer_sample_instants() -> None:
    """A pulse starting at 0.6 s with a thermometer sample at 6 x 0.1 s (an ulp later): the simulated skin
    was read ahead of the clock and the pulse's heating raised inside the controller."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    for _ in range(400):  # the clock stepped 2 ms at a time: its sums land an ulp off the sample times
        m._advance(0.002)
    events = _finish(m)
    assert events[-1]["outcome"] == "complete", events[-3:]


@pytest.mark.hazard("H2")
def test_estop_pressed_as_a_pulse_is_decided_ends_as_estop() -> None:
    """An E-stop pressed at the instant of pulse_start: the generator refuses FIRE; the safety inputs' wait
    must see the change at once (it waited for its heartbeat) so the session ends ``estop``, not a fault."""
    m = _session()
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), "pulse_start", 2)
    events = _finish(m)
    assert events[-1]["outcome"] == "estop", [e["event"] for e in events[-8:]]


@pytest.mark.hazard("H1")
def test_cooling_missed_on_abort_is_a_trip_inside_the_window() -> None:
    """Abort mid-pulse with the spray link dead: the missed cooling's trip is recorded when the miss is known
    (inside the window), not after the late spray's calls."""
    m = _session(plasma_ms=0.0, valve_ms=2.0, thermometer_ms=0.0, safety_timeout_ms=20.0)
    m.inject(Fault(device="link", kind="timeout", target="spray", at_s=0.0), "pulse_start", 1)
    m.abort(None)
    events = _finish(m)
    missed = next(e for e in events if e["event"] == "cooling_missed")
    trip = next(e for e in events if e["event"] == "interlock_trip" and e["rule"] == "cooling_not_confirmed")
    end = next(e for e in events if e["event"] == "pulse_end")
    assert trip["t"] == missed["t"] <= end["t_end"] + 0.1


@pytest.mark.hazard("H1")
def test_cooling_missed_in_the_safe_state_is_known_at_the_window_end() -> None:
    """The shrunk example of the long profile: an abort at a pulse's start, the footswitch released, the spray
    link then silent. The safe state's valve polls ran on their own 20 ms budget past the window's end, so the
    miss (and its trip) was recorded 9.6 ms after the window; a poll now gives up at the window's end."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.wait(0.0)
    m.abort("pulse_start")
    m.footswitch(1.0, None)
    m.inject(Fault(device="link", kind="timeout", target="spray", at_s=0.0), None, 1)
    events = _finish(m)
    end = next(e for e in events if e["event"] == "pulse_end" and e["pulse"] == 2)
    trip = next(e for e in events if e["event"] == "interlock_trip" and e["rule"] == "cooling_not_confirmed")
    assert trip["t"] <= end["t_end"] + 0.1 + 1e-9


@pytest.mark.hazard("H5")
def test_a_pulse_cut_by_an_abort_out_of_tolerance_is_recorded_as_a_trip() -> None:
    """The long profile's shrunk example: a stuck-on output at twice the power, cut 2 ms into its 5 ms by an
    operator abort, had delivered 0.0039 J (more than 2/5 of the plan allows); the abort's safe state dropped
    the finding, so the record showed no energy trip."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.footswitch(1.0, None)
    m.inject(Fault(device="plasma", kind="energy_drift", at_s=0.0, value=2.0), None, 1)
    m.inject(Fault(device="plasma", kind="stuck_on", at_s=0.0), "pulse_start", 1)
    m.abort(None)
    events = _finish(m)
    trips = [e for e in events if e["event"] == "interlock_trip" and e["rule"] == "energy_out_of_tolerance"]
    assert len(trips) == 1 and trips[0]["latched"] is True
    assert events[-1]["outcome"] == "aborted"


@pytest.mark.hazard("H2")
def test_estop_pressed_at_the_resume_instant_ends_as_estop() -> None:
    """The long profile's shrunk example: the E-stop pressed inside the step that writes ``resume``; the
    generator refuses to arm, and that fault's safe state never yielded to the safety listener (in-process
    calls do not suspend), so the session ended ``fault``. The safe state now reads the E-stop once more
    before it ends as a fault, and the simulated inputs report a change since the last state handed out."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.footswitch(1.0, None)
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), "resume", 1)
    events = _finish(m)
    assert events[-1]["outcome"] == "estop", [e["event"] for e in events[-8:]]


@pytest.mark.hazard("H2")
def test_reset_refused_while_the_safety_inputs_do_not_answer() -> None:
    """The long profile's shrunk example: the safety link silent, then the tip lifted out of the window; the
    session latched, and a reset within the inputs' staleness bound was accepted on their last (older) state.
    A reset whose fresh read of the safety inputs goes unanswered is refused."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.inject(Fault(device="plasma", kind="stuck_on", at_s=0.0), "pulse_start", 1)
    m.inject(Fault(device="link", kind="timeout", target="safety", at_s=0.0), None, 1)
    m.inject(Fault(device="safety", kind="tip_lift", at_s=0.0), None, 1)
    for _ in range(100):  # until the session has latched (on the silent safety link, at the latest)
        if m.controller is not None and m.controller.ended:
            break
        m.wait(0.01)
    assert m.controller is not None and m.controller.ended and m.controller.state in ("fault", "estop")
    m.reset()  # asserts: not accepted while the tip is out of the window
    assert m.controller.state in ("fault", "estop")
    resets = [e for e in m.events if e["event"] == "reset"]
    assert resets and resets[-1]["ok"] is False and resets[-1]["blocked_by"][0] == "safety_inputs_stale"
    _finish(m)


@pytest.mark.hazard("H2")
def test_an_estop_pressed_the_instant_of_an_abort_is_the_aborts() -> None:
    """The long profile's shrunk example: an abort asked for, then the E-stop pressed at the same virtual
    instant; the abort went first (emission was off) and the session ended aborted, as it should. The checker
    compared the abort's record time (rounded to the nanosecond, so an ulp later) with the press and called the
    press earlier: the E-stop invariant now allows for the record's rounding."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    assert m.world is not None
    m.inject(Fault(device="plasma", kind="stuck_on", at_s=0.0), None, 1)
    m.handles.remove(0)
    m.world.clear(0)
    m.wait(0.028146344664454977)
    m.abort(None)
    m.abort(None)
    m.inject(Fault(device="plasma", kind="stuck_on", at_s=0.0), None, 1)
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), None, 1)
    m.abort("pulse_start")
    m.world.clear(2)
    events = _finish(m)  # the full check: no estop_not_latched
    assert events[-1]["outcome"] == "estop"  # seen by the end of the abort's safe state: it latches


@pytest.mark.hazard("H2")
def test_an_estop_pressed_while_an_abort_waits_latches_estop() -> None:
    """The long profile's shrunk example: the footswitch released at a pulse's start (its pause's safe state
    then runs the spray out, 120 ms), an abort asked for and the E-stop pressed meanwhile. The abort's
    message came first and the session ended ``aborted``, the E-stop never latched. An E-stop seen by the
    time an abort's safe state ends now latches ``estop``."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.footswitch(1.0, "pulse_start")
    m.abort(None)
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), None, 1)
    events = _finish(m)
    assert events[-1]["outcome"] == "estop", [e["event"] for e in events[-8:]]
    assert any(e["event"] == "abort" for e in events)


@pytest.mark.hazard("H2")
def test_an_estop_pressed_again_while_latched_in_estop_is_the_same_latch() -> None:
    """The long profile's shrunk example: the E-stop pressed at a pulse's end (latched ``estop`` at once), then
    a second press 1 ms later: the checker asked for an estop trip after the second press; a session already
    latched in ``estop`` by the first is what the second press asks for."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), "pulse_end", 1)
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), None, 1)
    events = _finish(m)
    assert events[-1]["outcome"] == "estop"


@pytest.mark.hazard("H2")
def test_an_estop_pressed_as_the_last_spray_ends_latches_estop() -> None:
    """The long profile's shrunk example: the E-stop pressed inside the step that writes the last spray's
    end; the plan's end followed in that same step and the session ended ``complete`` with the E-stop
    pressed. The end of a plan now reads the E-stop once more: pressed, it latches ``estop``."""
    m = _session(seed=0, plasma_ms=0.0, thermometer_ms=0.0, valve_ms=2.0, safety_timeout_ms=20.0)
    m.inject(Fault(device="safety", kind="estop", at_s=0.0), "spray_end", 6)
    events = _finish(m)
    assert events[-1]["outcome"] == "estop", [e["event"] for e in events[-8:]]
