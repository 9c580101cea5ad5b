"""Loading user files (plan, rig, fault scenario) with errors that name the file, the field and the problem.

Every bad input ends as an ``InputError`` before any device is touched; the CLI maps it to exit 2.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


UNION_TAGS = frozenset({"sim", "modbus-tcp", "modbus-rtu", "serial"})
TAGGED_FIELDS = frozenset({"plasma", "spray", "thermometer", "safety"})


class InputError(Exception):
    """Bad user input: which file, which field, what is wrong."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class LoadedFile:
    """A file's path, raw bytes digest and parsed TOML document."""

    path: str
    sha256: str
    data: dict[str, object]


def read_toml(path: str | Path) -> LoadedFile:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), ["file not found"]) from None
    except IsADirectoryError:
        raise InputError(str(path), ["is a directory, expected a TOML file"]) from None
    except OSError as exc:
        raise InputError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), [f"not valid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or inline tables
        raise InputError(str(path), ["not valid TOML: arrays or inline tables nested too deeply"]) from None
    return LoadedFile(str(path), hashlib.sha256(raw).hexdigest(), data)


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: dotted field path, then pydantic's message (without its URL noise)."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        parts = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
        # a tagged union puts its tag in the path (plasma.sim.latency_ms): the user wrote plasma.latency_ms
        parts = [p for i, p in enumerate(parts) if not (i and p in UNION_TAGS and parts[i - 1] in TAGGED_FIELDS)]
        loc = ".".join(parts)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = f"{loc}.kind" if loc else "kind"
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not allowed)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def validate(model: type[M], data: object, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(source, describe_validation_error(exc)) from None
    except ArithmeticError as exc:  # a check's arithmetic on an extreme number (1e-300 mm: its area is 0)
        raise InputError(
            source, [f"the values cannot be checked ({type(exc).__name__}: {exc}): a number too small or too large?"]
        ) from None


def load_model(model: type[M], path: str | Path) -> tuple[M, LoadedFile]:
    loaded = read_toml(path)
    return validate(model, loaded.data, loaded.path), loaded
