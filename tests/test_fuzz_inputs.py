"""Fuzzed plan, rig and fault files (tracker issue 9, item 6): hypothesis writes TOML documents -- valid-ish ones
with random, boundary, wrong-typed, out-of-range and unit-slip values and unknown keys, and the example files
with their bytes flipped, cut, inserted into and made invalid UTF-8 -- and every one either loads as a model or
is refused with an ``InputError`` naming the file, within a time bound; ``plasmactl check`` on a sample of them
exits 0 or 2 and never with a traceback. A plan that loads keeps the hard caps.

``test_cli.py`` holds the hand-written bad inputs; this file only generates. The run counts are printed
(``pytest -s``). Each input is bounded to ``CASE_BUDGET_S`` by a SIGALRM timer and measured.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import signal
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.errors import MarkupError

from plasmactl.faults import KINDS, FaultScenario, load_faults
from plasmactl.inputs import InputError
from plasmactl.limits import Caps, fluence_j_cm2
from plasmactl.plan import MAX_SPOTS, Plan, load_plan
from plasmactl.rig import DEVICES, Rig, load_rig
from test_cli import all_output, invoke

pytestmark = pytest.mark.hazard("H12")

Kind = Literal["plan", "rig", "faults"]
Doc = dict[str, Any]

EXAMPLES = Path(__file__).parents[1] / "examples"
EXAMPLE_FILES: dict[Kind, list[Path]] = {
    "plan": sorted((EXAMPLES / "plans").glob("*.toml")),
    "rig": sorted((EXAMPLES / "rigs").glob("*.toml")),
    "faults": sorted((EXAMPLES / "faults").glob("*.toml")),
}
EXAMPLE_BYTES: dict[Path, bytes] = {p: p.read_bytes() for files in EXAMPLE_FILES.values() for p in files}
EXAMPLE_DOCS: dict[Kind, list[Doc]] = {
    k: [tomllib.loads(p.read_text("utf-8")) for p in v] for k, v in EXAMPLE_FILES.items()
}

CASE_BUDGET_S = 2.0  # per input: load (or refuse) within this, on a loaded 2-core machine
FUZZ = settings(
    deadline=None,  # the bound is ours (CASE_BUDGET_S), not hypothesis' per-example deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _load_plan(path: str) -> object:
    return load_plan(path)[0]


def _load_rig(path: str) -> object:
    return load_rig(path)[0]


def _load_faults(path: str) -> object:
    return load_faults(path)[0]


LOADERS: dict[Kind, Callable[[str], object]] = {"plan": _load_plan, "rig": _load_rig, "faults": _load_faults}


# ---------------------------------------------------------------------------------------------- bounds


class Hang(Exception):
    """An input took longer than its budget."""


@contextmanager
def bounded(seconds: float = CASE_BUDGET_S) -> Iterator[list[float]]:
    """Interrupt the block after ``seconds`` (SIGALRM) and fail if it took that long; yields [elapsed]."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    elapsed = [0.0]
    t0 = time.monotonic()
    try:
        yield elapsed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        elapsed[0] = time.monotonic() - t0
    assert elapsed[0] < seconds, f"took {elapsed[0]:.2f} s"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module's files (hypothesis runs many inputs per test: no function-scoped tmp_path)."""
    return tmp_path_factory.mktemp("fuzz-inputs")


@pytest.fixture(autouse=True)
def _leave_work_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing a loader or ``check`` might write lands in the checkout."""
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------------------------------- TOML writer

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_str(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_str(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # always with "." or an exponent: a TOML float
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    if path:
        lines.append(f"[{'.'.join(toml_key(p) for p in path)}]")
    for key, value in table.items():
        if not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _emit(lines, (*path, key), value)
    for key, value in table.items():
        if _is_table_array(value):
            for item in value:
                lines.append(f"[[{'.'.join(toml_key(p) for p in (*path, key))}]]")
                lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items())


def toml_doc(doc: Mapping[str, Any]) -> str:
    lines: list[str] = []
    _emit(lines, (), doc)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- values

TINY = [5e-324, 1e-320, 2.2250738585072014e-308, 1e-200, 1e-160, 1e-12, 1e-6]
HUGE = [1e300, 1.7976931348623157e308, 1e18, 2.0**63, 1e9]
SPECIAL = [0.0, -0.0, -1.0, 1.0, math.nan, math.inf, -math.inf]
CAPS = [
    Caps.MAX_ENERGY_J,
    Caps.MAX_FLUENCE_J_CM2,
    Caps.MAX_SPOT_DIAMETER_MM,
    Caps.MAX_PULSE_MS,
    Caps.MAX_COOLING_DELAY_MS,
    Caps.SKIN_TEMP_MAX_C,
    Caps.MAX_SESSION_S,
    Caps.READING_MAX_AGE_MS,
    Caps.MAX_PAUSE_S,
]
BOUNDARY_FLOATS = TINY + HUGE + SPECIAL + CAPS + [math.nextafter(c, math.inf) for c in CAPS]
# A file's code-looking text: it must stay plain data (or be refused), never run or be imported.
PYTHONISH = [
    "!!python/object/apply:os.system ['echo pwned']",
    "!!python/name:os.system",
    "__import__('os').system('echo pwned')",
    "os.system",
    "os:system",
    "plasmactl.simulators.devices:SimPlasma",
    "plasmactl.drivers.devices.ModbusPlasma",
    "builtins.eval",
    "cos\nsystem\n(S'echo pwned'\ntR.",
    "{{ config.__class__ }}",
    "$(echo pwned)",
]
VOCAB = sorted(
    {
        *DEVICES,
        *KINDS,
        *(kind for kinds in KINDS.values() for kind in kinds),
        "sim",
        "modbus-tcp",
        "modbus-rtu",
        "serial",
        "modbus_tcp",
        "@rtu",
        "@serial",
        "@tcp",
        "pulse",
        "spot",
        "layered1d",
        "N",
        "E",
        "O",
        "127.0.0.1:0",
        "0.0.0.0:5020",
        "[::1]:502",
        "[]:0",
        ":502",
        "localhost",
        "/dev/ttyUSB0",
        "socket://127.0.0.1:1",
        "0.3 mm",
        "4 J",
        "300um",
        "",
        " ",
    }
)

keys = st.one_of(
    st.sampled_from(["energy_mj", "spot_diameter_um", "enrgy_j", "__class__", "kind", "type", "import", "fault"]),
    st.text(min_size=1, max_size=12),
)
scalars: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(BOUNDARY_FLOATS),
    st.text(max_size=30),
    st.sampled_from(VOCAB + PYTHONISH),
    st.datetimes(),
    st.dates(),
    st.times(),
)
any_value: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)


def mutant_of(value: Any) -> st.SearchStrategy[Any]:
    """A replacement for ``value``: near it, a unit slip away, at a boundary, or of another type."""
    if isinstance(value, bool):
        return st.one_of(st.sampled_from([0, 1, "true", "yes"]), any_value)
    if isinstance(value, int | float):
        x = float(value)
        near: list[Any] = [x * 1000.0, x / 1000.0, -x, x * 1e6, x / 1e6]
        ints: list[Any] = [0, -1, 2**63, 10**30, -(2**63)]
        if math.isfinite(x):
            near += [math.nextafter(x, math.inf), math.nextafter(x, -math.inf), float(round(x))]
            ints += [int(x) + 1, int(x) * 1000]
        return st.one_of(
            st.sampled_from(near),
            st.sampled_from(TINY),  # each class of boundary its own branch: hypothesis picks branches evenly
            st.sampled_from(HUGE),
            st.sampled_from(SPECIAL),
            st.sampled_from(CAPS + [math.nextafter(c, math.inf) for c in CAPS]),
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from(ints),
            st.sampled_from([str(value), f"{value} mm", True]),
            any_value,
        )
    if isinstance(value, str):
        return st.one_of(
            st.sampled_from(VOCAB + PYTHONISH),
            st.text(max_size=40),
            st.just(value.upper()),
            st.just(value + "s"),
            st.just("x" * 5000),
            any_value,
        )
    if isinstance(value, list):
        return st.one_of(st.just([]), st.lists(any_value, max_size=5), st.just([value]), any_value)
    return st.one_of(st.just({}), any_value)


def _slots(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path to a value inside a document (keys of tables, indices of arrays)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _slots(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*path, i)
            yield from _slots(value, (*path, i))


def _tables(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from _tables(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _tables(value, (*path, i))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: Doc) -> Doc:
    """``base`` with 0-5 mutations: a number or another value replaced, a key dropped, an unknown key added."""
    doc: Doc = tomllib.loads(toml_doc(base))  # a deep copy (and a check of the writer)
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        action = draw(st.sampled_from(["number", "number", "number", "set", "drop", "unknown"]))
        if action == "unknown":
            table = _at(doc, draw(st.sampled_from(list(_tables(doc)))))
            table[draw(keys)] = draw(any_value)
            continue
        slots = list(_slots(doc))
        if action == "number":  # the values most mistakes are in
            slots = [p for p in slots if _is_number(_at(doc, p))] or slots
        if not slots:
            continue
        path = draw(st.sampled_from(slots))
        parent = _at(doc, path[:-1])
        if action == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(mutant_of(parent[path[-1]]))
    return doc


# ---------------------------------------------------------------------------------------------- documents

# rich markup in a name: `check` prints the name through rich (see the xfail test at the end)
MARKUP = ["[/]", "[bold red]x[/bold red]", "[link=file:///etc/passwd]plan[/link]"]
names = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(["scar", "full face", *PYTHONISH, *MARKUP]))


@st.composite
def good_plans(draw: st.DrawFn) -> Doc:
    """A plan that is usually valid: realistic sizes, a fluence within the cap, a session that fits."""
    diameter = draw(st.floats(min_value=0.1, max_value=6.0))
    spots: Doc
    if draw(st.booleans()):
        points = draw(
            st.lists(
                st.tuples(st.floats(min_value=-40, max_value=40), st.floats(min_value=-40, max_value=40)),
                min_size=1,
                max_size=8,
                unique=True,
            )
        )
        spots = {"points": [list(p) for p in points], "spot_diameter_mm": diameter}
    else:
        grid: Doc = {
            "width_mm": draw(st.floats(min_value=0.5, max_value=15.0)),
            "height_mm": draw(st.floats(min_value=0.5, max_value=15.0)),
            "spot_diameter_mm": diameter,
        }
        if draw(st.booleans()):
            grid["spacing_mm"] = diameter * draw(st.floats(min_value=1.0, max_value=4.0))
        else:
            grid["density_pct"] = draw(st.floats(min_value=1.0, max_value=78.5))
        spots = {"grid": grid}
    area_cm2 = fluence_j_cm2(1.0, diameter) ** -1
    energy = min(draw(st.floats(min_value=0.5, max_value=25.0)) * area_cm2, Caps.MAX_ENERGY_J)
    pulse: Doc = {
        "energy_j": energy,
        "pulse_ms": draw(st.floats(min_value=0.5, max_value=50.0)),
        "pulses_per_spot": draw(st.integers(min_value=1, max_value=3)),
        "interval_s": draw(st.floats(min_value=0.06, max_value=2.0)),
    }
    cooling: Doc = {
        "spray_ms": draw(st.floats(min_value=20.0, max_value=300.0)),
        "when": draw(st.sampled_from(["pulse", "spot"])),
    }
    doc: Doc = {"name": draw(names), "spots": spots, "pulse": pulse, "cooling": cooling}
    if draw(st.booleans()):
        doc["limits"] = {
            "max_cooling_delay_ms": draw(st.floats(min_value=50.0, max_value=1000.0)),
            "skin_temp_max_c": draw(st.floats(min_value=37.0, max_value=43.0)),
        }
    return doc


@st.composite
def good_rigs(draw: st.DrawFn) -> Doc:
    """An example rig, or in-process simulators with random timing."""
    if draw(st.booleans()):
        return draw(st.sampled_from(EXAMPLE_DOCS["rig"]))
    doc: Doc = {}
    for device in draw(st.lists(st.sampled_from(DEVICES), min_size=1, max_size=4, unique=True)):
        watchdog = draw(st.floats(min_value=300.0, max_value=2000.0))
        doc[device] = {
            "kind": "sim",
            "timeout_ms": draw(st.floats(min_value=1.0, max_value=60.0)),
            "watchdog_ms": watchdog,
            "poll_ms": draw(st.floats(min_value=10.0, max_value=watchdog / 3)),
        }
    return doc


@st.composite
def good_faults(draw: st.DrawFn) -> Doc:
    """0-4 faults of known devices and kinds, with a value or a target where the kind needs one."""
    faults: list[Doc] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        device = draw(st.sampled_from(sorted(KINDS)))
        kind = draw(st.sampled_from(sorted(KINDS[device])))
        fault: Doc = {"device": device, "kind": kind}
        if draw(st.booleans()):
            fault["at_s"] = draw(st.floats(min_value=0.0, max_value=100.0))
        else:
            fault["after_pulses"] = draw(st.integers(min_value=1, max_value=10))
        if KINDS[device][kind][0]:
            fault["value"] = draw(st.floats(min_value=0.0, max_value=200.0))
        if device == "link":
            fault["target"] = draw(st.sampled_from(DEVICES))
        if draw(st.booleans()):
            fault["duration_s"] = draw(st.floats(min_value=0.1, max_value=30.0))
        faults.append(fault)
    doc: Doc = {"name": draw(names)}
    if faults:
        doc["fault"] = faults
    return doc


GOOD: dict[Kind, Callable[[], st.SearchStrategy[Doc]]] = {"plan": good_plans, "rig": good_rigs, "faults": good_faults}


def documents(kind: Kind) -> st.SearchStrategy[str]:
    """TOML text of a valid-ish document of ``kind``: a good one mutated 0-4 times."""
    return GOOD[kind]().flatmap(mutated).map(toml_doc)


# ---------------------------------------------------------------------------------------------- raw bytes

NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][+-]?\d+)?")
NUMBER_TEXT = [b"1e999", b"-0", b"nan", b"-inf", b"0x10", b"1_000", b"5e-324", b"1e-200", b"00", b"1.", b".5", b"+1"]
SNIPPETS = [
    b"\xff",
    b"\xc3(",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b"\xef\xbb\xbf",
    b"\x00",
    b"\r",
    b"\n[plasma]\n",
    b"\n[[fault]]\n",
    b'"',
    b"'''",
    b"[",
    b"]",
    b"=",
    b"#",
    b"\\u0000",
    b"\nx = \"__import__('os')\"\n",
    b"\ndeep = " + b"[" * 600 + b"]" * 600 + b"\n",
    b"\ndeep = " + b"{a=" * 400 + b"1" + b"}" * 400 + b"\n",
]


@st.composite
def mutated_bytes(draw: st.DrawFn, only: Kind | None = None) -> tuple[Kind, str, bytes]:
    """An example file with 1-4 byte-level mutations: which loader, which file, the bytes."""
    kind: Kind = only if only is not None else draw(st.sampled_from(["plan", "rig", "faults"]))
    path = draw(st.sampled_from(EXAMPLE_FILES[kind]))
    data = bytearray(EXAMPLE_BYTES[path])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(
            st.sampled_from(["flip", "byte", "delete", "insert", "line", "binary", "truncate", "duplicate", "number"])
        )
        i = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if op == "line":  # a snippet at the start of a line (not lost inside a comment or a string)
            starts = [0] + [m.end() for m in re.finditer(rb"\n", data)]
            i, op = draw(st.sampled_from(starts)), "insert"
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "byte" and data:
            data[i] = draw(st.integers(min_value=0, max_value=255))
        elif op == "delete":
            del data[i : i + draw(st.integers(min_value=1, max_value=40))]
        elif op == "insert":
            data[i:i] = draw(st.sampled_from(SNIPPETS))
        elif op == "binary":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del data[i:]
        elif op == "duplicate":
            j = draw(st.integers(min_value=0, max_value=len(data)))
            data[j:j] = data[i : i + draw(st.integers(min_value=1, max_value=80))]
        elif op == "number":
            numbers = list(NUMBER.finditer(data))
            if numbers:
                m = draw(st.sampled_from(numbers))
                data[m.start() : m.end()] = draw(st.sampled_from(NUMBER_TEXT))
    return kind, path.name, bytes(data)


# ---------------------------------------------------------------------------------------------- checks


def assert_plan_keeps_the_caps(plan: Plan) -> None:
    lim, p = plan.limits, plan.pulse
    assert 0 < p.energy_j <= lim.max_energy_j <= Caps.MAX_ENERGY_J
    assert plan.fluence_j_cm2 <= lim.max_fluence_j_cm2 <= Caps.MAX_FLUENCE_J_CM2
    assert plan.cooling.spray_ms >= Caps.MIN_SPRAY_MS
    # and so is every pulse the energy check accepts (the setting x (1 + tolerance))
    assert fluence_j_cm2(lim.energy_limit_j(p.energy_j), plan.spots.diameter_mm) <= lim.max_fluence_j_cm2
    assert 0 < plan.spots.diameter_mm <= Caps.MAX_SPOT_DIAMETER_MM
    assert 0 < p.pulse_ms <= lim.max_pulse_ms <= Caps.MAX_PULSE_MS
    assert 0 < plan.spots.count <= MAX_SPOTS and plan.pulse_count > 0
    assert plan.estimated_session_s() <= lim.max_session_s <= Caps.MAX_SESSION_S
    assert lim.max_cooling_delay_ms <= Caps.MAX_COOLING_DELAY_MS and lim.skin_temp_max_c <= Caps.SKIN_TEMP_MAX_C
    for value in (p.energy_j, p.pulse_ms, p.interval_s, plan.cooling.spray_ms, plan.spots.diameter_mm):
        assert math.isfinite(value)


def assert_rig_is_consistent(rig: Rig) -> None:
    for device in DEVICES:
        timing = rig.timing(device)
        assert 0 < timing.timeout_ms < timing.watchdog_ms and 0 < timing.poll_ms < timing.watchdog_ms
        assert math.isfinite(timing.watchdog_ms)


def assert_faults_are_consistent(scenario: FaultScenario) -> None:
    for fault in scenario.fault:
        assert fault.kind in KINDS[fault.device]
        assert (fault.at_s is None) != (fault.after_pulses is None)
        assert (fault.target is not None) == (fault.device == "link")


INVARIANTS: dict[Kind, Callable[[Any], None]] = {
    "plan": assert_plan_keeps_the_caps,
    "rig": assert_rig_is_consistent,
    "faults": assert_faults_are_consistent,
}


class Tally:
    """Run counts of one test: accepted, refused (and why), the slowest input."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.counts: Counter[str] = Counter()
        self.slowest_s = 0.0

    def time(self, elapsed_s: float) -> None:
        self.slowest_s = max(self.slowest_s, elapsed_s)

    def report(self) -> str:
        total = sum(v for k, v in self.counts.items() if k in ("accepted", "refused"))
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        line = f"[fuzz] {self.what}: {total} inputs: {detail}; slowest {self.slowest_s * 1000:.1f} ms"
        print(line)
        return line


def load_or_refuse(kind: Kind, path: Path, tally: Tally) -> object | None:
    """The model, or None for an ``InputError`` that names the file (any other exception fails the test)."""
    source, problems = "", []
    with bounded() as elapsed:
        try:
            model = LOADERS[kind](str(path))
        except InputError as exc:
            model, source, problems = None, exc.source, exc.problems
    tally.time(elapsed[0])
    if model is None:
        assert source == str(path)
        assert problems and all(p.strip() for p in problems), problems
        first = problems[0]
        why = "not UTF-8" if first.startswith("not UTF-8") else "not TOML" if first.startswith("not valid") else "model"
        tally.counts["refused"] += 1
        tally.counts[f"refused: {why}"] += 1
        return None
    tally.counts["accepted"] += 1
    INVARIANTS[kind](model)
    return model


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("kind", "examples"), [("plan", 250), ("rig", 200), ("faults", 200)])
def test_generated_documents_load_or_are_refused(kind: Kind, examples: int, work: Path) -> None:
    tally = Tally(f"generated {kind} files")
    path = work / f"generated-{kind}.toml"

    @settings(FUZZ, max_examples=examples)
    @given(text=documents(kind))
    def one(text: str) -> None:
        tomllib.loads(text)  # the writer writes TOML: a refusal below is the model's, not the syntax's
        path.write_text(text, encoding="utf-8")
        load_or_refuse(kind, path, tally)

    one()
    tally.report()
    assert tally.counts["accepted"] > 0 and tally.counts["refused"] > 0, tally.counts


def test_mutated_example_bytes_load_or_are_refused(work: Path) -> None:
    tally = Tally("mutated example files")

    @settings(FUZZ, max_examples=400)
    @given(case=mutated_bytes())
    def one(case: tuple[Kind, str, bytes]) -> None:
        kind, name, data = case
        path = work / f"mutated-{name}"
        path.write_bytes(data)
        load_or_refuse(kind, path, tally)

    one()
    tally.report()
    assert tally.counts["refused: not UTF-8"] > 0 and tally.counts["refused: not TOML"] > 0, tally.counts


def _check_known_defect(result_exception: BaseException | None, plan_path: Path) -> bool:
    """``check`` on a plan whose pulse_ms / 1000 underflows to 0 divides by it (see the xfail test below)."""
    if not isinstance(result_exception, ZeroDivisionError):
        return False
    try:
        plan = load_plan(str(plan_path))[0]
    except InputError:
        return False
    return plan.pulse.pulse_ms / 1000.0 == 0.0


@st.composite
def check_cases(draw: st.DrawFn) -> dict[str, bytes]:
    """A plan, and maybe a rig and a fault file: each generated, or a mutated example."""

    def one(kind: Kind) -> bytes:
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            return draw(st.sampled_from(EXAMPLE_FILES[kind])).read_bytes()
        if draw(st.booleans()):
            return draw(documents(kind)).encode("utf-8")
        return draw(mutated_bytes(kind))[2]

    files = {"plan.toml": one("plan")}
    if draw(st.booleans()):
        files["rig.toml"] = one("rig")
    if draw(st.booleans()):
        files["faults.toml"] = one("faults")
    return files


def test_check_exits_0_or_2_and_names_the_file(work: Path) -> None:
    tally = Tally("plasmactl check on generated inputs")
    folder = work / "check"
    folder.mkdir()

    @settings(FUZZ, max_examples=120)
    @given(files=check_cases())
    def one(files: dict[str, bytes]) -> None:
        for stale in folder.iterdir():
            stale.unlink()
        paths = {name: folder / name for name in files}
        for name, data in files.items():
            paths[name].write_bytes(data)
        args = ["check", str(paths["plan.toml"])]
        if "rig.toml" in paths:
            args += ["--rig", str(paths["rig.toml"])]
        if "faults.toml" in paths:
            args += ["--faults", str(paths["faults.toml"])]
        with bounded() as elapsed:
            result = invoke(args)
        tally.time(elapsed[0])
        text = all_output(result)
        if result.exit_code == 1 and _check_known_defect(result.exception, paths["plan.toml"]):
            tally.counts["known defect: pulse_ms underflow"] += 1
            return
        if result.exit_code == 1 and isinstance(result.exception, MarkupError):
            tally.counts["known defect: markup in a name"] += 1
            return
        assert result.exit_code in (0, 2), f"exit {result.exit_code} ({result.exception!r}): {text}"
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in text
        if result.exit_code == 0:
            tally.counts["accepted"] += 1
            assert text.startswith("ok: plan"), text
            assert_plan_keeps_the_caps(load_plan(str(paths["plan.toml"]))[0])
            return
        tally.counts["refused"] += 1
        head = re.search(r"error: (.*?): - ", text)
        assert head is not None, text
        source = head.group(1)
        # the file the problem is in, or the plan-on-rig combination (its cooling budget)
        assert any(str(p) in source for p in paths.values()), text

    one()
    tally.report()
    assert tally.counts["accepted"] > 0 and tally.counts["refused"] > 0, tally.counts


# ---------------------------------------------------------------------------------------------- what the fuzzing found

PLAN_HEAD = 'name = "x"\n[pulse]\nenergy_j = 0.06\npulse_ms = 5.0\n[cooling]\nspray_ms = 150.0\n'
FOUND = [
    # tomllib recurses once per nesting level: 600 nested arrays raised RecursionError out of the loader
    pytest.param("plan", 'name = "x"\ndeep = ' + "[" * 600 + "]" * 600 + "\n", "not valid TOML", id="nested-arrays"),
    pytest.param("rig", "[plasma]\nx = " + "{a=" * 400 + "1" + "}" * 400 + "\n", "not valid TOML", id="nested-tables"),
    # a spot diameter whose area underflows to 0: the fluence check divided by zero (ZeroDivisionError)
    pytest.param(
        "plan",
        PLAN_HEAD + "[spots]\npoints = [[0.0, 0.0]]\nspot_diameter_mm = 1e-200\n",
        "cannot be checked",
        id="spot-diameter-underflow",
    ),
    pytest.param(
        "plan",
        PLAN_HEAD + "[spots.grid]\nwidth_mm = 1.0\nheight_mm = 1.0\ndensity_pct = 5e-324\nspot_diameter_mm = 0.3\n",
        "cannot be checked",
        id="grid-density-underflow",
    ),
    # a grid whose column count is infinite: math.floor(inf) raised OverflowError
    pytest.param(
        "plan",
        PLAN_HEAD + "[spots.grid]\nwidth_mm = 20.0\nheight_mm = 8.0\nspacing_mm = 5e-324\nspot_diameter_mm = 0.3\n",
        "cannot be checked",
        id="grid-count-overflow",
    ),
]


@pytest.mark.parametrize(("kind", "text", "expect"), FOUND)
def test_inputs_the_fuzzing_found_are_refused(kind: Kind, text: str, expect: str, work: Path) -> None:
    path = work / f"found-{kind}.toml"
    path.write_text(text, encoding="utf-8")
    with bounded(), pytest.raises(InputError) as info:
        LOADERS[kind](str(path))
    assert info.value.source == str(path)
    assert expect in "; ".join(info.value.problems), info.value.problems
    result = invoke(
        ["check", str(path)] if kind == "plan" else ["check", str(EXAMPLE_FILES["plan"][0]), "--rig", str(path)]
    )
    assert result.exit_code == 2, all_output(result)
    assert f"error: {path}:" in all_output(result)


def test_check_of_a_subnormal_pulse_length_exits_2(work: Path) -> None:
    path = work / "subnormal-pulse.toml"
    path.write_text(
        PLAN_HEAD.replace("pulse_ms = 5.0", "pulse_ms = 5e-324") + "[spots]\npoints = [[0.0, 0.0]]\n"
        "spot_diameter_mm = 1.5\n",
        encoding="utf-8",
    )
    result = invoke(["check", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 2, all_output(result)


@pytest.mark.parametrize("where", ["plan", "rig"])
def test_a_name_with_markup_is_shown_verbatim(where: str, work: Path) -> None:
    plan = work / "markup-plan.toml"
    rig = work / "markup-rig.toml"
    name = "[/]x[bold]"
    plan.write_text(toml_doc({**EXAMPLE_DOCS["plan"][-1], **({"name": name} if where == "plan" else {})}), "utf-8")
    rig.write_text(toml_doc({"name": name, "plasma": {"kind": "sim"}}), encoding="utf-8")
    args = ["check", str(plan)] + (["--rig", str(rig)] if where == "rig" else [])
    result = invoke(args)
    assert result.exit_code == 0, f"{result.exception!r}: {all_output(result)}"
    assert name in all_output(result)
