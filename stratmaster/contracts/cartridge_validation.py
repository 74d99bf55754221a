"""Reading a cartridge from YAML or JSON text: `validate_cartridge(text)` reports every problem
in one pass as (field path, reason, line when known): parse errors, unknown keys, bad values,
duplicate keys (which PyYAML and json.loads would silently resolve to the last one).

The line of each problem comes from a map of every key path to its line, built from
PyYAML's node tree; anchors, aliases and deep nesting are refused on the event stream
before anything is loaded. It is pure (no I/O), so starters may call it to fail fast and
to derive the workflow id; the activation workflow validates again in an activity.
"""
from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from stratmaster.contracts.cartridge import Cartridge, cartridge_sha256

class Problem(BaseModel):
    path: str  # dotted field path ("metadata.version", "entities.1.patterns"), or "<document>"
    reason: str
    line: int | None = None  # 1-based, when the parser knows it


class CartridgeValidation(BaseModel):
    ok: bool
    problems: list[Problem] = Field(default_factory=list)
    cartridge: Cartridge | None = None
    sha256: str | None = None  # of the canonical JSON, so YAML and JSON forms of one cartridge match


MAX_CARTRIDGE_BYTES = 256 * 1024


def _line_map(text: str) -> tuple[dict[tuple, int], list[Problem]]:
    """Line of every key path (for reporting) and duplicate keys (PyYAML and
    json.loads would silently keep the last one)."""
    lines: dict[tuple, int] = {}
    dupes: list[Problem] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines, dupes

    def walk(node, path: tuple) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    dupes.append(Problem(path=_dotted(path + (key,)), reason="duplicate key",
                                         line=key_node.start_mark.line + 1))
                seen.add(key)
                lines[path + (key,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (str(i),))

    if root is not None:
        walk(root, ())
    return lines, dupes


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "<document>"


MAX_NESTING = 32  # a real cartridge is 4 levels deep


def _structure_problems(text: str) -> list[Problem]:
    """Aliases and deep nesting, found on the event stream (which expands
    nothing and does not recurse): a 377-byte document of nested aliases grows
    x10 per level when loaded, and 50,000 '[' overflow the composer's stack."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return [Problem(path="<document>", reason="YAML anchors and aliases (&name, *name) are not allowed in a cartridge",
                            line=event.start_mark.line + 1)]
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                return [Problem(path="<document>", reason=f"nested deeper than {MAX_NESTING} levels",
                                line=event.start_mark.line + 1)]
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return []


def _parse(text: str) -> tuple[Any, list[Problem]]:
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text), []
        except json.JSONDecodeError as exc:
            return None, [Problem(path="<document>", reason=f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                  line=exc.lineno)]
        except RecursionError:
            return None, [Problem(path="<document>", reason=f"nested deeper than {MAX_NESTING} levels")]
    try:
        problems = _structure_problems(text)
        if problems:
            return None, problems
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        what = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
        where = f" (line {line}, column {mark.column + 1})" if mark else ""
        return None, [Problem(path="<document>", reason=f"invalid YAML: {what}{where}", line=line)]


def validate_cartridge(text: str | bytes | None = None, data: dict | None = None) -> CartridgeValidation:
    """Every problem of a cartridge in one pass; never raises for bad input."""
    problems: list[Problem] = []
    lines: dict[tuple, int] = {}
    if data is None:
        if isinstance(text, bytes):
            if len(text) > MAX_CARTRIDGE_BYTES:
                return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason=f"larger than {MAX_CARTRIDGE_BYTES} bytes")])
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason=f"not UTF-8 text: {exc}")])
        if not text or not text.strip():
            return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason="empty cartridge")])
        if len(text.encode()) > MAX_CARTRIDGE_BYTES:
            return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason=f"larger than {MAX_CARTRIDGE_BYTES} bytes")])
        data, problems = _parse(text)
        if problems:
            return CartridgeValidation(ok=False, problems=problems)
        lines, problems = _line_map(text)
    if not isinstance(data, dict):
        problems.append(Problem(path="<document>", reason=f"a cartridge is a mapping of sections, got {type(data).__name__}"))
        return CartridgeValidation(ok=False, problems=problems)
    if _depth(data) > MAX_NESTING:
        problems.append(Problem(path="<document>", reason=f"nested deeper than {MAX_NESTING} levels"))
        return CartridgeValidation(ok=False, problems=problems)
    try:
        cartridge = Cartridge.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(str(p) for p in err["loc"])
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown field"
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            problems.append(Problem(path=_dotted(loc), reason=reason, line=line))
        problems.sort(key=lambda p: (p.line or 0, p.path))
        return CartridgeValidation(ok=False, problems=problems)
    if problems:
        return CartridgeValidation(ok=False, problems=problems)
    return CartridgeValidation(ok=True, cartridge=cartridge, sha256=cartridge_sha256(cartridge))


def _depth(data: Any) -> int:
    """Nesting depth without recursion (`data` may come from a workflow input)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_NESTING:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def format_problems(problems: list[Problem]) -> str:
    return "; ".join(f"{p.path}{f' (line {p.line})' if p.line else ''}: {p.reason}" for p in problems)
