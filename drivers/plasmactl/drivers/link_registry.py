"""The Modbus links of a rig: one :class:`~plasmactl.drivers.modbus.ModbusLink` per endpoint, shared by the
device drivers behind it."""

from __future__ import annotations

from plasmactl.rig import ModbusRtu, ModbusTcp

from .modbus import ModbusLink, RequestPolicy, RtuEndpoint, TcpEndpoint, TracePacket, endpoint_for


class LinkRegistry:
    """One :class:`ModbusLink` per endpoint, shared by every device driver behind it (plasma + safety on
    unit 1 and spray on unit 2 of one TCP server or RTU bus share one client, whose calls are serialised)."""

    def __init__(self, *, trace_packet: TracePacket | None = None) -> None:
        self._links: dict[str, ModbusLink] = {}
        self._trace_packet = trace_packet

    def acquire(self, cfg: ModbusTcp | ModbusRtu, port: str | None = None) -> ModbusLink:
        ep = endpoint_for(cfg, port)
        key = str(ep) if isinstance(ep, TcpEndpoint) else f"rtu:{ep.path}"
        link = self._links.get(key)
        if link is None:
            link = ModbusLink(
                ep,
                policy=RequestPolicy.of(cfg),
                reconnect_max_s=cfg.reconnect_max_ms / 1000.0,
                trace_packet=self._trace_packet,
            )
            self._links[key] = link
            return link
        if link.endpoint != ep:
            raise ValueError(f"{ep.path if isinstance(ep, RtuEndpoint) else ep}: conflicting settings on one bus")
        link.reconnect_max_s = min(link.reconnect_max_s, cfg.reconnect_max_ms / 1000.0)
        link.reconnect_min_s = min(link.reconnect_min_s, link.reconnect_max_s)
        return link

    @property
    def links(self) -> list[ModbusLink]:
        return list(self._links.values())

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        self._links.clear()
