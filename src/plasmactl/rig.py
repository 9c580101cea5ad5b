"""The rig file (TOML): per device, which implementation talks to it, with its timing.

No file means the default rig: every device is an in-process simulator. An unknown device kind is an
error, never ignored: a typo must not silently swap a real device for a simulated one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, Field, model_validator

from plasmactl.bus_priority import ROUTINE_HOLD_MAX_S
from plasmactl.inputs import InputError, LoadedFile, read_toml, validate
from plasmactl.rig_devices import (
    RTU_BITS_PER_CHAR,
    SERVED_PORTS,
    DeviceTiming,
    Identity,
    ModbusRtu,
    ModbusTcp,
    NonNeg,
    PlasmaSim,
    PosFloat,
    SafetySim,
    SerialLine,
    Skin,
    SkinLayer,
    SpraySim,
    ThermometerSim,
    _Strict,
    parse_host_port,
    rtu_char_s,
    rtu_intervals_s,
)

# the device sections are part of the rig file's model: importable from here as before
__all__ = [
    "DEVICES",
    "RTU_BITS_PER_CHAR",
    "SERVED_PORTS",
    "DeviceTiming",
    "Identity",
    "ModbusRtu",
    "ModbusTcp",
    "NonNeg",
    "PlasmaSim",
    "PosFloat",
    "PulseLatencies",
    "Rig",
    "SafetySim",
    "SerialLine",
    "ServeSim",
    "Skin",
    "SkinLayer",
    "SpraySim",
    "ThermometerSim",
    "load_rig",
    "parse_host_port",
    "rtu_char_s",
    "rtu_intervals_s",
]


class ServeSim(_Strict):
    """Ask ``plasmactl run`` to start ``plasmactl serve-sim`` itself (and stop it at the end)."""

    spawn: bool = True
    # Serve inside the run's own event loop instead of another process: the drivers still go through
    # real sockets and ptys, and the session can run in virtual time (the drivers hold the clock while a
    # request is in flight), so long plans over wires fit in CI.
    in_process: bool = False
    modbus_tcp: str | None = None  # "HOST:PORT" the served Modbus devices listen on
    modbus_rtu: bool = False  # a pty pair for one RTU bus; devices say port = "@rtu"
    serial: bool = False  # the thermometer on a pty; the device says port = "@serial"
    baud: Annotated[int, Field(ge=300, le=4_000_000)] = 115200
    # also serve the control channel (faults injected at run time, the world read) on a free loopback port;
    # the session's serve_sim record names it (the hil suite turns it on)
    control: bool = False

    @model_validator(mode="after")
    def _address(self) -> ServeSim:
        if self.modbus_tcp is not None:
            parse_host_port(self.modbus_tcp)
        return self


def _sim_unless_told(value: Any) -> Any:
    """A device section without ``kind`` is the in-process simulator (as with no section at all)."""
    if isinstance(value, dict) and "kind" not in value:
        return {**value, "kind": "sim"}
    return value


PlasmaCfg = Annotated[PlasmaSim | ModbusTcp | ModbusRtu, Field(discriminator="kind"), BeforeValidator(_sim_unless_told)]
SprayCfg = Annotated[SpraySim | ModbusTcp | ModbusRtu, Field(discriminator="kind"), BeforeValidator(_sim_unless_told)]
ThermometerCfg = Annotated[ThermometerSim | SerialLine, Field(discriminator="kind"), BeforeValidator(_sim_unless_told)]
SafetyCfg = Annotated[SafetySim | ModbusTcp | ModbusRtu, Field(discriminator="kind"), BeforeValidator(_sim_unless_told)]


class PulseLatencies(NamedTuple):
    fire_s: float  # from sending FIRE to emission, at most
    off_s: float  # for an off command to reach the generator
    detect_s: float  # to see the generator's state (one status read)
    usual_fire_s: float = 0.0  # from sending FIRE to emission on an idle link (when to look for the end first)
    earliest_start_s: float = 0.0  # emission cannot start sooner after the command (its frame must arrive)


class Rig(_Strict):
    name: str = "in-process simulators (default)"
    description: str = ""
    plasma: PlasmaCfg = PlasmaSim()
    spray: SprayCfg = SpraySim()
    thermometer: ThermometerCfg = ThermometerSim()
    safety: SafetyCfg = SafetySim()
    skin: Skin = Skin()
    serve: ServeSim | None = None

    @model_validator(mode="after")
    def _served_ports(self) -> Rig:
        kinds = {d: getattr(self, d).kind for d in DEVICES}
        if "sim" in kinds.values() and set(kinds.values()) != {"sim"}:
            sims = ", ".join(d for d, k in kinds.items() if k == "sim")
            raise ValueError(
                f"in-process simulators ({sims}) cannot be mixed with devices on wires: their worlds would"
                " differ; serve the simulators on wires too (plasmactl serve-sim)"
            )
        for device in DEVICES:
            cfg = getattr(self, device)
            port = getattr(cfg, "port", None)
            if isinstance(port, str) and port.startswith("@"):
                if port not in SERVED_PORTS:
                    raise ValueError(f"{device}.port: {port!r} is not one of {', '.join(SERVED_PORTS)}")
                wanted = {"@rtu": "modbus_rtu", "@serial": "serial"}[port]
                if self.serve is None or not getattr(self.serve, wanted):
                    raise ValueError(f"{device}.port = {port!r} needs [serve] {wanted} = true")
            if isinstance(cfg, ModbusTcp) and cfg.port == 0 and (self.serve is None or not self.serve.modbus_tcp):
                raise ValueError(f'{device}.port = 0 (the served port) needs [serve] modbus_tcp = "HOST:PORT"')
            served = (isinstance(cfg, ModbusTcp) and cfg.port == 0) or (isinstance(port, str) and port.startswith("@"))
            if self.serve is not None and self.serve.spawn and port is not None and not served:
                # a device elsewhere beside spawned simulators: two simulated worlds (pulses to one, skin
                # readings from the other) ran a session that completed on the wrong skin
                raise ValueError(
                    f"{device}.port = {port!r}: with [serve] spawn = true every device is one of the spawned"
                    " simulators (port = 0 on Modbus TCP, '@rtu' or '@serial' on a serial line); to use devices"
                    " elsewhere, remove [serve]"
                )
        return self

    @model_validator(mode="after")
    def _trigger_line(self) -> Rig:
        for device in DEVICES:
            if device != "spray" and getattr(getattr(self, device), "trigger_line", False):
                raise ValueError(f"{device}.trigger_line: the trigger line is a spray unit setting ([spray])")
        spray = self.spray
        if isinstance(spray, ModbusTcp | ModbusRtu) and spray.trigger_line and spray.identity.map_version < 2:
            raise ValueError(
                f"spray.trigger_line needs a register map of version 2 (spray.identity.map_version is"
                f" {spray.identity.map_version}): version 1 devices have no trigger input"
            )
        return self

    @property
    def trigger_line(self) -> bool:
        """Whether cooling is hardware-timed: the spray unit starts on the generator's pulse-end line."""
        return bool(getattr(self.spray, "trigger_line", False))

    def with_served_tcp(self, report: dict[str, Any]) -> Rig:
        """The rig with each Modbus TCP device of ``port = 0`` pointed at the port its server reported."""
        tcp = report.get("modbus_tcp")
        port = tcp.get("port") if isinstance(tcp, dict) else None
        if not isinstance(port, int):
            return self
        update = {}
        for device in DEVICES:
            cfg = getattr(self, device)
            if isinstance(cfg, ModbusTcp) and cfg.port == 0:
                update[device] = cfg.model_copy(update={"port": port})
        return self.model_copy(update=update) if update else self

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> Rig:
        """A healthy device must never look silent: its longest gap between replies (its refresh period, or
        for the generator and spray unit the heartbeat poll, which the monitor sends at the thermometer's
        period) plus one call must stay below its watchdog, and below the generator's own watchdog."""
        monitor_ms = self.thermometer.poll_ms
        for device in DEVICES:
            cfg = self.timing(device)
            gap = self.refresh_period_ms(device) + cfg.call_budget_ms
            held = device in ("plasma", "spray") and isinstance(cfg, ModbusRtu | ModbusTcp)
            if device in ("plasma", "spray"):
                gap += monitor_ms + (ROUTINE_HOLD_MAX_S * 1000.0 if held else 0.0)
            if gap >= cfg.watchdog_ms:
                extra = ", plus the monitor period" if device in ("plasma", "spray") else ""
                extra += " and the longest routine hold of a cooling chain" if held else ""
                raise ValueError(
                    f"{device}: a healthy device can be silent for {gap:g} ms (its poll or heartbeat period plus one"
                    f" call{extra}), not below its watchdog_ms {cfg.watchdog_ms:g}: the session would stop at"
                    " device_watchdog"
                )
        plasma = self.plasma
        if (
            isinstance(plasma, PlasmaSim)
            and plasma.poll_ms + monitor_ms + plasma.call_budget_ms >= plasma.own_watchdog_ms
        ):
            raise ValueError(
                f"plasma.own_watchdog_ms ({plasma.own_watchdog_ms:g}) must be above the longest gap between the"
                f" controller's requests to the generator ({plasma.poll_ms + monitor_ms + plasma.call_budget_ms:g} ms:"
                " its poll_ms, the monitor period (thermometer.poll_ms) and one call)"
            )
        return self

    @model_validator(mode="after")
    def _ages_reachable(self) -> Rig:
        for device in DEVICES:
            cfg = self.timing(device)
            if device == "thermometer" or cfg.max_age_ms is None:
                continue
            needed = self.refresh_period_ms(device) + cfg.call_budget_ms
            if cfg.max_age_ms <= needed:
                raise ValueError(
                    f"{device}.max_age_ms = {cfg.max_age_ms:g} is not above one refresh period plus one call"
                    f" ({needed:g} ms): every status would count as stale"
                )
        return self

    def timing(self, device: str) -> DeviceTiming:
        value = getattr(self, device)
        assert isinstance(value, DeviceTiming)
        return value

    def refresh_period_ms(self, device: str) -> float:
        """How often the controller hears from a device when all is well: its poll period, or for the
        safety inputs the period at which ``wait_change`` returns without a change."""
        cfg = self.timing(device)
        if device == "safety":
            return float(getattr(cfg, "heartbeat_ms", cfg.poll_ms))
        return cfg.poll_ms

    def max_age_s(self, device: str, reading_max_age_ms: float) -> float:
        """The oldest status of ``device`` a guard accepts (the thermometer: the oldest sample)."""
        cfg = self.timing(device)
        if device == "thermometer":
            bound = reading_max_age_ms if cfg.max_age_ms is None else min(cfg.max_age_ms, reading_max_age_ms)
            return bound / 1000.0
        if cfg.max_age_ms is not None:
            return cfg.max_age_ms / 1000.0
        return (self.refresh_period_ms(device) + cfg.call_budget_ms + 50.0) / 1000.0

    def pulse_latencies_s(self) -> PulseLatencies:
        """What the software pulse bound must allow for on this rig's generator link.

        On a wire a command may wait behind ``LINK_QUEUE`` exchanges already on the link (a shared bus carries
        heartbeats and the other devices' polls), then needs its own frame (RTU:
        11 bits a character plus the 3.5-character gap; TCP: half a loopback/LAN round trip, taken as 0.5 ms);
        the generator starts emission within its fire latency (the sim's ``latency_ms``, or the contract's
        FIRE_LATENCY_MS); seeing the pulse over takes one status read."""
        cfg = self.plasma
        if isinstance(cfg, PlasmaSim):
            latency_s = cfg.latency_ms / 1000.0
            return PulseLatencies(latency_s, 0.0, 0.0, latency_s, latency_s)
        if isinstance(cfg, ModbusRtu):
            status_ms = cfg.frame_ms(8) + cfg.frame_ms(5 + 2 * STATUS_REGISTERS)  # the status block read
            command_ms = cfg.frame_ms(8)  # a single-register write
        else:
            status_ms, command_ms = 2 * TCP_ONE_WAY_MS, TCP_ONE_WAY_MS
        fire_ms = LINK_QUEUE * status_ms + command_ms + FIRE_LATENCY_MS  # behind exchanges, then its own frame
        typical_ms = command_ms + FIRE_LATENCY_MS
        return PulseLatencies(
            fire_ms / 1000.0, command_ms / 1000.0, status_ms / 1000.0, typical_ms / 1000.0, command_ms / 1000.0
        )

    def valve_latency_s(self) -> float:
        """The spray valve's opening latency as the rig knows it (a simulator's setting; 0 when unknown)."""
        return self.spray.valve_latency_ms / 1000.0 if isinstance(self.spray, SpraySim) else 0.0

    @property
    def virtual_time_ok(self) -> bool:
        """Virtual time needs every device's world inside this process."""
        return self.all_simulated or (self.serve is not None and self.serve.spawn and self.serve.in_process)

    @property
    def all_simulated(self) -> bool:
        return all(self.timing(d).model_dump().get("kind") == "sim" for d in DEVICES)


DEVICES: tuple[str, ...] = ("plasma", "spray", "thermometer", "safety")
TCP_ONE_WAY_MS = 0.5  # a command's way to a device over Modbus TCP on loopback or a LAN
STATUS_REGISTERS = 16  # the generator's status block (COMMAND..FAULT_CODE), one read
LINK_QUEUE = 2  # exchanges a command may find ahead of it on a shared link
FIRE_LATENCY_MS = 1.0  # the device contract: a generator starts emission within 1 ms of FIRE


def load_rig(path: str | None) -> tuple[Rig, LoadedFile | None]:
    """No path: the in-process simulators. A file must name at least one device: an empty or mistyped one
    would otherwise run on the simulators without a word."""
    if path is None:
        return Rig(), None
    loaded = read_toml(path, "rig")
    rig = validate(Rig, loaded.data, loaded.path)  # an unknown section or field is named first
    if not any(device in loaded.data for device in DEVICES):
        raise InputError(
            loaded.path,
            [f"names no device (none of [{'], ['.join(DEVICES)}]); leave --rig out for the in-process simulators"],
        )
    if "name" not in loaded.data:  # not "in-process simulators (default)" for a rig file of its own
        rig = rig.model_copy(update={"name": Path(path).stem})
    return rig, loaded
