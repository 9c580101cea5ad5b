"""The fluence cap bounds what a pulse may deliver, not only its setting.

Before: a setting of 0.0176 J on a 0.3 mm spot (24.9 J/cm2, under the 25 J/cm2 cap) passed, and the
generator running 10 % high (inside the energy tolerance, so never tripping) delivered 26.9-28.2 J/cm2 on
every pulse, exit 0.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plasmactl.faults import FaultScenario
from plasmactl.inputs import InputError, validate
from plasmactl.limits import Caps, fluence_j_cm2
from plasmactl.plan import Plan
from plasmactl.session import SessionInputs, run_blocking


def _plan(energy_j: float, diameter_mm: float, tolerance_pct: float = Caps.ENERGY_TOLERANCE_PCT) -> dict[str, Any]:
    return {
        "name": "fluence",
        "spots": {
            "points": [[0.0, 0.0], [2.0 * diameter_mm, 0.0], [4.0 * diameter_mm, 0.0]],
            "spot_diameter_mm": diameter_mm,
        },
        "pulse": {"energy_j": energy_j, "pulse_ms": 5.0, "pulses_per_spot": 2, "interval_s": 0.5},
        "cooling": {"spray_ms": 150.0, "when": "pulse"},
        "limits": {"energy_tolerance_pct": tolerance_pct},
    }


@settings(max_examples=300, deadline=None)
@given(
    diameter=st.floats(0.1, 6.0),
    set_fluence=st.floats(1.0, 24.99),
    tolerance_pct=st.floats(1.0, Caps.ENERGY_TOLERANCE_PCT),
)
def test_a_plan_is_accepted_only_if_every_pulse_the_check_accepts_is_under_the_cap(
    diameter: float, set_fluence: float, tolerance_pct: float
) -> None:
    energy = min(set_fluence / fluence_j_cm2(1.0, diameter), Caps.MAX_ENERGY_J)
    worst = fluence_j_cm2(energy * (1.0 + tolerance_pct / 100.0), diameter)
    try:
        plan = validate(Plan, _plan(energy, diameter, tolerance_pct), "x.toml")
    except InputError as exc:
        text = " ".join(exc.problems)
        assert worst > Caps.MAX_FLUENCE_J_CM2 and "limits.max_fluence_j_cm2" in text, text
        suggested = float(re.search(r"at most ([0-9.e+-]+) J", text).group(1))  # type: ignore[union-attr]
        assert suggested < energy
        accepted = validate(Plan, _plan(suggested, diameter, tolerance_pct), "x.toml")
        assert fluence_j_cm2(accepted.limits.energy_limit_j(suggested), diameter) <= Caps.MAX_FLUENCE_J_CM2
    else:
        assert fluence_j_cm2(plan.limits.energy_limit_j(energy), diameter) <= Caps.MAX_FLUENCE_J_CM2


def test_the_reported_case_is_refused_naming_the_numbers() -> None:
    with pytest.raises(InputError) as exc:
        validate(Plan, _plan(0.0176, 0.3), "x.toml")
    text = " ".join(exc.value.problems)
    for words in ("24.9 J/cm2", "29.9 J/cm2", "25 J/cm2", "20 %", "at most 0.0147 J"):
        assert words in text, text


@pytest.mark.parametrize("drift", [1.1, 1.19, 1.5, 3.0])
def test_a_generator_running_high_stays_under_the_cap(drift: float) -> None:
    """Within the tolerance the session completes; beyond it the energy check trips, and the generator's own
    dose monitor (set to setting x 1.2) has cut the pulse that tripped it: no pulse over the cap either way."""
    plan = validate(Plan, _plan(0.0147, 0.3), "x.toml")  # the most the cap allows on 0.3 mm, as suggested
    faults = FaultScenario.model_validate(
        {"fault": [{"device": "plasma", "kind": "energy_drift", "value": drift, "after_pulses": 1}]}
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = run_blocking(SessionInputs(plan=plan, plan_file=None, faults=faults), Path(tmp), handle_sigint=False)
        record = json.loads((Path(tmp) / "simulator.json").read_text(encoding="utf-8"))
    delivered = [fluence_j_cm2(p["energy_j"], 0.3) for p in record["pulses"]]
    assert delivered and max(delivered) <= Caps.MAX_FLUENCE_J_CM2, delivered
    if drift <= 1.1:
        assert result.outcome == "complete" and len(delivered) == plan.pulse_count
    else:
        assert result.outcome == "fault" and result.cause == "energy_out_of_tolerance"


@pytest.mark.parametrize(
    ("spray_ms", "hint"), [(0.15, "did you mean 0.15 s = 150 ms?"), (0.005, None), (9.9, None), (10.0, "ok")]
)
def test_a_spray_too_short_to_cool_is_refused_with_a_hint_for_seconds(spray_ms: float, hint: str | None) -> None:
    """Before: spray_ms = 0.15 (meant 0.15 s) passed check; run fired pulse 1, which then went uncooled."""
    data = _plan(0.005, 0.3)
    data["cooling"] = {"spray_ms": spray_ms}
    if hint == "ok":
        assert validate(Plan, data, "x.toml").cooling.spray_ms == spray_ms
        return
    with pytest.raises(InputError) as exc:
        validate(Plan, data, "x.toml")
    text = " ".join(exc.value.problems)
    assert "cooling.spray_ms" in text and "a spray needs to cool" in text, text
    assert (hint in text) if hint else ("did you mean" not in text), text
