"""plasmactl sweep: parsing, locally on a process pool, and on a dask LocalCluster."""

from __future__ import annotations

import csv
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit import EXAMPLES
from plasmactl.cli import app
from plasmactl.inputs import InputError
from plasmactl.plan import load_plan
from plasmactl.rig import Rig
from plasmactl.sweep import RESULT_COLUMNS, combination_inputs, parse_axes, parse_values, run_sweep

SHORT = EXAMPLES / "plans" / "short.toml"


def test_parse_values() -> None:
    assert parse_values("0:200:10") == tuple(float(v) for v in range(0, 201, 10))
    assert parse_values("0.03,0.06") == (0.03, 0.06)
    for bad in ("1:0:1", "0:1:0", "0:1", "a,b", "", "nan"):
        with pytest.raises(ValueError):
            parse_values(bad)


def test_names_resolve_to_plan_skin_or_delay() -> None:
    plan, _ = load_plan(str(SHORT))
    axes = parse_axes(
        ["cooling_delay_ms=0:20:10", "energy_j=0.003,0.006", "spray_h=1000,2500", "pulse.pulse_ms=5"], plan
    )
    assert [a.target for a in axes] == ["delay", "plan:pulse.energy_j", "skin:spray_h", "plan:pulse.pulse_ms"]
    for bad in (["nonsense=1"], ["energy_j"], ["energy_j=1", "energy_j=2"], []):
        with pytest.raises(InputError):
            parse_axes(bad, plan)


def test_delay_raises_the_window_within_the_cap() -> None:
    plan, _ = load_plan(str(SHORT))
    axes = parse_axes(["cooling_delay_ms=150,990"], plan)
    p, _ = combination_inputs(plan, Rig(), axes, (150.0,))
    assert p.cooling.delay_ms == 150.0 and p.limits.max_cooling_delay_ms == 250.0
    with pytest.raises(InputError):  # 990 ms is possible only with a 1000 ms window: still below the cap...
        combination_inputs(plan, Rig(), parse_axes(["cooling_delay_ms=1000"], plan), (1000.0,))
    p2, _ = combination_inputs(plan, Rig(), axes, (990.0,))
    assert p2.limits.max_cooling_delay_ms == 1000.0  # ...and never above it


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_sweep_locally_writes_csv_and_png(tmp_path: Path) -> None:
    plan, _ = load_plan(str(SHORT))
    axes = parse_axes(["cooling_delay_ms=0,40,80", "energy_j=0.003,0.006"], plan)
    rows = run_sweep(plan, Rig(), axes, tmp_path, workers=2)
    assert len(rows) == 6
    table = _rows(tmp_path / "sweep.csv")
    assert list(table[0]) == ["cooling_delay_ms", "energy_j", *RESULT_COLUMNS]
    assert all(r["outcome"] == "complete" for r in table)
    # the measured delay follows the deliberate one
    by_delay = {float(r["cooling_delay_ms"]): float(r["cooling_delay_ms_p50"]) for r in table}
    assert by_delay[0.0] < by_delay[40.0] < by_delay[80.0]
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_sweep_on_a_dask_local_cluster(tmp_path: Path) -> None:
    import distributed  # a dev dependency: the test must run, never skip

    plan, _ = load_plan(str(SHORT))
    axes = parse_axes(["cooling_delay_ms=0,50"], plan)
    cluster_cm = distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster_cm as cluster:
        rows = run_sweep(plan, Rig(), axes, tmp_path / "dask", dask_scheduler=cluster.scheduler_address)
    local = run_sweep(plan, Rig(), axes, tmp_path / "local", workers=1)
    assert [r["outcome"] for r in rows] == ["complete", "complete"]
    # the same combinations give the same results wherever they run
    assert _rows(tmp_path / "dask" / "sweep.csv") == _rows(tmp_path / "local" / "sweep.csv")
    assert rows == local


def test_sweep_cli_bad_vary_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sweep", str(SHORT), "--vary", "warp_factor=1:2:1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "warp_factor" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["sweep", "campaign"])
def test_an_unreachable_dask_scheduler_is_bad_input_said_soon(tmp_path: Path, command: str) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    args = {
        "sweep": ["sweep", str(SHORT), "--vary", "cooling_delay_ms=0,50", "--out", str(tmp_path / "o")],
        "campaign": ["campaign", "--limit", "1", "--out", str(tmp_path / "c")],
    }[command]
    t0 = time.monotonic()
    result = CliRunner().invoke(app, [*args, "--dask-scheduler", address])
    took = time.monotonic() - t0
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"--dask-scheduler {address}: cannot connect" in result.output
    assert took < 20  # dask's own default waits 30 s


def test_a_whole_number_field_refuses_a_fraction() -> None:
    """``--vary pulses_per_spot=2.9`` ran 2 pulses per spot while the CSV row said 2.9."""
    plan, _ = load_plan(str(EXAMPLES / "plans" / "short.toml"))
    with pytest.raises(InputError, match=r"pulses_per_spot: takes whole numbers, not 2\.9"):
        parse_axes(["pulses_per_spot=1,2.9"], plan)
    assert parse_axes(["pulses_per_spot=1:3:1"], plan)[0].values == (1.0, 2.0, 3.0)
