"""Pins the shortcuts the session's hot paths take: each must give exactly what the plain way gives.

summary.json from the writer's own lines (not re-read), the summary's skipping of records it needs only the
time of, the simulators' status makers and the thermometer's noise drawn in blocks.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plasmactl import clock as clockmod
from plasmactl.controller.ledger import ledger_from_events
from plasmactl.events import AuditLog, read_events, writer_of
from plasmactl.plan import load_plan
from plasmactl.ports import PlasmaStatus, SafetyState, SkinReading, SprayStatus
from plasmactl.session import SessionInputs, run_blocking, write_summary
from plasmactl.simulators.fastinit import maker, plasma_status, safety_state, skin_reading, spray_status
from plasmactl.simulators.sensors import NOISE_BLOCK
from plasmactl.summary import FIELDS_READ, LEDGER_EVENTS, records_of, summarize

SHORT = Path(__file__).resolve().parents[1] / "examples" / "plans" / "short.toml"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("perf") / "out"
    plan, plan_file = load_plan(str(SHORT))
    run_blocking(SessionInputs(plan=plan, plan_file=plan_file, seed=3), out, handle_sigint=False)
    return out


def test_summary_from_the_writer_is_the_summary_of_the_file(session: Path, tmp_path: Path) -> None:
    anchor = json.loads((session / "summary.json").read_bytes())["log"]
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(session / "events.jsonl", copy / "events.jsonl")
    assert writer_of(copy / "events.jsonl") is None  # no writer in this process: read back from the file
    write_summary(copy, anchor=anchor)
    assert (copy / "summary.json").read_bytes() == (session / "summary.json").read_bytes()


def _log(path: Path) -> AuditLog:
    async def write() -> AuditLog:
        log = AuditLog(path, clockmod.LoopClock())
        log.emit("session_start", plan={"name": "p"}, seed=1)
        for i in range(3):
            log.emit("state", src="idle", dest="firing", trigger="go")
            log.emit("reading", skin_c=33.0 + i, pulse=i, when=(1.0, 2.5))
            log.emit("pulse_start", pulse=i + 1, spot=1, skin_c=33.5)
        log.emit("session_end", outcome="complete")
        log.close()
        return log

    return clockmod.run(write(), virtual=True)


def test_records_of_stand_in_for_read_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = _log(path)
    assert writer_of(path) is log
    records = records_of(path, log.anchor)
    full = read_events(path)
    assert [(r["event"], r["t"]) for r in records] == [(r["event"], r["t"]) for r in full]
    assert all(r == f for r, f in zip(records, full, strict=True) if r["event"] in FIELDS_READ)
    assert summarize(records) == summarize(full)


def test_a_file_changed_behind_the_writer_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = _log(path)
    assert log.as_written(log.anchor) is not None
    data = path.read_bytes()
    assert b'"skin_c":33.0' in data
    path.write_bytes(data.replace(b'"skin_c":33.0', b'"skin_c":39.0'))  # same size, another value
    assert log.as_written(log.anchor) is None
    assert records_of(path, log.anchor) == read_events(path)
    path.write_bytes(data)
    assert log.as_written(log.anchor) is not None
    assert log.as_written({"records": 3, "last_sha256": log.anchor["last_sha256"]}) is None  # another anchor


def _compared_names(func: object) -> set[str]:
    """The string literals ``name`` is compared with (``name == "x"``, ``name in ("x", ...)``) in ``func``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))  # type: ignore[arg-type]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "name":
            for right in node.comparators:
                for c in ast.walk(right):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str):
                        names.add(c.value)
    return names


def test_the_summary_reads_the_fields_of_no_other_events() -> None:
    ledger = _compared_names(ledger_from_events)
    assert ledger == LEDGER_EVENTS  # the ledger is given these records alone
    assert ledger | _compared_names(summarize) <= FIELDS_READ


@dataclass(frozen=True, slots=True)
class _WithPost:
    x: int

    def __post_init__(self) -> None:
        pass


def test_makers_build_what_the_constructors_build() -> None:
    spray = maker(SprayStatus)(
        t=1.5,
        valve_open=True,
        spray_commanded=True,
        reservoir_ml=3.25,
        flow_ml_s=0.5,
        spray_count=2,
        fault_code=0,
        trigger_armed=False,
    )
    assert spray == SprayStatus(1.5, True, True, 3.25, 0.5, 2, 0, False) and type(spray) is SprayStatus
    assert repr(spray) == repr(SprayStatus(1.5, True, True, 3.25, 0.5, 2, 0, False))
    assert maker(SkinReading)(t=0.1, value_c=33.0) == SkinReading(0.1, 33.0)
    assert maker(SafetyState)(t=0.0, estop=False, footswitch=True, tip_distance_mm=0.0) == SafetyState(
        0.0, False, True, 0.0
    )
    defaults = maker(SprayStatus)(
        t=0.0, valve_open=False, spray_commanded=False, reservoir_ml=1.0, flow_ml_s=0.0, spray_count=0
    )
    assert defaults == SprayStatus(0.0, False, False, 1.0, 0.0, 0)  # the class's own defaults
    plasma = maker(PlasmaStatus)
    with pytest.raises(TypeError):
        plasma(t=0.0)  # a field without a default must be given
    with pytest.raises(TypeError):
        maker(_WithPost)


@pytest.mark.parametrize(
    ("build", "cls"),
    [
        (plasma_status, PlasmaStatus),
        (spray_status, SprayStatus),
        (skin_reading, SkinReading),
        (safety_state, SafetyState),
    ],
)
def test_written_out_constructors_are_the_classes_own(build: Any, cls: type) -> None:
    # the same fields in the same order with the same defaults, keywords only: a field added to or moved in
    # ports.py fails here, not silently in a session
    params = list(inspect.signature(build).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    values = {f.name: (i + 0.5 if i % 2 else i % 3 == 0) for i, f in enumerate(fields)}
    built = build(**values)
    assert type(built) is cls and built == cls(**values) and repr(built) == repr(cls(**values))
    assert all(getattr(built, k) is v for k, v in values.items())
    with pytest.raises(TypeError):
        build(**values, extra=1)
    with pytest.raises(TypeError):
        build()  # t has no default


def test_noise_in_blocks_is_the_same_stream() -> None:
    one, block = np.random.default_rng(7), np.random.default_rng(7)
    singles = [one.standard_normal() for _ in range(NOISE_BLOCK * 2 + 5)]
    blocks = [*block.standard_normal(NOISE_BLOCK).tolist(), *block.standard_normal(NOISE_BLOCK).tolist()]
    blocks += block.standard_normal(NOISE_BLOCK).tolist()[:5]
    assert singles == blocks
