"""``plasmactl sweep``: run a plan over a grid of parameter values and tabulate what the tissue went through.

Each combination is a whole simulated session (virtual time, in-process simulators, physics on), so the
interlocks and the controller's real timing are part of the result. Combinations run in parallel on
the local cores (a process pool) or on a dask.distributed cluster. The CSV has one row per combination:
the varied parameters under the names given, then the results.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plasmactl.inputs import InputError, validate
from plasmactl.limits import Caps
from plasmactl.parallel import Progress, run_jobs
from plasmactl.plan import Plan
from plasmactl.rig import Rig, Skin
from plasmactl.session_files import SUMMARY_NAME
from plasmactl.summary import TISSUE_METRICS

# Results copied from each session's summary into the CSV, in this order.
RESULT_COLUMNS = ("outcome", "cause", "pulses", "cooling_delay_ms_p50", *TISSUE_METRICS)
DELAY_NAME = "cooling_delay_ms"
MAX_COMBINATIONS = 10_000


@dataclass(frozen=True)
class Axis:
    """One varied parameter: the name as the user gave it, where it goes, and its values."""

    name: str
    target: str  # "plan:<dotted path>", "skin:<field>", or "delay"
    values: tuple[float, ...]


def _frange(start: float, stop: float, step: float) -> tuple[float, ...]:
    if step <= 0 or not all(math.isfinite(v) for v in (start, stop, step)):
        raise ValueError("step must be a positive finite number")
    if stop < start:
        raise ValueError("stop is below start")
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n > MAX_COMBINATIONS:
        raise ValueError(f"{n} values is too many")
    return tuple(round(start + i * step, 12) for i in range(n))


def parse_values(text: str) -> tuple[float, ...]:
    """``start:stop:step`` (stop included) or ``v1,v2,...``."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError("use start:stop:step")
            return _frange(*parts)
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{text!r}: no finite values")
    return values


def _plan_leaves(model: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in model.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _plan_leaves(value, path + ".")
        else:
            yield path


def resolve(name: str, plan: Plan) -> str:
    """Where a varied name goes: the deliberate delay, a plan field (leaf name or dotted path), a skin field."""
    if name == DELAY_NAME:
        return "delay"
    leaves = list(_plan_leaves(plan.model_dump()))
    if name in leaves:
        return f"plan:{name}"
    matches = [leaf for leaf in leaves if leaf.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return f"plan:{matches[0]}"
    if len(matches) > 1:
        raise ValueError(f"{name!r} is ambiguous in the plan: {', '.join(matches)}")
    if name in Skin.model_fields and name != "model":
        return f"skin:{name}"
    plan_names = ", ".join(sorted({leaf.rsplit(".", 1)[-1] for leaf in leaves}))
    skin_names = ", ".join(sorted(f for f in Skin.model_fields if f != "model"))
    raise ValueError(
        f"unknown parameter {name!r}: not {DELAY_NAME}, a plan field ({plan_names})"
        f" or a skin model field ({skin_names})"
    )


def parse_axes(specs: Sequence[str], plan: Plan) -> list[Axis]:
    axes: list[Axis] = []
    problems: list[str] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"--vary {spec!r}: use NAME=start:stop:step or NAME=v1,v2")
            continue
        try:
            axis = Axis(name, resolve(name, plan), parse_values(text))
            if axis.target.startswith("plan:") and _is_whole(plan.model_dump(), axis.target[5:]):
                fractional = [v for v in axis.values if v != int(v)]
                if fractional:  # was run truncated (2.9 pulses per spot ran 2) under the value given
                    raise ValueError(f"takes whole numbers, not {', '.join(f'{v:g}' for v in fractional)}")
            axes.append(axis)
        except ValueError as exc:
            problems.append(f"--vary {name}: {exc}")
    if len({a.name for a in axes}) != len(axes):
        problems.append("--vary: a parameter is given twice")
    if not specs:
        problems.append("give at least one --vary NAME=...")
    total = math.prod(len(a.values) for a in axes) if axes else 0
    if total > MAX_COMBINATIONS:
        problems.append(f"{total} combinations is over the {MAX_COMBINATIONS} a sweep may run")
    if problems:
        raise InputError("command line", problems)
    return axes


def _parent(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The table holding the field at ``dotted``, and the field's name in it."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    return node, leaf


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_whole(data: dict[str, Any], dotted: str) -> bool:
    """Whether the plan field at ``dotted`` is an integer one."""
    node, leaf = _parent(data, dotted)
    return _whole(node[leaf])


def _set_path(data: dict[str, Any], dotted: str, value: float) -> None:
    node, leaf = _parent(data, dotted)
    node[leaf] = int(value) if _whole(node[leaf]) else value


def combination_inputs(plan: Plan, rig: Rig, axes: Sequence[Axis], values: Sequence[float]) -> tuple[Plan, Rig]:
    """The plan and rig of one combination (validated: a combination that breaks a cap is an input error)."""
    plan_data = plan.model_dump()
    rig_data = rig.model_dump()
    for axis, value in zip(axes, values, strict=True):
        if axis.target == "delay":
            plan_data["cooling"]["delay_ms"] = value
            # raise the window so that the interlock does not stop the study, within the hard cap
            current = plan_data["limits"]["max_cooling_delay_ms"]
            plan_data["limits"]["max_cooling_delay_ms"] = min(Caps.MAX_COOLING_DELAY_MS, max(current, value + 100.0))
        elif axis.target.startswith("plan:"):
            _set_path(plan_data, axis.target[5:], value)
        else:
            rig_data["skin"][axis.target[5:]] = value
    label = ", ".join(f"{a.name}={v:g}" for a, v in zip(axes, values, strict=True))
    return validate(Plan, plan_data, f"combination {label}"), validate(Rig, rig_data, f"combination {label}")


def run_combination(plan_json: str, rig_json: str, seed: int) -> dict[str, Any]:
    """One session in virtual time; returns its summary. Top-level so that processes and dask can run it."""
    from plasmactl.session import SessionInputs, run_blocking

    plan = Plan.model_validate_json(plan_json)
    rig = Rig.model_validate_json(rig_json)
    with tempfile.TemporaryDirectory(prefix="plasmactl-sweep-") as tmp:
        run_blocking(SessionInputs(plan=plan, plan_file=None, rig=rig, seed=seed), Path(tmp), handle_sigint=False)
        summary: dict[str, Any] = json.loads((Path(tmp) / SUMMARY_NAME).read_text(encoding="utf-8"))
    return summary


def row_of(summary: dict[str, Any]) -> dict[str, Any]:
    tissue = summary.get("tissue") or {}
    delays = summary.get("cooling_delay_ms") or {}
    row: dict[str, Any] = {
        "outcome": summary.get("outcome"),
        "cause": summary.get("cause"),
        "pulses": summary.get("pulses"),
        "cooling_delay_ms_p50": delays.get("p50"),
    }
    for column in TISSUE_METRICS:
        row[column] = tissue.get(column)
    return row


def run_sweep(
    plan: Plan,
    rig: Rig,
    axes: Sequence[Axis],
    out_dir: Path,
    *,
    seed: int = 0,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run every combination; write ``sweep.csv`` and ``sweep.png`` into ``out_dir``; return the rows."""
    grid = list(itertools.product(*(a.values for a in axes)))
    jobs = []
    for values in grid:
        p, r = combination_inputs(plan, rig, axes, values)
        jobs.append((values, p.model_dump_json(), r.model_dump_json()))
    summaries = run_jobs(
        run_combination,
        [(pj, rj, seed) for _, pj, rj in jobs],
        workers=workers,
        dask_scheduler=dask_scheduler,
        progress=progress,
    )
    rows: list[dict[str, Any]] = []
    for i, (values, _, _) in enumerate(jobs):
        row = {a.name: v for a, v in zip(axes, values, strict=True)}
        row.update(row_of(summaries[i]))
        rows.append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, [a.name for a in axes], out_dir / "sweep.csv")
    from plasmactl.sweep_plot import plot_sweep

    plot_sweep(rows, [a.name for a in axes], out_dir / "sweep.png", title=plan.name)
    return rows


def write_csv(rows: Sequence[dict[str, Any]], varied: Sequence[str], path: Path) -> None:
    columns = [*varied, *RESULT_COLUMNS]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
