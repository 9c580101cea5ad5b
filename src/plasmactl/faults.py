"""Fault scenarios as data: what goes wrong, on which device, and when.

The format is fixed (other tools write these files)::

    [[fault]]
    device = "spray"            # plasma | spray | thermometer | safety | link
    kind = "valve_stuck_closed"
    at_s = 12.5                 # session time in seconds ...
    # after_pulses = 40         # ... or: right after the end of the Nth pulse
    # duration_s = 2.0          # optional; default: until the session ends
    # value = 80.0              # kind-specific parameter
    # target = "thermometer"    # for device = "link": which device's link
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plasmactl.inputs import LoadedFile, load_model

Device = Literal["plasma", "spray", "thermometer", "safety", "link"]
LinkTarget = Literal["plasma", "spray", "thermometer", "safety"]

# kind -> (needs a value?, what the value means)
KINDS: dict[str, dict[str, tuple[bool, str]]] = {
    "plasma": {
        "stuck_on": (False, ""),
        "no_output": (False, ""),
        "energy_drift": (True, "factor applied to the delivered energy"),
    },
    "spray": {
        "valve_stuck_closed": (False, ""),
        "valve_slow": (True, "added valve opening latency in ms"),
        "reservoir_empty": (False, ""),
    },
    "thermometer": {
        "dropout": (False, ""),
        "stuck": (False, "the reading it sticks at, in C (default: the last reading)"),
        "offset": (True, "offset added to the reading, in C"),
    },
    "safety": {
        "estop": (False, ""),
        "footswitch_release": (False, ""),
        "tip_lift": (False, "tip distance in mm while lifted (default 5.0)"),
    },
    # The in-process rig models only "timeout" (it treats every link kind as silence); the other kinds
    # act at the wire of the served simulators (plasmactl.simulators.served).
    "link": {
        "timeout": (False, ""),
        "delay": (True, "milliseconds added to each reply"),
        "corrupt": (False, ""),
        "garbage": (False, ""),
        "disconnect": (False, ""),
    },
}
NON_NEGATIVE = {"energy_drift": "a factor", "valve_slow": "added milliseconds", "delay": "added milliseconds"}


class Fault(BaseModel):
    """One fault: ``at_s`` or ``after_pulses`` says when it starts; ``duration_s`` how long it lasts."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    device: Device
    kind: str
    at_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    after_pulses: Annotated[int, Field(ge=1)] | None = None
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    target: LinkTarget | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Fault:
        kinds = KINDS[self.device]
        if self.kind not in kinds:
            raise ValueError(
                f"unknown kind {self.kind!r} for device {self.device!r}; known: {', '.join(sorted(kinds))}"
            )
        if (self.at_s is None) == (self.after_pulses is None):
            raise ValueError("give exactly one of at_s or after_pulses")
        needs_value, meaning = kinds[self.kind]
        if needs_value and self.value is None:
            raise ValueError(f"kind {self.kind!r} needs value ({meaning})")
        if not meaning and self.value is not None:
            raise ValueError(f"kind {self.kind!r} takes no value")
        if self.device == "link" and self.target is None:
            raise ValueError("device 'link' needs target (plasma | spray | thermometer | safety)")
        if self.device != "link" and self.target is not None:
            raise ValueError("target is only for device 'link'")
        if self.kind in NON_NEGATIVE and self.value is not None and self.value < 0:
            raise ValueError(f"{self.kind} value is {NON_NEGATIVE[self.kind]} and must be >= 0, not {self.value:g}")
        return self

    @property
    def affected(self) -> str:
        """The device whose behaviour changes (the target, for a link fault)."""
        return self.target if self.device == "link" and self.target else self.device


class FaultScenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    name: str = ""
    description: str = ""
    fault: list[Fault] = []


def load_faults(path: str) -> tuple[FaultScenario, LoadedFile]:
    return load_model(FaultScenario, path, "faults")


def check_against_plan(scenario: FaultScenario, pulses: int, max_session_s: float) -> list[str]:
    """Problems that make a scenario meaningless for this plan (a fault that could never happen)."""
    problems: list[str] = []
    for i, fault in enumerate(scenario.fault):
        if fault.after_pulses is not None and fault.after_pulses > pulses:
            problems.append(
                f"fault.{i}.after_pulses: {fault.after_pulses} but the plan delivers only {pulses} pulses"
                " (the fault would never start)"
            )
        if fault.at_s is not None and fault.at_s >= max_session_s:
            problems.append(f"fault.{i}.at_s: {fault.at_s:g} s is past the session limit {max_session_s:g} s")
    return problems
