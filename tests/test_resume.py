"""``plasmactl resume``: a session that ended early is continued on exactly the spots its record shows
untouched; a spot that received any pulse is never treated again; the new record names the earlier one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plasmactl.events import read_events
from plasmactl.resume import combined_doses
from plasmactl.run_log import read_run_log

REPO = Path(__file__).resolve().parents[1]
PLASMACTL = Path(sys.executable).parent / "plasmactl"
SHORT = REPO / "examples" / "plans" / "short.toml"  # six spots, one pulse each, 1 s apart

pytestmark = pytest.mark.subprocess


def _plasmactl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PLASMACTL), *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=120)


def _faults(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _spots_pulsed(run_dir: Path) -> list[int]:
    return [int(e["spot"]) for e in read_events(run_dir / "events.jsonl") if e["event"] == "pulse_start"]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_a_valve_fault_at_spot_k_resumed_delivers_exactly_the_rest(tmp_path: Path, k: int) -> None:
    faults = _faults(tmp_path, f'[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = {k}\n')
    first, second = tmp_path / "first", tmp_path / "second"
    ran = _plasmactl("run", SHORT, "--faults", faults, "--out", first)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert _spots_pulsed(first) == list(range(1, k + 1))
    resumed = _plasmactl("resume", first, "--out", second, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    obj = json.loads(resumed.stdout)
    assert obj["outcome"] == "complete" and obj["spots"] == list(range(k + 1, 7)), obj
    events = read_events(second / "events.jsonl")
    start = events[0]["resume_of"]
    assert start["spots"] == list(range(k + 1, 7)) and start["spots_done_before"] == list(range(1, k + 1))
    # the new record names the earlier log and the hash of its last line, as the earlier summary anchors it
    anchor = json.loads((first / "summary.json").read_text())["log"]
    assert start["log"] == str((first / "events.jsonl").resolve())
    assert (start["records"], start["last_sha256"]) == (anchor["records"], anchor["last_sha256"])
    # the new session's own spots are the remaining ones, at the first plan's positions
    first_events = read_events(first / "events.jsonl")
    first_positions = {int(e["spot"]): (e["x_mm"], e["y_mm"]) for e in first_events if e["event"] == "pulse_start"}
    second_positions = [(e["x_mm"], e["y_mm"]) for e in events if e["event"] == "pulse_start"]
    assert not set(first_positions.values()) & set(second_positions)
    assert len(second_positions) == 6 - k
    # the combined dose: every spot of the plan once, each as planned
    doses = combined_doses(read_run_log(second))
    assert sorted(doses) == list(range(1, 7))
    for dose in doses.values():
        assert dose["sessions"] == 1 and dose["status"] == "complete", dose
        assert dose["delivered_j"] == pytest.approx(dose["planned_j"], rel=0.1)
    assert _plasmactl("verify-log", second / "events.jsonl").returncode == 0
    # the report of the second session shows the dose map of the whole plan, from both records
    assert _plasmactl("report", second).returncode == 0
    page = (second / "report.html").read_text()
    assert 'id="dose-combined"' in page and str(first / "events.jsonl") in page
    assert page.count('data-status="complete"') == 6 and 'data-status="not_started"' not in page


def test_a_cut_pulse_leaves_its_spot_alone(tmp_path: Path) -> None:
    """An E-stop 2 ms into the second pulse cuts it: spot 2 got part of its dose and is never pulsed again;
    the resume treats spots 3 to 6 and names spot 2 as left under-dosed."""
    faults = _faults(tmp_path, '[[fault]]\ndevice = "safety"\nkind = "estop"\nat_s = 1.002\n')
    first, second = tmp_path / "first", tmp_path / "second"
    ran = _plasmactl("run", SHORT, "--faults", faults, "--out", first)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    ends = [e for e in read_events(first / "events.jsonl") if e["event"] == "pulse_end"]
    assert ends[-1]["interrupted"] is True, ends
    resumed = _plasmactl("resume", first, "--out", second, "--json")
    assert resumed.returncode == 0, resumed.stderr
    obj = json.loads(resumed.stdout)
    assert obj["spots"] == [3, 4, 5, 6] and obj["left_partial"] == [2], obj
    assert "not re-treated" in resumed.stderr
    doses = combined_doses(read_run_log(second))
    assert doses[2]["status"] == "under_dosed" and doses[2]["sessions"] == 1


def test_a_resume_of_a_resume_keeps_the_first_plans_numbers(tmp_path: Path) -> None:
    one = _faults(tmp_path, '[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 2\n')
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _plasmactl("run", SHORT, "--faults", one, "--out", a).returncode == 3
    assert _plasmactl("resume", a, "--out", b, "--faults", one).returncode == 3  # spots 3, 4; faults at 4
    resumed = _plasmactl("resume", b, "--out", c, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["spots"] == [5, 6]
    doses = combined_doses(read_run_log(c))
    assert [d["sessions"] for d in doses.values()] == [1] * 6


def test_what_cannot_be_resumed_is_refused_with_a_message(tmp_path: Path) -> None:
    done = tmp_path / "done"
    assert _plasmactl("run", SHORT, "--out", done).returncode == 0
    cases = {
        "nothing left to treat": ("resume", done, "--out", tmp_path / "x"),
        "no such folder": ("resume", tmp_path / "missing", "--out", tmp_path / "y"),
        "the earlier session's own folder": ("resume", done, "--out", done),
    }
    for words, args in cases.items():
        out = _plasmactl(*args)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, (words, out.stderr)
    # a record changed after the fact: its dose cannot be trusted
    faults = _faults(tmp_path, '[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 2\n')
    cut = tmp_path / "cut"
    assert _plasmactl("run", SHORT, "--faults", faults, "--out", cut).returncode == 3
    log = cut / "events.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    edited = next(i for i, line in enumerate(lines) if '"event":"pulse_start"' in line and '"spot":2' in line)
    lines[edited] = lines[edited].replace('"spot":2', '"spot":1')
    log.write_text("".join(lines))
    out = _plasmactl("resume", cut, "--out", tmp_path / "z")
    assert out.returncode == 2 and "chain broken" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_record_is_resumed_once_then_its_continuation_is(tmp_path: Path) -> None:
    """Before the claim, a second resume of the same record treated its untouched spots a second time."""
    faults = _faults(tmp_path, '[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 2\n')
    a, b, c, d = (tmp_path / n for n in "abcd")
    assert _plasmactl("run", SHORT, "--faults", faults, "--out", a).returncode == 3
    assert _plasmactl("resume", a, "--out", b).returncode == 0
    again = _plasmactl("resume", a, "--out", c)
    assert again.returncode == 2 and "already resumed" in again.stderr and str(b) in again.stderr, again.stderr
    assert "Traceback" not in again.stderr and not (c / "events.jsonl").exists()
    # the continuation is what is resumed from now on: here nothing is left
    after = _plasmactl("resume", b, "--out", d)
    assert after.returncode == 2 and "nothing left to treat" in after.stderr, after.stderr
    doses = combined_doses(read_run_log(b))
    assert [entry["sessions"] for entry in doses.values()] == [1, 1, 1, 1, 1, 1]


def test_of_two_resumes_at_once_one_runs(tmp_path: Path) -> None:
    faults = _faults(tmp_path, '[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 1\n')
    a = tmp_path / "a"
    assert _plasmactl("run", SHORT, "--faults", faults, "--out", a).returncode == 3
    outs = [tmp_path / f"r{i}" for i in range(3)]
    procs = [
        subprocess.Popen(
            [str(PLASMACTL), "resume", str(a), "--out", str(o)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for o in outs
    ]
    codes = [p.wait(timeout=120) for p in procs]
    for p in procs:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        p.stderr.close()
    assert sorted(codes) == [0, 2, 2], codes
    pulsed = [s for o in outs if (o / "events.jsonl").exists() for s in _spots_pulsed(o)]
    assert len(pulsed) == 5  # spots 2-6 of the first plan, once


def test_a_claim_whose_session_never_started_is_taken_over(tmp_path: Path) -> None:
    faults = _faults(tmp_path, '[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 4\n')
    a = tmp_path / "a"
    assert _plasmactl("run", SHORT, "--faults", faults, "--out", a).returncode == 3
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    claim = {"out": str(tmp_path / "never"), "pid": gone.pid, "wall_time": 0.0}
    (a / "resumed_by.json").write_text(json.dumps(claim), encoding="utf-8")
    resumed = _plasmactl("resume", a, "--out", tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((a / "resumed_by.json").read_text(encoding="utf-8"))["out"] == str((tmp_path / "b").resolve())


def test_a_session_still_running_is_not_resumed(tmp_path: Path) -> None:
    """``resume`` of a session that was still running read its unfinished record as cut and re-treated spots
    4-6 while that session went on to treat them (twice the plan). Its folder is held while it runs: refused."""
    a = tmp_path / "a"
    running = subprocess.Popen(
        [str(PLASMACTL), "run", str(SHORT), "--realtime", "--out", str(a)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        log = a / "events.jsonl"
        for _ in range(3000):
            if log.exists() and b'"pulse_start"' in log.read_bytes():
                break
            time.sleep(0.01)
        refused = _plasmactl("resume", a, "--out", tmp_path / "b")
        assert running.poll() is None, "the session ended before the resume was tried"
    finally:
        running.wait(timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "being written by a running plasmactl session" in refused.stderr
    assert not (tmp_path / "b" / "events.jsonl").exists()
    assert not (a / "resumed_by.json").exists()


def test_resume_takes_quiet_as_run_does(tmp_path: Path) -> None:
    faults = _faults(tmp_path, '[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 1\n')
    a = tmp_path / "a"
    assert _plasmactl("run", SHORT, "--faults", faults, "--out", a, "-q").returncode == 3
    done = _plasmactl("resume", a, "--out", tmp_path / "b", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[-1]]  # the final line only
    assert "session complete" in done.stderr
