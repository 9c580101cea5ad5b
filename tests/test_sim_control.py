"""The served simulators' control channel (``serve-sim --control``, ``plasmactl.simulators.served_control``) and
its command line (``plasmactl sim-control``): faults injected at run time act on the served devices (an E-stop
disarms the generator, a link timeout silences a real Modbus read, an empty reservoir reads 0) and end when
cleared; every bad request gets ``ok: false`` with its reason and leaves the connection usable; the command
line's exit codes are 0 ok, 3 refused by the server, 2 bad arguments or nothing to talk to."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymodbus.exceptions import ModbusIOException

from plasmactl.cli_sim_control import Unreachable, request
from plasmactl.drivers.registers import PLASMA, SPRAY, PlasmaCommand, SafetyBit
from plasmactl.faults import FaultScenario
from plasmactl.rig import Rig
from plasmactl.simulators.served import ServedSim, serve, serve_sim_main
from plasmactl.simulators.served_control import MAX_LINE_BYTES, is_loopback
from test_cli import PLASMACTL, REPO, all_output, invoke
from test_served_support import bit, command, modbus_client, read, scenario


@asynccontextmanager
async def controlled(faults: FaultScenario | None = None) -> AsyncIterator[ServedSim]:
    sim = await serve(Rig(), faults or FaultScenario(), seed=1, modbus_tcp=("127.0.0.1", 0), control=("127.0.0.1", 0))
    try:
        yield sim
    finally:
        await sim.stop()


class Channel:
    """One connection to the control channel: a line out, a line back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def raw(self, data: bytes) -> dict[str, Any]:
        self.writer.write(data)
        return await self.reply()

    async def reply(self, wait_s: float = 2.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), wait_s)
        assert line.endswith(b"\n"), line
        reply = json.loads(line)
        assert isinstance(reply, dict) and isinstance(reply["ok"], bool), reply
        return reply

    async def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        return await self.raw(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")

    async def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = await self.ask(cmd, **fields)
        assert reply["ok"], reply
        return reply


@asynccontextmanager
async def channel(sim: ServedSim) -> AsyncIterator[Channel]:
    assert sim.control is not None
    reader, writer = await asyncio.open_connection(sim.control.host, sim.control.port)
    try:
        yield Channel(reader, writer)
    finally:
        writer.close()


# --------------------------------------------------------------------------------------- in process


async def test_the_endpoint_is_reported_and_a_free_port_taken() -> None:
    async with controlled() as sim, channel(sim) as ch:
        assert sim.control is not None and sim.control.host == "127.0.0.1" and sim.control.port > 0
        assert sim.as_json()["control"] == {"host": "127.0.0.1", "port": sim.control.port}
        line = f"control     127.0.0.1:{sim.control.port}  (JSON lines: inject, clear, faults, state)"
        assert line in sim.describe().splitlines()
        assert (await ch.ok("ping"))["t"] >= 0.0


async def test_no_control_channel_unless_asked() -> None:
    sim = await serve(Rig(), FaultScenario(), seed=1, modbus_tcp=("127.0.0.1", 0))
    try:
        assert sim.control is None and "control" not in sim.as_json() and "control" not in sim.describe()
    finally:
        await sim.stop()


async def test_an_injected_estop_disarms_the_generator_until_cleared() -> None:
    async with controlled() as sim, channel(sim) as ch, modbus_client(sim, "tcp") as client:
        await command(client, PlasmaCommand.ARM)
        before = await ch.ok("state")
        assert before["plasma"]["armed"] and not before["safety"]["estop"]
        injected = await ch.ok("inject", fault={"device": "safety", "kind": "estop"})
        assert injected["handle"] == 0 and injected["start"] >= before["t"]
        pressed = await ch.ok("state")
        assert pressed["safety"]["estop"] and not pressed["plasma"]["armed"] and not pressed["plasma"]["output_on"]
        assert pressed["active_faults"] == [0]
        assert bit(await read(client, PLASMA, "SAFETY"), SafetyBit.ESTOP)  # the wire says so too
        assert (await ch.ok("clear", handle=0))["cleared"] is True
        released = await ch.ok("state")
        assert not released["safety"]["estop"] and released["active_faults"] == []
        assert not released["plasma"]["armed"]  # the generator does not re-arm itself
        assert not bit(await read(client, PLASMA, "SAFETY"), SafetyBit.ESTOP)
        assert (await ch.ok("clear", handle=0))["cleared"] is False  # it had ended already
        (listed,) = (await ch.ok("faults"))["faults"]
        assert listed == {
            "handle": 0,
            "device": "safety",
            "kind": "estop",
            "target": None,
            "value": None,
            "duration_s": None,
            "start": injected["start"],
            "end": listed["end"],
            "active": False,
        }
        assert listed["end"] is not None and listed["end"] >= injected["start"]


async def test_an_injected_link_timeout_silences_a_modbus_read_until_cleared() -> None:
    async with controlled() as sim, channel(sim) as ch:
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            assert await read(client, PLASMA, "VENDOR") == 0x504C
        fault = {"device": "link", "kind": "timeout", "target": "plasma"}
        handle = (await ch.ok("inject", fault=fault))["handle"]
        async with modbus_client(sim, "tcp", timeout_s=0.1) as client:
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(PLASMA["STATUS"].address, count=1, device_id=PLASMA.unit_id)
            assert await read(client, SPRAY, "VENDOR") == 0x504C  # only the generator's link
        assert (await ch.ok("state"))["plasma"]["pulse_count"] == 0  # the channel itself passes no link
        assert (await ch.ok("clear", handle=handle))["cleared"]
        async with modbus_client(sim, "tcp", timeout_s=0.5) as client:
            assert await read(client, PLASMA, "VENDOR") == 0x504C


async def test_an_injected_empty_reservoir_reads_zero_until_cleared() -> None:
    async with controlled() as sim, channel(sim) as ch, modbus_client(sim, "tcp") as client:
        full = await ch.ok("state")
        assert full["reservoir_ml"] > 0 and full["reservoir_ml"] == full["spray"]["reservoir_level_ml"]
        handle = (await ch.ok("inject", fault={"device": "spray", "kind": "reservoir_empty"}))["handle"]
        empty = await ch.ok("state")
        assert empty["reservoir_ml"] == 0.0 and empty["spray"]["reservoir_level_ml"] == full["reservoir_ml"]
        assert await read(client, SPRAY, "RESERVOIR") == 0
        await ch.ok("clear", handle=handle)
        assert (await ch.ok("state"))["reservoir_ml"] == full["reservoir_ml"]
        assert await read(client, SPRAY, "RESERVOIR") > 0


async def test_a_fault_with_a_duration_ends_by_itself() -> None:
    async with controlled() as sim, channel(sim) as ch:
        fault = {"device": "link", "kind": "delay", "target": "spray", "value": 5, "duration_s": 0.05}
        injected = await ch.ok("inject", fault=fault)
        await asyncio.sleep(0.1)
        (listed,) = (await ch.ok("faults"))["faults"]
        assert listed["value"] == 5.0 and listed["duration_s"] == 0.05 and not listed["active"]
        assert listed["end"] == pytest.approx(injected["start"] + 0.05)
        assert (await ch.ok("clear", handle=injected["handle"]))["cleared"] is False


async def test_the_scenarios_own_faults_are_listed_and_can_be_cleared() -> None:
    pending = {"device": "plasma", "kind": "no_output", "after_pulses": 3}
    async with controlled(scenario(pending)) as sim, channel(sim) as ch:
        (listed,) = (await ch.ok("faults"))["faults"]
        assert listed["handle"] == 0 and listed["start"] is None and listed["end"] is None and not listed["active"]
        assert (await ch.ok("clear", handle=0))["cleared"] is True  # a pending fault never starts
        assert (await ch.ok("inject", fault={"device": "safety", "kind": "tip_lift", "value": 7.5}))["handle"] == 1
        assert (await ch.ok("state"))["safety"]["tip_distance_mm"] == 7.5


BAD_REQUESTS: list[tuple[bytes, str]] = [
    (b"not json", "not JSON"),
    (b'{"cmd": "ping"', "not JSON"),
    (b'{"cmd": "inject", "fault": {"device": "plasma", "kind": "energy_drift", "value": NaN}}', "not JSON"),
    (b'{"cmd": "clear", "handle": ' + b"9" * 5000 + b"}", "not JSON"),
    (b"[" * 60_000, "not JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"ping"', "expected a JSON object, got str"),
    (b"{}", 'expected "cmd"'),
    (b'{"cmd": 7}', 'expected "cmd"'),
    (b'{"cmd": "explode"}', "unknown cmd 'explode'"),
    (b'{"cmd": "ping", "colour": "red"}', "ping takes no field 'colour'"),
    (b'{"cmd": "inject"}', 'inject needs "fault"'),
    (b'{"cmd": "inject", "fault": "estop"}', 'inject needs "fault"'),
    (b'{"cmd": "inject", "fault": {"device": "toaster", "kind": "estop"}}', "fault.device: Input should be"),
    (b'{"cmd": "inject", "fault": {"device": "safety", "kind": "melt"}}', "unknown kind 'melt'"),
    (b'{"cmd": "inject", "fault": {"device": "safety", "kind": "estop", "duration_s": -1}}', "fault.duration_s"),
    (b'{"cmd": "inject", "fault": {"device": "safety", "kind": "estop", "duration_s": "1"}}', "fault.duration_s"),
    (b'{"cmd": "inject", "fault": {"device": "safety", "kind": "estop", "colour": 1}}', "fault.colour"),
    (b'{"cmd": "inject", "fault": {"device": "safety", "kind": "estop", "at_s": 3.0}}', "fault.at_s"),
    (b'{"cmd": "inject", "fault": {"device": "plasma", "kind": "no_output", "after_pulses": 1}}', "after_pulses"),
    (b'{"cmd": "inject", "fault": {"device": "link", "kind": "delay", "target": "spray"}}', "needs value"),
    (b'{"cmd": "inject", "fault": {"device": "link", "kind": "timeout"}}', "needs target"),
    (b'{"cmd": "clear"}', 'clear needs "handle"'),
    (b'{"cmd": "clear", "handle": "0"}', 'clear needs "handle"'),
    (b'{"cmd": "clear", "handle": true}', 'clear needs "handle"'),
    (b'{"cmd": "clear", "handle": 0.0}', 'clear needs "handle"'),
    (b'{"cmd": "clear", "handle": 99}', "unknown handle 99 (no faults yet)"),
    (b'{"cmd": "clear", "handle": -1}', "unknown handle -1"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"cmd": "ping", "x": "\xc3"}', "not UTF-8"),
    (b"", "empty line"),
    (b"   \r", "empty line"),
]


@pytest.mark.parametrize(("line", "message"), BAD_REQUESTS)
async def test_a_bad_request_is_refused_and_the_connection_stays_usable(line: bytes, message: str) -> None:
    async with controlled() as sim, channel(sim) as ch:
        reply = await ch.raw(line + b"\n")
        assert reply["ok"] is False and set(reply) == {"ok", "error"}, reply
        assert message in reply["error"], reply
        assert "Traceback" not in reply["error"] and len(reply["error"]) < 1000
        await ch.ok("ping")
        assert (await ch.ok("faults"))["faults"] == []  # nothing was injected


async def test_every_refusal_names_the_field_pydantic_names() -> None:
    async with controlled() as sim, channel(sim) as ch:
        reply = await ch.ask("inject", fault={"device": "link", "kind": "delay", "target": "lamp", "value": 1.0})
        assert not reply["ok"] and reply["error"].startswith("fault.target: Input should be"), reply


async def test_a_line_over_64_kib_is_refused_once_and_its_bytes_dropped() -> None:
    async with controlled() as sim, channel(sim) as ch:
        # one piece, with its line end
        reply = await ch.raw(b'{"cmd": "ping", "pad": "' + b"x" * MAX_LINE_BYTES + b'"}\n')
        assert not reply["ok"] and "line over 65536 bytes" in reply["error"]
        await ch.ok("ping")
        # in pieces, no line end for a while: one refusal, the rest of the line is not read as a request
        for _ in range(5):
            ch.writer.write(b"[" * 50_000)
            await ch.writer.drain()
        assert "line over" in (await ch.reply())["error"]
        ch.writer.write(b'{"cmd": "state"}\n')  # still inside the refused line: dropped
        ch.writer.write(b'{"cmd": "faults"}\n')
        assert "faults" in await ch.reply()
        # exactly at the limit is still a request
        padded = b'{"cmd": "ping"}'.ljust(MAX_LINE_BYTES) + b"\n"
        assert (await ch.raw(padded))["ok"]


async def test_a_request_that_fails_inside_is_refused_and_the_server_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with controlled() as sim, channel(sim) as ch:
        assert sim._control is not None

        def broken() -> dict[str, Any]:
            raise RuntimeError("a bug")

        monkeypatch.setattr(sim._control, "state", broken)
        reply = await ch.ask("state")
        assert not reply["ok"] and "internal error" in reply["error"] and "a bug" not in reply["error"]
        await ch.ok("ping")


async def test_connections_are_capped_and_an_idle_one_closed() -> None:
    async with controlled() as sim:
        assert sim.control is not None and sim._control is not None
        opened = [await asyncio.open_connection(sim.control.host, sim.control.port) for _ in range(8)]
        try:
            for reader, writer in opened:
                await Channel(reader, writer).ok("ping")
            reader, writer = await asyncio.open_connection(sim.control.host, sim.control.port)
            extra = Channel(reader, writer)
            assert "too many control connections" in (await extra.reply())["error"]
            assert await asyncio.wait_for(reader.read(), 2.0) == b""  # closed
            writer.close()
            opened.pop()[1].close()
            await asyncio.sleep(0.05)
            async with channel(sim) as ch:
                await ch.ok("ping")
        finally:
            for _, writer in opened:
                writer.close()
        await asyncio.sleep(0.05)
        sim._control.idle_s = 0.2
        async with channel(sim) as ch:
            assert "idle for 0.2 s" in (await ch.reply(wait_s=2.0))["error"]
            assert await asyncio.wait_for(ch.reader.read(), 2.0) == b""


async def test_stopping_the_served_sim_stops_the_channel() -> None:
    sim = await serve(Rig(), FaultScenario(), seed=1, modbus_tcp=None, control=("127.0.0.1", 0))
    assert sim.control is not None
    host, port = sim.control.host, sim.control.port
    async with channel(sim) as ch:
        await ch.ok("ping")
        await sim.stop()
        assert await asyncio.wait_for(ch.reader.read(), 2.0) == b""
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_bad_control_address_exits_2_before_serving() -> None:
    import io

    err = io.StringIO()
    assert serve_sim_main(modbus_tcp="127.0.0.1:0", control="nowhere", out=io.StringIO(), err=err) == 2
    assert "expected HOST:PORT" in err.getvalue()


# --------------------------------------------------------------------------------------- the client


async def test_the_client_names_what_it_reached_when_it_is_not_the_channel() -> None:
    async with controlled() as sim:
        assert sim.modbus_tcp is not None
        with pytest.raises(Unreachable, match=r"closed the connection without a reply|lost the connection"):
            await asyncio.to_thread(request, "127.0.0.1", sim.modbus_tcp.port, {"cmd": "ping"}, 2.0)


async def test_the_client_gives_up_on_a_server_that_never_answers() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Unreachable, match=rf"no reply from 127\.0\.0\.1:{port} within 0\.3 s"):
            await asyncio.to_thread(request, "127.0.0.1", port, {"cmd": "ping"}, 0.3)
    finally:
        server.close()
        await server.wait_closed()


def test_the_command_line_imports_no_simulator() -> None:
    code = (
        "import sys, plasmactl.cli_sim_control\n"
        "found = sorted(m for m in sys.modules if m.startswith('plasmactl.simulators'))\n"
        "assert not found, found\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim-control", "nowhere", "state"], "expected HOST:PORT"),
        (["sim-control", "127.0.0.1:99999", "state"], "expected HOST:PORT"),
        (["sim-control", "127.0.0.1:5020", "explode"], "No such command"),
        (["sim-control", "127.0.0.1:5020", "inject", "--device", "safety"], "--kind"),
        (
            ["sim-control", "127.0.0.1:5020", "inject", "--device", "x", "--kind", "y", "--value", "hot"],
            "Invalid value for '--value'",
        ),
        (["sim-control", "127.0.0.1:5020", "clear", "first"], "Invalid value for 'handle'"),
        (["sim-control", "127.0.0.1:5020", "clear"], "Missing argument 'handle'"),
        (["sim-control", "127.0.0.1:5020"], "Missing command"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = invoke(args)
    text = all_output(result)
    assert result.exit_code == 2, text
    assert message in text and "Traceback" not in text


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (held, bound but not listening, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_nothing_listening_exits_2_naming_the_address(closed_port: int) -> None:
    result = invoke(["sim-control", f"127.0.0.1:{closed_port}", "state"])
    text = all_output(result)
    assert result.exit_code == 2, text
    assert f"sim-control: cannot connect to 127.0.0.1:{closed_port}: Connection refused" in text
    assert "Traceback" not in text


# --------------------------------------------------------------------------------------- spawned


@pytest.fixture
def spawned() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """``plasmactl serve-sim`` with a control channel, on free ports; its lifeline is our pipe to its stdin."""
    args = ["serve-sim", "--modbus-tcp", "127.0.0.1:0", "--control", "127.0.0.1:0", "--json", "--lifeline"]
    proc = subprocess.Popen(
        [str(PLASMACTL), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        if not ready:
            pytest.fail("serve-sim did not report its endpoints within 30 s")
        where = json.loads(proc.stdout.readline())
        yield proc, where
    finally:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def sim_control(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLASMACTL), "sim-control", endpoint, *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.mark.subprocess
def test_sim_control_against_a_spawned_serve_sim(spawned: tuple[subprocess.Popen[bytes], dict[str, Any]]) -> None:
    proc, where = spawned
    assert set(where) == {"modbus_tcp", "control"} and where["control"]["host"] == "127.0.0.1"
    endpoint = f"127.0.0.1:{where['control']['port']}"

    done = sim_control(endpoint, "inject", "--device", "safety", "--kind", "estop")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["handle"] == 0 and done.stdout.startswith("{\n  ")  # indented
    done = sim_control(endpoint, "state")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["safety"]["estop"] is True and state["plasma"]["armed"] is False
    done = sim_control(endpoint, "clear", "0")
    assert done.returncode == 0 and json.loads(done.stdout) == {"ok": True, "cleared": True}, done
    done = sim_control(endpoint, "faults")
    assert done.returncode == 0 and json.loads(done.stdout)["faults"][0]["active"] is False, done
    assert json.loads(sim_control(endpoint, "state").stdout)["safety"]["estop"] is False

    # refused by the server: 3, its error on stderr, its reply on stdout
    done = sim_control(endpoint, "inject", "--device", "safety", "--kind", "melt")
    assert done.returncode == 3, done
    assert f"sim-control: {endpoint} refused inject: fault: Value error, unknown kind 'melt'" in done.stderr
    assert json.loads(done.stdout)["ok"] is False
    done = sim_control(endpoint, "clear", "7")
    assert done.returncode == 3 and "unknown handle 7 (handles 0..0)" in done.stderr, done
    done = sim_control(endpoint, "inject", "--device", "link", "--kind", "delay", "--target", "spray")
    assert done.returncode == 3 and "needs value" in done.stderr, done
    # bad arguments: 2
    done = sim_control(endpoint, "explode")
    assert done.returncode == 2 and "No such command" in done.stderr and "Traceback" not in done.stderr, done

    assert proc.stdin is not None
    proc.stdin.close()  # the lifeline: the server stops
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read().decode(errors="replace")
    done = sim_control(endpoint, "ping")
    assert done.returncode == 2 and f"cannot connect to {endpoint}" in done.stderr, done
