"""Messages a new user's mistakes get (from an adversarial run): a byte-order mark is no TOML error, a value
just over its cap is shown as given, a rig file without a name is not called the default simulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from plasmactl.inputs import InputError
from plasmactl.plan import load_plan
from plasmactl.rig import load_rig
from test_cli import EXAMPLES, all_output, invoke

SHORT = EXAMPLES / "plans" / "short.toml"


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    plan = tmp_path / "bom.toml"
    plan.write_bytes(b"\xef\xbb\xbf" + SHORT.read_bytes())  # as some editors save UTF-8
    assert load_plan(str(plan))[0].name == "short"  # was "Invalid statement (at line 1, column 1)"


def test_a_value_just_over_its_cap_is_shown_as_given(tmp_path: Path) -> None:
    plan = tmp_path / "over.toml"
    text = SHORT.read_text(encoding="utf-8").replace(
        "max_cooling_delay_ms = 100.0", "max_cooling_delay_ms = 1000.0000001"
    )
    plan.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_plan(str(plan))
    assert "max_cooling_delay_ms = 1000.0000001 exceeds the hard cap 1000" in " ".join(err.value.problems)


def test_a_rig_file_without_a_name_is_named_by_its_file(tmp_path: Path) -> None:
    rig = tmp_path / "bench-a.toml"
    rig.write_text('[spray]\nkind = "sim"\nflow_ml_s = 0.6\n', encoding="utf-8")
    assert load_rig(str(rig))[0].name == "bench-a"
    result = invoke(["check", str(SHORT), "--rig", str(rig)])
    assert result.exit_code == 0 and "rig 'bench-a'" in all_output(result), all_output(result)


def test_a_window_too_short_is_not_answered_with_what_the_plan_already_does(tmp_path: Path) -> None:
    plan = tmp_path / "tight.toml"
    text = SHORT.read_text(encoding="utf-8").replace("max_cooling_delay_ms = 100.0", "max_cooling_delay_ms = 10.0")
    plan.write_text(text, encoding="utf-8")
    result = invoke(["check", str(plan)])
    assert result.exit_code == 2
    assert "every spray would miss its window" in all_output(result)
    assert "cool after every pulse" not in all_output(result)  # the short plan cools after every pulse already


def test_check_says_a_wire_fault_is_silence_on_the_in_process_rig(tmp_path: Path) -> None:
    faults = tmp_path / "f.toml"
    faults.write_text('[[fault]]\ndevice = "link"\nkind = "garbage"\ntarget = "spray"\nat_s = 1.0\n', encoding="utf-8")
    plain = invoke(["check", str(SHORT), "--faults", str(faults)])
    assert plain.exit_code == 0 and "link fault kind(s) garbage act on a wire" in all_output(plain)
    served = invoke(
        ["check", str(SHORT), "--faults", str(faults), "--rig", str(EXAMPLES / "rigs" / "sim-tcp-inprocess.toml")]
    )
    assert served.exit_code == 0 and "act on a wire" not in all_output(served)
