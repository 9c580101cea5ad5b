"""The software cooling path sends the spray command before it writes the pulse's record (ledger and
``pulse_end``): the record is not on the way to the water. Whatever the command's fate, the record is
written exactly once, before the spray's own records (``spray_command``, ``comm_error``), and the ledger in
``summary.json`` counts the pulse.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from plasmactl.clock import LoopClock
from plasmactl.controller.knowledge import DeviceCalls
from plasmactl.ports import DeviceError
from plasmactl.random_campaign import rig_for
from safety_run import example_plan, run


def _order_per_pulse(events: list[dict[str, Any]]) -> None:
    seen_end: set[int] = set()
    for e in events:
        if e["event"] == "pulse_end":
            assert e["pulse"] not in seen_end, e
            seen_end.add(e["pulse"])
        elif e["event"] == "spray_command":
            missing = [p for p in e["pulses"] if p not in seen_end]
            assert not missing, (e, "spray_command before the pulse_end of", missing)
        elif e["event"] == "comm_error" and e.get("device") == "spray" and "attempt" in e:
            last = max(p["pulse"] for p in events if p["event"] == "pulse_start" and p["t"] <= e["t"])
            assert last in seen_end, (e, "comm_error of the spray command before the pulse_end of", last)


@pytest.mark.hazard("H1")
@pytest.mark.parametrize(
    ("transport", "fault"),
    [
        ("inprocess", None),
        ("tcp", None),
        # the spray unit's connection dropped at a pulse's end: later attempts fail before anything is sent
        ("tcp", {"device": "link", "kind": "disconnect", "target": "spray", "after_pulses": 2, "duration_s": 0.5}),
        ("tcp", {"device": "link", "kind": "disconnect", "target": "spray", "after_pulses": 4}),
        # the command's first attempt unanswered (sent again inside the window)
        ("inprocess", {"device": "link", "kind": "timeout", "target": "spray", "after_pulses": 3, "duration_s": 0.03}),
        # the spray unit silent for good from a pulse's end: the command fails, a trip, a fault
        ("inprocess", {"device": "link", "kind": "timeout", "target": "spray", "after_pulses": 4}),
        ("tcp", {"device": "link", "kind": "timeout", "target": "spray", "after_pulses": 4}),
    ],
    ids=["clean", "tcp-clean", "tcp-dropped", "tcp-dropped-for-good", "first-lost", "silent", "tcp-silent"],
)
def test_pulse_end_is_recorded_once_before_the_spray_records(
    transport: str, fault: dict[str, Any] | None, tmp_path: Path
) -> None:
    faults = [] if fault is None else [fault]
    r = run(example_plan("short"), faults, tmp_path, rig=rig_for(transport))
    assert r.violations == {}
    _order_per_pulse(r.events)
    starts = [e["pulse"] for e in r.named("pulse_start")]
    assert sorted(e["pulse"] for e in r.named("pulse_end")) == starts
    # the ledger took every pulse's energy (one pulse a spot in this plan); the invariants compare the rest
    energies = [e["energy_j"] or 0.0 for e in r.named("pulse_end")]
    assert r.summary["ledger"]["delivered_j"]["mean"] == pytest.approx(sum(energies) / len(energies))
    if fault is None:
        assert r.outcome == "complete"
    else:
        assert any(e["device"] == "spray" for e in r.named("comm_error")), r.rules()
        if "duration_s" not in fault:
            assert r.outcome == "fault"


def _calls() -> Any:
    know = SimpleNamespace(last_heard={})
    return DeviceCalls(SimpleNamespace(), {"spray": 0.5}, LoopClock(), know, SimpleNamespace())  # type: ignore[arg-type]


def test_meanwhile_runs_once_the_request_is_out_and_before_its_reply() -> None:
    seen: list[str] = []

    async def request() -> str:
        seen.append("sent")
        await asyncio.sleep(0.01)
        seen.append("replied")
        return "ok"

    async def main() -> str:
        result: str = await _calls().call("spray", request(), meanwhile=lambda: seen.append("meanwhile"))
        return result

    assert asyncio.run(main()) == "ok"
    assert seen == ["sent", "meanwhile", "replied"]


def test_a_failing_meanwhile_still_sees_the_request_to_its_end() -> None:
    seen: list[str] = []

    async def request() -> None:
        await asyncio.sleep(0.01)
        seen.append("replied")

    def broken() -> None:
        raise RuntimeError("the log is gone")

    async def main() -> None:
        await _calls().call("spray", request(), meanwhile=broken)

    with pytest.raises(RuntimeError, match="the log is gone"):
        asyncio.run(main())
    assert seen == ["replied"]  # the request was not abandoned half way (its link's lock held)


def test_meanwhile_runs_before_the_error_of_a_call_that_fails_at_its_first_step() -> None:
    seen: list[str] = []

    async def request() -> None:
        raise DeviceError("spray", "link down: nothing sent")

    async def main() -> None:
        try:
            await _calls().call("spray", request(), meanwhile=lambda: seen.append("meanwhile"))
        except DeviceError:
            seen.append("error")

    asyncio.run(main())
    assert seen == ["meanwhile", "error"]
