"""Exposure (tracker issue 9, item 7): the served simulators bind loopback unless told otherwise; no code or
pickle is ever loaded from a file; a device whose identity does not match is refused.

(a) ``serve-sim`` with no transport serves Modbus TCP on 127.0.0.1:5020 (and nothing on any other address);
a rig's ``[serve]`` serves TCP only where its ``modbus_tcp = "HOST:PORT"`` says (no default), and the devices'
``host`` defaults to 127.0.0.1; what is reported is where it listens. ``"[]:PORT"`` used to bind every
interface (an empty host): it is refused now.

(b) An AST scan of src/, drivers/ and simulators/ finds no pickle, marshal, shelve, eval, exec, compile,
``__import__``, ``importlib.import_module`` of a computed name, unsafe ``yaml.load`` or pydantic ``ImportString``
(the scanner is itself tested on code that has each). Not in the scan's reach, and not loading from a file:
``plasmactl.parallel`` pickles jobs to its worker processes (ProcessPoolExecutor / dask), and the rig's serial
``port`` is a pyserial URL (``socket://``, ``rfc2217://``: pyserial picks its handler module by the scheme, from
its own package). Plan, rig and fault files whose strings look like code, YAML ``!!python`` tags or a pickle
stay plain data or are refused, and nothing they name is run.

(c) Identity mismatches are already refused in: ``test_drivers_modbus.py::test_identity_mismatch_refuses``
(vendor, model, map version against a plain server), ``test_rig_mistakes.py::test_swapped_unit_ids_name_the_
device_found``, ``test_drivers_serial.py::test_identity_mismatch`` and ``::test_open_devices_refuses_and_cleans_
up`` (the thermometer), and ``test_cli.py::test_unreachable_device_refuses_the_session`` (the session's
``self_test_failed`` path). Here a generative variant: a random wrong vendor, model or map version in a served
device's identity (or in the rig's expectation of it) refuses the whole session before anything is armed:
exit 3, ``self_test_failed``, no pulse, no ARM or FIRE ever written.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import ipaddress
import json
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import PLASMA, SPRAY, VENDOR_ID
from plasmactl.events import read_events
from plasmactl.faults import load_faults
from plasmactl.inputs import InputError
from plasmactl.plan import load_plan
from plasmactl.rig import ModbusTcp, Rig, ServeSim, load_rig, parse_host_port
from plasmactl.simulators.served import ServedThermometer, serve_sim_main
from plasmactl.simulators.served_units import ServedPlasma, ServedSpray
from plasmactl.spawn import serve_args
from test_cli import EXAMPLES, SHORT, all_output, invoke

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
SOURCE_DIRS = ("src", "drivers", "simulators")
EXIT_SAFE_STOP = 3

H12 = pytest.mark.hazard("H12")
H13 = pytest.mark.hazard("H13")


# ============================================================================================== (a) binding


def _loopback(host: str) -> bool:
    return ipaddress.ip_address(host.split("%")[0]).is_loopback


def _outside_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if _loopback(address) else address


def _listening(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                hex_address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(hex_address)
                # the kernel prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append(socket.inet_ntop(family, raw))
    return found


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


# serve-sim with no transport, on the default's host but a free port: the test needs no fixed port to be free
_NO_TRANSPORT = """
import sys
from plasmactl.simulators import served
served.DEFAULT_MODBUS_TCP = served.DEFAULT_MODBUS_TCP.rsplit(":", 1)[0] + ":0"
sys.exit(served.serve_sim_main(json_output=True, lifeline=True))
"""


@H13
@pytest.mark.subprocess
def test_serve_sim_with_no_transport_listens_on_loopback_only() -> None:
    """The documented default (``serve_sim_main``: "serves Modbus TCP on 127.0.0.1:5020"), for real: the
    default's host, on a port the kernel picks (so that another run holding 5020 does not matter)."""
    from plasmactl.simulators.served import DEFAULT_MODBUS_TCP

    assert DEFAULT_MODBUS_TCP == "127.0.0.1:5020"
    proc = subprocess.Popen(
        [sys.executable, "-c", _NO_TRANSPORT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        report = json.loads(proc.stdout.readline())
        tcp = report["modbus_tcp"]
        port = tcp["port"]
        assert tcp["host"] == "127.0.0.1" and port > 0 and "serial" in report, report
        addresses = _listening(port)
        assert addresses and all(_loopback(a) for a in addresses), addresses
        outside = _outside_address()
        if outside is not None:
            assert _refused(outside, port), f"reachable on {outside}:{port}"
        assert not _refused("127.0.0.1", port)
        proc.stdin.close()  # the lifeline: the server stops
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@H13
def test_serve_sim_help_offers_no_wildcard_address() -> None:
    result = invoke(["serve-sim", "--help"])
    text = all_output(result)
    assert result.exit_code == 0 and "--modbus-tcp" in text and "HOST:PORT" in text
    assert "0.0.0.0" not in text and "[::]" not in text


@H13
def test_serve_sim_help_names_its_default_address() -> None:
    assert "127.0.0.1:5020" in all_output(invoke(["serve-sim", "--help"]))


@H13
def test_a_rig_serves_tcp_only_where_it_says() -> None:
    # no [serve] modbus_tcp: the spawned serve-sim is told a transport, so it serves no TCP at all
    for serve in (ServeSim(serial=True), ServeSim(modbus_rtu=True), ServeSim(modbus_rtu=True, serial=True)):
        assert serve.modbus_tcp is None and "--modbus-tcp" not in serve_args(serve, 0), serve
    # where it says, exactly that (the examples all say loopback)
    assert serve_args(ServeSim(modbus_tcp="127.0.0.1:0"), 0)[-2:] == ["--modbus-tcp", "127.0.0.1:0"]
    for path in sorted((EXAMPLES / "rigs").glob("*.toml")):
        rig, _ = load_rig(str(path))
        if rig.serve is not None and rig.serve.modbus_tcp is not None:
            assert _loopback(parse_host_port(rig.serve.modbus_tcp)[0]), path
    # a device's host defaults to loopback
    assert ModbusTcp(kind="modbus-tcp", unit_id=1).host == "127.0.0.1"


@H13
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
async def test_served_tcp_listens_where_told_and_reports_it(host: str) -> None:
    try:
        async with _served_tcp(host) as sim:
            assert sim.modbus_tcp is not None
            assert _loopback(sim.modbus_tcp.host), sim.modbus_tcp
            assert sim._tcp is not None and sim._tcp._server is not None
            bound = [s.getsockname()[0] for s in sim._tcp._server.sockets]
            assert bound and all(_loopback(a) for a in bound), bound
            outside = _outside_address()
            if outside is not None:
                assert _refused(outside, sim.modbus_tcp.port), f"{host}: reachable on {outside}"
    except OSError as exc:  # a machine without IPv6: ::1 cannot be served, and nothing is served instead
        if host != "::1" or exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise


@contextlib.asynccontextmanager
async def _served_tcp(host: str) -> Any:
    from plasmactl.faults import FaultScenario
    from plasmactl.simulators.served import serve

    sim = await serve(Rig(), FaultScenario(), seed=1, modbus_tcp=(host, 0))
    try:
        yield sim
    finally:
        await sim.stop()


@H13
async def test_a_wildcard_bind_is_explicit_and_reported_as_such() -> None:
    """Told 0.0.0.0 it listens on every interface, and its report says 0.0.0.0 (not a comforting 127.0.0.1)."""
    async with _served_tcp("0.0.0.0") as sim:
        assert sim.modbus_tcp is not None and sim.modbus_tcp.host == "0.0.0.0"
        assert sim.as_json()["modbus_tcp"]["host"] == "0.0.0.0"


@H13
@pytest.mark.parametrize("text", ["[]:5020", "[]:0", ":5020", "[[]]:0", "127.0.0.1:²", "h:" + "9" * 5000, "h:65536"])
def test_an_address_without_a_host_is_refused(text: str, tmp_path: Path) -> None:
    """Found here: ``"[]:PORT"`` parsed as host "" and ``asyncio.start_server("")`` binds every interface
    (0.0.0.0 and ::). Now refused, in the rig and by serve-sim (exit 2), with a message naming the text."""
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_host_port(text)
    rig = tmp_path / "rig.toml"
    rig.write_text(f'[serve]\nmodbus_tcp = "{text}"\n[plasma]\nkind = "sim"\n', encoding="utf-8")
    with pytest.raises(InputError, match="expected HOST:PORT"):
        load_rig(str(rig))
    err = io.StringIO()
    assert serve_sim_main(modbus_tcp=text, err=err) == 2
    assert "expected HOST:PORT" in err.getvalue()


@H13
@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=30), st.from_regex(r"\[?[a-z0-9:.\[\]]{0,12}\]?:[0-9²]{0,7}", fullmatch=True)))
def test_any_accepted_address_names_a_host_and_a_port(text: str) -> None:
    try:
        host, port = parse_host_port(text)
    except ValueError:
        return
    assert host and host.strip("[]") == host and 0 <= port <= 65535, (text, host, port)


# ============================================================================================== (b) no code from files

FORBIDDEN_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "joblib",
    "runpy",
    "code",
    "codeop",
}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__", "execfile"}
IMPORTLIB_LOADERS = {"spec_from_file_location", "module_from_spec", "exec_module", "load_module", "SourceFileLoader"}
YAML_SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}
# "path: finding" -> why it is allowed (none is)
ALLOWED: dict[str, str] = {}


def _literal_str(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def scan(source: str, name: str) -> list[str]:
    """What in ``source`` could load code or a pickle: one line each."""
    findings: list[str] = []
    tree = ast.parse(source, name)
    import_module_names = {"import_module"}
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            findings += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in FORBIDDEN_MODULES:
                findings.append(f"{where}: from {module} import ...")
            for alias in node.names:
                if alias.name == "import_module":
                    import_module_names.add(alias.asname or alias.name)
                if alias.name in IMPORTLIB_LOADERS | {"ImportString", "unsafe_load", "full_load"}:
                    findings.append(f"{where}: from {module} import {alias.name}")
        elif isinstance(node, ast.Name | ast.Attribute):
            ident = node.id if isinstance(node, ast.Name) else node.attr
            if ident == "ImportString":
                findings.append(f"{where}: pydantic ImportString (imports the string it validates)")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        first = node.args[0] if node.args else None
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if isinstance(func, ast.Name):
            if func.id in FORBIDDEN_BUILTINS:
                findings.append(f"{where}: {func.id}()")
            if func.id in import_module_names and not _literal_str(first):
                findings.append(f"{where}: {func.id}() of a computed name")
            continue
        if not isinstance(func, ast.Attribute):
            continue
        owner = func.value.id if isinstance(func.value, ast.Name) else ""
        if owner in ("builtins", "__builtins__") and func.attr in FORBIDDEN_BUILTINS:
            findings.append(f"{where}: {owner}.{func.attr}()")
        if func.attr == "import_module" and not _literal_str(first):
            findings.append(f"{where}: {owner}.import_module() of a computed name")
        if func.attr in IMPORTLIB_LOADERS:
            findings.append(f"{where}: {owner}.{func.attr}()")
        if owner == "yaml" and func.attr in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
            findings.append(f"{where}: yaml.{func.attr}()")
        if owner == "yaml" and func.attr in ("load", "load_all"):
            loader = keywords.get("Loader", node.args[1] if len(node.args) > 1 else None)
            loader_name = (
                loader.attr if isinstance(loader, ast.Attribute) else loader.id if isinstance(loader, ast.Name) else ""
            )
            if loader_name not in YAML_SAFE_LOADERS:
                findings.append(f"{where}: yaml.{func.attr}() without a safe Loader")
        allow = keywords.get("allow_pickle")
        if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
            findings.append(f"{where}: {owner}.{func.attr}(allow_pickle=...)")
        if func.attr in ("read_pickle", "to_pickle") or (owner == "torch" and func.attr == "load"):
            findings.append(f"{where}: {owner}.{func.attr}()")
    return findings


UNSAFE_SAMPLE = """
import pickle
import marshal as m
from shelve import open as shelf
import yaml, importlib
from importlib import import_module as im
from pydantic import ImportString
eval(text)
exec(code)
compile(src, "f", "exec")
__import__(name)
builtins.exec(x)
importlib.import_module(config["module"])
im(name)
importlib.util.spec_from_file_location("m", path)
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
yaml.unsafe_load(text)
numpy.load(path, allow_pickle=True)
pandas.read_pickle(path)
torch.load(path)
"""
SAFE_SAMPLE = """
import json, re, importlib, yaml
importlib.import_module("json")
re.compile("x")
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
numpy.load(path, allow_pickle=False)
json.loads(text)
ast.literal_eval(text)
"""


@H12
def test_the_scanner_finds_each_way_of_loading_code() -> None:
    found = scan(UNSAFE_SAMPLE, "sample.py")
    flagged = {int(f.split(":")[1]) for f in found}
    harmless = ("import yaml", "from importlib import")  # the imports alone load nothing
    expected = {n for n, line in enumerate(UNSAFE_SAMPLE.splitlines(), 1) if line and not line.startswith(harmless)}
    assert flagged == expected and len(found) == len(expected), "\n".join(found)
    assert scan(SAFE_SAMPLE, "safe.py") == []


def _sources() -> Iterator[Path]:
    for folder in SOURCE_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))


@H12
def test_no_code_or_pickle_is_loaded_anywhere_in_the_product() -> None:
    files = list(_sources())
    assert len(files) > 40, files  # the scan reached the package
    findings = []
    for path in files:
        rel = path.relative_to(REPO)
        for finding in scan(path.read_text(encoding="utf-8"), str(rel)):
            key = f"{rel}: {finding.split(': ', 1)[1]}"
            if key not in ALLOWED:
                findings.append(finding)
    print(f"[exposure] scanned {len(files)} files under {', '.join(SOURCE_DIRS)}: {len(findings)} findings")
    assert not findings, "\n".join(findings)


# ---------------------------------------------------------------------------------------------- code-looking data


def payloads(sentinel: Path) -> list[str]:
    touch = f"open({str(sentinel)!r}, 'w')"
    return [
        f"!!python/object/apply:builtins.open [{str(sentinel)!r}, 'w']",
        "!!python/name:os.system",
        f"__import__('builtins').{touch}",
        f"{{{{ {touch} }}}}",
        "plasmactl.simulators.devices:SimPlasma",
        "os.system",
        f"$(touch {sentinel})",
        f"cbuiltins\nopen\n(V{sentinel}\nVw\ntR.",
    ]


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


PLAN = SHORT.read_text(encoding="utf-8")
RIG_RTU = (EXAMPLES / "rigs" / "sim-rtu.toml").read_text(encoding="utf-8")
FAULT = (EXAMPLES / "faults" / "safety-estop.toml").read_text(encoding="utf-8")
# (loader, base text, the line replaced, its new value's key): string fields of each kind of file
STRING_FIELDS: list[tuple[str, Callable[[str], Any], str, str]] = [
    ("plan name", load_plan, PLAN, "name"),
    ("plan description", load_plan, PLAN, "description"),
    ("plan cooling.when", load_plan, PLAN, "when"),
    ("rig name", load_rig, RIG_RTU, "name"),
    ("rig plasma.kind", load_rig, RIG_RTU, "kind"),
    ("rig plasma.port", load_rig, RIG_RTU, "port"),
    ("fault device", load_faults, FAULT, "device"),
    ("fault kind", load_faults, FAULT, "kind"),
]


def _replace_first(text: str, key: str, value: str) -> str:
    new, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {_toml_str(value)}", text, count=1)
    assert n == 1, key
    return new


def _strings(model: Any) -> Iterator[str]:
    dumped = model.model_dump(mode="python")

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from walk(v)

    return walk(dumped)


@H12
@pytest.mark.parametrize(("what", "loader", "base", "key"), STRING_FIELDS, ids=[f[0] for f in STRING_FIELDS])
def test_code_looking_strings_stay_data_or_are_refused(
    what: str, loader: Callable[[str], Any], base: str, key: str, tmp_path: Path
) -> None:
    sentinel = tmp_path / "pwned"
    kept = refused = 0
    for payload in payloads(sentinel):
        path = tmp_path / "file.toml"
        path.write_text(_replace_first(base, key, payload), encoding="utf-8")
        try:
            model, _ = loader(str(path))
        except InputError as exc:
            assert exc.source == str(path) and exc.problems
            refused += 1
        else:
            assert payload in set(_strings(model)), f"{what}: {payload!r} not kept verbatim"
            kept += 1
        assert not sentinel.exists(), f"{what}: {payload!r} ran"
    print(f"[exposure] {what}: {kept} kept as text, {refused} refused")


class _Touch:
    """Unpickling this creates ``path`` (what a pickle loaded from a file could do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@H12
@pytest.mark.parametrize("loader", [load_plan, load_rig, load_faults], ids=["plan", "rig", "faults"])
@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_or_a_yaml_tag_given_as_a_file_is_refused(
    loader: Callable[[str], Any], protocol: int, tmp_path: Path
) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "input.toml"
    contents = [
        pickle.dumps(_Touch(sentinel), protocol=protocol),  # protocol 0 is ASCII: it reaches the TOML parser
        b"name: !!python/object/apply:builtins.open ['" + str(sentinel).encode() + b"', 'w']\n",
        b"energy_j = !!python/object/apply:builtins.open ['" + str(sentinel).encode() + b"', 'w']\n",
        f"import builtins\nbuiltins.open({str(sentinel)!r}, 'w')\n".encode(),
    ]
    for data in contents:
        path.write_bytes(data)
        with pytest.raises(InputError) as info:
            loader(str(path))
        assert info.value.source == str(path)
        assert info.value.problems[0].startswith(("not UTF-8", "not valid TOML")), info.value.problems
        assert not sentinel.exists()


# ============================================================================================== (c) identity

TCP_RIG = (EXAMPLES / "rigs" / "sim-tcp-inprocess.toml").read_text(encoding="utf-8")
RTU_RIG = (EXAMPLES / "rigs" / "sim-rtu-inprocess.toml").read_text(encoding="utf-8")
MODBUS_IDENTITY = {"vendor": VENDOR_ID, "map_version": 1}
THERMOMETER_IDENTITY = {"vendor": lineproto.VENDOR, "model": lineproto.MODEL, "map_version": lineproto.MAP_VERSION}
REGISTER = {"vendor": "VENDOR", "model": "MODEL", "map_version": "MAP_VERSION"}


@st.composite
def mismatches(draw: st.DrawFn) -> tuple[str, str, str, Any, str]:
    """(where the mismatch is: served | rig, device, field, the wrong value, transport)."""
    side = draw(st.sampled_from(["served", "rig"]))
    device = draw(
        st.sampled_from(["plasma", "spray", "thermometer"] if side == "served" else ["plasma", "spray", "safety"])
    )
    field = draw(st.sampled_from(["vendor", "model", "map_version"]))
    transport = draw(st.sampled_from(["tcp", "rtu"]))
    value: Any
    if device == "thermometer":
        text = THERMOMETER_IDENTITY[field]
        value = draw(
            st.text(
                st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=",*$"), max_size=10
            ).filter(lambda v: v != text)
        )
    else:
        dmap = SPRAY if device == "spray" else PLASMA
        number = dmap.model if field == "model" else MODBUS_IDENTITY[field]
        value = draw(st.integers(0, 0xFFFF).filter(lambda v: v != number))
    return side, device, field, value, transport


@contextlib.contextmanager
def _restored_signals() -> Iterator[None]:
    """``plasmactl run`` ignores SIGINT and SIGTERM once its session is over: give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _served_identity(device: str | None, field: str, value: Any) -> Iterator[list[dict[str, int]]]:
    """The served ``device`` (None: none) reports ``value`` for ``field``; yields every write the generator
    received."""
    writes: list[dict[str, int]] = []
    real_write = ServedPlasma.write

    async def spy_write(self: ServedPlasma, w: dict[str, int]) -> None:
        writes.append(dict(w))
        await real_write(self, w)

    patches: list[Any] = [mock.patch.object(ServedPlasma, "write", spy_write)]
    if device in ("plasma", "spray"):
        unit = ServedPlasma if device == "plasma" else ServedSpray
        real_image = unit.read_image

        async def image(self: Any) -> dict[str, int]:
            out = await real_image(self)
            out[REGISTER[field]] = value
            return out

        patches.append(mock.patch.object(unit, "read_image", image))
    elif device == "thermometer":
        real_answer = ServedThermometer.answer

        async def answer(self: ServedThermometer, line: bytes) -> bytes:
            if lineproto.decode(line)[0] != "ID":
                return await real_answer(self, line)
            ident = {**THERMOMETER_IDENTITY, field: value}
            return lineproto.encode("ID", ident["vendor"], ident["model"], lineproto.FIRMWARE, ident["map_version"])

        patches.append(mock.patch.object(ServedThermometer, "answer", answer))
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield writes


@H13
def test_identity_mismatch_refuses_the_session_before_anything_is_armed(tmp_path: Path) -> None:
    """Generative: wrong vendor / model / map version, served or expected, on TCP or RTU -> refused."""
    counts: dict[str, int] = {}
    run = [0]

    @settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=mismatches())
    def one(case: tuple[str, str, str, Any, str]) -> None:
        side, device, field, value, transport = case
        run[0] += 1
        folder = tmp_path / f"case{run[0]}"
        folder.mkdir()
        rig_text = TCP_RIG if transport == "tcp" else RTU_RIG
        served_device = device if side == "served" else None
        if side == "rig":
            rig_text += f"\n[{device}.identity]\n{field} = {value}\n"
        (folder / "rig.toml").write_text(rig_text, encoding="utf-8")
        out = folder / "out"
        t0 = time.monotonic()
        with _restored_signals(), _served_identity(served_device, field, value) as writes:
            result = invoke(["run", str(SHORT), "--rig", str(folder / "rig.toml"), "--out", str(out)])
        elapsed = time.monotonic() - t0
        text = all_output(result)
        assert result.exit_code == EXIT_SAFE_STOP, f"{case}: exit {result.exit_code}: {text}"
        events = read_events(out / "events.jsonl")
        names = [e["event"] for e in events]
        trip = next(e for e in events if e["event"] == "interlock_trip")
        assert trip["rule"] == "self_test_failed" and trip["state"] == "disconnected", trip
        assert "identity mismatch" in trip["reason"] and field in trip["reason"], trip["reason"]
        # the generator's identity block is read by its driver and by the safety inputs' (both unit 1)
        named = ("plasma", "safety") if side == "served" and device == "plasma" else (device,)
        assert trip["device"] in named, (case, trip)
        assert events[-1]["event"] == "session_end" and events[-1]["cause"] == "self_test_failed"
        assert events[-1]["pulses"] == 0 and "pulse_start" not in names and "state" not in names, names
        commands = [w["COMMAND"] for w in writes if "COMMAND" in w]
        assert 1 not in commands and 3 not in commands, writes  # ARM, FIRE
        assert elapsed < 10.0
        key = f"{side} {device}.{field} on {transport}"
        counts[key] = counts.get(key, 0) + 1

    one()
    print(f"[exposure] identity mismatches refused: {sum(counts.values())}: {counts}")
