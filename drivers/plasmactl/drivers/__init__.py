"""Drivers for real devices over wires (Modbus, serial line protocols)."""
