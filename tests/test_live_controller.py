"""Property tests of the live controller (hypothesis ``RuleBasedStateMachine``, :mod:`live_machine`).

The CI profile runs at least ``PLASMACTL_LIVE_STEPS`` (default 2,000) steps, derandomized (the same
examples every run); ``make live-check`` runs the long profile (100,000 steps, a fresh seed, printed:
``PLASMACTL_LIVE_SEED=N`` replays it). The count is printed, and a failure prints hypothesis' shrunk
example: the steps that break an invariant, as code to replay.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from live_machine import STEPS, LiveController
from plasmactl.random_campaign import quiet_drivers

MIN_STEPS = int(os.environ.get("PLASMACTL_LIVE_STEPS", "2000"))
STEPS_PER_SESSION = 25
MEAN_STEPS = 14  # steps hypothesis runs per session, about (it draws the length of each)


@pytest.mark.slow
@pytest.mark.hazard("H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8")
def test_live_controller_properties() -> None:
    quiet_drivers()
    given = os.environ.get("PLASMACTL_LIVE_SEED")
    run_seed = int(given) if given else (random.SystemRandom().randrange(2**32) if MIN_STEPS > 10_000 else None)
    before = dict(STEPS)
    rounds = 0
    while STEPS["steps"] - before["steps"] < MIN_STEPS:
        missing = MIN_STEPS - (STEPS["steps"] - before["steps"])
        machine: type[LiveController] = type("LiveControllerRound", (LiveController,), {})
        if run_seed is not None or rounds:
            machine = seed((run_seed or 0) + rounds)(machine)  # a later round explores new examples
        rounds += 1
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=max(1, missing // MEAN_STEPS),
                stateful_step_count=STEPS_PER_SESSION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate, Phase.shrink],
                derandomize=run_seed is None and rounds == 1,
                print_blob=True,
            ),
        )
    ran = {k: STEPS[k] - before[k] for k in STEPS}
    print(f"[live controller] {ran['steps']} steps in {ran['sessions']} sessions (seed {run_seed}): {ran}")
    assert ran["steps"] >= MIN_STEPS
    assert ran["edits_applied"] > 0 and ran["edits_refused"] > 0 and ran["resets"] > 0  # each path was taken
