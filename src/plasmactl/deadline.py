"""``with_timeout``: await with a deadline, without paying for a timer when the reply is immediate.

Most requests to in-process simulators complete without suspending; arming and cancelling an
``asyncio.timeout`` timer for each of them was a third of a simulated session's cost. So the awaitable
is stepped once by hand (:func:`first_step`): if it finished, that is the result; if it suspended, the rest
of it runs under ``asyncio.timeout`` (:func:`rest_within`) exactly as a plain ``await`` would (the first
yielded future is handed on unchanged, and cancellation and exceptions are thrown into the inner coroutine
as ``yield from`` does). The device calls use the two halves directly (one coroutine frame less per call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from types import CoroutineType
from typing import Any, TypeVar

T = TypeVar("T")

# What first_step returns as its first item when the awaitable suspended (its second item is then the
# first value it yielded).
SUSPENDED: Any = object()


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


def first_step(aw: Awaitable[T]) -> tuple[T, Any, Generator[Any, Any, T]]:
    """Run ``aw`` up to its first suspension: ``(result, None, it)`` when it finished without one, else
    ``(SUSPENDED, first_yielded, it)`` for :func:`rest_within`. An exception it raises propagates."""
    # a native coroutine is its own iterator (no __await__ wrapper object per call)
    it: Generator[Any, Any, T] = aw if type(aw) is CoroutineType else aw.__await__()  # type: ignore[assignment]
    try:
        first = it.send(None)
    except StopIteration as stop:
        value: T = stop.value
        return value, None, it
    return SUSPENDED, first, it


async def rest_within(it: Generator[Any, Any, T], first: Any, seconds: float) -> T:
    """The rest of a suspended awaitable (see :func:`first_step`), under ``asyncio.timeout(seconds)``."""
    async with asyncio.timeout(seconds):
        return await _Resumed(it, first)


async def with_timeout(aw: Awaitable[T], seconds: float) -> T:
    """``await aw`` but raise ``TimeoutError`` if it takes longer than ``seconds`` of loop time."""
    result, first, it = first_step(aw)
    if result is not SUSPENDED:
        return result
    return await rest_within(it, first, seconds)
