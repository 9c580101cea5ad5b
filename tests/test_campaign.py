"""The generative fault campaign in its CI profile: random single, double and triple faults of every kind at
random moments and at pulse, spray and pause edges, on the in-process rig and over Modbus TCP served inside
the run, each session checked against every safety invariant (plasmactl.invariants) from its log and from
the simulated devices' own record. ``make campaign`` runs the long profile (10,000 sessions, a fresh seed).

The seed is fixed so a CI failure reproduces; PLASMACTL_CAMPAIGN_SEED=N runs another sample.
"""

from __future__ import annotations

import io
import os

import pytest

from plasmactl.random_campaign import cases, report, run

pytestmark = pytest.mark.hazard("H1")

SEED = int(os.environ.get("PLASMACTL_CAMPAIGN_SEED", "20261201"))
WORKERS = min(2, os.cpu_count() or 1)


def _campaign(count: int, transports: tuple[str, ...], seed: int, workers: int = WORKERS) -> None:
    results = run(cases(count, seed, transports), workers)
    text = io.StringIO()
    broken = report(results, text)
    print(text.getvalue())
    assert len(results) == count
    assert broken == 0, text.getvalue()


@pytest.mark.slow
def test_campaign_in_process_500_sessions() -> None:
    _campaign(500, ("inprocess",), SEED)


@pytest.mark.slow
def test_campaign_over_modbus_tcp_40_sessions() -> None:
    _campaign(40, ("tcp",), SEED + 1, workers=1)  # real sockets on the real clock: no CPU contention of our own


@pytest.mark.slow
def test_campaign_with_the_trigger_line_150_sessions() -> None:
    """Hardware-timed cooling: the spray unit armed before each pulse and started by the pulse's end."""
    _campaign(150, ("trigger",), SEED + 2)


@pytest.mark.slow
def test_campaign_with_the_trigger_line_over_modbus_tcp_10_sessions() -> None:
    _campaign(10, ("tcp-trigger",), SEED + 3, workers=1)
