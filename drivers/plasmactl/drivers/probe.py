"""``plasmactl probe``: every device of a rig, each on its own, by reads only.

A session stops at the first device that does not answer; a bench engineer setting up a rig wants them
all: which answer, who they say they are (identity block or ``$ID``), their state and fault code, who owns
their lease (map v2), and the round trip. Nothing is written (no command, no heartbeat), so probing leaves
every device as it was and can run beside a session.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from plasmactl.clock import Clock
from plasmactl.ports import DeviceError
from plasmactl.rig import DEVICES, ModbusRtu, ModbusTcp, Rig, SerialLine

from .devices import DeviceIdentity, ModbusPlasma, ModbusSafety, ModbusSpray
from .errors import IdentityMismatch
from .link_registry import LinkRegistry
from .rig import resolve_port
from .thermometer import SerialThermometer

DRIVERS: dict[str, type[ModbusPlasma] | type[ModbusSpray] | type[ModbusSafety]] = {
    "plasma": ModbusPlasma,
    "spray": ModbusSpray,
    "safety": ModbusSafety,
}


@dataclass
class DeviceReport:
    device: str
    kind: str
    endpoint: str
    ok: bool = False
    problem: str | None = None
    identity: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    round_trip_ms: dict[str, float] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _identity(ident: DeviceIdentity) -> dict[str, Any]:
    return {
        "vendor": f"0x{ident.vendor:04X}",
        "model": f"0x{ident.model:04X}",
        "firmware": ".".join(str(v) for v in ident.firmware),
        "serial": ident.serial,
        "map_version": ident.map_version,
    }


def _times(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 3), "max": round(max(samples), 3), "n": len(samples)}


async def _status(device: str, driver: ModbusPlasma | ModbusSpray | ModbusSafety) -> dict[str, Any]:
    lease: dict[str, Any] = {}
    if isinstance(driver, ModbusPlasma | ModbusSpray) and driver.has_lease:  # map v2: who owns it now
        owner = await driver.lease_owner()
        lease = {"lease_owner": f"0x{owner:08X}" if owner else "free"}
    if isinstance(driver, ModbusPlasma):
        p = await driver.status()
        state = {"armed": p.armed, "output_on": p.output_on, "fault_code": p.fault_code, "pulse_count": p.pulse_count}
        return state | lease
    if isinstance(driver, ModbusSpray):
        s = await driver.status()
        return {"valve_open": s.valve_open, "reservoir_ml": s.reservoir_ml, "fault_code": s.fault_code} | lease
    st = await driver.read()
    return {"estop": st.estop, "footswitch": st.footswitch, "tip_distance_mm": st.tip_distance_mm}


async def _probe_modbus(
    device: str, cfg: ModbusTcp | ModbusRtu, links: LinkRegistry, clock: Clock, ports: dict[str, str], reads: int
) -> DeviceReport:
    path = resolve_port(device, cfg.port, ports) if isinstance(cfg, ModbusRtu) else None
    link = links.acquire(cfg, path)
    report = DeviceReport(device, cfg.kind, f"{link.endpoint} unit {cfg.unit_id}")
    driver = DRIVERS[device](link, cfg, clock)
    samples: list[float] = []
    try:
        for _ in range(reads):
            t0 = time.perf_counter()
            ident = await driver.check_identity()
            samples.append((time.perf_counter() - t0) * 1000.0)
        report.identity = _identity(ident)
        report.status = await _status(device, driver)
        report.ok = True
    except IdentityMismatch as exc:
        report.identity, report.problem = dict(exc.found), str(exc)
    except DeviceError as exc:
        report.problem = str(exc)
    report.round_trip_ms = _times(samples) if samples else None
    return report


async def _probe_thermometer(cfg: SerialLine, clock: Clock, ports: dict[str, str], reads: int) -> DeviceReport:
    path = resolve_port("thermometer", cfg.port, ports)
    report = DeviceReport("thermometer", cfg.kind, path)
    therm = SerialThermometer(cfg, clock, port=path)
    samples: list[float] = []
    try:
        vendor, model, firmware, map_version = await therm.connect()
        report.identity = {"vendor": vendor, "model": model, "firmware": firmware, "map_version": map_version}
        for _ in range(reads):
            t0 = time.perf_counter()
            reading = await therm.read()
            samples.append((time.perf_counter() - t0) * 1000.0)
        report.status = {"skin_c": round(reading.value_c, 2)}
        report.ok = True
    except IdentityMismatch as exc:
        report.identity, report.problem = dict(exc.found), str(exc)
    except DeviceError as exc:
        report.problem = str(exc)
    finally:
        await therm.close()
    report.round_trip_ms = _times(samples) if samples else None
    return report


async def probe_rig(rig: Rig, clock: Clock, ports: dict[str, str] | None = None, reads: int = 5) -> list[DeviceReport]:
    """One report per device of ``rig`` (in-process simulators are reported as such, without a probe)."""
    served = ports or {}
    links = LinkRegistry()
    reports: list[DeviceReport] = []
    try:
        for device in DEVICES:
            cfg = getattr(rig, device)
            if isinstance(cfg, ModbusTcp | ModbusRtu):
                reports.append(await _probe_modbus(device, cfg, links, clock, served, reads))
            elif isinstance(cfg, SerialLine):
                reports.append(await _probe_thermometer(cfg, clock, served, reads))
            else:
                reports.append(DeviceReport(device, cfg.kind, "in-process simulator", ok=True))
    finally:
        await links.close()
    return reports
