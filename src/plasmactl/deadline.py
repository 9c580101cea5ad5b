"""``with_timeout``: await with a deadline, without paying for a timer when the reply is immediate.

Most requests to in-process simulators complete without suspending; arming and cancelling an
``asyncio.timeout`` timer for each of them was a third of a simulated session's cost. So the awaitable
is stepped once by hand: if it finished, that is the result; if it suspended, the rest of it runs
under ``asyncio.timeout`` exactly as a plain ``await`` would (the first yielded future is handed on
unchanged, and cancellation and exceptions are thrown into the inner coroutine as ``yield from`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class _Resumed(Awaitable[T]):
    """Continues an ``__await__`` iterator that has already yielded ``first``."""

    __slots__ = ("_first", "_it")

    def __init__(self, it: Generator[Any, Any, T], first: Any) -> None:
        self._it = it
        self._first = first

    def __await__(self) -> Generator[Any, Any, T]:
        it, value = self._it, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                it.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - forwarded into the inner coroutine, as yield from does
                try:
                    value = it.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    value = it.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


async def with_timeout(aw: Awaitable[T], seconds: float) -> T:
    """``await aw`` but raise ``TimeoutError`` if it takes longer than ``seconds`` of loop time."""
    it = aw.__await__()
    try:
        first = it.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    async with asyncio.timeout(seconds):
        return await _Resumed(it, first)
