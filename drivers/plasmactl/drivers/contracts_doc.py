"""``docs/device-contracts.md``, generated from the declarations (``plasmactl contracts --write``)."""

from __future__ import annotations

import inspect

from plasmactl.drivers import lineproto
from plasmactl.drivers.registers import MAPS, _markdown_table


def contracts_markdown() -> str:
    lines = [
        "# Device contracts",
        "",
        "Generated from `drivers/plasmactl/drivers/registers.py` and `lineproto.py` by `plasmactl contracts`;",
        "do not edit by hand. Drivers and the served simulators import the same declarations.",
        "",
        "Modbus: holding registers only (FC 3, 6, 16); 32-bit values take two registers, high word first;",
        "a write outside a register's range, to a read-only register or to an unmapped address gets a",
        "Modbus exception (3 illegal value, 2 illegal address). The identity block 0-9 is the same on every",
        "device. On a TCP gateway, every device answers on one port under its unit id.",
        "",
    ]
    for m in MAPS.values():
        lines.extend(_markdown_table(m))
    lines.extend(["## thermometer (serial line protocol)", "", inspect.cleandoc(lineproto.__doc__ or ""), ""])
    return "\n".join(lines)
