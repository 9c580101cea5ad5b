"""The dashboard's panels: each draws one part of a :class:`~plasmactl.dashboard_model.DashboardModel`.

Every panel has ``show(model)`` (called by the app when the model changed) and ``plain`` (the text it shows
now, for tests and screen readers). Nothing here reads a file or talks to a session.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget
from textual.widgets import Static

from plasmactl.cli_progress import eta_text
from plasmactl.dashboard_chart import LIMIT_LINE, PULSE, SPRAY, skin_chart
from plasmactl.dashboard_model import DashboardModel, Lamp

STATE_STYLE = {
    "disconnected": "dim",
    "self_test": "cyan",
    "idle": "white",
    "armed": "bold green",
    "pulsing": "bold magenta",
    "awaiting_cooling": "bold cyan",
    "cooling": "bold cyan",
    "paused": "bold black on yellow",
    "fault": "bold white on red",
    "estop": "bold white on red",
    "complete": "bold black on green",
}
OUTCOME_STYLE = {"complete": "bold green", "incomplete": "bold yellow", "aborted": "bold yellow"}
LAMP_STYLE = {"ok": "green", "pause": "yellow", "trip": "bold red"}
LAMP_WIDTH = 29  # "● " and the longest rule name, and a space


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


class Panel(Static):
    """A bordered panel of text."""

    DEFAULT_CSS = """
    Panel { border: round $secondary; padding: 0 1; height: auto; }
    """

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = title
        self._text = Text()

    @property
    def plain(self) -> str:
        return self._text.plain

    def show_text(self, text: Text) -> None:
        """Show ``text``; nothing to do when it is what is shown, no new layout when its shape is the same."""
        old, self._text = self._text, text
        if text == old:
            return
        width = self.content_size.width
        lines, old_lines = text.plain.split("\n"), old.plain.split("\n")
        same_shape = len(lines) == len(old_lines) and width > 0 and max(len(x) for x in lines) <= width
        self.update(text, layout=not same_shape)


class StatePanel(Panel):
    def show(self, m: DashboardModel, *, waiting: str | None = None, note: str | None = None) -> None:
        t = Text()
        t.append(f" {m.state.upper()} ", style=STATE_STYLE.get(m.state, "bold"))
        t.append(f"  t = {m.t_last:.1f} s   plasma {m.plasma}\n")
        if m.error is not None:
            t.append(m.error + "\n", style="bold red")
        elif waiting is not None:
            t.append(waiting + "\n", style="yellow")
        if m.plan_name is not None:
            t.append(f"plan {m.plan_name}, seed {m.seed}; {m.events} events\n", style="dim")
        for when, src, dest, trigger in list(m.history)[-5:]:
            t.append(f"{when:9.3f} s  {src} → ")
            t.append(dest, style=STATE_STYLE.get(dest, ""))
            t.append(f"  {trigger}\n" if len(src) + len(dest) + len(trigger) < 32 else "\n", style="dim")
        if m.abort_reason is not None:
            t.append(f"abort: {m.abort_reason}\n", style="yellow")
        if m.outcome is not None:
            style = "bold red" if m.internal_error else OUTCOME_STYLE.get(m.outcome, "bold red")
            t.append(f"session {m.outcome}" + (f" ({m.cause})" if m.cause else ""), style=style)
            t.append("\n")
        if note is not None:
            t.append(note, style="bold")
        t.rstrip()
        self.show_text(t)


class ProgressPanel(Panel):
    def show(self, m: DashboardModel) -> None:
        p = m.progress()
        bar_w = 30
        filled = round(p.fraction * bar_w)
        t = Text()
        t.append("█" * filled, style="green")
        t.append("░" * (bar_w - filled), style="dim")
        t.append(f" {100.0 * p.fraction:.0f} %\n")
        t.append(f"spots {p.spots_finished} / {p.spots_planned} treated")
        if p.current_spot is not None:
            t.append(f", at spot {p.current_spot}")
        t.append(f"\npulses {p.pulses_started} / {p.pulses_planned}\n")
        t.append(f"elapsed {eta_text(p.elapsed_s)}  ETA {'-' if m.ended else eta_text(p.eta_s)}")
        self.show_text(t)


class CoolingPanel(Panel):
    def show(self, m: DashboardModel) -> None:
        c = m.cooling()
        t = Text()
        t.append(f"sprays {c.count}   limit {ms(c.limit_ms)}\n")
        for name, value in (("median", c.p50_ms), ("p99", c.p99_ms), ("max", c.max_ms)):
            late = value is not None and c.limit_ms is not None and value > c.limit_ms
            t.append(f"{name:>6} ")
            t.append(f"{ms(value):>10}", style="bold red" if late else "green" if value is not None else "dim")
            t.append("\n")
        t.append(f"over the limit {c.over}, not cooled {c.missed}", style="bold red" if c.over or c.missed else "")
        self.show_text(t)


class LedgerPanel(Panel):
    def show(self, m: DashboardModel) -> None:
        v = m.ledger_view()
        if v is None:
            self.show_text(Text("no ledger yet", style="dim"))
            return
        t = Text()
        t.append(f"done {v.done}", style="green")
        t.append(f"   partial {v.partial}", style="yellow" if v.partial else "")
        t.append(f"   not started {v.not_started}\n", style="dim")
        t.append(f"over-dosed {v.over_dosed}", style="bold red" if v.over_dosed else "")
        t.append(f"   pulses cut {v.pulses_cut}   energy unknown {v.energy_unknown}")
        if v.over_spots:
            t.append(f"\nOVER-DOSED spots {_spots(v.over_spots)}", style="bold red")
        if v.partial_spots:
            t.append(f"\npartial spots {_spots(v.partial_spots)}", style="yellow")
        self.show_text(t)


def _spots(spots: tuple[int, ...], most: int = 12) -> str:
    shown = ", ".join(str(s) for s in spots[:most])
    return shown + (f" (+{len(spots) - most})" if len(spots) > most else "")


class LampPanel(Panel):
    """One lamp per interlock rule, and the last reason of each lamp that is not plain green."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("interlocks  [green]●[/] ok  [yellow]●[/] pause  [red]●[/] trip", id=id)
        self._lamps: list[Lamp] = []

    def show(self, m: DashboardModel) -> None:
        self._lamps = [Lamp(x.rule, x.status, x.reason, x.t, x.trips) for x in m.lamp_list()]
        self.show_text(self.text(self.content_size.width or LAMP_WIDTH * 3))

    def on_resize(self) -> None:
        self.show_text(self.text(self.content_size.width or LAMP_WIDTH * 3))

    def lamp(self, rule: str) -> Lamp | None:
        return next((x for x in self._lamps if x.rule == rule), None)

    def text(self, width: int) -> Text:
        per_row = max(1, width // LAMP_WIDTH)
        t = Text()
        for i, lamp in enumerate(self._lamps):
            t.append("● ", style=LAMP_STYLE[lamp.status])
            t.append(lamp.rule.ljust(LAMP_WIDTH - 2), style="" if lamp.status == "ok" else LAMP_STYLE[lamp.status])
            if i % per_row == per_row - 1 or i == len(self._lamps) - 1:
                t.append("\n")
        seen = sorted((x for x in self._lamps if x.reason is not None), key=lambda x: -(x.t or 0.0))
        for lamp in seen:
            style = LAMP_STYLE[lamp.status] if lamp.status != "ok" else "dim"
            t.append(f"● {lamp.rule}", style=style)
            when = f"{lamp.t:.3f} s" if lamp.t is not None else "?"
            cleared = "; cleared" if lamp.status == "ok" else ""
            count = f", {lamp.trips}x" if lamp.trips > 1 else ""
            t.append(f"  ({when}{count}{cleared}): {lamp.reason}\n", style=style)
        t.rstrip()
        return t


class SkinChart(Widget):
    """Skin temperature over the last window of session time, the limit line, pulses and sprays."""

    DEFAULT_CSS = """
    SkinChart { border: round $secondary; padding: 0 1; height: 14; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = f"skin temperature (°C)  • reading  {LIMIT_LINE} limit  {PULSE} pulse  {SPRAY} spray"
        self._model: DashboardModel | None = None

    def show(self, m: DashboardModel) -> None:
        self._model = m
        limit = "-" if m.skin_limit_c is None else f"{m.skin_limit_c:.1f} °C"
        last = "-" if m.skin_last_c is None else f"{m.skin_last_c:.1f} °C"
        top = "-" if m.skin_max_c is None else f"{m.skin_max_c:.1f} °C"
        self.border_subtitle = f"limit {limit}  now {last}  max {top}"
        self.refresh()

    def render(self) -> RenderResult:
        m = self._model
        if m is None:
            return Text("no readings yet", style="dim")
        size = self.content_size
        return skin_chart(
            list(m.readings),
            list(m.pulse_marks),
            list(m.spray_marks),
            limit_c=m.skin_limit_c,
            t_end=m.t_last,
            width=size.width,
            height=size.height,
        )
