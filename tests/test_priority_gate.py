"""The link's priority gate (drivers/priority_gate.py), against a model, under random arrivals, releases and
cancellations (also a cancellation in the instant a waiter is handed the link)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plasmactl.bus_priority import BusPriority
from plasmactl.drivers.priority_gate import PriorityGate

pytestmark = pytest.mark.hazard("H1")

Key = tuple[int, int]  # (priority, arrival)


@dataclass
class World:
    gate: PriorityGate = field(default_factory=PriorityGate)
    tasks: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    release: dict[Key, asyncio.Event] = field(default_factory=dict)
    released_outside: set[Key] = field(default_factory=set)
    waiting: set[Key] = field(default_factory=set)  # the model: arrived, not yet granted, not cancelled
    holder: Key | None = None  # the model's holder
    holding: set[Key] = field(default_factory=set)  # what the tasks say
    grants: list[Key] = field(default_factory=list)
    arrivals: int = 0

    async def user(self, key: Key) -> None:
        await self.gate.acquire(BusPriority(key[0]))
        assert not self.holding, f"{key} granted while {self.holding} holds the link"
        self.holding.add(key)
        self.grants.append(key)
        try:
            await self.release[key].wait()
        finally:
            self.holding.discard(key)
            if key not in self.released_outside:
                self.gate.release()

    def expect_next(self) -> None:
        """The model's grant after a release: the most urgent, earliest waiter."""
        self.holder = min(self.waiting) if self.waiting else None
        if self.holder is not None:
            self.waiting.discard(self.holder)


async def settle() -> None:
    for _ in range(8):
        await asyncio.sleep(0)


async def play(ops: list[tuple[str, int]]) -> World:
    w = World()
    for op, arg in ops:
        if op == "arrive":
            key = (arg, w.arrivals)
            w.arrivals += 1
            w.release[key] = asyncio.Event()
            w.tasks[key] = asyncio.get_running_loop().create_task(w.user(key))
            if w.holder is None and not w.waiting:
                w.holder = key
            else:
                w.waiting.add(key)
        elif op == "release" and w.holder is not None:
            w.release[w.holder].set()
            w.expect_next()
        elif op == "cancel_waiter" and w.waiting:
            victim = sorted(w.waiting)[arg % len(w.waiting)]
            w.tasks[victim].cancel()
            w.waiting.discard(victim)
        elif op == "cancel_holder" and w.holder is not None:
            w.tasks[w.holder].cancel()
            w.expect_next()
        elif op == "race" and w.holder is not None and w.waiting:
            # the holder releases synchronously, handing the link to the next waiter, which is cancelled in the
            # same instant, before it could run: the link must go on to the one after it
            old = w.holder
            w.released_outside.add(old)
            w.gate.release()
            w.release[old].set()
            w.expect_next()
            nxt = w.holder
            assert nxt is not None
            w.tasks[nxt].cancel()
            w.expect_next()
        await settle()
        assert w.holding == ({w.holder} if w.holder is not None else set()), (op, w.holding, w.holder)
        assert w.gate.busy == (w.holder is not None)
    while w.holder is not None:  # drain: everyone still waiting gets the link, in order
        w.release[w.holder].set()
        w.expect_next()
        await settle()
        assert w.holding == ({w.holder} if w.holder is not None else set())
    assert not w.gate.busy and w.gate.queued == 0
    for task in w.tasks.values():
        assert task.done()
    return w


OPS = st.lists(
    st.tuples(
        st.sampled_from(["arrive", "arrive", "arrive", "release", "release", "cancel_waiter", "cancel_holder", "race"]),
        st.integers(0, len(BusPriority) - 1),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_gate_matches_its_model(ops: list[tuple[str, int]]) -> None:
    asyncio.run(play(ops))


def test_urgent_request_overtakes_the_queue_not_the_exchange_in_flight() -> None:
    async def main() -> list[Key]:
        ops = [("arrive", BusPriority.ROUTINE)] * 4 + [("arrive", BusPriority.SAFETY), ("arrive", BusPriority.COOLING)]
        w = await play([*ops])
        return w.grants

    grants = asyncio.run(main())
    # the first routine request was on the wire; then safety, cooling, and the routine ones in arrival order
    assert grants == [(4, 0), (1, 4), (3, 5), (4, 1), (4, 2), (4, 3)]


def test_release_without_hold_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a hold"):
        PriorityGate().release()
