"""Benchmark helper: start ``plasmactl serve-sim`` in another process and read where it put the devices."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


@contextmanager
def served(*args: str) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "plasmactl.cli", "serve-sim", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("serve-sim did not start")
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)


def stats_ms(samples_s: list[float]) -> tuple[float, float, float]:
    """(median, p99, max) in milliseconds."""
    a = np.asarray(samples_s) * 1000.0
    return float(np.median(a)), float(np.percentile(a, 99)), float(a.max())
