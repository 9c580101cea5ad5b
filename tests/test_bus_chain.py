"""A cooling chain on a shared link: what keeps the exchanges between a pulse's end and its water seen short.

- the link's gate holds routine requests (heartbeats, routine polls) back while a chain is open, a bounded
  time, and never the urgent classes (drivers/priority_gate.py, plasmactl.bus_priority);
- safety reads asked for while one is in flight share it, are stamped when they go on the wire, and the
  listener reads a period after the latest read by anyone (drivers/devices.py ModbusSafety);
- FIRE is stamped when it goes on the wire (the pulse is timed from there);
- the valve's timing is learned without the ratchet that made the first look ever later
  (controller/valve_timing.py);
- on the real clock the controller's garbage collector is frozen for the session (gc_policy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from plasmactl import bus_priority, gc_policy
from plasmactl.bus_priority import ROUTINE_HOLD_MAX_S, BusPriority
from plasmactl.clock import LoopClock
from plasmactl.clock import run as clock_run
from plasmactl.controller.valve_timing import ValveTiming
from plasmactl.drivers.devices import ModbusPlasma, ModbusSafety
from plasmactl.drivers.link_registry import LinkRegistry
from plasmactl.drivers.priority_gate import PriorityGate
from test_drivers_modbus import TOKEN, plain, tcp  # noqa: F401 - plain is a fixture

# ------------------------------------------------------------------------------------------ the routine hold


async def _take(gate: PriorityGate, priority: BusPriority, log: list[tuple[str, float]], name: str) -> None:
    async with gate.hold(priority):
        log.append((name, asyncio.get_running_loop().time()))
        await asyncio.sleep(0.001)


def test_a_routine_request_waits_on_a_free_link_while_a_chain_holds_it() -> None:
    async def main() -> list[tuple[str, float]]:
        gate, log = PriorityGate(), list[tuple[str, float]]()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        bus_priority.hold_routine(0.05)
        heartbeat = loop.create_task(_take(gate, BusPriority.ROUTINE, log, "heartbeat"))
        await asyncio.sleep(0.01)
        assert log == []  # the link is free, and still the heartbeat waits
        await _take(gate, BusPriority.SAFETY, log, "safety")  # the urgent classes go at once
        await _take(gate, BusPriority.COOLING, log, "spray read")
        await heartbeat
        return [(n, t - t0) for n, t in log]

    log = clock_run(main(), virtual=True)
    assert [n for n, _ in log] == ["safety", "spray read", "heartbeat"]
    assert log[0][1] == pytest.approx(0.01) and log[2][1] == pytest.approx(0.05)


def test_the_hold_ends_early_when_released_and_never_holds_a_request_longer_than_its_bound() -> None:
    async def main() -> tuple[float, float]:
        gate, log = PriorityGate(), list[tuple[str, float]]()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        bus_priority.hold_routine(0.08)
        first = loop.create_task(_take(gate, BusPriority.ROUTINE, log, "a"))
        await asyncio.sleep(0.02)
        bus_priority.release_routine()  # the chain's water was seen
        await first
        released = log[-1][1] - t0
        # chains back to back, each renewing the hold: a routine request still goes after ROUTINE_HOLD_MAX_S
        t1 = loop.time()
        second = loop.create_task(_take(gate, BusPriority.ROUTINE, log, "b"))
        while not second.done():
            bus_priority.hold_routine(ROUTINE_HOLD_MAX_S)
            await asyncio.sleep(0.01)
        bus_priority.release_routine()
        return released, log[-1][1] - t1

    released, starved = clock_run(main(), virtual=True)
    assert released == pytest.approx(0.02)
    assert ROUTINE_HOLD_MAX_S - 1e-9 <= starved <= ROUTINE_HOLD_MAX_S + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(BusPriority)), st.integers(0, 30), st.booleans()), min_size=1, max_size=12),
    st.integers(0, 60),
)
def test_held_or_not_every_request_gets_the_link_one_at_a_time(
    reqs: list[tuple[BusPriority, int, bool]], hold_ms: int
) -> None:
    """Random requests (some cancelled while waiting) under a hold: one holder at a time, every request not
    cancelled is served, no urgent one waits for the hold, no routine one waits past its bound."""

    async def main() -> None:
        gate = PriorityGate()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        bus_priority.hold_routine(hold_ms / 1000.0)
        holders = 0
        served: list[tuple[BusPriority, float, float]] = []
        who: set[int] = set()

        async def one(i: int, priority: BusPriority, at_ms: int) -> None:
            nonlocal holders
            await asyncio.sleep(at_ms / 1000.0)
            asked = loop.time()
            async with gate.hold(priority):
                holders += 1
                try:
                    assert holders == 1
                    served.append((priority, asked - t0, loop.time() - t0))
                    who.add(i)
                    await asyncio.sleep(0.002)
                finally:
                    holders -= 1

        tasks = [loop.create_task(one(i, p, at)) for i, (p, at, _) in enumerate(reqs)]
        await asyncio.sleep(0.005)
        for task, (_, _, cancel) in zip(tasks, reqs, strict=True):
            if cancel:
                task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            assert outcome is None or isinstance(outcome, asyncio.CancelledError), outcome
        assert {i for i, t in enumerate(tasks) if not t.cancelled()} <= who  # a cancel may come while holding
        for priority, asked, got in served:
            if priority == BusPriority.ROUTINE:
                assert got - asked <= ROUTINE_HOLD_MAX_S + 0.002 * len(reqs) + 1e-6
            else:
                assert got < hold_ms / 1000.0 + 0.002 * len(reqs) + 1e-6 or got - asked <= 0.002 * len(reqs) + 1e-6

    clock_run(main(), virtual=True)


# --------------------------------------------------------------------------------------------- safety reads


@contextlib.asynccontextmanager
async def _on_link(port: int, device: type[ModbusSafety] | type[ModbusPlasma], **cfg: Any) -> AsyncIterator[Any]:
    """A driver connected to the plain server over its own link: (driver, link, clock)."""
    links = LinkRegistry()
    config = tcp(port, 1, **cfg)
    link, clock = links.acquire(config), LoopClock()
    driver = (
        ModbusPlasma(link, config, clock, token=TOKEN) if device is ModbusPlasma else ModbusSafety(link, config, clock)
    )
    try:
        await driver.connect()
        yield driver, link, clock
    finally:
        await links.close()


async def test_safety_reads_asked_for_together_share_one_exchange_stamped_when_it_went(plain: int) -> None:  # noqa: F811
    async with _on_link(plain, ModbusSafety) as (safety, link, clock):
        before = link.stats.requests
        async with link._gate.hold(BusPriority.ROUTINE):  # the link busy with another exchange for 30 ms
            reads = [asyncio.ensure_future(safety.read()) for _ in range(3)]
            await asyncio.sleep(0.03)
            freed = clock.now()
        states = await asyncio.gather(*reads)
        assert link.stats.requests - before == 1  # one exchange for the three
        assert states[0] is states[1] is states[2]
        assert states[0].t >= freed  # stamped when it went on the wire, not when it was asked for


async def test_a_caller_that_gives_up_does_not_cut_the_shared_read_short(plain: int) -> None:  # noqa: F811
    async with _on_link(plain, ModbusSafety) as (safety, link, _):
        async with link._gate.hold(BusPriority.ROUTINE):
            impatient = asyncio.ensure_future(asyncio.wait_for(safety.read(), 0.005))
            patient = asyncio.ensure_future(safety.read())
            await asyncio.sleep(0.02)
        with pytest.raises(TimeoutError):
            await impatient
        assert (await patient).estop is False


async def test_the_listener_reads_a_period_after_the_latest_read_by_anyone(plain: int) -> None:  # noqa: F811
    async with _on_link(plain, ModbusSafety, poll_ms=30.0) as (safety, link, _):
        await safety.read()
        sent: list[float] = []
        waiting = asyncio.ensure_future(safety.wait_change(0.3))
        await asyncio.sleep(0)
        before = link.stats.requests
        for _ in range(8):  # a pre-fire read every 20 ms: the listener's own period (30 ms) never comes round
            await asyncio.sleep(0.02)
            sent.append((await safety.read()).t)
        assert link.stats.requests - before == len(sent)  # no listener read in between
        st = await waiting  # then it reads again a period after the last one, and returns at its deadline
        assert st.estop is False and st.t >= sent[-1] + 0.03 - 1e-6


async def test_fire_is_stamped_when_it_goes_on_the_wire(plain: int) -> None:  # noqa: F811
    async with _on_link(plain, ModbusPlasma) as (plasma, link, clock):
        asked = clock.now()
        async with link._gate.hold(BusPriority.ROUTINE):
            fire = asyncio.ensure_future(plasma.fire())
            await asyncio.sleep(0.02)
            freed = clock.now()
        await fire  # the plain unit takes the write (no pulse model behind it)
        assert plasma.fired_at is not None and plasma.fired_at >= freed > asked


# ------------------------------------------------------------------------------------------- valve timing


@settings(max_examples=200, deadline=None)
@example(latency_ms=3.6875, read_ms=0.21875, seed=0)  # stepped 1.1x past the valve and back, never settling
@given(
    latency_ms=st.floats(2.0, 40.0),
    read_ms=st.floats(0.2, 12.0),
    seed=st.integers(0, 10_000),
)
def test_the_first_look_settles_near_the_valve_not_at_several_times_it(
    latency_ms: float, read_ms: float, seed: int
) -> None:
    """A spray watch that looks first at ``first_look_s`` and then reads back to back (each read
    ``read_ms``, its state sampled at a random moment inside it): after 30 sprays the first look is no later
    than the valve plus one read, and the lead it reports covers what it saw."""
    rng = random.Random(seed)
    valve = ValveTiming(0.0)
    lat, read = latency_ms / 1000.0, read_ms / 1000.0
    for _ in range(30):
        t = valve.first_look_s()
        first = True
        while True:
            sampled = t + rng.uniform(0.0, read)
            if sampled >= lat:
                valve.seen_open(0.0, t + read, first, read)
                break
            first, t = False, t + read + 0.002
    assert valve.first_look_s() <= lat + read + 1e-9
    assert valve.lead_s() >= lat - 1e-9


def test_the_old_rule_ratcheted_the_first_look_up_to_five_reads() -> None:
    """What the rule replaced: 'look first at 0.8 x the last lead' on an 8 ms read and a 15 ms valve."""
    look, lat, read = 0.0, 0.015, 0.008
    for _ in range(40):
        seen = max(look, lat) + read  # the read that sees water ends a read after it began
        look = 0.8 * seen
    assert look > 2 * lat  # the old rule: ~4 reads late


# --------------------------------------------------------------------------------------------- gc policy


def test_the_collector_is_frozen_for_a_real_time_session_only() -> None:
    assert gc.get_freeze_count() == 0
    with gc_policy.quiet_collector(realtime=True):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with gc_policy.quiet_collector(realtime=False):
        assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("since_s", [0.7, 0.3, 1.1, 2.9])
def test_a_routine_request_held_to_its_bound_goes_at_that_time_in_virtual_time(since_s: float) -> None:
    """The wake-up timer for a held routine request fires at ``since + ROUTINE_HOLD_MAX_S``; judged there as
    ``now - since >= MAX`` (false by a rounding for 0.7 + 0.1), the gate set the same timer again and a
    virtual loop, which wakes exactly on time, spun for ever (a campaign worker hung at 100 % CPU)."""
    wakes = 0
    wake = PriorityGate._wake

    def counted(self: PriorityGate) -> None:
        nonlocal wakes
        wakes += 1
        if wakes >= 1000:  # the gate re-arms its wake-up timer without end: stop the loop, fail the test
            asyncio.get_running_loop().stop()
        wake(self)

    async def main() -> float:
        gate, log = PriorityGate(), list[tuple[str, float]]()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(since_s - loop.time())
        task = loop.create_task(_take(gate, BusPriority.ROUTINE, log, "heartbeat"))
        while not task.done():
            bus_priority.hold_routine(ROUTINE_HOLD_MAX_S)  # chains back to back
            await asyncio.sleep(0.03)
        bus_priority.release_routine()
        return log[0][1]

    PriorityGate._wake = counted  # type: ignore[method-assign]
    try:
        granted = clock_run(main(), virtual=True)
    finally:
        PriorityGate._wake = wake  # type: ignore[method-assign]
    assert granted == pytest.approx(since_s + ROUTINE_HOLD_MAX_S) and wakes < 1000
