"""The rig's ``[skin]`` section as the skin models' shared parameters (one place for the mapping)."""

from __future__ import annotations

from typing import Any

from plasmactl.rig import Skin
from plasmactl.simulators.skin.layered1d import DEFAULT_LAYERS, Layer


def layers_of(skin: Skin) -> tuple[Layer, ...]:
    """The rig's layer stack in SI units, or docs/domain.md's default."""
    if skin.layers is None:
        return DEFAULT_LAYERS
    return tuple(Layer(x.name, x.thickness_um * 1e-6, x.rho, x.c, x.k, x.w_b, x.q_m) for x in skin.layers)


def tissue_fields(skin: Skin) -> dict[str, Any]:
    """Keyword values for any ``TissueParams`` subclass: layers and the two surface boundaries."""
    return {
        "layers": layers_of(skin),
        "air_h": skin.air_h,
        "air_temp_c": skin.air_temp_c,
        "spray_h": skin.spray_h,
        "spray_temp_c": skin.spray_temp_c,
    }
