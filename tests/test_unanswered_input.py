"""An input whose latest poll got no answer is unknown: no pulse is fired on what it said before.

Found by an adversarial run: the spray unit's read right before a pulse timed out, and the pulse fired 35 us
later on a status 220 ms old (inside its 320 ms bound), so it went uncooled (``cooling_missed``). The
invariant checker now flags any ``pulse_start`` whose spray, generator or safety status is older than a logged
failed poll of that device (``pulse_on_unanswered_input``); this test drives link silences of every guarded
device at random moments through the in-process rig and the served TCP rig's in-process twin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plasmactl.rig import load_rig
from safety_run import EXAMPLES, example_plan, run

SHORT = "short"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.sampled_from(["spray", "plasma", "thermometer", "safety"]),
    at_s=st.floats(0.5, 5.5),
    duration_s=st.sampled_from([0.05, 0.3, None]),
)
@example(target="spray", at_s=0.95, duration_s=None)  # the adversarial run's case
@example(target="spray", at_s=1.9, duration_s=0.05)
def test_no_pulse_on_an_unanswered_input(
    tmp_path_factory: pytest.TempPathFactory, target: str, at_s: float, duration_s: float | None
) -> None:
    fault: dict[str, object] = {"device": "link", "kind": "timeout", "target": target, "at_s": at_s}
    if duration_s is not None:
        fault["duration_s"] = duration_s
    out = tmp_path_factory.mktemp("s")
    r = run(example_plan(SHORT), [fault], out)
    assert r.violations == {}


def test_the_served_rig_holds_the_pulse_too(tmp_path: Path) -> None:
    rig = load_rig(str(EXAMPLES / "rigs" / "sim-tcp-inprocess.toml"))[0]
    fault = {"device": "link", "kind": "timeout", "target": "spray", "at_s": 0.99}
    r = run(example_plan(SHORT), [fault], tmp_path, rig=rig)
    assert r.violations == {}
    assert not r.named("cooling_missed")
