"""What a plan on a rig can meet: when a spray's water reaches the skin after the pulses it cools.

A spray covers the pulses since the last one; its window runs from the end of the first of them. Two
figures are computed from the plan and the rig's links, before anything runs:

- the **earliest** water: the last covered pulse's end (a spot's pulses go ``interval_s`` apart), plus the
  deliberate ``delay_ms``, one status read to see the pulse over, and the valve's latency. A plan whose
  earliest water is outside the window is refused: every spray would miss it, with pulses fired into it.
- the **worst case** with no fault: every exchange the controller needs on the way waits for the one already
  on the wire and for a waiting request of a more urgent class (see plasmactl.bus_priority: a safety read),
  and the read that shows a change may have been sent just before it. The steps: the last pulse's own
  late start (its checks and its fire command on the link), seeing it over, the spray command, the valve,
  and the valve feedback read that confirms water. A plan whose worst case is outside the window is refused
  too (it would fault on a healthy rig at random); under 20 % of margin is a warning.

With the pulse-end trigger line wired (``spray.trigger_line``), the spray unit starts its valve by itself at
the delay after the pulse's end: no detection and no command stand between the pulse and the water, and the
worst case is the later of the water and the controller seeing the pulse over, plus the confirming read.

An exchange's length comes from the link: on RTU its two frames at the baud rate (11 bits a character, the
3.5-character gap) plus the device's reply time; on TCP a round trip; in-process simulators answer at once
(their own latencies count). A real valve's latency is learned at the first spray, so for a rig of real
devices it counts as 0 here and the controller's own rule guards the rest. ``plasmactl probe`` measures
the real round trips to compare with the figures ``check`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from plasmactl.controller.watchers import PULSE_POLL_S, VALVE_POLL_S
from plasmactl.plan import Plan
from plasmactl.rig import (
    DEVICES,
    STATUS_REGISTERS,
    TCP_ONE_WAY_MS,
    ModbusRtu,
    ModbusTcp,
    PlasmaSim,
    Rig,
    SerialLine,
    SpraySim,
)

# (request, reply) characters of each exchange on RTU (address, function, data, CRC)
RTU_CHARS = {
    "plasma_status": (8, 5 + 2 * STATUS_REGISTERS),  # COMMAND..FAULT_CODE
    "spray_status": (8, 5 + 2 * 5),  # STATUS..FAULT_CODE
    "safety_read": (8, 5 + 2 * 2),  # SAFETY..TIP_DISTANCE
    "write_one": (8, 8),  # FC6: fire, heartbeat
    "spray_command": (13, 8),  # FC16 of [SPRAY, ms]
}
REPLY_MS = 0.5  # an RTU device's reply time plus the host's (the served simulators: ~0.25 ms over the frames)
SERIAL_READ_MS = 4.0  # the thermometer's line exchange at 115200 (by probe: 3.8 ms)
HOST_MS = 1.0  # the controller's own step between a reply and the next request
MARGIN_WARN = 0.2


@dataclass(frozen=True)
class CoolingBudget:
    earliest_water_ms: float  # after the end of the first pulse a spray covers
    window_ms: float
    valve_known: bool
    worst_water_ms: float = 0.0
    parts_ms: tuple[tuple[str, float], ...] = ()  # the worst case, step by step

    @property
    def margin_ms(self) -> float:
        return self.window_ms - self.worst_water_ms

    def explain(self) -> str:
        return " + ".join(f"{name} {ms:.1f}" for name, ms in self.parts_ms if ms > 0)


class _Links:
    """Which devices share a wire, and how long each exchange takes on it."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def key(self, device: str) -> str | None:
        cfg = self.rig.timing(device)
        if isinstance(cfg, ModbusRtu):
            return f"rtu:{cfg.port}"
        if isinstance(cfg, ModbusTcp):
            return f"tcp:{cfg.host}:{cfg.port}"
        if isinstance(cfg, SerialLine):
            return f"serial:{cfg.port}"
        return None  # in-process: no link

    def exchange_ms(self, device: str, what: str) -> float:
        cfg = self.rig.timing(device)
        if isinstance(cfg, ModbusRtu):
            request, reply = RTU_CHARS[what]
            return cfg.frame_ms(request) + cfg.frame_ms(reply) + REPLY_MS
        if isinstance(cfg, ModbusTcp):
            return 2 * TCP_ONE_WAY_MS
        if isinstance(cfg, SerialLine):
            return SERIAL_READ_MS * 115200 / cfg.baud
        return 0.0

    def _exchanges(self, device: str) -> list[float]:
        """Every exchange any device on ``device``'s link may have on the wire (heartbeats included)."""
        kinds = {
            "plasma": ("plasma_status", "write_one"),
            "spray": ("spray_status", "spray_command", "write_one"),
            "safety": ("safety_read",),
            "thermometer": (),
        }
        key = self.key(device)
        return [self.exchange_ms(d, k) for d in DEVICES if self.key(d) == key for k in kinds[d]] or [0.0]

    def shares_safety(self) -> bool:
        """Whether the safety inputs are read over the generator's link (their reads take its turns)."""
        return self.key("safety") is not None and self.key("safety") == self.key("plasma")

    def in_flight_ms(self, device: str) -> float:
        """The longest exchange that can be on ``device``'s link when a request to it is made (0: no link)."""
        return 0.0 if self.key(device) is None else max(self._exchanges(device))

    def queue_ms(self, device: str) -> float:
        """The worst wait before a request to ``device`` reaches the wire: the exchange in flight, and a
        safety read waiting ahead of it when the safety inputs share its link."""
        wait = self.in_flight_ms(device)
        if wait and device != "safety" and self.key("safety") == self.key(device):
            wait += self.exchange_ms("safety", "safety_read")
        return wait


def cooling_budget(plan: Plan, rig: Rig) -> CoolingBudget:
    p, c, lim = plan.pulse, plan.cooling, plan.limits
    links = _Links(rig)
    grouped = c.when == "spot" and p.pulses_per_spot > 1
    group_ms = (p.pulses_per_spot - 1) * p.interval_s * 1000.0 if grouped else 0.0
    lat = rig.pulse_latencies_s()
    valve_ms = rig.valve_latency_s() * 1000.0
    if valve_ms == 0.0 and rig.serve is not None and rig.serve.spawn:
        valve_ms = SpraySim().valve_latency_ms  # the served simulators' spray unit

    # the last pulse of a spot starts late by its checks (a fresh safety read; a status only when it is
    # older than its bound by then) and its fire command, each behind the link's queue
    late_ms = 0.0
    prefire_ms = 0.0  # the same steps without their waits (the trigger chain counts those as a whole)
    if grouped:
        late_ms += links.queue_ms("safety") + links.exchange_ms("safety", "safety_read") + HOST_MS
        prefire_ms += links.exchange_ms("safety", "safety_read") + HOST_MS
        # a status is read again when older than half its bound (knowledge.refresh): the generator's and the
        # spray unit's were read at the spot's first pulse, the thermometer's by the monitor
        ages_ms = {"plasma": p.interval_s * 1000.0 + 10.0, "spray": p.interval_s * 1000.0 + 10.0}
        ages_ms["thermometer"] = rig.thermometer.poll_ms + rig.thermometer.call_budget_ms
        for device, what in (("plasma", "plasma_status"), ("spray", "spray_status"), ("thermometer", "serial")):
            if 0.5 * rig.max_age_s(device, lim.reading_max_age_ms) * 1000.0 < ages_ms[device]:
                late_ms += links.queue_ms(device) + links.exchange_ms(device, what)
                prefire_ms += links.exchange_ms(device, what)
        late_ms += links.queue_ms("plasma") + links.exchange_ms("plasma", "write_one")
        prefire_ms += links.exchange_ms("plasma", "write_one") + HOST_MS
    status = links.exchange_ms("plasma", "plasma_status")
    # the read that straddles the end shows it still on; the next one, behind the queue, shows it over
    detect = PULSE_POLL_S * 1000.0 + status + links.queue_ms("plasma") + status
    command = HOST_MS + links.queue_ms("spray") + links.exchange_ms("spray", "spray_command")
    spray_read = links.exchange_ms("spray", "spray_status")
    confirm = HOST_MS + VALVE_POLL_S * 1000.0 + spray_read + links.queue_ms("spray") + spray_read
    # the window starts at the earliest the pulse can have ended (its command + its length); emission starts
    # up to the generator's fire latency after the command (the frame's way, the device's own latency: the
    # simulator's latency_ms), and the pulse ends that much later. A 95 ms generator latency left no window.
    emission_ms = lat.usual_fire_s * 1000.0
    if rig.trigger_line:
        return _trigger_budget(plan, rig, links, prefire_ms, valve_ms, emission_ms)
    # a spot's next pulse goes at its interval, but never before the one before it was seen over and its
    # checks are done: with a slow generator the pulses of a spot go further apart than their interval
    spot_ms = (p.pulses_per_spot - 1) * max(p.interval_s * 1000.0, emission_ms + p.pulse_ms + detect + late_ms)
    chain_ms = (spot_ms if grouped else 0.0) + late_ms + emission_ms + detect
    after_pulses = max(chain_ms, c.delay_ms)
    parts = (
        ("spot's pulses", spot_ms if grouped else 0.0),
        ("late last pulse", late_ms),
        ("emission after its command", emission_ms),
        ("pulse end seen", detect),
        ("deliberate delay beyond", max(0.0, c.delay_ms - chain_ms)),
        ("spray command", command),
        ("valve", valve_ms),
        ("valve feedback", confirm),
    )
    worst = after_pulses + command + valve_ms + confirm
    earliest = max(group_ms + lat.detect_s * 1000.0, c.delay_ms) + valve_ms
    return CoolingBudget(earliest, lim.max_cooling_delay_ms, valve_ms > 0, worst, parts)


def _trigger_budget(
    plan: Plan, rig: Rig, links: _Links, prefire_ms: float, valve_ms: float, emission_ms: float
) -> CoolingBudget:
    """The trigger line's worst case: one chain of exchanges from the end of the first pulse a spray covers
    to its water seen. The controller holds routine traffic back while the chain is open
    (``bus_priority.hold_routine``), so what else can take the link is one exchange already on the wire when
    it starts and the safety listener's reads, one a poll period after the latest (ours included): the
    chain's length ``R`` is the smallest with ``R = chain + in flight + floor(R / period) x read``."""
    p, c, lim = plan.pulse, plan.cooling, plan.limits
    status = links.exchange_ms("plasma", "plasma_status")
    seen_ms = 2 * status + HOST_MS  # the read in flight at the end shows it on; the next, back to back, over
    parts: list[tuple[str, float]] = []
    own_safety = 0
    if c.when == "spot" and p.pulses_per_spot > 1:
        # the spot's first pulse seen over and the trigger armed in the gap; the next pulse goes when both are
        # done and its interval is up, after its checks (``prefire_ms``) and its fire command
        ahead_ms = seen_ms + links.exchange_ms("spray", "spray_command") + HOST_MS
        spot_ms = (p.pulses_per_spot - 1) * max(p.interval_s * 1000.0, ahead_ms + p.pulse_ms)
        parts += [("spot's pulses", spot_ms), ("late last pulse", prefire_ms)]
        own_safety = 1
    parts.append(("emission after its command", emission_ms))  # the window starts at the earliest end
    water = c.delay_ms + valve_ms
    # the spray watch reads from the pulse seen over: one read once the water is there; a read that straddles
    # the valve's opening is followed by another (after the valve poll). The later of the two bounds both.
    spray_read = links.exchange_ms("spray", "spray_status")
    if seen_ms + spray_read >= water + VALVE_POLL_S * 1000.0 + 2 * spray_read:
        parts += [("pulse end seen", seen_ms), ("valve feedback", spray_read)]
    else:
        parts += [("trigger delay and valve", water), ("valve feedback", VALVE_POLL_S * 1000.0 + 2 * spray_read)]
    chain = sum(ms for _, ms in parts)
    in_flight = links.in_flight_ms("plasma")
    read, period = (links.exchange_ms("safety", "safety_read"), rig.safety.poll_ms) if links.shares_safety() else (0, 1)
    reads = 0
    for _ in range(100):  # a fixed point: the chain grows by whole reads, and stops at the first that holds them
        more = max(0, math.floor((chain + in_flight + reads * read) / period) + 1 - own_safety)
        if more <= reads:
            break
        reads = more
    parts += [("an exchange in flight", in_flight), (f"{reads} safety reads", reads * read)]
    worst = sum(ms for _, ms in parts)
    group_ms = (p.pulses_per_spot - 1) * p.interval_s * 1000.0 if own_safety else 0.0
    return CoolingBudget(group_ms + water, lim.max_cooling_delay_ms, valve_ms > 0, worst, tuple(parts))


def budget_problems(plan: Plan, rig: Rig) -> list[str]:
    """What makes this plan on this rig fail by itself, with no fault: named with the numbers."""
    problems: list[str] = []
    b = cooling_budget(plan, rig)
    what = "valve latency included" if b.valve_known else "the valve's latency not yet included"
    change = (
        "cool after every pulse, " if plan.cooling.when == "spot" else ""
    ) + "shorten pulse.interval_s or cooling.delay_ms, or use a faster link (baud) or one link per device"
    if b.earliest_water_ms >= b.window_ms:
        problems.append(
            f"the earliest a spray can put water on the skin is {b.earliest_water_ms:.1f} ms after the end of the"
            f" first pulse it cools ({what}), not inside limits.max_cooling_delay_ms = {b.window_ms:g}: every"
            f" spray would miss its window; {change}"
        )
    elif b.worst_water_ms >= b.window_ms:
        problems.append(
            f"on this rig's links a spray's water can reach the skin {b.worst_water_ms:.1f} ms after the end of"
            f" the first pulse it cools ({b.explain()} ms; {what}), not inside limits.max_cooling_delay_ms ="
            f" {b.window_ms:g}: a healthy session would fault at random; {change}"
        )
    problems.extend(_simulated_device_problems(plan, rig))
    oldest_ms = reading_age_ms(rig)
    bound_ms = rig.max_age_s("thermometer", plan.limits.reading_max_age_ms) * 1000.0
    if oldest_ms >= bound_ms:
        problems.append(
            f"a skin reading can be {oldest_ms:g} ms old when the monitor reads it (sample period, latency, poll"
            f" and one call), not below its bound {bound_ms:g} ms (limits.reading_max_age_ms or"
            " thermometer.max_age_ms): the session would stop at thermometer_stale with a healthy sensor"
        )
    return problems


# A plan whose healthy pulses would trip this often is refused: the session would fault at random.
RANDOM_TRIPS_REFUSED = 0.05  # expected trips over the whole plan


def _simulated_device_problems(plan: Plan, rig: Rig) -> list[str]:
    """What the simulated devices' own settings make impossible: no spray that counts as cooling, or a
    tolerance narrower than the generator's own spread (both fail on the first pulses, with no fault)."""
    problems: list[str] = []
    lim = plan.limits
    if isinstance(rig.spray, SpraySim) and rig.spray.flow_ml_s < lim.min_spray_flow_ml_s:
        problems.append(
            f"spray.flow_ml_s = {rig.spray.flow_ml_s:g} is below limits.min_spray_flow_ml_s ="
            f" {lim.min_spray_flow_ml_s:g}: no spray would count as cooling, and the first pulse would fault"
        )
    if isinstance(rig.plasma, PlasmaSim) and rig.plasma.energy_noise_pct > 0:
        z = lim.energy_tolerance_pct / rig.plasma.energy_noise_pct
        per_pulse = math.erfc(z / math.sqrt(2.0))  # a normal spread outside +-tolerance
        expected = per_pulse * plan.pulse_count
        if expected >= RANDOM_TRIPS_REFUSED:
            problems.append(
                f"limits.energy_tolerance_pct = {lim.energy_tolerance_pct:g} is {z:.2g} times the simulated"
                f" generator's energy spread (plasma.energy_noise_pct = {rig.plasma.energy_noise_pct:g}, 1 sd):"
                f" {per_pulse:.2%} of healthy pulses would trip, about {expected:.3g} in this plan; widen the"
                " tolerance"
            )
    return problems


def budget_line(b: CoolingBudget) -> str:
    """``check``'s cooling line: both figures, the steps of the worst case, the margin warning."""
    valve = "" if b.valve_known else " (the valve's latency is learned at the first spray: not included)"
    line = (
        f"cooling: water on the skin {b.earliest_water_ms:.1f} ms at the earliest, {b.worst_water_ms:.1f} ms at"
        f" worst ({b.explain()} ms) after the first pulse a spray covers, inside a {b.window_ms:g} ms"
        f" window{valve}"
    )
    if b.margin_ms < MARGIN_WARN * b.window_ms:
        line += f"; warning: {b.margin_ms:.1f} ms of margin is under {MARGIN_WARN:.0%} of the window"
    return line


def reading_age_ms(rig: Rig) -> float:
    """The oldest a healthy thermometer's latest sample can be just before the monitor's next read."""
    t = rig.thermometer
    sample_ms = getattr(t, "sample_ms", 0.0) + getattr(t, "latency_ms", 0.0)
    return sample_ms + t.poll_ms + t.call_budget_ms
