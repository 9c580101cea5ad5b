"""Keyword constructors for the frozen, slotted status dataclasses the simulators build tens of thousands of
times per session.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (a name lookup per field);
the maker built here calls each slot's descriptor directly (no generated code: nothing is compiled at run
time): the same object. Fields take the class's own defaults; one without a default must be given, as with
the class itself; an unknown one is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from plasmactl.ports import PlasmaStatus, SafetyState, SkinReading, SprayStatus

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """``cls(**fields)`` (keywords only) for a frozen slots dataclass without ``__post_init__`` or factories."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    slots = getattr(cls, "__slots__", ())
    plain = all(f.init and f.default_factory is dataclasses.MISSING for f in fields)
    if hasattr(cls, "__post_init__") or not plain or set(names) != set(slots):
        raise TypeError(f"{cls.__name__}: not a plain slots dataclass; build it with its own __init__")
    missing = dataclasses.MISSING
    plan = [(n, cls.__dict__[n].__set__, f.default) for n, f in zip(names, fields, strict=True)]
    new = object.__new__

    def make(**given: Any) -> T:
        if len(given) > len(plan) or not given.keys() <= set(names):
            raise TypeError(f"{cls.__name__}: unknown fields {sorted(set(given) - set(names))}")
        o = new(cls)
        for name, set_slot, default in plan:
            value = given.get(name, default)
            if value is missing:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
            set_slot(o, value)
        return o

    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


# One per request, sample or safety read: tens of thousands per session.
plasma_status = maker(PlasmaStatus)
spray_status = maker(SprayStatus)
skin_reading = maker(SkinReading)
safety_state = maker(SafetyState)
