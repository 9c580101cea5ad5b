"""The E-stop is a hardware loop too: the generator reads its own E-stop input and switches its output off
the instant it is pressed and disarms, whatever the controller is doing or whether it is there at all (here
nobody talks to the generator after FIRE: the controller was killed). Arm and fire are refused while it is
pressed. In the served model (over Modbus TCP) and the in-process one alike: the controller's interlock is
the first layer, this the second."""

from __future__ import annotations

import asyncio

import pytest

from plasmactl import clock as clockmod
from plasmactl.clock import Clock, LoopClock
from plasmactl.drivers.registers import PLASMA, PlasmaCommand, PlasmaStatusBit
from plasmactl.faults import FaultScenario
from plasmactl.ports import DeviceError
from plasmactl.rig import Rig
from plasmactl.simulators.devices import SimPlasma
from plasmactl.simulators.inprocess import build_devices
from test_served_support import bit, command, configure, modbus_client, read, scenario, served

pytestmark = pytest.mark.hazard("H2")

ESTOP_AT = 0.5
STUCK_ESTOP = scenario(
    {"device": "plasma", "kind": "stuck_on", "at_s": 0.0},
    {"device": "safety", "kind": "estop", "at_s": ESTOP_AT, "duration_s": 0.3},
)


async def _until(sim_clock: Clock, t: float) -> None:
    await sim_clock.sleep_until(t)


async def test_a_pressed_estop_switches_the_served_output_off_with_nobody_talking() -> None:
    async with served(faults=STUCK_ESTOP) as sim, modbus_client(sim, "tcp") as client:
        clock = sim.world.clock
        await configure(client, 1.0, 20.0, limit_j=10.0)  # stuck on: only the 150 ms hardware limit would end it
        await command(client, PlasmaCommand.ARM)
        await _until(clock, ESTOP_AT - 0.08)
        await command(client, PlasmaCommand.FIRE)
        await asyncio.sleep(0.02)
        assert bit(await read(client, PLASMA, "STATUS"), PlasmaStatusBit.OUTPUT_ON)
        # from here on the "controller" is gone: no command, no heartbeat; only the E-stop is pressed
        await _until(clock, ESTOP_AT + 0.005)
        status = await read(client, PLASMA, "STATUS")
        assert not bit(status, PlasmaStatusBit.OUTPUT_ON) and not bit(status, PlasmaStatusBit.ARMED)
        pulse = sim.world.record.pulses[-1]
        assert pulse.t_off == pytest.approx(ESTOP_AT, abs=1e-9)  # off at the instant of the press
        rr = await command(client, PlasmaCommand.ARM)
        assert rr.isError() and rr.exception_code == 4  # refused while it is pressed
        await _until(clock, ESTOP_AT + 0.35)  # released
        assert not (await command(client, PlasmaCommand.ARM)).isError()


def test_the_in_process_generator_has_the_same_loop() -> None:
    async def main() -> None:
        faults = FaultScenario.model_validate({"fault": [{"device": "safety", "kind": "estop", "at_s": 0.002}]})
        devices, world = build_devices(Rig(), faults, 1, LoopClock())
        plasma = devices.plasma
        assert isinstance(plasma, SimPlasma)
        await plasma.configure(0.005, 5.0, 0.006)
        await plasma.arm()
        await plasma.fire()  # a 5 ms pulse from 0.5 ms: the press at 2 ms ends it there
        pulse = world.record.pulses[-1]
        assert pulse.t_off == pytest.approx(0.002) and pulse.energy_j < 0.005 * 0.4
        await asyncio.sleep(0.003)
        assert plasma.state_now() == {"armed": False, "output_on": False}
        with pytest.raises(DeviceError, match="E-stop input is pressed"):
            await plasma.arm()
        with pytest.raises(DeviceError, match="E-stop input is pressed"):
            await plasma.fire()

    clockmod.run(main(), virtual=True)  # virtual time from 0: the fault times are the world's
