"""Plain text and Markdown (the first line / first '# ' heading is the title)."""
from __future__ import annotations

import re

from activities.ingest.converters.base import ParsedDocument, decode_text, heading_blocks, tidy


def parse_txt(data: bytes) -> ParsedDocument:
    text = tidy(decode_text(data))
    first = next((line.strip() for line in text.split("\n") if line.strip()), None)
    return ParsedDocument(text, "txt", title=first[:200] if first else None)


def parse_md(data: bytes) -> ParsedDocument:
    """The text as written; its headings (ATX and setext, as CommonMark reads them: not a `#` line
    inside a code block) reported as blocks."""
    from markdown_it import MarkdownIt

    text = tidy(decode_text(data))
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    tokens = MarkdownIt("commonmark").parse(text)
    headings = [(int(t.tag[1]), tokens[i + 1].content, t.map[0] if t.map else None) for i, t in enumerate(tokens[:-1])
                if t.type == "heading_open" and tokens[i + 1].type == "inline"]
    return ParsedDocument(text, "md", title=m.group(1).strip() if m else None, blocks=heading_blocks(text, headings))
