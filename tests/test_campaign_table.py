"""`plasmactl campaign`: every fault kind x moment x transport, its CSV and Markdown, the command's exit codes,
a dask LocalCluster giving the same rows as the local pool, and the committed docs/campaign.md being its
current output (the in-process rows exactly; the TCP rows, whose times move with the host, for what must be 0)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from plasmactl import campaign_table as ct
from test_cli import all_output, invoke

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "campaign.md"

pytestmark = pytest.mark.hazard("H1", "H2", "H5", "H7")


def test_the_cases_cover_every_kind_moment_and_link() -> None:
    kinds = ct.fault_kinds()
    names = [ct.fault_name(f) for f in kinds]
    assert len(names) == len(set(names))
    assert {"link.timeout@plasma", "link.delay@safety", "plasma.stuck_on", "safety.estop"} <= set(names)
    assert sum(n.startswith("link.") for n in names) == 5 * 4
    times = ct.moments("inprocess")
    assert list(times) == list(ct.MOMENTS)
    assert times["armed"] < times["paused"] < times["pulse"] < times["awaiting_cooling"] < times["cooling"]


def test_the_committed_table_is_current() -> None:
    committed = ct.parse_markdown(DOC.read_text(encoding="utf-8"))
    fresh = ct.run_campaign(("inprocess",), workers=2)
    mine = [r for r in committed if r["transport"] == "inprocess"]
    assert mine == ct.parse_markdown(ct.markdown(fresh, "x")), "docs/campaign.md is stale: run `make campaign-doc`"
    tcp = [r for r in committed if r["transport"] == "tcp"]
    assert {(r["fault"], r["moment"]) for r in tcp} == {
        (ct.fault_name(f), m) for f in ct.fault_kinds() for m in ct.MOMENTS
    }
    for row in committed:
        assert all(row[c] == "0" for c in ct.MUST_BE_ZERO), row
    print(f"campaign table: {len(committed)} rows, {len(fresh)} in-process sessions re-run")


def test_the_command_writes_csv_and_markdown(tmp_path: Path) -> None:
    result = invoke(["campaign", "--transport", "inprocess", "--out", str(tmp_path), "--workers", "1", "--limit", "6"])
    assert result.exit_code == 0, all_output(result)
    rows = list(csv.DictReader((tmp_path / "campaign.csv").open(encoding="utf-8")))
    assert [r["moment"] for r in rows] == list(ct.MOMENTS) and {r["fault"] for r in rows} == {"plasma.stuck_on"}
    assert all(r["pulses_after_trip"] == "0" and r["violations"] == "0" for r in rows)
    md = (tmp_path / "campaign.md").read_text(encoding="utf-8")
    assert "6 sessions; 0 rows break" in md and ct.parse_markdown(md)[0]["fault"] == "plasma.stuck_on"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--transport", "serial"], "--transport 'serial'"),
        (["--transport", "tcp,tcp"], "--transport 'tcp,tcp'"),
        (["--transport", ""], "give inprocess, tcp"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], words: str, tmp_path: Path) -> None:
    result = invoke(["campaign", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and words in all_output(result)


def test_out_that_is_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = invoke(["campaign", "--out", str(tmp_path / "f"), "--limit", "1"])
    assert result.exit_code == 2 and "is not a folder" in all_output(result)


@pytest.mark.slow
def test_on_a_dask_local_cluster_the_rows_are_the_same() -> None:
    import distributed  # a dev dependency: the test must run, never skip

    cluster_cm = distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster_cm as cluster:
        remote = ct.run_campaign(("inprocess",), dask_scheduler=cluster.scheduler_address, only=8)
    local = ct.run_campaign(("inprocess",), workers=1, only=8)
    assert remote == local and len(local) == 8
