"""The simulated devices served on real wires, exactly per the drivers' contracts (``plasmactl serve-sim``).

One shared world (skin, fault schedule, seeded randomness) on the real clock: a pulse fired over Modbus heats
the skin the thermometer reports over its serial line. What is where:

- Modbus TCP (``modbus_tcp=(host, port)``, port 0 = any free port): the generator (PLASMA map, unit 1; the
  handpiece safety inputs are in the same map), the spray unit (SPRAY map, unit 2). A gateway: unknown unit
  ids get exception 0x0B.
- Modbus RTU (``modbus_rtu=True`` for a new pty pair, or a port path): the same units on one bus, replies
  paced to the wire time at ``baud`` (11 bits per character plus the 3.5-character silent intervals);
  unknown unit ids get silence.
- The thermometer's line protocol (``serial=True`` or a port path), paced at 10 bits per character.
- A control channel (``control=(host, port)``, JSON lines; see ``served_control``): faults injected and
  cleared at run time, the world's state read beside the wires.

Link faults of the scenario act at the wire (see ``served_wire``); device faults act in the models, as
in-process. Fault times are seconds since ``serve`` started (the world's clock). The in-process rig knows
only the link kind ``timeout`` (it treats the wire kinds delay/corrupt/garbage/disconnect as silence).

    sim = await serve(rig, scenario, seed, modbus_tcp=("127.0.0.1", 0), serial=True)
    print(sim.describe()); ...; await sim.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from plasmactl.clock import Clock, LoopClock
from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import MAP_VERSION, PLASMA, SPRAY
from plasmactl.faults import FaultScenario, load_faults
from plasmactl.inputs import InputError
from plasmactl.rig import PlasmaSim, Rig, SafetySim, SpraySim, ThermometerSim, load_rig, parse_host_port
from plasmactl.simulators.devices import SimPlasma, SimSpray
from plasmactl.simulators.sensors import SimSafety, SimThermometer
from plasmactl.simulators.served_control import ControlEndpoint, ControlServer
from plasmactl.simulators.served_modbus import ModbusEngine
from plasmactl.simulators.served_transports import LineServer, ModbusRtuServer, ModbusTcpServer
from plasmactl.simulators.served_units import ServedPlasma, ServedSpray
from plasmactl.simulators.served_wire import SerialPort
from plasmactl.simulators.world import SimWorld

__all__ = [
    "UNITS",
    "RtuEndpoint",
    "SerialEndpoint",
    "ServedSim",
    "ServedThermometer",
    "ServedWorld",
    "TcpEndpoint",
    "main",
    "serve",
    "serve_sim_main",
]

UNITS: dict[str, int] = {"plasma": PLASMA.unit_id, "spray": SPRAY.unit_id, "safety": PLASMA.unit_id}


@dataclass(frozen=True)
class TcpEndpoint:
    host: str
    port: int
    units: dict[str, int]


@dataclass(frozen=True)
class RtuEndpoint:
    port: str  # where clients open the bus (the pty's other end, or the port given)
    baud: int
    units: dict[str, int]


@dataclass(frozen=True)
class SerialEndpoint:
    thermometer: str
    baud: int


class ServedWorld(SimWorld):
    """The served devices' world: the link is the real wire, so the models never wait on a link fault."""

    async def link(self, device: str) -> None:
        return None


class ServedThermometer:
    """The thermometer's line protocol (``plasmactl.drivers.lineproto``) over ``SimThermometer``."""

    def __init__(self, thermometer: SimThermometer, cfg: ThermometerSim, clock: Clock) -> None:
        self.thermometer = thermometer
        self.cfg = cfg
        self.clock = clock

    async def answer(self, line: bytes) -> bytes:
        try:
            fields = lineproto.decode(line)
        except lineproto.FrameError as exc:
            return lineproto.encode_error(exc.code, str(exc))
        command, args = fields[0], fields[1:]
        if command not in ("ID", "T", "P"):
            return lineproto.encode_error(lineproto.ErrorCode.UNKNOWN_COMMAND, f"unknown command {command[:16]}")
        if args:
            return lineproto.encode_error(lineproto.ErrorCode.MALFORMED, f"{command} takes no fields")
        if command == "ID":
            return lineproto.encode("ID", lineproto.VENDOR, lineproto.MODEL, lineproto.FIRMWARE, lineproto.MAP_VERSION)
        if command == "P":
            return lineproto.encode("P", f"{self.cfg.sample_ms:g}")
        reading = await self.thermometer.read()
        if reading.t < 0:
            return lineproto.encode_error(lineproto.ErrorCode.NO_SAMPLE, "no sample yet")
        seq = round(reading.t / (self.cfg.sample_ms / 1000.0))
        age_ms = max(0, round((self.clock.now() - reading.t) * 1000.0))
        return lineproto.encode_sample(lineproto.Sample(seq, age_ms, reading.value_c))


class ServedSim:
    """The running served simulator: where each device is, the models behind them, and ``stop``."""

    def __init__(self, world: ServedWorld, plasma: ServedPlasma, spray: ServedSpray, engine: ModbusEngine) -> None:
        self.world = world
        self.plasma = plasma
        self.spray = spray
        self.engine = engine
        self.modbus_tcp: TcpEndpoint | None = None
        self.modbus_rtu: RtuEndpoint | None = None
        self.serial: SerialEndpoint | None = None
        self.control: ControlEndpoint | None = None
        self._control: ControlServer | None = None
        self._tcp: ModbusTcpServer | None = None
        self._serial_servers: list[ModbusRtuServer | LineServer] = []
        self._stopped = False

    @property
    def rtu_server(self) -> ModbusRtuServer | None:
        """The RTU bus's server (its frame counters), if one is served."""
        return next((s for s in self._serial_servers if isinstance(s, ModbusRtuServer)), None)

    def as_json(self) -> dict[str, Any]:
        """Where each device is; a transport that is not served is left out."""
        out: dict[str, Any] = {}
        if self.modbus_tcp is not None:
            t = self.modbus_tcp
            out["modbus_tcp"] = {"host": t.host, "port": t.port, "units": dict(t.units)}
        if self.modbus_rtu is not None:
            r = self.modbus_rtu
            out["modbus_rtu"] = {"port": r.port, "baud": r.baud, "units": dict(r.units)}
        if self.serial is not None:
            out["serial"] = {"thermometer": self.serial.thermometer, "baud": self.serial.baud}
        if self.control is not None:
            out["control"] = {"host": self.control.host, "port": self.control.port}
        return out

    def describe(self) -> str:
        lines = []
        if (t := self.modbus_tcp) is not None:
            units = ", ".join(f"{name} unit {uid}" for name, uid in t.units.items())
            lines.append(f"modbus-tcp  {t.host}:{t.port}  ({units})")
        if (r := self.modbus_rtu) is not None:
            units = ", ".join(f"{name} unit {uid}" for name, uid in r.units.items())
            lines.append(f"modbus-rtu  {r.port} at {r.baud} baud 8N1  ({units})")
        if (s := self.serial) is not None:
            lines.append(f"serial      {s.thermometer} at {s.baud} baud 8N1  (thermometer)")
        if (c := self.control) is not None:
            lines.append(f"control     {c.host}:{c.port}  (JSON lines: inject, clear, faults, state)")
        return "\n".join(lines)

    async def stop(self) -> None:
        """Stop serving; the generator's output goes off and the valve closes (the devices power down)."""
        if self._stopped:
            return
        self._stopped = True
        if self._control is not None:  # no fault injected while the devices power down
            await self._control.stop()
        if self._tcp is not None:
            await self._tcp.stop()
        for server in self._serial_servers:
            await server.stop()
        await self.engine.stop()

    async def __aenter__(self) -> ServedSim:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _sim_config(cfg: object, default: Any) -> Any:
    """The rig's simulator settings for a device, or the defaults when the rig puts it on a wire."""
    return cfg if isinstance(cfg, type(default)) else default


def build_world(rig: Rig, scenario: FaultScenario, seed: int, clock: Clock) -> ServedWorld:
    from plasmactl.simulators.inprocess import patch_skin

    return ServedWorld(clock, patch_skin(rig.skin, clock), scenario, seed)


async def serve(
    rig: Rig,
    scenario: FaultScenario,
    seed: int,
    *,
    modbus_tcp: tuple[str, int] | None = None,
    modbus_rtu: str | bool = False,
    serial: str | bool = False,
    baud: int = 115200,
    clock: Clock | None = None,
    control: tuple[str, int] | None = None,
    map_version: int = MAP_VERSION,
) -> ServedSim:
    """Serve the simulated rig on the running loop (real time) and return where each device is.

    ``rig`` supplies the skin and, for devices whose kind is ``sim``, their simulator settings (a device the
    rig puts on a wire is simulated with the defaults). ``modbus_rtu`` / ``serial``: True for a new pty
    pair, a path to serve on that port, False for none. ``control``: (host, port) of the control channel
    (``served_control``), None for none. ``map_version``: the register map the Modbus units serve (2: with the
    owner lease and the trigger line; 1: without, as older firmware). ``clock`` defaults to a ``LoopClock`` (the world's
    time 0.0 is now).
    """
    if not 300 <= baud <= 4_000_000:
        raise ValueError(f"baud {baud} is outside 300..4000000")
    clock = clock if clock is not None else LoopClock()
    world = build_world(rig, scenario, seed, clock)
    plasma_cfg: PlasmaSim = _sim_config(rig.plasma, PlasmaSim())
    spray_cfg: SpraySim = _sim_config(rig.spray, SpraySim())
    thermo_cfg: ThermometerSim = _sim_config(rig.thermometer, ThermometerSim())
    safety_cfg: SafetySim = _sim_config(rig.safety, SafetySim())
    plasma = ServedPlasma(
        SimPlasma(world, plasma_cfg, own_watchdog=False), SimSafety(world, safety_cfg), clock, map_version
    )
    spray = ServedSpray(SimSpray(world, spray_cfg), clock, map_version)
    engine = ModbusEngine([plasma, spray])
    thermometer = ServedThermometer(SimThermometer(world, thermo_cfg), thermo_cfg, clock)
    sim = ServedSim(world, plasma, spray, engine)
    rng = random.Random(seed)
    try:
        if modbus_tcp is not None:
            sim._tcp = ModbusTcpServer(engine, world, rng)
            await sim._tcp.start(*modbus_tcp)
            sim.modbus_tcp = TcpEndpoint(sim._tcp.host, sim._tcp.port, dict(UNITS))
        if modbus_rtu:
            rtu = ModbusRtuServer(engine, SerialPort.open(modbus_rtu, baud), world, baud, rng)
            sim._serial_servers.append(rtu)
            rtu.start()
            sim.modbus_rtu = RtuEndpoint(rtu.port.path, baud, dict(UNITS))
        if serial:
            line = LineServer(thermometer.answer, "thermometer", SerialPort.open(serial, baud), world, baud, rng)
            sim._serial_servers.append(line)
            line.start()
            sim.serial = SerialEndpoint(line.port.path, baud)
        if control is not None:
            sim._control = ControlServer(world, plasma, spray)
            sim.control = await sim._control.start(*control)
    except BaseException:
        await sim.stop()
        raise
    return sim


# ---------------------------------------------------------------------------------------------- entry

DEFAULT_MODBUS_TCP = "127.0.0.1:5020"  # serve-sim with no transport named: loopback only


async def _until_stdin_closes(stop: asyncio.Event) -> None:
    """Set ``stop`` when standard input reaches its end (the spawning process closed it or died)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError) as exc:  # a regular file or a closed stdin: no lifeline to watch
        print(f"serve-sim: --lifeline needs a pipe on standard input ({exc}); stopping", file=sys.stderr)
    else:
        while await reader.read(4096):
            pass
    stop.set()


def serve_sim_main(
    *,
    modbus_tcp: str | None = None,
    modbus_rtu: str | bool = False,
    serial: str | bool = False,
    baud: int = 115200,
    json_output: bool = False,
    faults: str | None = None,
    seed: int = 0,
    rig: str | None = None,
    lifeline: bool = False,
    control: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``plasmactl serve-sim``: serve until SIGINT/SIGTERM; prints where each device is (one JSON line with
    ``json_output``). With no transport chosen, serves Modbus TCP on 127.0.0.1:5020 and the thermometer on a
    pty. With ``lifeline``, it also stops when its standard input closes (the process that spawned it is
    gone, however it died). ``control`` (HOST:PORT) also serves the control channel (``served_control``:
    JSON lines to inject and clear faults and read the world's state). Returns the exit code: 0 after a
    signal or the lifeline, 2 for bad input."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if modbus_tcp is None and not modbus_rtu and not serial:
        modbus_tcp, serial = DEFAULT_MODBUS_TCP, True
    try:
        tcp = parse_host_port(modbus_tcp) if modbus_tcp is not None else None
        ctl = parse_host_port(control) if control is not None else None
        rig_model, _ = load_rig(rig)
        scenario = load_faults(faults)[0] if faults is not None else FaultScenario()
    except (InputError, ValueError) as exc:
        print(f"serve-sim: {exc}", file=err)
        return 2

    async def run() -> int:
        try:
            sim = await serve(
                rig_model, scenario, seed, modbus_tcp=tcp, modbus_rtu=modbus_rtu, serial=serial, baud=baud, control=ctl
            )
        except (OSError, ValueError) as exc:
            print(f"serve-sim: cannot serve: {exc}", file=err)
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watch = loop.create_task(_until_stdin_closes(stop)) if lifeline else None
        gc.freeze()  # what is set up lives as long as the server: no collector pass walks it between requests
        try:
            print(json.dumps(sim.as_json()) if json_output else sim.describe(), file=out, flush=True)
            await stop.wait()
        finally:
            if watch is not None:
                watch.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await sim.stop()
        return 0

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m plasmactl.simulators.served [--modbus-tcp HOST:PORT] [--modbus-rtu [PORT]] ...``"""
    p = argparse.ArgumentParser(prog="serve-sim", description=serve_sim_main.__doc__)
    p.add_argument("--modbus-tcp", metavar="HOST:PORT")
    p.add_argument("--modbus-rtu", nargs="?", const=True, default=False, metavar="PORT")
    p.add_argument("--serial", nargs="?", const=True, default=False, metavar="PORT")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--json", action="store_true")
    p.add_argument("--faults", metavar="FILE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rig", metavar="FILE")
    p.add_argument("--lifeline", action="store_true", help="also stop when standard input closes")
    p.add_argument("--control", metavar="HOST:PORT", help="also serve the control channel (JSON lines) there")
    a = p.parse_args(argv)
    return serve_sim_main(
        modbus_tcp=a.modbus_tcp,
        modbus_rtu=a.modbus_rtu,
        serial=a.serial,
        baud=a.baud,
        json_output=a.json,
        faults=a.faults,
        lifeline=a.lifeline,
        control=a.control,
        seed=a.seed,
        rig=a.rig,
    )


if __name__ == "__main__":
    sys.exit(main())
