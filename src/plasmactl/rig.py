"""The rig file (TOML): per device, which implementation talks to it, with its timing.

No file means the default rig: every device is an in-process simulator. An unknown device kind is an
error, never ignored: a typo must not silently swap a real device for a simulated one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plasmactl.inputs import LoadedFile, load_model

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class DeviceTiming(_Strict):
    """How the controller talks to a device: per-request timeout, silence watchdog, heartbeat poll."""

    timeout_ms: PosFloat = 100.0
    watchdog_ms: PosFloat = 500.0
    poll_ms: PosFloat = 100.0

    @model_validator(mode="after")
    def _order(self) -> DeviceTiming:
        if self.timeout_ms >= self.watchdog_ms:
            raise ValueError(f"timeout_ms ({self.timeout_ms:g}) must be below watchdog_ms ({self.watchdog_ms:g})")
        if self.poll_ms >= self.watchdog_ms:
            raise ValueError(f"poll_ms ({self.poll_ms:g}) must be below watchdog_ms ({self.watchdog_ms:g})")
        return self


class PlasmaSim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 20.0
    poll_ms: PosFloat = 250.0  # heartbeat between pulses; the pulse cycle itself polls it every pulse
    latency_ms: NonNeg = 0.5  # fire command to output on
    energy_noise_pct: NonNeg = 2.0  # 1-sigma of delivered energy
    hw_max_pulse_ms: PosFloat = 150.0  # the generator's own hardware pulse limit


class SpraySim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 20.0
    poll_ms: PosFloat = 250.0  # heartbeat between pulses; the pulse cycle itself polls it every pulse
    valve_latency_ms: NonNeg = 15.0
    reservoir_ml: NonNeg = 500.0
    flow_ml_s: PosFloat = 0.5


class ThermometerSim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 50.0
    sample_ms: PosFloat = 100.0
    latency_ms: NonNeg = 10.0
    noise_c: NonNeg = 0.03
    time_constant_ms: NonNeg = 60.0


class SafetySim(DeviceTiming):
    kind: Literal["sim"] = "sim"
    timeout_ms: PosFloat = 50.0
    tip_distance_mm: NonNeg = 0.5
    heartbeat_ms: PosFloat = 250.0  # wait_change returns at least this often


class Skin(_Strict):
    """The simulated skin: the patch the thermometer sees, and the per-spot tissue physics."""

    model: Literal["layered1d"] = "layered1d"
    # The treated patch the thermometer sees; pulse energy is spread over it (1-D model).
    field_diameter_mm: Annotated[float, Field(gt=1.0, le=50.0)] = 10.0
    # Per-spot tissue physics (damage, ablation, lateral spread); its results go into the log and summary.
    tissue: bool = True
    lateral: bool = True  # the axisymmetric 2-D model for the lateral damage radius
    spray_h: Annotated[float, Field(gt=0, le=1e6)] = 2500.0  # W/(m2 K) while the valve is open (DOMAIN.md)
    spray_temp_c: Annotated[float, Field(ge=-20, le=40)] = 8.0
    air_h: Annotated[float, Field(ge=0, le=1e3)] = 8.7
    air_temp_c: Annotated[float, Field(ge=0, le=45)] = 24.0
    deposit_depth_um: Annotated[float, Field(gt=0, le=500)] = 10.0


class Rig(_Strict):
    name: str = "in-process simulators (default)"
    description: str = ""
    plasma: PlasmaSim = PlasmaSim()
    spray: SpraySim = SpraySim()
    thermometer: ThermometerSim = ThermometerSim()
    safety: SafetySim = SafetySim()
    skin: Skin = Skin()

    def timing(self, device: str) -> DeviceTiming:
        value = getattr(self, device)
        assert isinstance(value, DeviceTiming)
        return value

    @property
    def all_simulated(self) -> bool:
        return all(self.timing(d).model_dump().get("kind") == "sim" for d in DEVICES)


DEVICES: tuple[str, ...] = ("plasma", "spray", "thermometer", "safety")


def load_rig(path: str | None) -> tuple[Rig, LoadedFile | None]:
    if path is None:
        return Rig(), None
    rig, loaded = load_model(Rig, path)
    return rig, loaded
