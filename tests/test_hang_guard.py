"""A test session that neither ends nor trips fails its own test, naming what it waited on."""

from __future__ import annotations

import asyncio

import pytest

from plasmactl import clock as clockmod
from plasmactl.hang_guard import SessionHung, bounded


def test_a_hung_session_fails_with_the_stacks_of_what_it_waits_on() -> None:
    cleaned: list[str] = []

    async def stuck_helper() -> None:
        await asyncio.Event().wait()  # nobody ever sets it

    async def session() -> str:
        helper = asyncio.get_running_loop().create_task(stuck_helper(), name="stuck helper")
        try:
            await helper
        finally:
            helper.cancel()
            cleaned.append("session_end written")
        return "never"

    with pytest.raises(SessionHung, match=r"(?s)the session did not end within 30 s.*stuck helper.*stuck_helper"):
        clockmod.run(bounded(session(), 30.0, "the session"), virtual=True)  # virtual: no 30 s of waiting
    assert cleaned == ["session_end written"]  # cancelled, its own clean-up ran


def test_a_session_that_ends_gives_its_result() -> None:
    async def session() -> str:
        await asyncio.sleep(0.01)
        return "complete"

    assert asyncio.run(bounded(session(), 5.0, "the session")) == "complete"
