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
from itertools import accumulate
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
    """Each description with the term(s) just before it in its own list ("-a, --all" then its
    description: two terms, one description). A list's terms never reach another list's
    descriptions: each list (nested ones too) keeps its own run of terms."""
    out: list[Definition] = []
    # open lists, innermost last: (end, run of terms, last item kind)
    frames: list[tuple[int, list[str], list[str]]] = [(len(text) + 1, [], [""])]
    for b in blocks:  # in document order, an enclosing block before what it holds
        while len(frames) > 1 and frames[-1][0] <= b.start:
            frames.pop()
        if b.kind == "dlist":
            frames.append((b.end, [], [""]))
            continue
        _, run, last = frames[-1]
        if b.kind == "term":
            if last[0] == "definition":
                run.clear()
            run.append(_clean(text[b.start:b.end], MAX_TERM_CHARS))
            last[0] = "term"
        elif b.kind == "definition":
            if run:
                out.append(Definition(b.start, b.end, _clean(", ".join(run), MAX_TERM_CHARS)))
            last[0] = "definition"
    return out


# formats whose converter reports definition lists: research guesses none from their text
DEFINITIONS_KNOWN = frozenset({"html"})


class DocumentStructure:
    """Definitions and headings of one parsed document, looked up per chunk (each lookup a binary
    search and a walk over the few descriptions that can overlap: linear in the document)."""

    def __init__(self, parsed: ParsedDocument):
        self.known = parsed.blocks is not None
        self.definitions_known = self.known and parsed.kind in DEFINITIONS_KNOWN
        blocks = parsed.blocks or []
        self.defs = definitions(parsed.text, blocks) if self.definitions_known else []
        self._def_starts = [d.start for d in self.defs]
        self._reach = list(accumulate((d.end for d in self.defs), max))  # furthest end of defs[:i + 1]
        # the heading path after each heading, built once
        self._head_starts: list[int] = []
        self._paths: list[str] = []
        path: list[tuple[int, str]] = []
        for b in blocks:
            if b.kind in ("h1", "h2", "h3", "h4", "h5", "h6"):
                level = int(b.kind[1])
                path = [p for p in path if p[0] < level] + [(level, _clean(parsed.text[b.start:b.end], 120))]
                self._head_starts.append(b.start)
                self._paths.append(_clean(" > ".join(t for _, t in path), MAX_SECTION_CHARS))

    def section(self, offset: int) -> str:
        """The heading path in effect at `offset`."""
        i = bisect.bisect_right(self._head_starts, offset)
        return self._paths[i - 1] if i else ""

    def for_chunk(self, start: int, end: int) -> dict:
        if not self.known:
            return {}
        meta: dict = {"structured": True} if self.definitions_known else {}
        section = self.section(start)
        if section:
            meta["section"] = section
        # descriptions overlapping [start, end): those starting before `end` whose reach passes `start`
        terms = []
        j = bisect.bisect_left(self._def_starts, end) - 1
        while j >= 0 and self._reach[j] > start:
            d = self.defs[j]
            if d.end > start:
                terms.append([max(d.start, start) - start, min(d.end, end) - start, d.term])
            j -= 1
        if terms:
            meta["terms"] = terms[::-1]
        return meta
