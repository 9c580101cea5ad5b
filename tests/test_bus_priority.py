"""Request classes on a shared link (plasmactl.bus_priority): an urgent request overtakes the queue of
routine ones (never the exchange already on the wire); and a status read carries when it was sent, so a
reply late behind a busy link is not taken for the state at its arrival (a false pulse overrun)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.simulator import DataType, SimData, SimDevice

from plasmactl import bus_priority
from plasmactl.bus_priority import BusPriority
from plasmactl.clock import LoopClock
from plasmactl.controller import interlocks as il
from plasmactl.controller.trips import PulseFacts, Rule
from plasmactl.drivers.devices import ModbusPlasma
from plasmactl.drivers.link_registry import LinkRegistry
from plasmactl.drivers.modbus import ModbusLink, RequestPolicy, RtuEndpoint
from plasmactl.drivers.registers import PLASMA
from snapshots import NOW, healthy, plasma
from test_drivers_modbus import HOST, map_words, serve, stop, tcp


def slow_device(delay_s: float, log: list[int] | None = None) -> SimDevice:
    """The generator's map; every request takes ``delay_s``, one at a time (as on a bus)."""
    one_at_a_time = asyncio.Lock()

    async def slow(fc: int, start: int, address: int, count: int, regs: list[int], values: Any) -> None:
        async with one_at_a_time:
            if log is not None:
                log.append(address)
            await asyncio.sleep(delay_s)

    simdata = [SimData(address=0, values=map_words(PLASMA), datatype=DataType.REGISTERS)]
    return SimDevice(id=1, simdata=simdata, action=slow)


@pytest.mark.hazard("H1")
async def test_urgent_requests_overtake_routine_ones_on_one_link() -> None:
    served: list[int] = []
    server, port = await serve([slow_device(0.01, served)], framer=FramerType.RTU)
    link = ModbusLink(RtuEndpoint(f"socket://{HOST}:{port}"), policy=RequestPolicy(1.0, 0))
    done: list[str] = []

    async def read(name: str, address: int, priority: BusPriority) -> None:
        with bus_priority.at(priority):
            await link.read(1, address, 1)
        done.append(name)

    try:
        await link.open()
        tasks = [asyncio.create_task(read(f"routine{i}", i, BusPriority.ROUTINE)) for i in range(4)]
        await asyncio.sleep(0.002)  # routine0 is on the wire, 1-3 wait
        tasks.append(asyncio.create_task(read("cooling", 20, BusPriority.COOLING)))
        tasks.append(asyncio.create_task(read("safety", 30, BusPriority.SAFETY)))
        await asyncio.gather(*tasks)
    finally:
        await link.close()
        await stop(server)
    assert done == ["routine0", "safety", "cooling", "routine1", "routine2", "routine3"]
    assert served == [0, 30, 20, 1, 2, 3]  # the order the device saw them in


async def test_status_carries_when_its_request_went() -> None:
    server, port = await serve([slow_device(0.03)])
    cfg = tcp(port, 1, timeout_ms=200.0)
    links = LinkRegistry()
    clock = LoopClock()
    plasma_dev = ModbusPlasma(links.acquire(cfg), cfg, clock)
    try:
        await plasma_dev.link.open()
        before = clock.now()
        st = await plasma_dev.status()
    finally:
        await links.close()
        await stop(server)
    assert st.t_sent is not None
    assert before <= st.t_sent and st.t - st.t_sent >= 0.03
    assert st.sampled_after == st.t_sent


@pytest.mark.hazard("H5")
def test_overrun_is_judged_on_a_read_sent_after_the_bound() -> None:
    p = PulseFacts(4, 4, t_cmd=NOW - 0.01, bound=NOW - 0.002, expected_count=4)
    # sent before the bound, answered after it: the pulse may have ended in time (no trip, read again)
    late_reply = plasma(output_on=True, t=NOW, t_sent=NOW - 0.004)
    assert il.pulse_bound(healthy(pulse=p, plasma=late_reply)) is None
    not_yet_counted = plasma(output_on=False, pulse_count=3, t=NOW, t_sent=NOW - 0.004)
    assert il.pulse_bound(healthy(pulse=p, plasma=not_yet_counted)) is None
    # sent at or after the bound and still on: an overrun, timed from the request
    on_after = plasma(output_on=True, t=NOW, t_sent=NOW - 0.001)
    trip = il.pulse_bound(healthy(pulse=p, plasma=on_after))
    assert trip is not None and trip.rule == Rule.PULSE_OVERRUN and "9.00 ms after fire" in trip.reason
    missing = il.pulse_bound(healthy(pulse=p, plasma=plasma(output_on=False, pulse_count=3, t_sent=NOW - 0.001)))
    assert missing is not None and missing.rule == Rule.PULSE_NOT_DELIVERED
