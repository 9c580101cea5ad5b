"""A session's folder must have room for its record before anything starts (a disk full before the start left
an empty log and exit 1; one that filled mid-session cut the log), and the files written at the end are whole
or absent (a full disk left simulator.json at 0 bytes)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from plasmactl import out_dir
from plasmactl.inputs import InputError
from test_cli import EXAMPLES, all_output, invoke


class _Full:
    """What os.statvfs says of a file system with ``free`` bytes left."""

    def __init__(self, free: int) -> None:
        self.f_bavail, self.f_frsize = free // 4096, 4096


def _full(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(os, "statvfs", lambda _: _Full(free))


def test_room_is_checked_against_the_plans_pulses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full(monkeypatch, 3_000_000)
    out_dir.ensure_room(tmp_path, 6)  # a short plan's record fits
    with pytest.raises(InputError) as err:
        out_dir.ensure_room(tmp_path, 1517)
    message = " ".join(err.value.problems)
    assert "3.0 MB free" in message and "1517 pulses" in message and "choose another --out" in message


@pytest.mark.parametrize("command", ["run", "resume"])
def test_run_and_resume_refuse_a_full_disk_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    plan = EXAMPLES / "plans" / "full-face.toml"
    if command == "resume":
        faults = tmp_path / "f.toml"
        faults.write_text('[[fault]]\ndevice = "spray"\nkind = "valve_stuck_closed"\nafter_pulses = 3\n')
        first = invoke(["run", str(plan), "--faults", str(faults), "--out", str(tmp_path / "a")])
        assert first.exit_code == 3, all_output(first)
    _full(monkeypatch, 200_000)
    out = tmp_path / "b"
    args = (
        ["run", str(plan), "--out", str(out)]
        if command == "run"
        else ["resume", str(tmp_path / "a"), "--out", str(out)]
    )
    result = invoke(args)
    assert result.exit_code == 2, all_output(result)
    assert "0.2 MB free" in all_output(result)
    assert not (out / "events.jsonl").exists()


def test_a_folder_that_takes_no_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def no_space(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(InputError) as err:
        out_dir.ensure_out_dir(tmp_path / "x")
    assert "cannot be written: No space left on device" in " ".join(err.value.problems)
    assert list((tmp_path / "x").iterdir()) == []  # the probe is gone


def test_a_file_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "simulator.json"
    target.write_text("old\n", encoding="utf-8")

    def fails(self: Path, text: str, encoding: str | None = None) -> int:
        with open(self, "w", encoding=encoding) as f:
            f.write(text[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", fails)
    with pytest.raises(OSError):
        out_dir.write_whole(target, "new content\n")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simulator.json"]
