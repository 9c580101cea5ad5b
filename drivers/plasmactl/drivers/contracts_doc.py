"""``docs/device-contracts.md``, generated from the declarations (``plasmactl contracts --write``)."""

from __future__ import annotations

import inspect

from plasmactl.drivers import lineproto, registers
from plasmactl.drivers.registers import MAPS, _markdown_table


def _v2_text() -> list[str]:
    """The module docstring's map v2 paragraphs (declared once, there)."""
    doc = inspect.cleandoc(registers.__doc__ or "")
    start = doc.index("Map version 2 adds")
    return doc[start:].splitlines()


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
        "## Register map version 2: owner lease, owner's write, trigger line",
        "",
        *_v2_text(),
        "",
    ]
    for m in MAPS.values():
        lines.extend(_markdown_table(m))
    lines.extend(["## thermometer (serial line protocol)", "", inspect.cleandoc(lineproto.__doc__ or ""), ""])
    return "\n".join(lines)
