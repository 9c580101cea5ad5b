"""The hazard table (src/plasmactl/hazards.py) against the rules, the tests and docs/safety.md: every rule the
controller can emit covers a hazard, every hazard has a test carrying its marker, and the document names
each hazard with its title."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from plasmactl.controller.trips import Rule
from plasmactl.hazards import BY_ID, HAZARDS, Hazard, hazards_of

ROOT = Path(__file__).resolve().parents[1]


def marked_hazards() -> dict[str, list[str]]:
    """hazard id -> the tests (file::name, or file for a module mark) that carry ``pytest.mark.hazard(id)``."""
    found: dict[str, list[str]] = {}
    for path in sorted([*(ROOT / "tests").glob("test_*.py"), *(ROOT / "hil").glob("test_*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.mark.hazard"):
                continue
            owner = next(
                (
                    f.name
                    for f in ast.walk(tree)
                    if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and node in ast.walk(f)
                ),
                None,
            )
            where = f"{path.name}::{owner}" if owner else path.name
            for arg in node.args:
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), f"{where}: hazard ids are strings"
                found.setdefault(arg.value, []).append(where)
    return found


def test_every_rule_covers_a_hazard() -> None:
    assert [r.value for r in Rule if not hazards_of(r)] == []


def test_every_hazard_has_a_test_and_every_mark_a_hazard() -> None:
    marks = marked_hazards()
    assert [h.id for h in HAZARDS if h.id not in marks] == []
    assert sorted(set(marks) - set(BY_ID)) == []
    print({h: len(v) for h, v in sorted(marks.items(), key=lambda kv: int(kv[0][1:]))})


def test_hazard_ids_are_numbered_in_order() -> None:
    assert [h.id for h in HAZARDS] == [f"H{i}" for i in range(1, len(HAZARDS) + 1)]


@pytest.mark.parametrize("hazard", HAZARDS, ids=lambda h: h.id)
def test_the_safety_document_names_each_hazard(hazard: Hazard) -> None:
    text = (ROOT / "docs" / "safety.md").read_text(encoding="utf-8")
    h = BY_ID[hazard.id]
    heading = re.search(rf"^### {h.id}\. (.+)$", text, re.M)
    assert heading is not None, f"docs/safety.md has no '### {h.id}. ...' heading"
    assert heading.group(1).strip() == h.title
    section = text[heading.end() : text.find("\n### ", heading.end())]
    for rule in h.rules:
        assert f"`{rule.value}`" in section, f"{h.id}: rule {rule.value} not named in its section"
