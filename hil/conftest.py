"""Hardware-in-the-loop suite: the same checks against any rig file.

    pytest hil                         # the default rig (in-process simulators)
    pytest hil --rig examples/rigs/bench.toml --plan examples/plans/short.toml

The tests only read the audit log, so they hold a real rig to exactly the same standard as the simulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plasmactl hil")
    group.addoption("--rig", default=None, help="rig file (default: in-process simulators)")
    group.addoption("--plan", default=str(ROOT / "examples/plans/short.toml"), help="plan to deliver")
    group.addoption("--realtime", action="store_true", help="run on the real clock (always on real hardware)")


@pytest.fixture
def rig_path(request: pytest.FixtureRequest) -> str | None:
    value = request.config.getoption("--rig")
    return None if value is None else str(value)


@pytest.fixture
def plan_path(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--plan"))


@pytest.fixture
def realtime(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--realtime"))
