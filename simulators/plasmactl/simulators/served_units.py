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

Map version 2 (the default) adds the owner lease (:mod:`plasmactl.simulators.served_lease`): every write but
a claim must come as the live owner's write, else exception 1 and nothing changes; RELEASE lets the lease go.
It also adds the pulse-end trigger line between the two units (``trigger_line``): the generator reports each
pulse's end on its clock (END_COUNT, LAST_END_US) and the spray unit, armed, opens its valve TRIGGER_DELAY
after the edge by itself (EDGE_US, TRIGGERED_US on its clock).

A write that carries a command together with other registers (the spray's ``[SPRAY, ms]`` at 10-11, or the
generator's COMMAND..PULSE_SET) applies the other registers first, then executes the command.
"""

from __future__ import annotations

import logging

from plasmactl.clock import Clock
from plasmactl.drivers.registers import (
    MAP_VERSION,
    NO_ENERGY,
    PLASMA,
    SPRAY,
    FaultCode,
    PlasmaCommand,
    PlasmaStatusBit,
    SafetyBit,
    SprayCommand,
    SprayStatusBit,
)
from plasmactl.ports import DeviceError
from plasmactl.simulators.devices import SimPlasma, SimSpray
from plasmactl.simulators.sensors import SimSafety
from plasmactl.simulators.served_unit import HeartbeatWatchdog, ServedUnit, bit_of, raw_of

__all__ = ["HeartbeatWatchdog", "ServedPlasma", "ServedSpray", "ServedUnit"]

log = logging.getLogger("plasmactl.served")


class ServedPlasma(ServedUnit):
    """The PLASMA map (unit 1) over ``SimPlasma``, with ``SimSafety``'s inputs at SAFETY/TIP_DISTANCE."""

    def __init__(self, plasma: SimPlasma, safety: SimSafety, clock: Clock, map_version: int = MAP_VERSION) -> None:
        super().__init__(PLASMA, clock, map_version)
        self.plasma = plasma
        self.safety = safety
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
            bit_of(PlasmaStatusBit.ARMED, st.armed)
            | bit_of(PlasmaStatusBit.OUTPUT_ON, st.output_on)
            | bit_of(PlasmaStatusBit.FAULT, self.fault != FaultCode.NONE)
            | bit_of(PlasmaStatusBit.WATCHDOG_TRIPPED, self.watchdog_tripped)
        )
        m = self.map
        return {
            "COMMAND": self.command,
            "ENERGY_SET": raw_of(m["ENERGY_SET"], st.energy_setpoint_j),
            "PULSE_SET": raw_of(m["PULSE_SET"], st.pulse_ms_setpoint),
            "ENERGY_LIMIT": raw_of(m["ENERGY_LIMIT"], st.energy_limit_j),
            "HEARTBEAT": self.heartbeat,
            "STATUS": status,
            "PULSE_COUNT": st.pulse_count,
            "LAST_ENERGY": NO_ENERGY if st.last_energy_j is None else raw_of(m["LAST_ENERGY"], st.last_energy_j),
            "FAULT_CODE": int(self.fault),
            "SAFETY": bit_of(SafetyBit.ESTOP, inputs.estop) | bit_of(SafetyBit.FOOTSWITCH, inputs.footswitch),
            "TIP_DISTANCE": raw_of(m["TIP_DISTANCE"], inputs.tip_distance_mm),
            **self._ends(),
        }

    def _ends(self) -> dict[str, int]:
        """The pulse-end report on the generator's own clock (map v2)."""
        if self.map_version < 2:
            return {}
        ended, t_end = self.plasma.pulse_ends()
        return {
            "END_COUNT": ended,
            "LAST_END_US": self._device_us(t_end),
            "DEVICE_US": self._device_us(self.clock.now()),
        }

    async def write(self, writes: dict[str, int]) -> None:
        now = self.clock.now()
        self._check_limit(now)
        if "HEARTBEAT" in writes:
            self.heartbeat = writes["HEARTBEAT"]
            if self.watchdog.beat(self.heartbeat):
                self._renew()
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
            self._release()

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

    def __init__(self, spray: SimSpray, clock: Clock, map_version: int = MAP_VERSION) -> None:
        super().__init__(SPRAY, clock, map_version)
        self.spray = spray
        self.command = SPRAY["COMMAND"].default
        self.spray_ms = SPRAY["SPRAY_MS"].default
        self.trigger_delay = SPRAY["TRIGGER_DELAY"].default
        self.heartbeat = SPRAY["HEARTBEAT"].default
        self.fault = FaultCode.NONE
        self.watchdog = HeartbeatWatchdog(clock, SPRAY["WATCHDOG_MS"].default / 1000.0, self._watchdog_trip)

    async def read_image(self) -> dict[str, int]:
        st = await self.spray.status()
        status = (
            bit_of(SprayStatusBit.VALVE_OPEN, st.valve_open)
            | bit_of(SprayStatusBit.SPRAY_COMMANDED, st.spray_commanded)
            | bit_of(SprayStatusBit.FAULT, self.fault != FaultCode.NONE)
            | bit_of(SprayStatusBit.TRIGGER_ARMED, st.trigger_armed)
        )
        m, sp = self.map, self.spray
        trigger = {
            "TRIGGER_DELAY": self.trigger_delay,
            "TRIGGER_COUNT": sp.trigger_count & 0xFFFF,
            "EDGE_US": self._device_us(sp.edge_t),
            "TRIGGERED_US": self._device_us(sp.triggered_t),
        }
        return {
            **(trigger if self.map_version >= 2 else {}),
            "COMMAND": self.command,
            "SPRAY_MS": self.spray_ms,
            "HEARTBEAT": self.heartbeat,
            "STATUS": status,
            "RESERVOIR": raw_of(m["RESERVOIR"], st.reservoir_ml),
            "FLOW": raw_of(m["FLOW"], st.flow_ml_s),
            "SPRAY_COUNT": st.spray_count & 0xFFFF,
            "FAULT_CODE": int(self.fault),
        }

    async def write(self, writes: dict[str, int]) -> None:
        if "HEARTBEAT" in writes:
            self.heartbeat = writes["HEARTBEAT"]
            if self.watchdog.beat(self.heartbeat):
                self._renew()
                if self.fault == FaultCode.WATCHDOG:
                    self.fault = FaultCode.NONE
        if "SPRAY_MS" in writes:
            self.spray_ms = writes["SPRAY_MS"]
        if "TRIGGER_DELAY" in writes:
            self.trigger_delay = writes["TRIGGER_DELAY"]
        if "COMMAND" in writes:
            command = SprayCommand(writes["COMMAND"])
            if command == SprayCommand.SPRAY:
                await self.spray.spray(self.spray_ms / 1000.0)
            elif command == SprayCommand.ARM_TRIGGER:
                delay_s = self.trigger_delay / SPRAY["TRIGGER_DELAY"].scale / 1000.0
                await self.spray.arm_trigger(self.spray_ms / 1000.0, delay_s)
            elif command == SprayCommand.DISARM_TRIGGER:
                await self.spray.disarm_trigger()
            elif command == SprayCommand.STOP:
                await self.spray.stop()
            elif command == SprayCommand.RELEASE:
                await self.spray.disarm_trigger()
                await self.spray.stop()
                await self.watchdog.stop()
                self._release()
            self.command = writes["COMMAND"]

    async def _watchdog_trip(self) -> None:
        await self.spray.stop()
        self.fault = FaultCode.WATCHDOG
        self.trips.append(self.clock.now())
        log.warning("spray: heartbeat lost for %.0f ms: valve closed", self.watchdog.window_s * 1000)

    async def stop(self) -> None:
        await self.watchdog.stop()
        await self.spray.stop()
