"""``plasmactl report RUN_DIR`` and ``plasmactl summary RUN_DIR``: built from a session's audit log alone.

The report is one self-contained HTML page (embedded PNGs, no address anywhere in it) whose summary table
holds exactly what ``summarize`` computes from the log; the summary command rebuilds the summary.json the
session wrote, also from a log a crash cut mid-line. Bad input: one ``error:`` line, exit 2, no traceback.
The sessions are real ones (the short plan, in virtual time), run once per module.
"""

from __future__ import annotations

import json
import shutil
from base64 import b64decode
from collections.abc import Mapping
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result

from audit import EXAMPLES
from plasmactl import cli_report
from plasmactl.events import read_events
from plasmactl.faults import load_faults
from plasmactl.log_chain import verify_file
from plasmactl.plan import load_plan
from plasmactl.report_data import build_report_data
from plasmactl.report_html import render
from plasmactl.rig import load_rig
from plasmactl.run_log import read_run_log
from plasmactl.session import SessionInputs, run_blocking
from plasmactl.summary import summarize

PLOTS = ("plot-skin", "plot-cooling", "plot-dose", "plot-tissue")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WALL_CLOCK = ("wall_s", "started_at")  # from the log's wall_time fields: equal here, but not what is compared


# --------------------------------------------------------------------------- sessions and commands


def _session(out: Path, faults: str | None = None, rig_text: str | None = None) -> Path:
    plan, plan_file = load_plan(str(EXAMPLES / "plans" / "short.toml"))
    inputs = SessionInputs(plan=plan, plan_file=plan_file)
    if faults is not None:
        inputs.faults, inputs.faults_file = load_faults(str(EXAMPLES / "faults" / faults))
    if rig_text is not None:
        rig_path = out.parent / f"{out.name}-rig.toml"
        rig_path.write_text(rig_text, encoding="utf-8")
        inputs.rig, inputs.rig_file = load_rig(str(rig_path))
    run_blocking(inputs, out, handle_sigint=False)
    return out


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _session(tmp_path_factory.mktemp("report") / "complete")


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The arc stops striking at 2 s: pulse 3 delivers nothing, energy_out_of_tolerance trips, spot 3 is short."""
    return _session(tmp_path_factory.mktemp("report") / "faulted", faults="plasma-no-output.toml")


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    cli_report.register(app)
    return app


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """In-process, exceptions not caught: anything but an exit fails the test with its traceback."""
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
    return runner.invoke(_app(), list(args), catch_exceptions=False)


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# --------------------------------------------------------------------------- reading the page back


class Page(HTMLParser):
    """What the tests read back from a report."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}  # id -> src
        self.summary: dict[str, Any] = {}  # data-key -> json.loads(data-value)
        self.spots: dict[int, str] = {}  # data-spot -> data-status
        self.timeline: list[list[str]] = []
        self.texts: dict[str, str] = {}  # id -> text, for paragraphs with an id
        self.links: list[str] = []  # tags that could load or point to something
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_timeline = False
        self._para: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("a", "link", "script", "iframe", "object", "embed"):
            self.links.append(tag)
        if tag == "img":
            self.images[a["id"]] = a["src"]
        if "data-key" in a:
            self.summary[a["data-key"]] = json.loads(a["data-value"])
        if "data-spot" in a:
            self.spots[int(a["data-spot"])] = a["data-status"]
        if tag == "table":
            self._in_timeline = a.get("id") == "timeline"
        if tag == "tr" and self._in_timeline and "data-event" in a:
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag == "p" and "id" in a:
            self._para = a["id"]
            self.texts[self._para] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.timeline.append(self._row)
            self._row = None
        if tag == "table":
            self._in_timeline = False
        if tag == "p":
            self._para = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._para is not None:
            self.texts[self._para] += data


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def flat_summary(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, Mapping):
            out.update(flat_summary(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture(scope="module")
def complete_report(complete: Path) -> tuple[Result, str]:
    """Built as on a terminal (rich's TTY_COMPATIBLE): the progress bar shows on stderr."""
    result = invoke("report", str(complete), env={"TTY_COMPATIBLE": "1"})
    return result, (complete / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def faulted_report(faulted: Path) -> tuple[Result, str]:
    result = invoke("report", str(faulted))
    return result, (faulted / "report.html").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the report


def test_report_is_self_contained_html_with_every_plot(complete: Path, complete_report: tuple[Result, str]) -> None:
    result, text = complete_report
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {complete / 'report.html'}"
    assert "http" not in text.lower()
    assert "url(" not in text and "<link" not in text and "<script" not in text
    page = parse(text)
    assert page.links == []
    assert set(page.images) == set(PLOTS)
    for name in PLOTS:
        src = page.images[name]
        assert src.startswith("data:image/png;base64,"), name
        data = b64decode(src.split(",", 1)[1])
        assert data.startswith(PNG_SIGNATURE) and len(data) > 8000, name
        pixels = matplotlib.image.imread(BytesIO(data), format="png")
        assert pixels.ndim == 3 and float(np.std(pixels)) > 0.01, name  # not one colour


def test_progress_bar_on_a_terminal_only(
    complete_report: tuple[Result, str], faulted_report: tuple[Result, str]
) -> None:
    assert "reading the log" in complete_report[0].stderr and "/8" in complete_report[0].stderr
    assert faulted_report[0].stderr == ""  # not a terminal: nothing but what must be said


def test_summary_table_holds_exactly_what_summarize_computes(
    complete: Path, complete_report: tuple[Result, str]
) -> None:
    page = parse(complete_report[1])
    expected = flat_summary(summarize(read_events(complete / "events.jsonl")))
    assert page.summary == expected
    assert page.summary["outcome"] == "complete" and page.summary["pulses"] == 6
    written = json.loads((complete / "summary.json").read_text(encoding="utf-8"))
    written.pop("log")
    assert {k: v for k, v in page.summary.items() if k not in WALL_CLOCK} == {
        k: v for k, v in flat_summary(written).items() if k not in WALL_CLOCK
    }


def test_chain_intact_and_files_named(complete: Path, complete_report: tuple[Result, str]) -> None:
    page = parse(complete_report[1])
    records = len(read_events(complete / "events.jsonl"))
    assert page.texts["chain-result"] == f"chain intact: {records} records"
    start = read_events(complete / "events.jsonl")[0]
    assert start["plan_file"]["sha256"] in complete_report[1]
    assert start["prev_sha256"] in complete_report[1]  # the genesis


def test_faulted_report_shows_the_trip_rule_and_reason(faulted: Path, faulted_report: tuple[Result, str]) -> None:
    assert faulted_report[0].exit_code == 0, faulted_report[0].output
    trips = [e for e in read_events(faulted / "events.jsonl") if e["event"] == "interlock_trip"]
    assert trips and trips[0]["rule"] == "energy_out_of_tolerance"
    rows = parse(faulted_report[1]).timeline
    trip_rows = [r for r in rows if r[1] == "interlock_trip"]
    assert [r[2:4] for r in trip_rows] == [[t["rule"], t["reason"]] for t in trips]
    assert any(r[1] == "fault" and r[2] == "energy_out_of_tolerance" for r in rows)


def test_dose_map_marks_the_under_dosed_spot(faulted: Path, faulted_report: tuple[Result, str]) -> None:
    ledger = summarize(read_events(faulted / "events.jsonl"))["ledger"]
    assert ledger["under_dosed"] == [3]
    page = parse(faulted_report[1])
    assert [s for s, status in page.spots.items() if status == "under_dosed"] == [3]
    assert page.spots[1] == "complete" and page.spots[6] == "not_started"
    assert "1 under-dosed" in page.texts["dose-counts"]
    assert "plot-dose" in page.images


def test_no_tissue_physics_is_said_not_plotted(tmp_path: Path) -> None:
    run = _session(tmp_path / "no-tissue", rig_text='[plasma]\nkind = "sim"\n\n[skin]\ntissue = false\n')
    data = build_report_data(read_run_log(run))
    assert data.tissue == [] and data.tissue_note is not None
    page = parse(render(data, {}))
    assert "tissue = false" in page.texts["tissue-absent"]
    assert "plot-tissue" not in page.images


def test_a_broken_chain_is_shown_with_its_first_bad_line(complete: Path, tmp_path: Path) -> None:
    run = copy_run(complete, tmp_path / "edited")
    log = run / "events.jsonl"
    lines = log.read_bytes().split(b"\n")
    number = next(i for i, line in enumerate(lines, start=1) if b'"pulse_end"' in line)
    lines[number - 1] = lines[number - 1].replace(b'"interrupted":false', b'"interrupted":true')
    log.write_bytes(b"\n".join(lines))
    page = parse(render(build_report_data(read_run_log(run)), {}))
    assert page.texts["chain-result"].startswith(f"chain broken: first bad line: line {number + 1}:")


# --------------------------------------------------------------------------- the summary command


def _without_wall_clock(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK}


def test_summary_rebuilds_what_the_session_wrote(complete: Path, tmp_path: Path) -> None:
    run = copy_run(complete, tmp_path / "run")
    original = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    for present in (True, False):  # over the session's own file, and where there is none
        if not present:
            (run / "summary.json").unlink()
        result = invoke("summary", str(run))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"wrote {run / 'summary.json'}")
        rebuilt = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        assert list(rebuilt) == list(original)
        assert _without_wall_clock(rebuilt) == _without_wall_clock(original)
    assert verify_file(run / "events.jsonl").anchored


def test_summary_of_a_log_cut_mid_line(complete: Path, tmp_path: Path) -> None:
    run = copy_run(complete, tmp_path / "cut")
    (run / "summary.json").unlink()  # SIGKILL: the session never wrote it
    log = run / "events.jsonl"
    data = log.read_bytes()
    lines = data.split(b"\n")[:-1]
    keep = len(lines) - 3  # the cut falls inside line keep + 1: session_end is lost
    cut_at = sum(len(line) + 1 for line in lines[:keep]) + len(lines[keep]) // 2
    log.write_bytes(data[:cut_at])
    result = invoke("summary", str(run))
    assert result.exit_code == 0, result.output
    assert f"line {keep + 1}" in result.stderr and "dropped" in result.stderr
    assert "no session_end" in result.stderr
    rebuilt = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    original = json.loads((complete / "summary.json").read_text(encoding="utf-8"))
    assert list(rebuilt) == list(original)
    assert rebuilt["outcome"] is None or "no session_end" in rebuilt["outcome"]
    assert rebuilt["log"]["records"] == keep
    assert rebuilt == {**summarize(read_events(log)), "log": rebuilt["log"]}
    report = verify_file(log)
    assert report.ok and report.anchored and report.torn
    # the report of the same cut log says it too
    result = invoke("report", str(run))
    assert result.exit_code == 0 and f"line {keep + 1}" in result.stderr
    page = parse((run / "report.html").read_text(encoding="utf-8"))
    assert "no session_end" in page.summary["outcome"]


def test_summary_refuses_to_replace_the_anchor_of_a_cut_log(complete: Path, tmp_path: Path) -> None:
    run = copy_run(complete, tmp_path / "shortened")
    before = (run / "summary.json").read_bytes()
    log = run / "events.jsonl"
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:-2]))  # two lines removed at the end
    result = invoke("summary", str(run))
    assert result.exit_code == 3, result.output
    assert "error:" in result.stderr and "chain broken" in result.stderr and "Traceback" not in result.output
    assert (run / "summary.json").read_bytes() == before


# --------------------------------------------------------------------------- bad input


def test_a_record_without_its_fields_is_bad_input(complete: Path, tmp_path: Path) -> None:
    run = copy_run(complete, tmp_path / "run")
    log = run / "events.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"pulse":1,"spot":1,', b'"pulse":1,', 1))
    result = invoke("report", str(run))
    assert result.exit_code == 2 and "a record is not as a session writes it" in result.stderr, result.output
    assert "chain broken" in result.stderr and "Traceback" not in result.output


def make_run_dir(root: Path, setup: str | bytes) -> Path:
    """A bad RUN_DIR: ``setup`` is what is there instead of a session's folder, or the bytes of its log."""
    run = root / "run"
    if setup == "a file":
        run.write_text("x")
    elif setup == "an empty folder":
        run.mkdir()
    elif setup == "events.jsonl a folder":
        (run / "events.jsonl").mkdir(parents=True)
    elif isinstance(setup, bytes):
        run.mkdir()
        (run / "events.jsonl").write_bytes(setup)
    return run  # "nothing": no such folder


BAD = [
    ("missing-folder", "nothing", "no such folder"),
    ("a-file", "a file", "not a folder"),
    ("no-events-jsonl", "an empty folder", "holds no events.jsonl"),
    ("events-jsonl-is-a-folder", "events.jsonl a folder", "not a file"),
    ("empty-log", b"", "not a session's audit log"),
    ("text", b"hello, this is not a log\n", "not a session's audit log"),
    ("json-without-chain", b'{"t": 0, "event": "session_start"}\n', "not a session's audit log"),
    ("only-a-torn-line", b'{"t": 0, "event": "sess', "not a session's audit log"),
    ("no-session-start", b'{"t": 0, "event": "reading", "prev_sha256": "00"}\n', "not session_start"),
]


@pytest.mark.parametrize("command", ["report", "summary"])
@pytest.mark.parametrize(("setup", "expect"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_error_line(command: str, setup: str | bytes, expect: str, tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, setup)
    result = invoke(command, str(run_dir))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("command", ["report", "summary"])
def test_an_unwritable_target_exits_2(command: str, complete: Path, tmp_path: Path) -> None:
    run = copy_run(complete, tmp_path / "run")
    name = "report.html" if command == "report" else "summary.json"
    (run / name).unlink(missing_ok=True)
    (run / name).mkdir()  # cannot be replaced by a file, whoever runs the test (root ignores permissions)
    result = invoke(command, str(run))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: cannot write {run / name}") and "Traceback" not in result.output
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_control_characters_in_text_are_shown_as_escapes() -> None:
    """A plan named "t\\x00\\x1b[31mRED\\u202e" put raw NUL, ESC and a right-to-left override into the report's
    title and heading (the rig table escaped them)."""
    from plasmactl.report_html import esc

    shown = esc("t\x00\x1b[31mRED\u202e <b>")
    assert shown == "t\\x00\\x1b[31mRED\\u202e &lt;b&gt;"
    assert all(c.isprintable() for c in shown)
    assert esc("two\nlines\tand a tab") == "two\nlines\tand a tab"  # layout characters stay
