"""Constructors for the frozen, slotted status dataclasses the simulators build tens of thousands of times per
session.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (a name lookup per field);
the constructors here call each slot's descriptor directly: the same object, in half the time. They are
written out, one per class (no generated code: nothing is compiled at run time), with the class's fields and
defaults as keyword-only parameters (a call passes no dict, and a missing or unknown field is a TypeError
as with the class); ``tests/test_perf_summary.py`` checks them against the classes' own fields. ``maker``
is the generic, slower form for any other plain slots dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from plasmactl.ports import PlasmaStatus, SafetyState, SkinReading, SprayStatus

T = TypeVar("T")

_new = object.__new__


def maker(cls: type[T]) -> Callable[..., T]:
    """``cls(**fields)`` (keywords only) for a frozen slots dataclass without ``__post_init__`` or factories."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    slots = getattr(cls, "__slots__", ())
    plain = all(f.init and f.default_factory is dataclasses.MISSING for f in fields)
    if hasattr(cls, "__post_init__") or not plain or set(names) != set(slots):
        raise TypeError(f"{cls.__name__}: not a plain slots dataclass; build it with its own __init__")
    missing = dataclasses.MISSING
    plan = [(n, _setter(cls, n), f.default) for n, f in zip(names, fields, strict=True)]
    known = frozenset(names)

    def make(**given: Any) -> T:
        if not given.keys() <= known:
            raise TypeError(f"{cls.__name__}: unknown fields {sorted(set(given) - known)}")
        o = _new(cls)
        for name, set_slot, default in plan:
            value = given.get(name, default)
            if value is missing:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
            set_slot(o, value)
        return o

    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The slot descriptor's ``__set__`` for field ``name`` (what a frozen class's ``__setattr__`` bypasses)."""
    setter: Callable[[object, object], None] = cls.__dict__[name].__set__
    return setter


_PS = [_setter(PlasmaStatus, n) for n in PlasmaStatus.__match_args__]
_ps_t, _ps_armed, _ps_on, _ps_energy, _ps_ms, _ps_count, _ps_last, _ps_fault, _ps_limit, _ps_sent = _PS


def plasma_status(
    *,
    t: float,
    armed: bool,
    output_on: bool,
    energy_setpoint_j: float,
    pulse_ms_setpoint: float,
    pulse_count: int,
    last_energy_j: float | None,
    fault_code: int = 0,
    energy_limit_j: float = 0.0,
    t_sent: float | None = None,
) -> PlasmaStatus:
    """``PlasmaStatus(...)``: one per generator status request."""
    o = _new(PlasmaStatus)
    _ps_t(o, t)
    _ps_armed(o, armed)
    _ps_on(o, output_on)
    _ps_energy(o, energy_setpoint_j)
    _ps_ms(o, pulse_ms_setpoint)
    _ps_count(o, pulse_count)
    _ps_last(o, last_energy_j)
    _ps_fault(o, fault_code)
    _ps_limit(o, energy_limit_j)
    _ps_sent(o, t_sent)
    return o


_SS = [_setter(SprayStatus, n) for n in SprayStatus.__match_args__]
_ss_t, _ss_open, _ss_cmd, _ss_res, _ss_flow, _ss_count, _ss_fault, _ss_trig = _SS


def spray_status(
    *,
    t: float,
    valve_open: bool,
    spray_commanded: bool,
    reservoir_ml: float,
    flow_ml_s: float,
    spray_count: int,
    fault_code: int = 0,
    trigger_armed: bool = False,
) -> SprayStatus:
    """``SprayStatus(...)``: one per spray unit status request."""
    o = _new(SprayStatus)
    _ss_t(o, t)
    _ss_open(o, valve_open)
    _ss_cmd(o, spray_commanded)
    _ss_res(o, reservoir_ml)
    _ss_flow(o, flow_ml_s)
    _ss_count(o, spray_count)
    _ss_fault(o, fault_code)
    _ss_trig(o, trigger_armed)
    return o


_sr_t, _sr_value = (_setter(SkinReading, n) for n in SkinReading.__match_args__)


def skin_reading(*, t: float, value_c: float) -> SkinReading:
    """``SkinReading(...)``: one per thermometer sample."""
    o = _new(SkinReading)
    _sr_t(o, t)
    _sr_value(o, value_c)
    return o


_sf_t, _sf_estop, _sf_foot, _sf_tip = (_setter(SafetyState, n) for n in SafetyState.__match_args__)


def safety_state(*, t: float, estop: bool, footswitch: bool, tip_distance_mm: float) -> SafetyState:
    """``SafetyState(...)``: one per safety read."""
    o = _new(SafetyState)
    _sf_t(o, t)
    _sf_estop(o, estop)
    _sf_foot(o, footswitch)
    _sf_tip(o, tip_distance_mm)
    return o
