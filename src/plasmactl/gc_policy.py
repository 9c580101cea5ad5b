"""The garbage collector kept out of a real-time session's timing.

CPython's cyclic collector stops the whole process while it runs: measured on a served TCP session, a
young-generation pass ~0.2 ms, a middle one up to 5 ms, and a full pass over everything loaded at start-up
(pymodbus, pydantic, numpy, the simulators) ~40 ms, at whatever moment allocation counts trip it, a
cooling window included. On the real clock the controller therefore collects once before its self-test
and freezes what is alive then (``gc.freeze``: start-up objects are never traversed again), so
later passes only walk what the session itself allocates. At the session's end the freeze is undone, so a
process that runs many sessions (a campaign worker) still collects each one's cycles. In virtual time a
pause of the host is no pause of the clock: nothing is changed there.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_collector(realtime: bool) -> Iterator[None]:
    """Collect and freeze at entry, unfreeze at exit, when ``realtime``; else do nothing."""
    if not realtime:
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
