"""``plasmactl run PLAN --live``: the session in a thread of its own, the dashboard in the main thread.

The session runs exactly as ``run`` runs it (:func:`~plasmactl.session.run_session` on its own event loop,
virtual or real time), in a thread of its own, so that the dashboard's redraws never wait in the controller's
loop. The two share only:

- the events: the session's log listener puts each event on a :class:`queue.SimpleQueue` (never blocks, no
  lock held by the controller), and the dashboard takes them a few times a second;
- the stop requests: the ``a`` key (and the stop signals, which the main thread receives) go on a second
  queue and wake the session's loop with ``loop.call_soon_threadsafe``; there the key becomes the
  controller's ``request_abort`` (reason "operator abort (dashboard)") and a signal the
  :class:`~plasmactl.session.StopRequest` of ``run``: either way the controller's one abort path, to the safe
  state. A request that comes before the controller exists is kept and becomes its first message.

The session starts once the dashboard has drawn its first frame (its start-up work is done by then).
Python threads share one interpreter lock: to keep what the dashboard computes from holding the controller
up, the switch interval is lowered to 1 ms while the session runs (the controller's thread waits at most that
long for the lock), the objects that exist before the session are frozen out of the collector's scans (as
``run_blocking`` does), and the dashboard only redraws when something changed, at most 4 times a second.
If the dashboard closes while the session still runs (it refuses ``q`` then, but it can fail), the session
is aborted and waited for: it is never left running without a view.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from plasmactl import clock as clockmod
from plasmactl.controller.owner import Controller
from plasmactl.dashboard import ABORT_REASON, Dashboard
from plasmactl.dashboard_source import QueueSource
from plasmactl.ports import SessionResult
from plasmactl.session import SessionInputs, StopRequest, run_session
from plasmactl.stop_signals import STOP_SIGNALS

SWITCH_INTERVAL_S = 0.001
CLOSED_REASON = "operator abort (dashboard closed)"


class _OperatorAbort:
    """The dashboard's abort, kept until there is a controller to take it (used in the session's loop only)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._controller: Controller | None = None

    def request(self, reason: str) -> None:
        if self.reason is not None:
            return  # asked for already: the controller is on its way to the safe state
        self.reason = reason
        if self._controller is not None:
            self._controller.request_abort(reason, None)

    def attach(self, controller: Controller) -> None:
        self._controller = controller
        if self.reason is not None:
            controller.request_abort(self.reason, None)


class LiveSession:
    """One session in a thread of its own with its own event loop; its events on :attr:`events`.

    Requests to stop it (:meth:`request_abort`, :meth:`request_stop`) may come from any thread, and from a
    signal handler: they go on a :class:`queue.SimpleQueue` (safe there) and the session's loop is woken to
    take them (``call_soon_threadsafe``); no lock is shared with the session's thread.
    """

    def __init__(self, inputs: SessionInputs, out_dir: Path, *, realtime: bool = False) -> None:
        self.inputs = inputs
        self.out_dir = out_dir
        self.realtime = realtime
        self.events: queue.SimpleQueue[Mapping[str, Any]] = queue.SimpleQueue()
        self.result: SessionResult | None = None
        self.error: BaseException | None = None
        self._stop = StopRequest()
        self._abort = _OperatorAbort()
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._over = False
        self._thread = threading.Thread(target=self._main, name="plasmactl-session")

    @property
    def running(self) -> bool:
        """Not ended (also before :meth:`start`: an abort asked for then is kept)."""
        return not self._over

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        if not self.started:
            self._thread.start()

    def join(self, timeout: float | None = None) -> SessionResult:
        """Wait for the session's end; its result (what ``run_session`` raised, raised here)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the session has not ended")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def wait(self) -> None:
        """Wait for the session's end, whatever it was (:meth:`join` tells it)."""
        self._thread.join()

    def request_abort(self, reason: str = ABORT_REASON) -> None:
        """The operator's abort (logged with ``reason``), through the controller's abort: to the safe state."""
        self._send(lambda: self._abort.request(reason))

    def request_stop(self, signame: str) -> None:
        """A signal's stop, as ``run`` takes it (reason "operator interrupt (SIGINT)")."""
        self._send(lambda: self._stop.request(signame))

    def _send(self, call: Callable[[], None]) -> None:
        self._requests.put(call)  # taken by the loop when it starts, if it has not yet
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed: the session has ended, there is nothing to stop
                loop.call_soon_threadsafe(self._take_requests)

    def _take_requests(self) -> None:
        """In the session's loop: act on what was asked for."""
        while True:
            try:
                call = self._requests.get_nowait()
            except queue.Empty:
                return
            call()

    def _main(self) -> None:
        try:
            self.result = clockmod.run(self._session(), virtual=not self.realtime)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by join(), which raises it
            self.error = exc
        finally:
            self._over = True

    async def _session(self) -> SessionResult:
        self._loop = asyncio.get_running_loop()
        self._take_requests()  # what came before the loop was known (after it, a request wakes the loop)
        try:
            return await run_session(
                self.inputs,
                self.out_dir,
                listeners=(self.events.put,),
                on_controller=self._abort.attach,
                stop=self._stop,
            )
        finally:
            self._loop = None


def dashboard_for(session: LiveSession, *, start: bool = False) -> Dashboard:
    """The dashboard of ``session``; with ``start``, it starts the session once its first frame is shown."""
    on_ready = session.start if start else None
    return Dashboard(QueueSource(session.events), where=str(session.out_dir), live=session, on_ready=on_ready)


def run_live(inputs: SessionInputs, out_dir: Path, *, realtime: bool = False) -> SessionResult:
    """Run a session with the dashboard in this terminal; returns when both have ended (as ``run_blocking``).

    The stop signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT) stop the session as in ``run`` (the dashboard then
    closes by itself once it has ended);
    the handlers stay after the session (as ``run_blocking``'s): a late signal cannot change its outcome."""
    session = LiveSession(inputs, out_dir, realtime=realtime)
    app = dashboard_for(session, start=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        app.close_at_end = True  # read by the dashboard's timer: it closes once the session has ended
        if session.running:
            session.request_stop(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    interval = sys.getswitchinterval()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        try:
            app.run()
        finally:
            if session.started:
                if session.running:
                    session.request_abort(CLOSED_REASON)
                    sys.stderr.write("plasmactl: the dashboard closed: the session is aborted (safe state)\n")
                session.wait()
    finally:
        sys.setswitchinterval(interval)
        if freeze:
            gc.unfreeze()
    if not session.started:
        raise RuntimeError("the dashboard did not start: no session was run")
    return session.join()
