"""The layering rule, read from the code: starters (API, CLI, dev stack) and the core package only
start, signal and query workflows, so neither imports activities (storage, LLMs, search)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["starters", "stratmaster"])
def test_starters_and_the_core_never_import_activities(package):
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "activities")
                 for p in (ROOT / package).rglob("*.py")}
    assert {f: m for f, m in offenders.items() if m} == {}
