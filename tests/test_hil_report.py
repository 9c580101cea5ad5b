"""The hil report: the fixed JSON keys other tools read, the numbers, and HTML that data cannot break."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plasmactl.hil_report import TestRecord, build_report, write_reports

HOSTILE = "hil/test_x.py::test_name[<script>alert(1)</script>&amp]"
COOLING_A = [12.5, 14.0, 13.2, 40.1, 11.9, 12.0]
COOLING_B = [15.5, 16.25]
ESTOP = [3.1, 2.9, 4.4]
LIMITS = {"cooling_latency_ms": 100.0, "estop_reaction_ms": 3.5, "poll_gap_ms": 50.0}
DEVICES: dict[str, dict[str, object]] = {
    "plasma": {"vendor": 0x504C, "model": 0x0101, "map_version": 1, "serial": "PG-0042"},
    "spray": {"vendor": 0x504C, "model": 0x0201, "map_version": 1},
    # the shape the plugin passes: the probe's report per device
    "thermometer": {
        "device": "thermometer",
        "kind": "serial",
        "endpoint": "/dev/ttyACM0",
        "ok": True,
        "problem": None,
        "identity": {"vendor": "IRT", "model": "IRT-1", "firmware": "1.2", "serial": "T-7"},
        "round_trip_ms": {"median": 3.8, "max": 4.1, "n": 3},
    },
}


def _records() -> list[TestRecord]:
    return [
        TestRecord(
            "hil/test_rig_session.py::test_plan_completes_on_rig",
            "passed",
            4.25,
            {"cooling_latency_ms": COOLING_A},
            {"record": "/tmp/out/session-1"},
            [],
        ),
        TestRecord(
            "hil/test_interlocks.py::test_estop",
            "failed",
            2.0,
            {"estop_reaction_ms": ESTOP, "cooling_latency_ms": COOLING_B},
            {"rule": "estop"},
            [],
        ),
        TestRecord(
            "hil/test_interlocks.py::test_tip_distance",
            "skipped",
            0.0,
            {},
            {"reason": "no tip sensor"},
            [
                "tip distance interlock: the bench has no tip sensor wired",
                "flow loss",
                "Skipped: not verified on this rig: safety/tip_lift needs a control channel",
            ],
        ),
        TestRecord(HOSTILE, "error", 0.5, {}, {"reason": "<b>bad</b> & worse"}, []),
    ]


def _report(tests: list[TestRecord], given: list[dict[str, str]] | None = None) -> dict[str, object]:
    return build_report(
        rig_path="examples/rigs/bench-hil.toml",
        rig_sha256="ab" * 32,
        software_version="1.2.3",
        devices=DEVICES,
        tests=tests,
        limits=LIMITS,
        not_verified=given or [],
        started="2025-01-02T10:00:00+00:00",
        finished="2025-01-02T10:05:00+00:00",
        plan_path="examples/plans/short.toml",
    )


def _expected(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


def _check_stats(stats: dict[str, Any], values: list[float]) -> None:
    assert stats["n"] == len(values) > 0
    for key, want in _expected(values).items():
        assert isinstance(stats[key], float)
        assert math.isclose(stats[key], want), (key, stats[key], want)
    assert stats["values"] == values


def _written(tmp_path: Path, report: dict[str, object]) -> tuple[dict[str, Any], str, str]:
    paths = write_reports(tmp_path / "report", report)
    assert [p.name for p in paths] == ["hil-report.json", "hil-report.md", "hil-report.html"]
    assert all(p.is_file() for p in paths)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(p.name for p in paths)  # no temps
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    return data, paths[1].read_text(encoding="utf-8"), paths[2].read_text(encoding="utf-8")


def test_json_has_every_fixed_key_with_its_numbers(tmp_path: Path) -> None:
    given = [{"test": "", "what": "thermometer accuracy", "why": "no reference probe on this bench"}]
    data, _, _ = _written(tmp_path, _report(_records(), given))

    assert data["rig"] == {"path": "examples/rigs/bench-hil.toml", "sha256": "ab" * 32}
    assert data["software_version"] == "1.2.3"
    assert data["devices"] == DEVICES
    assert data["plan"] == {"path": "examples/plans/short.toml"}
    assert data["started"] == "2025-01-02T10:00:00+00:00" and data["finished"] == "2025-01-02T10:05:00+00:00"
    assert data["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "error": 1, "total": 4}

    tests = data["tests"]
    assert isinstance(tests, list) and [t["name"] for t in tests] == [r.name for r in _records()]
    for t in tests:
        assert isinstance(t["name"], str) and isinstance(t["outcome"], str) and isinstance(t["measurements"], dict)
    _check_stats(tests[0]["measurements"]["cooling_latency_ms"], COOLING_A)
    _check_stats(tests[1]["measurements"]["estop_reaction_ms"], ESTOP)
    assert tests[0]["properties"] == {"record": "/tmp/out/session-1"}
    assert tests[2]["measurements"] == {}

    cooling = data["measurements"]["cooling_latency_ms"]
    _check_stats(cooling, COOLING_A + COOLING_B)
    assert cooling["limit"] == 100.0 and cooling["within_limit"] is True
    estop = data["measurements"]["estop_reaction_ms"]
    _check_stats(estop, ESTOP)
    assert estop["limit"] == 3.5 and estop["within_limit"] is False  # 4.4 ms is over it
    gap = data["measurements"]["poll_gap_ms"]  # a limit with no values: all null, judged null
    assert gap["n"] == 0 and gap["p50"] is None and gap["p99"] is None and gap["max"] is None
    assert gap["limit"] == 50.0 and gap["within_limit"] is None

    assert data["not_verified"] == [
        {
            "test": "hil/test_interlocks.py::test_tip_distance",
            "what": "tip distance interlock",
            "why": "the bench has no tip sensor wired",
        },
        {"test": "hil/test_interlocks.py::test_tip_distance", "what": "flow loss", "why": "no reason given"},
        {
            "test": "hil/test_interlocks.py::test_tip_distance",
            "what": "the test (skipped)",
            "why": "not verified on this rig: safety/tip_lift needs a control channel",
        },
        {"test": "", "what": "thermometer accuracy", "why": "no reference probe on this bench"},
    ]


def test_markdown_lists_what_was_not_verified(tmp_path: Path) -> None:
    _, md, _ = _written(tmp_path, _report(_records()))
    assert "## Not verified on this rig" in md
    section = md.split("## Not verified on this rig", 1)[1].split("\n## ", 1)[0]
    assert "tip distance interlock" in section and "the bench has no tip sensor wired" in section
    assert "ab" * 32 in md and "1.2.3" in md and "examples/rigs/bench-hil.toml" in md
    assert "| plasma |" in md and "PG-0042" in md and "vendor=0x504C" in md
    assert "identity.serial=T-7" in md and "round_trip_ms.median=3.8" in md and "problem" not in md
    assert "| cooling_latency_ms | 8 |" in md
    assert "<script>" not in md  # a viewer would run it


def test_html_escapes_data_and_links_nowhere(tmp_path: Path) -> None:
    _, _, page = _written(tmp_path, _report(_records()))
    assert "<script" not in page.lower()
    assert "<b>bad</b>" not in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(href|src)\s*=", page, re.IGNORECASE)
    assert "<style>" in page  # inline CSS only
    for record in _records():
        assert html.escape(record.name, quote=True) in page
    assert html.escape(HOSTILE, quote=True) in page
    assert '<td class="passed">passed</td>' in page
    assert '<td class="failed">failed</td>' in page
    assert '<td class="error">error</td>' in page
    assert '<td class="skipped">skipped</td>' in page
    assert "Not verified on this rig" in page


def test_no_tests_still_writes_all_three_files(tmp_path: Path) -> None:
    data, md, page = _written(tmp_path, _report([]))
    assert data["tests"] == []
    assert data["summary"] == {"passed": 0, "failed": 0, "skipped": 0, "error": 0, "total": 0}
    for name in ("cooling_latency_ms", "estop_reaction_ms"):
        m = data["measurements"][name]
        assert m["n"] == 0 and m["p50"] is None and m["p99"] is None and m["max"] is None
        assert m["within_limit"] is None and m["values"] == []
    assert data["not_verified"] == []
    section = md.split("## Not verified on this rig", 1)[1].split("\n## ", 1)[0]
    assert "Nothing" in section
    assert "Not verified on this rig" in page and "Nothing" in page


def test_non_finite_values_are_null_and_not_within_limit(tmp_path: Path) -> None:
    record = TestRecord("t", "passed", float("nan"), {"cooling_latency_ms": [10.0, float("inf"), 20.0]}, {}, [])
    raw = (tmp_path / "r" / "hil-report.json").parent
    write_reports(raw, _report([record]))
    text = (raw / "hil-report.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    cooling = json.loads(text)["measurements"]["cooling_latency_ms"]
    assert cooling["n"] == 2 and cooling["non_finite"] == 1 and cooling["values"] == [10.0, None, 20.0]
    assert cooling["max"] == 20.0 and cooling["within_limit"] is False


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="xfailed"):
        _report([TestRecord("t", "xfailed", 0.1, {}, {}, [])])


def test_unwritable_folder_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        write_reports(blocker / "report", _report([]))
