"""The live view of a session (Textual): ``plasmactl monitor RUN_DIR`` and ``plasmactl run PLAN --live``.

The app only reads events (from an :class:`~plasmactl.dashboard_source.EventSource`) into a
:class:`~plasmactl.dashboard_model.DashboardModel` and draws it, a few times a second and only when something
changed. With a live session (``live``) it has one more key: ``a`` asks for the operator abort, which the
session takes through the same path as a SIGINT (the controller's abort, ending in the safe state); the app
never touches the controller itself, and it stays open after the session has ended until ``q``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header

from plasmactl.dashboard_model import DashboardModel
from plasmactl.dashboard_source import EventSource, NotALog
from plasmactl.dashboard_widgets import CoolingPanel, LampPanel, LedgerPanel, ProgressPanel, SkinChart, StatePanel

ABORT_REASON = "operator abort (dashboard)"
REFRESH_S = 0.25
LEDGER_EVERY_S = 1.0  # the ledger is rebuilt from all its events: at most this often while a session runs


class LiveControl(Protocol):
    """What the app may ask of the session it watches (``plasmactl.live_run.LiveSession``)."""

    def request_abort(self, reason: str) -> None:
        """Ask the session's controller to abort (thread-safe; the abort itself runs in the session's loop)."""
        ...

    def request_stop(self, signame: str) -> None:
        """A signal's stop, as ``run`` takes it."""
        ...

    @property
    def running(self) -> bool:
        """The session has not finished yet (its record is not closed)."""
        ...


class Dashboard(App[None]):
    """The dashboard of one session's record, followed as it grows."""

    TITLE = "plasmactl"
    CSS = """
    #body { height: 1fr; }
    #left { width: 52; height: 1fr; }
    #right { width: 1fr; height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("a", "abort", "Abort session (safe state)"),
        # Ctrl-C means stop, as in any terminal program: in a live session the abort, in monitor a quit
        Binding("ctrl+c", "interrupt", "Abort", show=False, priority=True),
    ]

    def __init__(
        self,
        source: EventSource,
        *,
        where: str,
        live: LiveControl | None = None,
        refresh_s: float = REFRESH_S,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """``on_ready`` is called once the first frame is on the screen (``run --live`` starts the session then,
        so that the app's start-up work is done before the controller's first pulse)."""
        super().__init__()
        self._on_ready = on_ready
        self.source = source
        self.where = where
        self.live = live
        self.model = DashboardModel()
        self.refresh_s = refresh_s
        self.abort_requested = False
        self.close_at_end = False  # set by a signal: close once the session has ended (no q to wait for)
        self._shown = -1  # the model version drawn last
        self._ledger_shown = (-1, -1.0)  # the ledger version drawn last, and when
        self._live_running = live is not None
        self.sub_title = where
        self.state_panel = StatePanel("state", id="state")
        self.progress_panel = ProgressPanel("progress", id="progress")
        self.cooling_panel = CoolingPanel("cooling delay (pulse end to water)", id="cooling")
        self.ledger_panel = LedgerPanel("dose ledger", id="ledger")
        self.chart = SkinChart(id="chart")
        self.lamps = LampPanel(id="lamps")

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            with VerticalScroll(id="left"):
                yield self.state_panel
                yield self.progress_panel
                yield self.cooling_panel
                yield self.ledger_panel
            with Vertical(id="right"):
                yield self.chart
                with VerticalScroll():
                    yield self.lamps
        yield Footer()

    def on_mount(self) -> None:
        self.pull()
        self._timer = self.set_interval(self.refresh_s, self.pull)

    def on_ready(self) -> None:
        if self._on_ready is not None:
            self._on_ready()

    def on_unmount(self) -> None:
        self._timer.stop()
        self.source.close()

    # ------------------------------------------------------------------ reading

    def pull(self) -> None:
        """Take what the source has, feed the model, redraw what changed."""
        if self.model.error is None:
            try:
                batch = self.source.poll()
            except NotALog as exc:
                self.model.error = f"{self.where}: not a session's audit log: {exc}"
                self._shown = -1
            else:
                if batch.restart:
                    self.model = DashboardModel()
                    self._shown, self._ledger_shown = -1, (-1, -1.0)
                self.model.feed_all(batch.events)
        if self.live is not None and self._live_running and not self.live.running:
            self._live_running = False  # the session has ended: its last events are on the queue already
            self.model.feed_all(self.source.poll().events)
            self._shown = -1
            self.refresh_bindings()
        if self._shown != self.model.version:
            self._shown = self.model.version
            self.redraw()
        elif self._ledger_shown[0] != self.model.ledger_version:
            self.show_ledger()  # events came and went quiet since the last redraw (a cut record)
        if self.close_at_end and not self._live_running:
            self.exit()

    def redraw(self) -> None:
        m = self.model
        if m.plan_name is not None:
            self.sub_title = f"{m.plan_name} — {self.where}"
        self.state_panel.show(m, waiting=self.source.waiting, note=self._note())
        self.progress_panel.show(m)
        self.cooling_panel.show(m)
        self.show_ledger()
        self.chart.show(m)
        self.lamps.show(m)

    def show_ledger(self) -> None:
        m, (version, when), now = self.model, self._ledger_shown, time.monotonic()
        if version != m.ledger_version and (m.ended or now - when >= LEDGER_EVERY_S or version < 0):
            self._ledger_shown = (m.ledger_version, now)
            self.ledger_panel.show(m)

    def _note(self) -> str | None:
        if self.live is None:
            return None
        if self._live_running:
            return "abort requested: going to the safe state…" if self.abort_requested else None
        return "the session has ended: press q to close"

    # ------------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "abort":
            if self.live is None:
                return False  # monitor: no abort key (it only reads the record)
            return True if self._live_running and not self.abort_requested else None
        return True

    def action_abort(self) -> None:
        if self.live is None or not self._live_running or self.abort_requested:
            return
        self.abort_requested = True
        self.live.request_abort(ABORT_REASON)
        self.notify("abort requested: the controller goes to the safe state", severity="warning")
        self.refresh_bindings()
        self._shown = -1
        self.pull()

    async def action_interrupt(self) -> None:
        if self.live is not None and self._live_running:
            self.action_abort()
            return
        await self.action_quit()

    async def action_quit(self) -> None:
        if self.live is not None and self._live_running:
            self.notify("the session is still running: press a to abort it first", severity="warning")
            return
        self._timer.stop()
        self.exit()
