"""JSON: one "path: value" line per leaf, in document order."""
from __future__ import annotations

import json

from stratmaster.errors import CORRUPT_DOCUMENT, bad_input

from activities.ingest.converters import base
from activities.ingest.converters.base import ParsedDocument, decode_text, parse_failed, tidy, too_much_text


def _flatten(value, out: list[str]) -> None:
    """'path: value' lines in document order, without recursion (depth is limited by json.loads)."""
    size = 0
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], f"{path}[{i}]") for i in range(len(value) - 1, -1, -1))
        elif value is not None:
            out.append(f"{path or 'value'}: {value}")
            size += len(out[-1]) + 1
            if size > base.MAX_TEXT_CHARS:
                raise too_much_text()


def parse_json(data: bytes) -> ParsedDocument:
    try:
        obj = json.loads(decode_text(data))
    except RecursionError:
        raise bad_input("JSON parse failed: nested too deeply", CORRUPT_DOCUMENT) from None
    except ValueError as exc:
        raise parse_failed("JSON", exc) from exc
    lines: list[str] = []
    _flatten(obj, lines)
    title = None
    if isinstance(obj, dict):
        for key in ("title", "name", "headline"):
            if isinstance(obj.get(key), str):
                title = obj[key].strip()
                break
    return ParsedDocument(tidy("\n".join(lines)), "json", title=title)
