"""Run independent jobs (whole simulated sessions) on the local cores or on a dask.distributed cluster, with
a progress callback; the results come back in the order of the jobs, wherever they ran."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

Progress = Callable[[int, int], None]


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

        with Client(dask_scheduler) as client:  # type: ignore[no-untyped-call]
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
