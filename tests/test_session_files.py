"""Every file name a session folder holds is spelled once (``plasmactl.session_files``): a name spelled again
elsewhere drifts (``--overwrite`` once removed a list of names written out by hand beside the constants)."""

from __future__ import annotations

import re
from pathlib import Path

from plasmactl import session_files

ROOT = Path(__file__).resolve().parents[1]


def test_no_session_file_name_is_spelled_outside_its_module() -> None:
    names = session_files.SESSION_FILES
    spelled = re.compile("|".join(re.escape(f'"{n}"') for n in names))
    found = []
    for root in ("src", "drivers", "simulators"):
        for path in sorted((ROOT / root).rglob("*.py")):
            if path.name == "session_files.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if spelled.search(line.split("#", 1)[0]):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_overwrite_removes_every_session_file(tmp_path: Path) -> None:
    from plasmactl.out_dir import clear_session_files

    for name in (*session_files.SESSION_FILES, "notes.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    clear_session_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # a file of the user's own stays
