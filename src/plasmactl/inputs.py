"""Loading user files (plan, rig, fault scenario) with errors that name the file, the field and the problem.

Every bad input ends as an ``InputError`` before any device is touched; the CLI maps it to exit 2.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from plasmactl.regular_file import TOML_LIMIT, BadFile, read_regular

M = TypeVar("M", bound=BaseModel)


UNION_TAGS = frozenset({"sim", "modbus-tcp", "modbus-rtu", "serial"})
TAGGED_FIELDS = frozenset({"plasma", "spray", "thermometer", "safety"})
# What each kind of user file is called, and where its examples are (a JSON file given for one is named so).
FILE_KINDS = {
    "plan": ("plans", "examples/plans/"),
    "rig": ("rigs", "examples/rigs/"),
    "faults": ("fault scenarios", "examples/faults/"),
}


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


def read_toml(path: str | Path, kind: str | None = None) -> LoadedFile:
    """A TOML file read whole; ``kind`` (a key of FILE_KINDS) names what a JSON file given instead is."""
    p = Path(path)
    try:
        raw = read_regular(p, TOML_LIMIT)
    except BadFile as exc:  # a FIFO, /dev/zero, a file of gigabytes: refused before it can hang or fill memory
        raise InputError(str(path), [str(exc)]) from None
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
    text = text.removeprefix("\ufeff")  # a byte-order mark (some editors write one) was "Invalid statement"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if _is_json(text):
            plural, examples = FILE_KINDS.get(kind or "", ("these files", "examples/"))
            raise InputError(str(path), [f"{p.name} is JSON; {plural} are TOML files (see {examples})"]) from None
        raise InputError(str(path), [f"not valid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or inline tables
        raise InputError(str(path), ["not valid TOML: arrays or inline tables nested too deeply"]) from None
    return LoadedFile(str(path), hashlib.sha256(raw).hexdigest(), data)


def _is_json(text: str) -> bool:
    """A JSON object or array (what a TOML parser refuses at its first character)."""
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        return isinstance(json.loads(text), dict | list)
    except (ValueError, RecursionError):
        return False


def _members(tp: Any) -> list[Any]:
    """The types an annotation stands for: Annotated unwrapped, a union (or Optional) split."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [tp]


def _tagged(model: type[BaseModel], tag: str) -> bool:
    """``model`` is the member of a tagged union whose tag (a Literal field, ``kind``) is ``tag``."""
    return any(
        get_origin(f.annotation) is Literal and tag in get_args(f.annotation) for f in model.model_fields.values()
    )


def field_names_at(tp: Any, loc: Sequence[str | int]) -> list[str] | None:
    """The field names a model (``tp``) allows at the level ``loc`` points to (None: not a model there).

    ``loc`` is pydantic's error location: field names, list indexes, and a tagged union's tag."""
    for member in _members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if not loc:
                return list(member.model_fields)
            head = loc[0]
            if isinstance(head, str) and head not in member.model_fields and _tagged(member, head):
                return field_names_at(member, loc[1:])
            field = member.model_fields.get(str(head))
            found = None if field is None else field_names_at(field.annotation, loc[1:])
        elif loc and isinstance(loc[0], int) and get_origin(member) in (list, tuple):
            found = field_names_at(get_args(member)[0], loc[1:]) if get_args(member) else None
        elif loc and get_origin(member) is dict:
            found = field_names_at(get_args(member)[1], loc[1:]) if get_args(member) else None
        else:
            continue
        if found is not None:
            return found
    return None


def _unknown_field(model: type[BaseModel] | None, loc: Sequence[str | int]) -> str:
    """``unknown field``, with the closest allowed name at its level when one is close (a typo)."""
    names = field_names_at(model, loc[:-1]) if model is not None and loc else None
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.7) if names else []
    return f"unknown field (did you mean {close[0]}?)" if close else "unknown field (not allowed)"


def describe_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem: dotted field path, then pydantic's message (without its URL noise). With the
    ``model`` validated, an unknown field names the closest allowed one (``did you mean energy_j?``)."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        raw = [part for part in err["loc"] if not str(part).startswith("function-")]
        parts = [str(part) for part in raw]
        # a tagged union puts its tag in the path (plasma.sim.latency_ms): the user wrote plasma.latency_ms
        parts = [p for i, p in enumerate(parts) if not (i and p in UNION_TAGS and parts[i - 1] in TAGGED_FIELDS)]
        loc = ".".join(parts)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = f"{loc}.kind" if loc else "kind"
        if err["type"] == "extra_forbidden":
            msg = _unknown_field(model, raw)
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
        raise InputError(source, describe_validation_error(exc, model)) from None
    except ArithmeticError as exc:  # a check's arithmetic on an extreme number (1e-300 mm: its area is 0)
        raise InputError(
            source, [f"the values cannot be checked ({type(exc).__name__}: {exc}): a number too small or too large?"]
        ) from None


def load_model(model: type[M], path: str | Path, kind: str | None = None) -> tuple[M, LoadedFile]:
    loaded = read_toml(path, kind)
    return validate(model, loaded.data, loaded.path), loaded
