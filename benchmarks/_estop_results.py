"""benchmarks/estop_reaction.py's trials, results and report: what one E-stop press is, what was measured for
it, and how the figures are printed."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from _served import stats_ms

Way = Literal["inprocess", "tcp"]
Kind = Literal["pulse", "spray", "any"]
Phase = Literal["pulse", "fire", "spray", "between"]  # fire: after a FIRE command, before its output came on
KINDS: tuple[Kind, ...] = ("pulse", "spray", "any")


@dataclass(frozen=True)
class Trial:
    """One press: ``pulse``/``spray`` are timed from pulse number ``pulse`` as the generator fires it (``u`` in
    [0, 1) places it inside that pulse, or inside the valve-open window after it); ``any`` is a plain ``at_s``."""

    way: Way
    index: int
    kind: Kind
    pulse: int
    u: float
    at_s: float
    safety_poll_ms: float | None = None
    realtime: bool = False


@dataclass(frozen=True)
class Result:
    """One trial, in seconds after the press (the fault's start, session clock); None: did not happen."""

    way: Way
    kind: Kind
    outcome: str
    press_s: float | None  # the fault's start (session clock), None: the press never came
    phase: Phase  # what the rig was doing at the press, from the devices' own record
    hardware_s: float | None  # (a) press -> the cut pulse's output off, for a press inside a pulse
    on_after_s: float  # how long any output was on after the press (must be 0)
    emitted_after: bool  # a pulse's output came on after the press (must never)
    reported_s: float | None  # press -> the device's first answer to the controller showing the E-stop pressed
    off_s: float | None  # press -> the first OUTPUT_OFF the generator received after the press
    off_cause: str | None  # the cause of the controller's first plasma_off after the press (audit log)
    logged_off_s: float | None  # press -> that plasma_off event (the controller has the device's ack)
    trip_s: float | None  # press -> the controller's interlock_trip rule=estop
    reaction_real_s: float | None  # real time (perf_counter) from that device answer to the OUTPUT_OFF at the device
    fsync_real_s: float | None  # of which spent in fsyncs of the audit log
    comm_errors: int  # comm_error events of the session (the thermometer's "no sample yet" at the start aside)

    @property
    def software_s(self) -> float | None:
        """(b): press -> the off command the E-stop trip sent, at the device (None if another cause's came first)."""
        return self.off_s if self.off_cause == "estop" else None

    @property
    def real_estimate_s(self) -> float | None:
        """(b) as the real clock would show it: the poll wait (session clock) plus the reaction after the device's
        answer in real time (on a virtual loop only requests in flight take real time; the work between them
        takes none)."""
        if self.software_s is None or self.reported_s is None or self.reaction_real_s is None:
            return None
        return self.reported_s + self.reaction_real_s


# ------------------------------------------------------------------------------------------- printing


def _fmt(samples: list[float]) -> str:
    if not samples:
        return "n 0"
    p50, p99, pmax = stats_ms(samples)
    return f"n {len(samples)}  p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {pmax:.3f} ms"


def values(results: list[Result], name: str) -> list[float]:
    out: list[float] = []
    for r in results:
        v = getattr(r, name)
        if isinstance(v, float) and math.isfinite(v):
            out.append(v)
    return out


def _line(label: str, results: list[Result], name: str) -> None:
    print(f"  {label:<84} {_fmt(values(results, name))}")


def report(title: str, results: list[Result], bound: float, *, virtual_wire: bool) -> None:
    measured = [r for r in results if r.press_s is not None and r.off_s is not None]
    phases = {p: sum(r.phase == p for r in measured) for p in ("pulse", "fire", "spray", "between")}
    outcomes = ", ".join(sorted({r.outcome for r in results}))
    print(title)
    print(
        f"  {len(results)} trials, {len(measured)} measured ({phases['pulse']} pressed in a pulse, {phases['fire']} in a"
        f" fire latency, {phases['spray']} in a spray, {phases['between']} between pulses); outcomes: {outcomes}"
    )
    _line(
        "(a) hardware loop: press -> output off at the generator (presses in a pulse/fire)",
        [r for r in measured if r.phase in ("pulse", "fire")],
        "hardware_s",
    )
    late, fired = sum(r.on_after_s > 0 for r in results), sum(r.emitted_after for r in results)
    print(f"      output still on after the press in {late} trials; output on for a pulse fired after it in {fired}")
    sw = [r for r in measured if r.software_s is not None]
    _line("(b) software path: press -> the E-stop trip's OUTPUT_OFF received at the generator", sw, "software_s")
    _line("      press -> the device's first answer showing the E-stop (poll wait + request)", sw, "reported_s")
    _line("      that answer -> OUTPUT_OFF at the device, in real time (perf_counter)", sw, "reaction_real_s")
    _line("        of which the audit log's fsyncs before the off reached the device", sw, "fsync_real_s")
    _line("      press -> plasma_off in the audit log (the controller has the ack)", sw, "logged_off_s")
    if virtual_wire:
        _line("      real-clock estimate: poll wait (session clock) + that reaction (real time)", sw, "real_estimate_s")
    other = [r for r in measured if r.software_s is None]
    if other:
        causes = ", ".join(sorted({str(r.off_cause) for r in other}))
        where = ", ".join(f"{k} {n}" for k, n in sorted(Counter(f"{r.phase}/{r.kind}" for r in other).items()))
        print(
            f"  apart: {len(other)} trials (pressed in: {where}) whose first off was sent for {causes}: the controller"
        )
        print("  saw the pulse the hardware loop had cut (or kept off) before it saw the E-stop: not the E-stop path")
        _line("      press -> that OUTPUT_OFF at the device", other, "off_s")
        _line("      press -> the device's first answer showing the E-stop", other, "reported_s")
        _line("      press -> the controller's estop trip (latched after the fault's safe state)", other, "trip_s")
    errors = [r.comm_errors for r in results if r.comm_errors]
    over = sum(r.off_s is None or r.off_s > bound for r in results)
    print(f"  sessions with a comm_error: {len(errors)} ({sum(errors)} errors); trials without an OUTPUT_OFF at the")
    print(f"  device within {bound * 1000:.0f} ms (safety poll + watchdog): {over}")
