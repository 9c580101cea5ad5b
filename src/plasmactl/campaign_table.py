"""``plasmactl campaign``: every fault kind at every moment of the pulse cycle, on each transport, as a table.

Where the random campaign (:mod:`plasmactl.random_campaign`) looks for the next defect, this one is the
systematic record an assessor reads: each fault kind (each link fault on each link) injected, permanent, at
six moments of a short plan — idle (during self-test, before arming), armed (between pulses), during a pulse,
awaiting cooling (after the pulse's end, before the valve opens), during cooling, and paused (during a
footswitch release) — on the in-process rig and over Modbus TCP. The moments are placed on the third pulse
as a fault-free run of the same transport places it. Each row says how the session ended, the first rule that
tripped, the time from the injection to the first acknowledged plasma off, and what must be zero: pulses
started after a latching trip, records lost (a pulse without its end, no session end, a broken chain), spots
over their plan, broken invariants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plasmactl.faults import KINDS, FaultScenario
from plasmactl.parallel import Progress, run_jobs
from plasmactl.random_campaign import Recorded, plan_named, quiet_drivers, rig_for, run_recorded
from plasmactl.random_faults import LINK_TARGETS
from plasmactl.session import SessionInputs

PLAN = "short"  # six spots, a 5 ms pulse each second, a 150 ms spray after each
MOMENTS = ("idle", "armed", "pulse", "awaiting_cooling", "cooling", "paused")
TRANSPORTS = ("inprocess", "tcp")
# a value that does harm for each kind that takes one
VALUES = {"energy_drift": 3.0, "valve_slow": 200.0, "offset": 10.0, "delay": 80.0}
COLUMNS = (
    "transport",
    "fault",
    "moment",
    "at_s",
    "outcome",
    "rule",
    "off_ms",
    "pulses_after_trip",
    "records_lost",
    "spots_over_plan",
    "violations",
)
MUST_BE_ZERO = ("pulses_after_trip", "records_lost", "spots_over_plan", "violations")
SEED = 7


@dataclass(frozen=True)
class Row:
    transport: str
    fault: str
    moment: str
    at_s: float
    outcome: str
    rule: str
    off_ms: float | None
    pulses_after_trip: int
    records_lost: int
    spots_over_plan: int
    violations: int

    @property
    def holds(self) -> bool:
        return all(getattr(self, c) == 0 for c in MUST_BE_ZERO)


def fault_kinds() -> list[dict[str, Any]]:
    """Every kind once; a link fault once per link."""
    out: list[dict[str, Any]] = []
    for device, kinds in KINDS.items():
        for kind in kinds:
            targets: tuple[str | None, ...] = LINK_TARGETS if device == "link" else (None,)
            for target in targets:
                f: dict[str, Any] = {"device": device, "kind": kind}
                if target is not None:
                    f["target"] = target
                if kind in VALUES:
                    f["value"] = VALUES[kind]
                out.append(f)
    return out


def fault_name(f: dict[str, Any]) -> str:
    return f"{f['device']}.{f['kind']}" + (f"@{f['target']}" if "target" in f else "")


def case_count(transports: tuple[str, ...], only: int | None = None) -> int:
    n = len(fault_kinds()) * len(MOMENTS) * len(transports)
    return n if only is None else min(n, only)


def _session(transport: str, faults: list[dict[str, Any]]) -> Recorded:
    scenario = FaultScenario.model_validate({"name": "campaign", "fault": faults})
    return run_recorded(
        SessionInputs(plan=plan_named(PLAN), plan_file=None, rig=rig_for(transport), faults=scenario, seed=SEED)
    )


def moments(transport: str) -> dict[str, float]:
    """The six injection times, on the third pulse of a fault-free run of this transport."""
    events = _session(transport, []).events
    start = [e for e in events if e["event"] == "pulse_start"][2]["t"]
    end = next(e for e in events if e["event"] == "pulse_end" and e["pulse"] == 3)["t_end"]
    wet = next(e for e in events if e["event"] == "spray_start" and 3 in e["pulses"])["t_open"]
    return {
        "idle": 0.0,
        "armed": round(start - 0.3, 6),
        "pulse": round(start + 0.0025, 6),
        "awaiting_cooling": round(end + 0.003, 6),
        "cooling": round(wet + 0.05, 6),
        "paused": round(start - 0.1, 6),  # during a footswitch release from start - 0.3 s for 1 s
    }


def run_row(transport: str, fault: dict[str, Any], moment: str, at_s: float) -> dict[str, Any]:
    """One session; its row (a dict: processes and dask send it back)."""
    quiet_drivers()
    injected = {**fault, "at_s": at_s}
    faults = [injected]
    if moment == "paused":
        faults.insert(
            0, {"device": "safety", "kind": "footswitch_release", "at_s": round(at_s - 0.2, 6), "duration_s": 1.0}
        )
    run = _session(transport, faults)
    events, summary = run.events, run.summary
    trips = [e for e in events if e["event"] == "interlock_trip" and e["t"] >= at_s - 1e-9]
    rule = trips[0]["rule"] if trips else "-"
    off = next((e for e in events if e["event"] == "plasma_off" and e.get("ok") and e["t"] >= at_s - 1e-9), None)
    latching = next((e for e in trips if e.get("latch") in ("fault", "estop")), None)
    after = 0 if latching is None else sum(1 for e in events if e["event"] == "pulse_start" and e["t"] > latching["t"])
    starts = {e["pulse"] for e in events if e["event"] == "pulse_start"}
    ends = {e["pulse"] for e in events if e["event"] == "pulse_end"}
    lost = len(starts - ends) + (events[-1]["event"] != "session_end") + (not run.chain_ok)
    over = int((summary.get("ledger") or {}).get("spots_over_dosed") or 0)
    row = Row(
        transport,
        fault_name(fault),
        moment,
        at_s,
        str(summary.get("outcome")),
        rule,
        None if off is None else round((off["t"] - at_s) * 1000.0, 1),
        after,
        lost,
        over,
        sum(len(v) for v in run.violations().values()),
    )
    return asdict(row)


def run_campaign(
    transports: tuple[str, ...] = TRANSPORTS,
    *,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    progress: Progress | None = None,
    only: int | None = None,
) -> list[Row]:
    """Every kind x moment x transport (``only``: the first N cases, for a quick look)."""
    jobs: list[tuple[str, dict[str, Any], str, float]] = []
    for transport in transports:
        times = moments(transport)
        jobs += [(transport, f, m, times[m]) for f in fault_kinds() for m in MOMENTS]
    jobs = jobs[:only] if only is not None else jobs
    rows = run_jobs(run_row, jobs, workers=workers, dask_scheduler=dask_scheduler, progress=progress)
    return [Row(**r) for r in rows]


def write(rows: list[Row], out_dir: Path, command: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "campaign.csv", out_dir / "campaign.md"
    lines = [",".join(COLUMNS)]
    lines += [",".join("" if v is None else str(v) for v in (getattr(r, c) for c in COLUMNS)) for r in rows]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    md_path.write_text(markdown(rows, command), encoding="utf-8")
    return csv_path, md_path


def markdown(rows: list[Row], command: str) -> str:
    broken = [r for r in rows if not r.holds]
    head = [
        "# Fault campaign: every fault kind at every moment, per transport",
        "",
        f"Written by `{command}` (plan `{PLAN}` of the random campaign, seed {SEED}, virtual time; TCP is the",
        "in-process served rig). `off_ms`: from the injection to the first acknowledged plasma off (`-`: none",
        "was needed or the output was already off). Must be 0 in every row: pulses started after a latching",
        "trip, records lost, spots over their plan, broken invariants.",
        "",
        f"{len(rows)} sessions; {len(broken)} rows break a must-be-zero column.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    body = [
        "| " + " | ".join("-" if v is None else str(v) for v in (getattr(r, c) for c in COLUMNS)) + " |" for r in rows
    ]
    return "\n".join(head + body) + "\n"


def parse_markdown(text: str) -> list[dict[str, str]]:
    """The rows of a campaign.md (for the check that the committed one is current)."""
    out = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| transport"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out.append(dict(zip(COLUMNS, cells, strict=True)))
    return out
