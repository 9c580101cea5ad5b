"""The per-spot tissue recorder: grouping, caching, and the shortcut that skips the 2-D model."""

from __future__ import annotations

from typing import Any

from plasmactl.rig import Skin
from plasmactl.simulators.skin.axisym import simulate_lateral
from plasmactl.simulators.skin.spot import SpotDose, simulate_spot
from plasmactl.simulators.tissue import LATERAL_SKIP_OMEGA, TissueRecorder

SPOT = 0.3e-3


def test_shortcut_is_sound_where_it_applies() -> None:
    # a 5 mJ / 5 ms spot cooled 17 ms later: far below Omega 1 in the 1-D column, and indeed nowhere
    # at the basal depth does the 2-D model reach Omega 1
    pulses = ((0.0, 0.005, 0.005),)
    sprays = ((0.022, 0.172),)
    spot = simulate_spot(SpotDose(pulses, sprays, SPOT))
    assert spot.basal_omega_henriques < LATERAL_SKIP_OMEGA
    assert simulate_lateral(pulses, sprays, SPOT).lateral_damage_radius_um == 0.0


def test_recorder_groups_spots_and_reuses_doses() -> None:
    emitted: list[dict[str, Any]] = []
    rec = TissueRecorder(Skin(), SPOT, emitted.append)
    for i in range(5):  # five identical spots, one pulse and one spray each
        t = i * 1.0
        rec.pulse(i + 1, t, t + 0.005, 0.005)
        rec.spray(t + 0.022, t + 0.172)
    summary = rec.finish()
    assert summary["spots"] == 5 and summary["doses_simulated"] == 1
    assert [e["spot"] for e in emitted] == [1, 2, 3, 4, 5]
    assert all(e["pulses"] == [i + 1] for i, e in enumerate(emitted))
    assert all(abs(e["spray_delay_ms"] - 17.0) < 1e-6 for e in emitted)
    assert summary["lateral_damage_radius_um"] == 0.0


def test_cut_pulse_delivers_its_fraction() -> None:
    emitted: list[dict[str, Any]] = []
    rec = TissueRecorder(Skin(lateral=False), SPOT, emitted.append)
    rec.pulse(1, 0.0, 0.005, 0.010)
    rec.cut_pulse(0.0025)  # switched off half-way
    rec.spray(0.02, 0.17)
    rec.finish()
    assert abs(emitted[0]["energy_j"] - 0.005) < 1e-12


def test_a_spray_or_pulse_stopped_as_it_began_is_none() -> None:
    """A spray stopped at its opening (the session ending as a slow valve opened) reached the physics as a
    zero-length spray: ``tissue_error`` "need a finite t_open < t_close", and no tissue results for exactly the
    session whose cooling failed. The same for a pulse cut as it began."""
    emitted: list[dict[str, Any]] = []
    rec = TissueRecorder(Skin(), SPOT, emitted.append)
    rec.pulse(1, 0.0, 0.005, 0.005)
    rec.spray(0.14, 0.29)
    rec.stop_spray(0.14)
    rec.pulse(2, 1.0, 1.005, 0.005)
    rec.cut_pulse(1.0)
    summary = rec.finish()
    assert summary["spots"] == 1
    assert emitted[0]["spray_delay_ms"] is None  # no water reached the spot
