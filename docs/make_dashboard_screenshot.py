"""Write docs/dashboard.svg: the dashboard (``plasmactl monitor``) of a simulated full-face session, as it
shows while the session is paused (the handpiece lifted off the skin at 40 s, for 5 s): the log of the
session is cut at 43 s and the monitor follows that.

Run it from the repository: ``.venv/bin/python docs/make_dashboard_screenshot.py`` (about ten seconds).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from plasmactl.cli_inputs import load_inputs
from plasmactl.dashboard import Dashboard
from plasmactl.dashboard_source import LogFollower
from plasmactl.session import run_blocking

DOCS = Path(__file__).resolve().parent
PLAN = DOCS.parent / "examples" / "plans" / "full-face.toml"
FAULTS = """
name = "the tip lifted off the skin for 5 s"
[[fault]]
device = "safety"
kind = "tip_lift"
at_s = 40.0
duration_s = 5.0
value = 4.0
"""
CUT_S = 43.0
SIZE = (132, 44)


async def screenshot(log: Path, lines: int, target: Path) -> None:
    app = Dashboard(LogFollower(log), where=f"out/{PLAN.stem}")
    async with app.run_test(size=SIZE) as pilot:
        while app.model.events < lines:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.save_screenshot(target.name, path=str(target.parent))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        faults = Path(tmp) / "faults.toml"
        faults.write_text(FAULTS, encoding="utf-8")
        run_dir, cut = Path(tmp) / "run", Path(tmp) / "cut.jsonl"
        run_blocking(load_inputs(PLAN, None, faults, 0), run_dir, handle_sigint=False)
        lines = (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)
        kept = [x for x in lines if json.loads(x)["t"] <= CUT_S]
        cut.write_bytes(b"".join(kept))
        target = DOCS / "dashboard.svg"
        asyncio.run(screenshot(cut, len(kept), target))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
