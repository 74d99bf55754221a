"""What every converter shares: the parsed document, the text limits, decoding and tidying, errors."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from temporalio.exceptions import ApplicationError

from stratmaster.errors import CORRUPT_DOCUMENT, OVERSIZED, bad_input

MAX_TEXT_CHARS = 50_000_000  # extracted text; CSV and JSON repeat headers/paths, so they can expand their input

CONTENT_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "html": "text/html",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv",
    "json": "application/json",
}


@dataclass(frozen=True)
class Block:
    """A structural element the converter saw, as a span of the extracted text: a heading
    ("h1".."h6"), a definition list's term ("term") and description ("definition")."""
    start: int
    end: int
    kind: str


@dataclass
class ParsedDocument:
    text: str
    kind: str  # key of CONTENT_TYPES
    title: str | None = None
    # character offsets where each page starts (PDF), for chunk metadata
    page_starts: list[int] = field(default_factory=list)
    # None: the format has no structure the converter reads (research may guess it from the text)
    blocks: list[Block] | None = None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")  # a truncated or damaged file is still mostly text
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def tidy(text: str) -> str:
    """Normalise newlines, trailing spaces and runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def short(exc: BaseException) -> str:
    """One line, at most 300 characters: type and message."""
    msg = " ".join(str(exc).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def parse_failed(fmt: str, exc: BaseException) -> ApplicationError:
    return bad_input(f"{fmt} parse failed: {short(exc)}", CORRUPT_DOCUMENT)


def too_much_text() -> ApplicationError:
    return bad_input(f"extracted text exceeds {MAX_TEXT_CHARS:,} characters", OVERSIZED)


def heading_blocks(text: str, headings: list[tuple[int, str, int | None]]) -> list[Block]:
    """Blocks for (level, heading text, line) in document order. With its line number (Markdown:
    the parser's), a heading is looked up on that line; without (DOCX: a paragraph), as a whole
    line of its own after the previous heading, so a table of contents or a sentence mentioning
    it is not taken for it."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    blocks, at = [], 0
    for level, heading, line in headings:
        heading = heading.strip()
        if not heading:
            continue
        if line is not None and 0 <= line < len(starts):
            lo = starts[line]
            hi = starts[line + 1] if line + 1 < len(starts) else len(text)
            found = text.find(heading, lo, hi)
        else:
            m = re.compile(rf"^[ \t]*{re.escape(heading)}[ \t]*$", re.M).search(text, at)
            found = m.start() + len(m.group(0)) - len(m.group(0).lstrip()) if m else -1
        if found < 0:
            continue
        blocks.append(Block(found, found + len(heading), f"h{min(6, max(1, level))}"))
        at = found + len(heading)
    return blocks
