"""A document's structure, as the converter reported it, cut to each chunk.

A chunk's metadata gets `section` (the heading path where it starts: "Server Configuration >
Resource Consumption > Memory") and `terms`: for every definition-list description it overlaps,
(start, end, term) in the chunk's own offsets, so research reads each sentence of a
description with the term it describes ("work_mem (integer): The default is four megabytes").
`structured` says the converter reports the format's definition lists (HTML): research then reads
them from here and never guesses them from the flattened text. Markdown and DOCX report headings.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from activities.ingest.converters.base import Block, ParsedDocument

MAX_TERM_CHARS = 200
MAX_SECTION_CHARS = 300


@dataclass(frozen=True)
class Definition:
    start: int
    end: int
    term: str


def _clean(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def definitions(text: str, blocks: list[Block]) -> list[Definition]:
    """Each description with the term(s) just before it ("-a, --all" then its description:
    two terms, one description). A nested list's terms start a new run."""
    out: list[Definition] = []
    run: list[str] = []
    last = ""
    for b in blocks:  # in document order
        if b.kind == "term":
            if last == "definition":
                run = []
            run.append(_clean(text[b.start:b.end], MAX_TERM_CHARS))
            last = "term"
        elif b.kind == "definition":
            if run:
                out.append(Definition(b.start, b.end, _clean(", ".join(run), MAX_TERM_CHARS)))
            last = "definition"
    return out


# formats whose converter reports definition lists: research guesses none from their text
DEFINITIONS_KNOWN = frozenset({"html"})


class DocumentStructure:
    """Definitions and headings of one parsed document, looked up per chunk."""

    def __init__(self, parsed: ParsedDocument):
        self.known = parsed.blocks is not None
        self.definitions_known = parsed.kind in DEFINITIONS_KNOWN
        blocks = parsed.blocks or []
        self.defs = definitions(parsed.text, blocks)
        self._def_starts = [d.start for d in self.defs]
        # headings in order: (start, level, text)
        self.heads = [(b.start, int(b.kind[1]), _clean(parsed.text[b.start:b.end], 120))
                      for b in blocks if b.kind in ("h1", "h2", "h3", "h4", "h5", "h6")]
        self._head_starts = [h[0] for h in self.heads]

    def section(self, offset: int) -> str:
        """The heading path in effect at `offset`."""
        path: list[tuple[int, str]] = []
        for _, level, text in self.heads[:bisect.bisect_right(self._head_starts, offset)]:
            path = [p for p in path if p[0] < level] + [(level, text)]
        return _clean(" > ".join(t for _, t in path), MAX_SECTION_CHARS)

    def for_chunk(self, start: int, end: int) -> dict:
        if not self.known:
            return {}
        meta: dict = {"structured": True} if self.definitions_known else {}
        section = self.section(start)
        if section:
            meta["section"] = section
        # descriptions overlapping [start, end): nested ones start later, so look back far enough
        i = bisect.bisect_left(self._def_starts, end)
        terms = [[max(d.start, start) - start, min(d.end, end) - start, d.term]
                 for d in self.defs[:i] if d.end > start]
        if terms:
            meta["terms"] = terms
        return meta
