"""The served Modbus units: the register contract mapped onto the sim device models, with device-side
protection.

Each unit is a pymodbus ``SimDevice`` built from the ``Register`` declarations (holding registers only;
read-only registers ``readonly``; unmapped addresses invalid, so pymodbus answers exception 2 for them). Its
``action`` hook fills every read from the model and turns every write into model calls, after checking it
against the declarations: a write must cover whole registers (else exception 2) and carry raw values
inside the declared write range (else exception 3). A device that refuses a command answers the
``DeviceError`` code as the exception code (3 illegal value, 4 device failure, 6 busy).

Device-side protection, as the real boxes have it:

- The generator's heartbeat watchdog, armed by the first HEARTBEAT write: when the value has not changed for
  longer than WATCHDOG_MS it switches the output off and disarms, and latches FAULT_CODE 1 with STATUS bits
  FAULT and WATCHDOG_TRIPPED. A latched fault refuses ARM and FIRE (exception 4) until COMMAND = RESET_FAULT.
- The generator never emits longer than ``hw_max_pulse_ms`` (the model cuts a pulse there); a pulse that ran
  into that limit (stuck timer) latches FAULT_CODE 2. Its dose monitor ends any pulse at ENERGY_LIMIT first
  (no fault: the controller judges the energy, which then sits at the limit).
- The spray unit's own heartbeat watchdog closes the valve when its window passes (FAULT_CODE 1 until the
  next heartbeat; the unit has no reset command).
- COMMAND = RELEASE (generator 6, spray unit 3) is a controller's clean goodbye: the output off and disarmed
  (the valve closed), and the watchdog stands down until the next HEARTBEAT write, so the end of a session is
  not a lost heartbeat and the next session finds the device without a latched fault.

A write that carries a command together with other registers (the spray's ``[SPRAY, ms]`` at 10-11, or the
generator's COMMAND..PULSE_SET) applies the other registers first, then executes the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from plasmactl.clock import Clock
from plasmactl.drivers.registers import (
    NO_ENERGY,
    PLASMA,
    SPRAY,
    DeviceMap,
    FaultCode,
    PlasmaCommand,
    PlasmaStatusBit,
    Register,
    SafetyBit,
    SprayCommand,
    SprayStatusBit,
    join,
    split,
)
from plasmactl.ports import DeviceError
from plasmactl.simulators.devices import SimPlasma, SimSpray
from plasmactl.simulators.sensors import SimSafety

log = logging.getLogger("plasmactl.served")


def _bit(position: int, on: bool) -> int:
    return (1 << position) if on else 0


def _raw(reg: Register, value: float) -> int:
    """An engineering value as the register's raw integer, clamped to what its words can carry."""
    if not math.isfinite(value):
        return 0
    return min(max(round(value * reg.scale), 0), (1 << (16 * reg.words)) - 1)


def _exception_code(exc: DeviceError) -> ExcCodes:
    try:
        return ExcCodes(exc.code) if exc.code is not None else ExcCodes.DEVICE_FAILURE
    except ValueError:
        return ExcCodes.DEVICE_FAILURE


class HeartbeatWatchdog:
    """Trips ``on_trip`` when the heartbeat value has not changed for longer than ``window_s``.

    Armed by the first heartbeat write (whatever its value); a write of the same value again is no
    heartbeat. After a trip it is disarmed until the next heartbeat write.
    """

    def __init__(self, clock: Clock, window_s: float, on_trip: Callable[[], Awaitable[None]]) -> None:
        self.clock = clock
        self.window_s = window_s
        self._on_trip = on_trip
        self.armed = False
        self.last_beat = -math.inf
        self._value: int | None = None
        self._task: asyncio.Task[None] | None = None

    def beat(self, value: int) -> bool:
        """A HEARTBEAT write; True if it counts as a heartbeat."""
        if self.armed and value == self._value:
            return False
        self._value = value
        self.last_beat = self.clock.now()
        if not self.armed:
            self.armed = True
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name="served heartbeat watchdog")
        return True

    async def _run(self) -> None:
        while self.armed:
            deadline = self.last_beat + self.window_s
            if self.clock.now() >= deadline:
                self.armed = False
                await self._on_trip()
                return
            await self.clock.sleep_until(deadline)

    async def stop(self) -> None:
        self.armed = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ServedUnit(ABC):
    """One Modbus unit over a device map: reads filled from ``read_image``, writes checked then ``write``."""

    def __init__(self, device_map: DeviceMap) -> None:
        self.map = device_map
        self._at = {address: reg for reg in device_map for address in reg.addresses}
        self.trips: list[float] = []  # clock times at which the unit's own watchdog tripped

    @property
    def unit_id(self) -> int:
        return self.map.unit_id

    def sim_device(self) -> SimDevice:
        simdata = [
            SimData(r.address, values=split(r.default, r.words), datatype=DataType.REGISTERS, readonly=r.access == "R")
            for r in self.map
        ]
        return SimDevice(id=self.map.unit_id, simdata=simdata, action=self._action)

    @abstractmethod
    async def read_image(self) -> dict[str, int]:
        """Raw values of the registers that come from the model (the others keep their declared default)."""

    @abstractmethod
    async def write(self, writes: dict[str, int]) -> None:
        """Apply checked raw values (a ``DeviceError`` refuses the request)."""

    @abstractmethod
    async def stop(self) -> None:
        """Power off: stop the unit's timers and switch its actuator off."""

    async def _action(
        self,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        del function_code
        if values is None:  # a read (also the read-back of a single-register write)
            for name, raw in (await self.read_image()).items():
                shown = self.map[name]
                for i, word in enumerate(split(raw, shown.words)):
                    registers[shown.address + i - start] = word
            return None
        words = [int(v) for v in values]
        writes: dict[str, int] = {}
        i = 0
        while i < count:
            reg = self._at.get(address + i)
            if reg is None or reg.address != address + i or reg.address + reg.words > address + count:
                return ExcCodes.ILLEGAL_ADDRESS  # unmapped, or only part of a 32-bit register
            raw = join(words[i : i + reg.words])
            if not reg.low <= raw <= reg.high:
                return ExcCodes.ILLEGAL_VALUE
            writes[reg.name] = raw
            i += reg.words
        try:
            await self.write(writes)
        except DeviceError as exc:
            return _exception_code(exc)
        return None


class ServedPlasma(ServedUnit):
    """The PLASMA map (unit 1) over ``SimPlasma``, with ``SimSafety``'s inputs at SAFETY/TIP_DISTANCE."""

    def __init__(self, plasma: SimPlasma, safety: SimSafety, clock: Clock) -> None:
        super().__init__(PLASMA)
        self.plasma = plasma
        self.safety = safety
        self.clock = clock
        self.command = PLASMA["COMMAND"].default
        self.heartbeat = PLASMA["HEARTBEAT"].default
        self.fault = FaultCode.NONE
        self.watchdog_tripped = False
        self.watchdog = HeartbeatWatchdog(clock, PLASMA["WATCHDOG_MS"].default / 1000.0, self._watchdog_trip)
        self._limit_at: float | None = None  # end of a pulse the hardware limit will cut

    def _check_limit(self, now: float) -> None:
        if self._limit_at is not None and now >= self._limit_at:
            self._limit_at = None
            self.fault = FaultCode.PULSE_LIMIT

    def _cut(self, now: float) -> None:
        """The output was switched off at ``now``: a pulse cut before the hardware limit never reaches it."""
        if self._limit_at is not None and now < self._limit_at:
            self._limit_at = None

    async def read_image(self) -> dict[str, int]:
        self._check_limit(self.clock.now())
        st = await self.plasma.status()
        inputs = await self.safety.read()
        status = (
            _bit(PlasmaStatusBit.ARMED, st.armed)
            | _bit(PlasmaStatusBit.OUTPUT_ON, st.output_on)
            | _bit(PlasmaStatusBit.FAULT, self.fault != FaultCode.NONE)
            | _bit(PlasmaStatusBit.WATCHDOG_TRIPPED, self.watchdog_tripped)
        )
        m = self.map
        return {
            "COMMAND": self.command,
            "ENERGY_SET": _raw(m["ENERGY_SET"], st.energy_setpoint_j),
            "PULSE_SET": _raw(m["PULSE_SET"], st.pulse_ms_setpoint),
            "ENERGY_LIMIT": _raw(m["ENERGY_LIMIT"], st.energy_limit_j),
            "HEARTBEAT": self.heartbeat,
            "STATUS": status,
            "PULSE_COUNT": st.pulse_count,
            "LAST_ENERGY": NO_ENERGY if st.last_energy_j is None else _raw(m["LAST_ENERGY"], st.last_energy_j),
            "FAULT_CODE": int(self.fault),
            "SAFETY": _bit(SafetyBit.ESTOP, inputs.estop) | _bit(SafetyBit.FOOTSWITCH, inputs.footswitch),
            "TIP_DISTANCE": _raw(m["TIP_DISTANCE"], inputs.tip_distance_mm),
        }

    async def write(self, writes: dict[str, int]) -> None:
        now = self.clock.now()
        self._check_limit(now)
        if "HEARTBEAT" in writes:
            self.heartbeat = writes["HEARTBEAT"]
            self.watchdog.beat(self.heartbeat)
        if "ENERGY_SET" in writes or "PULSE_SET" in writes:
            m, p = self.map, self.plasma
            energy = writes["ENERGY_SET"] / m["ENERGY_SET"].scale if "ENERGY_SET" in writes else p.energy_j
            pulse = writes["PULSE_SET"] / m["PULSE_SET"].scale if "PULSE_SET" in writes else p.pulse_ms
            if energy > 0 and pulse > 0:
                p.set_point(energy, pulse)  # checks the pulse against the hardware limit
            else:  # the other setpoint has never been set: store this one, FIRE is refused until both are
                if pulse > p.cfg.hw_max_pulse_ms:
                    raise DeviceError("plasma", f"pulse length {pulse!r} ms out of range", code=3)
                p.energy_j, p.pulse_ms = energy, pulse
        if "ENERGY_LIMIT" in writes:
            self.plasma.set_energy_limit(writes["ENERGY_LIMIT"] / self.map["ENERGY_LIMIT"].scale)
        if "COMMAND" in writes:
            await self._execute(PlasmaCommand(writes["COMMAND"]), now)
            self.command = writes["COMMAND"]

    def _refuse_if_faulted(self, what: str) -> None:
        if self.fault != FaultCode.NONE:
            raise DeviceError("plasma", f"{what} refused: fault {self.fault.name} latched (reset first)", code=4)

    async def _execute(self, command: PlasmaCommand, now: float) -> None:
        p = self.plasma
        if command == PlasmaCommand.ARM:
            self._refuse_if_faulted("arm")
            await p.arm()
        elif command == PlasmaCommand.DISARM:
            await p.disarm()
            self._cut(now)
        elif command == PlasmaCommand.FIRE:
            self._refuse_if_faulted("fire")
            if p.energy_j <= 0 or p.pulse_ms <= 0 or p.energy_limit_j <= 0:
                raise DeviceError("plasma", "fire refused: ENERGY_SET, PULSE_SET and ENERGY_LIMIT not all set", code=4)
            await p.fire()
            window = p.pulse_window()
            # the timer is stuck and the dose monitor did not end it: the hardware limit does
            if window is not None and window[1] - window[0] >= p.cfg.hw_max_pulse_ms / 1000.0 - 1e-9:
                self._limit_at = window[1]
        elif command == PlasmaCommand.OUTPUT_OFF:
            await p.output_off()
            self._cut(now)
        elif command == PlasmaCommand.RESET_FAULT:
            self.fault = FaultCode.NONE
            self.watchdog_tripped = False
        elif command == PlasmaCommand.RELEASE:  # a clean end of a session is no lost heartbeat
            await p.disarm()
            self._cut(now)
            await self.watchdog.stop()

    async def _watchdog_trip(self) -> None:
        now = self.clock.now()
        self._check_limit(now)
        await self.plasma.disarm()  # output off first, then disarmed
        self._cut(now)
        self.watchdog_tripped = True
        self.fault = FaultCode.WATCHDOG
        self.trips.append(now)
        log.warning("plasma: heartbeat lost for %.0f ms: output off, disarmed", self.watchdog.window_s * 1000)

    async def stop(self) -> None:
        await self.watchdog.stop()
        await self.plasma.disarm()


class ServedSpray(ServedUnit):
    """The SPRAY map (unit 2) over ``SimSpray``."""

    def __init__(self, spray: SimSpray, clock: Clock) -> None:
        super().__init__(SPRAY)
        self.spray = spray
        self.clock = clock
        self.command = SPRAY["COMMAND"].default
        self.spray_ms = SPRAY["SPRAY_MS"].default
        self.heartbeat = SPRAY["HEARTBEAT"].default
        self.fault = FaultCode.NONE
        self.watchdog = HeartbeatWatchdog(clock, SPRAY["WATCHDOG_MS"].default / 1000.0, self._watchdog_trip)

    async def read_image(self) -> dict[str, int]:
        st = await self.spray.status()
        status = (
            _bit(SprayStatusBit.VALVE_OPEN, st.valve_open)
            | _bit(SprayStatusBit.SPRAY_COMMANDED, st.spray_commanded)
            | _bit(SprayStatusBit.FAULT, self.fault != FaultCode.NONE)
        )
        m = self.map
        return {
            "COMMAND": self.command,
            "SPRAY_MS": self.spray_ms,
            "HEARTBEAT": self.heartbeat,
            "STATUS": status,
            "RESERVOIR": _raw(m["RESERVOIR"], st.reservoir_ml),
            "FLOW": _raw(m["FLOW"], st.flow_ml_s),
            "SPRAY_COUNT": st.spray_count & 0xFFFF,
            "FAULT_CODE": int(self.fault),
        }

    async def write(self, writes: dict[str, int]) -> None:
        if "HEARTBEAT" in writes:
            self.heartbeat = writes["HEARTBEAT"]
            if self.watchdog.beat(self.heartbeat) and self.fault == FaultCode.WATCHDOG:
                self.fault = FaultCode.NONE
        if "SPRAY_MS" in writes:
            self.spray_ms = writes["SPRAY_MS"]
        if "COMMAND" in writes:
            command = SprayCommand(writes["COMMAND"])
            if command == SprayCommand.SPRAY:
                await self.spray.spray(self.spray_ms / 1000.0)
            elif command == SprayCommand.STOP:
                await self.spray.stop()
            elif command == SprayCommand.RELEASE:
                await self.spray.stop()
                await self.watchdog.stop()
            self.command = writes["COMMAND"]

    async def _watchdog_trip(self) -> None:
        await self.spray.stop()
        self.fault = FaultCode.WATCHDOG
        self.trips.append(self.clock.now())
        log.warning("spray: heartbeat lost for %.0f ms: valve closed", self.watchdog.window_s * 1000)

    async def stop(self) -> None:
        await self.watchdog.stop()
        await self.spray.stop()
