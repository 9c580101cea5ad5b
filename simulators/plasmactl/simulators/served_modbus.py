"""The served Modbus engine: answers request PDUs for the served units (shared by TCP and RTU).

Only the contract's function codes are served (3 read, 6 write one, 16 write many; anything else is
exception 1); pymodbus decodes the request and runs it against the units' ``SimDevice`` datastore (the
``SimCore`` its own servers use), whose ``action`` hooks are the units in ``served_units``.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.simulator.simcore import SimCore

from plasmactl.drivers.registers import PLASMA
from plasmactl.simulators.served_units import ServedUnit

log = logging.getLogger("plasmactl.served")

# The handpiece inputs are wired to the generator: these registers of the PLASMA map are the "safety" device
# (a link fault with target = "safety" hits requests that touch them, target = "plasma" the others).
SAFETY_REGISTERS = ("SAFETY", "TIP_DISTANCE")
READ_HOLDING, WRITE_SINGLE, WRITE_MULTIPLE = 3, 6, 16  # the contract's function codes
MAX_READ, MAX_WRITE = 125, 123  # registers per request (Modbus application protocol)


class ModbusEngine:
    """Answers Modbus PDUs for the served units; shared by the TCP and the RTU servers."""

    def __init__(self, units: list[ServedUnit]) -> None:
        self.units = {u.unit_id: u for u in units}
        self._core = SimCore([u.sim_device() for u in units])
        self._decoder = DecodePDU(is_server=True)
        self._safety = {a for name in SAFETY_REGISTERS for a in PLASMA[name].addresses}

    def known(self, unit: int) -> bool:
        return unit in self.units

    def targets(self, unit: int, pdu: bytes) -> tuple[str, ...]:
        """Which devices (link-fault targets) a request to ``unit`` concerns."""
        if unit != PLASMA.unit_id:
            unit_map = self.units[unit].map if unit in self.units else None
            return (unit_map.device,) if unit_map is not None else ()
        span = _span(pdu)
        if span is None:
            return ("plasma",)
        out: list[str] = []
        if any(a in self._safety for a in span):
            out.append("safety")
        if any(a not in self._safety for a in span):
            out.append("plasma")
        return tuple(out)

    async def execute(self, unit: int, pdu: bytes) -> ModbusPDU:
        """The response PDU (maybe an exception response) to a request PDU for a known unit."""
        function_code = pdu[0] if pdu else 0
        problem = _check_request(pdu)
        if problem is not None:
            return ExceptionResponse(function_code, problem, device_id=unit)
        request = self._decoder.decode(pdu)
        if request is None:  # unreachable after _check_request; be a device, not a traceback
            return ExceptionResponse(function_code, ExcCodes.ILLEGAL_VALUE, device_id=unit)
        request.dev_id = unit
        try:
            response = await request.datastore_update(cast(Any, self._core), unit)
        except Exception:
            log.exception("served unit %d failed on %s", unit, pdu.hex())
            response = ExceptionResponse(function_code, ExcCodes.DEVICE_FAILURE)
        response.dev_id = unit
        return response

    async def stop(self) -> None:
        for unit in self.units.values():
            await unit.stop()


def _check_request(pdu: bytes) -> ExcCodes | None:
    """Exception code for a request the contract does not allow, before pymodbus decodes it."""
    if not pdu or pdu[0] not in (READ_HOLDING, WRITE_SINGLE, WRITE_MULTIPLE):
        return ExcCodes.ILLEGAL_FUNCTION
    if pdu[0] in (READ_HOLDING, WRITE_SINGLE):
        if len(pdu) != 5:
            return ExcCodes.ILLEGAL_VALUE
        if pdu[0] == READ_HOLDING and not 1 <= struct.unpack(">H", pdu[3:5])[0] <= MAX_READ:
            return ExcCodes.ILLEGAL_VALUE
        return None
    if len(pdu) < 6:
        return ExcCodes.ILLEGAL_VALUE
    count, byte_count = struct.unpack(">H", pdu[3:5])[0], pdu[5]
    if not 1 <= count <= MAX_WRITE or byte_count != 2 * count or len(pdu) != 6 + byte_count:
        return ExcCodes.ILLEGAL_VALUE
    return None


def _span(pdu: bytes) -> range | None:
    """The addresses a FC 3/6/16 request touches (None if it is not one)."""
    if len(pdu) < 5 or pdu[0] not in (READ_HOLDING, WRITE_SINGLE, WRITE_MULTIPLE):
        return None
    address, count = struct.unpack(">HH", pdu[1:5])
    return range(address, address + (1 if pdu[0] == WRITE_SINGLE else count))
