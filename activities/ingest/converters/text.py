"""Plain text and Markdown (the first line / first '# ' heading is the title)."""
from __future__ import annotations

import re

from activities.ingest.converters.base import ParsedDocument, decode_text, tidy


def parse_txt(data: bytes) -> ParsedDocument:
    text = tidy(decode_text(data))
    first = next((line.strip() for line in text.split("\n") if line.strip()), None)
    return ParsedDocument(text, "txt", title=first[:200] if first else None)


def parse_md(data: bytes) -> ParsedDocument:
    text = tidy(decode_text(data))
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    return ParsedDocument(text, "md", title=m.group(1).strip() if m else None)
