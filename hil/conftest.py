"""Hardware-in-the-loop suite: the same checks against any rig file (the plugin is ``plasmactl.hil_plugin``,
installed with the package).

    pytest hil                                        # served simulators over Modbus TCP, on free ports
    pytest hil --rig examples/rigs/sim-rtu.toml --hil-out out/hil --hil-report out/hil-report --junitxml j.xml
    pytest hil --rig examples/rigs/bench-hil.toml --hil-operator   # a real bench: the operator makes the faults

Tests read the audit log (and, on served rigs, the simulated world through its control channel), so a real rig
is held to exactly the standard of the simulators.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the record helpers in tests/audit.py
