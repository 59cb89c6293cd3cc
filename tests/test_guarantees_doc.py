"""docs/guarantees.md links each statement to the test that demonstrates it: every test
file and test function it names must exist, so the page cannot point at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "guarantees.md"
# `tests/x.py::test_a`, and the shorthand `::test_b` for another test of the same file
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`")


def _references() -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in REFERENCE.finditer(DOC.read_text(encoding="utf-8")):
        path, name, sibling = match.groups()
        if path is not None:
            current = path
            out.append((path, name))
        else:
            assert current is not None, f"`::{sibling}` before any file"
            out.append((current, sibling))
    return out


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_test_the_guarantees_name_exists() -> None:
    references = _references()
    assert len(references) > 30
    missing = []
    for path, name in references:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name is not None and name not in _functions(file):
            missing.append(f"{path}::{name}")
    assert not missing, missing
