"""Which stopped hil sessions are run again: only those a device's silence stopped.

Seen in a fresh-clone ``make test``: on the spawned RTU rig beside the other rig's hil run, the served bus went
silent for ~90 ms after pulse 1 (``safety: did not reply within 155 ms``); the spray's feedback never came back
inside the window and the session ended ``cooling_not_confirmed``, which the runner did not count as the silence
it was, so ``test_cooling_latency_across_many_pulses`` failed where a device timeout would have been run again.
A cooling miss with every device answering (the valve seen closed) must stay a failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from plasmactl.hil_runner import TIMING_CAUSES, stopped_by_silence


def _log(*names: str) -> list[dict[str, Any]]:
    return [{"t": 0.1 * i, "event": name} for i, name in enumerate(names)]


SEEN = _log("pulse_start", "pulse_end", "spray_command", "comm_error", "interlock_trip", "plasma_off", "fault")


@pytest.mark.parametrize("cause", sorted(TIMING_CAUSES))
def test_a_timing_cause_is_silence(cause: str) -> None:
    assert stopped_by_silence(cause, _log("pulse_start", "pulse_end", "interlock_trip", "fault"))


def test_a_cooling_miss_while_the_bus_was_silent_is_silence() -> None:
    assert stopped_by_silence("cooling_not_confirmed", SEEN)


@pytest.mark.parametrize(
    "events",
    [
        # every device answered: the valve was seen closed through the window
        _log("pulse_start", "pulse_end", "spray_command", "interlock_trip", "plasma_off", "fault"),
        # a silence before the pulse ended is not this window's
        _log("comm_error", "pulse_start", "pulse_end", "spray_command", "interlock_trip", "fault"),
        # a comm error only after the fault (the safe state's own calls) is not the window's either
        _log("pulse_start", "pulse_end", "interlock_trip", "fault", "comm_error"),
        # no pulse ended at all
        _log("comm_error", "interlock_trip", "fault"),
    ],
)
def test_a_cooling_miss_with_the_devices_answering_is_not_run_again(events: list[dict[str, Any]]) -> None:
    assert not stopped_by_silence("cooling_not_confirmed", events)


@pytest.mark.parametrize("cause", ["overdose", "estop", "skin_temp_high", None])
def test_other_causes_are_never_silence(cause: str | None) -> None:
    assert not stopped_by_silence(cause, SEEN)
