"""Port implementations for the real devices: plasma generator, cold-spray unit, safety inputs (Modbus) and
the skin thermometer (serial line protocol).

Every status and reading carries the clock time at which its reply arrived. Values go through the
``Register`` declarations of :mod:`plasmactl.drivers.registers` both ways, so an out-of-range setpoint raises
``ValueError`` before anything is sent. ``connect()`` checks the device's identity (the session refuses to
start on :class:`IdentityMismatch`) and, on a map v2 device, claims its lease (:class:`LeaseHeld` refuses);
``close()`` stops the heartbeat and lets go of the device (off, disarmed, released: the lease too).
"""

from __future__ import annotations

import asyncio
import contextlib

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.clock import Clock
from plasmactl.ports import DeviceError, PlasmaStatus, SafetyState, SprayStatus

from .modbus import ModbusLink
from .modbus_device import DeviceIdentity, LeaseHeld, ModbusCfg, ModbusDevice, bit, encode, field_of
from .registers import (
    NO_ENERGY,
    PLASMA,
    SPRAY,
    Capability,
    PlasmaCommand,
    PlasmaStatusBit,
    SafetyBit,
    SprayCommand,
    SprayStatusBit,
    join,
)

__all__ = [
    "DeviceIdentity",
    "LeaseHeld",
    "ModbusPlasma",
    "ModbusSafety",
    "ModbusSpray",
]


class ModbusPlasma(ModbusDevice):
    """:class:`plasmactl.ports.PlasmaSource` over Modbus (PLASMA map)."""

    MAP = PLASMA
    NAME = "plasma"
    fired_at: float | None = None  # when the latest FIRE went on the wire

    async def connect(self) -> DeviceIdentity:
        ident = await super().connect()
        await self._take_over()
        return ident

    async def configure(self, energy_j: float, pulse_ms: float, energy_limit_j: float) -> None:
        """ENERGY_SET and PULSE_SET in one FC16 request, then ENERGY_LIMIT; ValueError (nothing sent) when
        any is out of range."""
        energy, pulse, limit = PLASMA["ENERGY_SET"], PLASMA["PULSE_SET"], PLASMA["ENERGY_LIMIT"]
        assert pulse.address == energy.address + energy.words
        words = encode(energy, energy_j) + encode(pulse, pulse_ms)
        limit_words = limit.encode_down(energy_limit_j)  # a dose limit is never rounded up
        await self._write(energy.address, words)
        await self._write(limit.address, limit_words)

    async def _command(self, command: PlasmaCommand, *, retry: bool = True) -> None:
        await self._write(PLASMA["COMMAND"].address, [int(command)], retry=retry)

    async def arm(self) -> None:
        await self._command(PlasmaCommand.ARM)

    async def disarm(self) -> None:
        await self._command(PlasmaCommand.DISARM)

    async def fire(self) -> None:
        # Never retried: a FIRE that reached the generator but whose reply was lost would fire twice.
        self.fired_at = None

        def sent() -> None:
            self.fired_at = self.clock.now()

        await self._write(PLASMA["COMMAND"].address, [int(PlasmaCommand.FIRE)], retry=False, on_send=sent)

    async def output_off(self) -> None:
        await self._command(PlasmaCommand.OUTPUT_OFF)

    async def reset_fault(self) -> None:
        await self._command(PlasmaCommand.RESET_FAULT)

    async def status(self) -> PlasmaStatus:
        t_sent = self.clock.now()
        start, w, t = await self._read_block("COMMAND", "FAULT_CODE")
        limit = PLASMA["ENERGY_LIMIT"]
        status = join(field_of(w, start, PLASMA["STATUS"]))
        last = field_of(w, start, PLASMA["LAST_ENERGY"])
        return PlasmaStatus(
            t=t,
            armed=bit(status, PlasmaStatusBit.ARMED),
            output_on=bit(status, PlasmaStatusBit.OUTPUT_ON),
            energy_setpoint_j=PLASMA["ENERGY_SET"].decode(field_of(w, start, PLASMA["ENERGY_SET"])),
            pulse_ms_setpoint=PLASMA["PULSE_SET"].decode(field_of(w, start, PLASMA["PULSE_SET"])),
            pulse_count=join(field_of(w, start, PLASMA["PULSE_COUNT"])),
            last_energy_j=None if join(last) == NO_ENERGY else PLASMA["LAST_ENERGY"].decode(last),
            fault_code=join(field_of(w, start, PLASMA["FAULT_CODE"])),
            energy_limit_j=limit.decode(field_of(w, start, limit)),
            t_sent=t_sent,
        )

    async def close(self) -> None:
        """Stop the heartbeat, leave the generator off and disarmed, and release it (its watchdog stands
        down, so the end of a session is not a lost heartbeat); best effort, bounded."""
        await super().close()
        if self.may_release:
            for command in (PlasmaCommand.OUTPUT_OFF, PlasmaCommand.DISARM, PlasmaCommand.RELEASE):
                with contextlib.suppress(DeviceError):
                    await self._command(command, retry=False)
        self.owned = False


class ModbusSpray(ModbusDevice):
    """:class:`plasmactl.ports.SprayUnit` over Modbus (SPRAY map)."""

    MAP = SPRAY
    NAME = "spray"
    _trigger_delay: list[int] | None = None  # the unit's TRIGGER_DELAY as last read or written (written on a change)

    async def connect(self) -> DeviceIdentity:
        ident = await super().connect()
        if self.cfg.trigger_line and not ident.capabilities >> Capability.TRIGGER_LINE & 1:
            raise DeviceError(
                self.name,
                f"the rig says spray.trigger_line = true, but the unit reports no trigger input (CAPABILITIES"
                f" 0x{ident.capabilities:04X}); wire the line and use a unit that has one, or set it false",
            )
        await self._take_over()
        if self.cfg.trigger_line:  # what the unit holds now: an arm with that delay is one write, not two
            reg = SPRAY["TRIGGER_DELAY"]
            self._trigger_delay = await self._read(reg.address, reg.words)
        return ident

    async def arm_trigger(self, duration_s: float, delay_s: float) -> None:
        """TRIGGER_DELAY (when it changed), then [ARM_TRIGGER, ms] in one request: the unit sprays by itself
        after the next edge."""
        delay = encode(SPRAY["TRIGGER_DELAY"], delay_s * 1000.0)
        if delay != self._trigger_delay:
            await self._write(SPRAY["TRIGGER_DELAY"].address, delay)
            self._trigger_delay = delay
        words = [int(SprayCommand.ARM_TRIGGER), *encode(SPRAY["SPRAY_MS"], duration_s * 1000.0)]
        await self._write(SPRAY["COMMAND"].address, words)

    async def disarm_trigger(self) -> None:
        await self._write(SPRAY["COMMAND"].address, [int(SprayCommand.DISARM_TRIGGER)])

    async def spray(self, duration_s: float) -> None:
        """[SPRAY, ms] to COMMAND..SPRAY_MS in one FC16 request; ValueError (nothing sent) when out of range."""
        command, length = SPRAY["COMMAND"], SPRAY["SPRAY_MS"]
        assert length.address == command.address + command.words
        words = [int(SprayCommand.SPRAY), *encode(length, duration_s * 1000.0)]
        await self._write(command.address, words)

    async def stop(self) -> None:
        await self._write(SPRAY["COMMAND"].address, [int(SprayCommand.STOP)])

    async def close(self) -> None:
        """Stop the heartbeat and release the unit (valve closed, its watchdog stands down); best effort."""
        await super().close()
        if self.may_release:
            with contextlib.suppress(DeviceError):
                await self._write(SPRAY["COMMAND"].address, [int(SprayCommand.RELEASE)], retry=False)
        self.owned = False

    async def status(self) -> SprayStatus:
        start, w, t = await self._read_block("STATUS", "FAULT_CODE")
        status = join(field_of(w, start, SPRAY["STATUS"]))
        return SprayStatus(
            t=t,
            valve_open=bit(status, SprayStatusBit.VALVE_OPEN),
            spray_commanded=bit(status, SprayStatusBit.SPRAY_COMMANDED),
            reservoir_ml=SPRAY["RESERVOIR"].decode(field_of(w, start, SPRAY["RESERVOIR"])),
            flow_ml_s=SPRAY["FLOW"].decode(field_of(w, start, SPRAY["FLOW"])),
            spray_count=join(field_of(w, start, SPRAY["SPRAY_COUNT"])),
            fault_code=join(field_of(w, start, SPRAY["FAULT_CODE"])),
            trigger_armed=bit(status, SprayStatusBit.TRIGGER_ARMED),
        )


class ModbusSafety(ModbusDevice):
    """:class:`plasmactl.ports.SafetyInputs` from the generator's SAFETY and TIP_DISTANCE (unit 1); the
    generator's heartbeat is :class:`ModbusPlasma`'s business."""

    MAP = PLASMA
    NAME = "safety"

    def __init__(self, link: ModbusLink, cfg: ModbusCfg, clock: Clock, *, name: str | None = None) -> None:
        super().__init__(link, cfg, clock, name=name)
        self._last: SafetyState | None = None  # the last state handed out: what a change is a change from
        self._reading: asyncio.Task[SafetyState] | None = None  # the read in flight, shared

    async def read(self) -> SafetyState:
        """The inputs now: always a read on the bus (the controller decides emission on it)."""
        return await self._poll()

    async def _poll(self) -> SafetyState:
        """One read of the inputs, also the state a change is judged from. A caller who asks while a read is
        in flight (the listener's and the pre-fire check's meet often) shares it: the state it gives is
        stamped with the moment that read went on the wire, and every rule judges that age; two reads back
        to back would only have held the bus twice, right before a pulse. The read runs in a task of its
        own, so a caller that gives up (its budget, a cancel) does not cut it short for the others."""
        task = self._reading
        if task is None or task.done():
            task = self._reading = asyncio.get_running_loop().create_task(self._read_inputs(), name="safety read")
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def close(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
        await super().close()

    async def _read_inputs(self) -> SafetyState:
        bus_priority.for_this_task(BusPriority.SAFETY)  # whoever asked: an E-stop read is a safety read
        # stamped when the request goes on the wire, not when the reply comes: the device may have read its
        # inputs at any moment in between, so the state is as old as the request (emission is judged on that
        # age). A wait for its turn on a shared link is not counted: the device had not answered yet.
        sent = [self.clock.now()]
        start, w, _ = await self._read_block("SAFETY", "TIP_DISTANCE", lambda: sent.append(self.clock.now()))
        t = sent[-1]
        bits = join(field_of(w, start, PLASMA["SAFETY"]))
        st = SafetyState(
            t=t,
            estop=bit(bits, SafetyBit.ESTOP),
            footswitch=bit(bits, SafetyBit.FOOTSWITCH),
            tip_distance_mm=PLASMA["TIP_DISTANCE"].decode(field_of(w, start, PLASMA["TIP_DISTANCE"])),
        )
        self._last = st
        return st

    async def wait_change(self, timeout_s: float) -> SafetyState:
        """Poll every ``poll_ms`` until an input differs from the last state handed out, or ``timeout_s``.
        Each read goes a period after the last one sent, by whoever sent it (a pre-fire check, or this wait
        before it ended): a caller that waits again as soon as a wait ends, or a check just before a pulse,
        would otherwise have the bus read the inputs twice in a row."""
        previous = self._last
        deadline = self.clock.now() + timeout_s
        period = self.cfg.poll_ms / 1000.0
        while True:
            # looked at again on waking: another caller may have read meanwhile, which moves the next read
            while self._last is not None and (due := min(self._last.t + period, deadline)) > self.clock.now():
                await self.clock.sleep_until(due)
            st = await self._poll()
            if previous is None or _inputs(st) != _inputs(previous):
                return st
            if self.clock.now() >= deadline:
                return st


def _inputs(st: SafetyState) -> tuple[bool, bool, float]:
    return st.estop, st.footswitch, st.tip_distance_mm


def _retrieve(task: asyncio.Task[SafetyState]) -> None:
    """A shared read whose callers all gave up still had its outcome looked at (no 'never retrieved')."""
    if not task.cancelled():
        task.exception()
