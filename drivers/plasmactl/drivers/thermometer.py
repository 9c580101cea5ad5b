"""The skin thermometer over its serial line protocol (``$ID``, ``$T``): a :class:`plasmactl.ports.SkinThermometer`."""

from __future__ import annotations

import math

from plasmactl.clock import Clock
from plasmactl.ports import SkinReading
from plasmactl.rig import SerialLine

from . import lineproto
from .errors import BadChecksum, IdentityMismatch
from .modbus import RequestPolicy
from .serialline import LineLink


class SerialThermometer:
    """:class:`plasmactl.ports.SkinThermometer` over the ``$T`` line protocol; the reading's ``t`` is the
    reply's arrival time minus the sample's reported age."""

    def __init__(self, cfg: SerialLine, clock: Clock, *, port: str | None = None, name: str = "thermometer") -> None:
        path = port if port is not None else cfg.port
        if path.startswith("@"):
            raise ValueError(f"serial port {path!r} is a placeholder: give the served port's real path")
        self.cfg = cfg
        self.clock = clock
        self.name = name
        self.path = path
        self.link = LineLink(
            path,
            cfg.baud,
            clock.now,
            policy=RequestPolicy(cfg.timeout_ms / 1000.0, cfg.retries),
            reconnect_max_s=cfg.reconnect_max_ms / 1000.0,
            name=name,
        )
        self.identity: tuple[str, str, str, str] | None = None

    async def connect(self) -> tuple[str, str, str, str]:
        """Open the port and check ``$ID`` against the line protocol's vendor, model and map version."""
        await self.link.open()
        fields, _ = await self.link.request(("ID",), "ID")
        if len(fields) != 5:
            raise BadChecksum(self.name, f"malformed $ID reply: {fields!r}")
        _, vendor, model, firmware, map_version = fields
        expected = {"vendor": lineproto.VENDOR, "model": lineproto.MODEL, "map_version": lineproto.MAP_VERSION}
        found = {"vendor": vendor, "model": model, "map_version": map_version}
        if found != expected:
            raise IdentityMismatch(self.name, expected, found)
        self.identity = (vendor, model, firmware, map_version)
        return self.identity

    async def read(self) -> SkinReading:
        fields, t_reply = await self.link.request(("T",), "T")
        try:
            sample = lineproto.decode_sample(fields)
        except lineproto.FrameError as exc:
            raise BadChecksum(self.name, str(exc)) from None
        if sample.age_ms < 0 or not math.isfinite(sample.celsius):
            raise BadChecksum(self.name, f"implausible sample: {fields!r}")
        return SkinReading(t_reply - sample.age_ms / 1000.0, sample.celsius)

    async def close(self) -> None:
        await self.link.close()
