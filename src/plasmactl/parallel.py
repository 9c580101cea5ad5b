"""Run independent jobs (whole simulated sessions) on the local cores or on a dask.distributed cluster, with
a progress callback; the results come back in the order of the jobs, wherever they ran."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

Progress = Callable[[int, int], None]
# How long to wait for a dask scheduler to answer (dask's own default is 30 s): a scheduler that is up
# answers on its network within milliseconds; a wrong address should be said in seconds, not half a minute.
CONNECT_TIMEOUT_S = 5.0


class SchedulerUnreachable(Exception):
    """The --dask-scheduler address cannot be connected to (or is not an address); the message names it and
    the cause. Bad input for the commands (exit 2): nothing has run."""


def _why(exc: BaseException) -> str:
    """dask's error, with the cause it wraps when that says more ("Connection refused" behind a time-out)."""
    text = str(exc)
    cause = exc.__cause__
    detail = str(cause).rsplit(": ", 1)[-1].strip() if cause is not None else ""
    return f"{text} ({detail})" if detail and detail not in text else text


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    *,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    progress: Progress | None = None,
) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in parallel. ``fn`` must be a top-level function (pickled by name)."""
    results: dict[int, Any] = {}
    total = len(jobs)
    if dask_scheduler is not None:
        from distributed import Client
        from distributed import as_completed as dask_completed

        try:
            client = Client(dask_scheduler, timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:  # refused, timed out, no such host; a malformed address
            raise SchedulerUnreachable(f"--dask-scheduler {dask_scheduler}: cannot connect: {_why(exc)}") from None
        with client:
            futures = {client.submit(fn, *job, pure=False): i for i, job in enumerate(jobs)}
            for future in dask_completed(futures):  # type: ignore[no-untyped-call]
                results[futures[future]] = future.result()
                if progress:
                    progress(len(results), total)
    else:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            pending = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
            for fut in as_completed(pending):
                results[pending[fut]] = fut.result()
                if progress:
                    progress(len(results), total)
    return [results[i] for i in range(total)]
