"""A bound on how long a whole session may take, for test harnesses: a session that neither ends nor trips
is a defect, and it must fail the one test it belongs to with the stacks of what it was waiting on, not hang
the suite until an outer timeout kills it without a word (an event loop waiting in ``select`` shows nothing
of its coroutines to faulthandler)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CANCEL_GRACE_S = 10.0  # after the bound, how long the cancelled session gets to write its end


class SessionHung(AssertionError):
    """The session outlasted its bound; the message holds every task's stack at that moment."""


def task_stacks() -> str:
    """Every task of the running loop with its stack (what each one awaits)."""
    out = io.StringIO()
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(limit=20, file=out)
    return out.getvalue()


async def bounded(coro: Coroutine[Any, Any, T], seconds: float, what: str) -> T:
    """``await coro``; past ``seconds`` of loop time it is cancelled (its own clean-up runs, bounded too) and
    :class:`SessionHung` is raised naming ``what`` with the tasks' stacks."""
    task = asyncio.get_running_loop().create_task(coro, name=what)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    stacks = task_stacks()
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    if task.done() and not task.cancelled() and task.exception() is not None:
        stacks += f"\n(then, cancelled: {type(task.exception()).__name__}: {task.exception()})"
    raise SessionHung(f"{what} did not end within {seconds:g} s; the tasks then:\n{stacks}")
