"""Token-aware chunking with overlap and exact character offsets.

Windows are counted in the embedding model's own word pieces, so a chunk never
exceeds what the model sees; each chunk is the exact slice
`text[start:end]` of the extracted text (citations point at that span).
A window ends at a sentence or paragraph boundary when one is near its end.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

# Namespace of every deterministic id in ingestion (documents, chunks).
NAMESPACE = uuid.UUID("5f0b6c3e-8e6a-4f59-9a53-2b7d0c1e4a10")


def document_id(mission: str, sha256: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{mission}:{sha256}"))


def chunk_id(doc_id: str, ordinal: int) -> str:
    return str(uuid.uuid5(uuid.UUID(doc_id), str(ordinal)))


@dataclass(frozen=True)
class Span:
    ordinal: int
    start: int
    end: int
    token_count: int


_SENTENCE_END = ".!?;:"


def _boundary_score(text: str, end: int) -> int:
    """How good a cut after character `end` is: paragraph > line > sentence > none."""
    nxt = text[end:end + 2]
    if nxt.startswith("\n\n"):
        return 3
    if nxt.startswith("\n"):
        return 2
    if end > 0 and text[end - 1] in _SENTENCE_END and (not nxt or nxt[0].isspace()):
        return 1
    return 0


def chunk_spans(text: str, offsets: list[tuple[int, int]], max_tokens: int, overlap: int,
                lookback: float = 0.3) -> list[Span]:
    """Split `text` (tokenised into `offsets`) into windows of <= max_tokens
    tokens, consecutive windows sharing about `overlap` tokens."""
    if max_tokens < 1:
        raise ValueError("chunk size must be >= 1 token")
    overlap = max(0, min(overlap, max_tokens // 2))
    n = len(offsets)
    spans: list[Span] = []
    i = 0
    while i < n:
        j = min(n, i + max_tokens)  # exclusive
        if j < n:
            # prefer a boundary in the last `lookback` part of the window
            best, best_score = j, 0
            floor = max(i + 1, j - int(max_tokens * lookback))
            for k in range(j, floor - 1, -1):
                score = _boundary_score(text, offsets[k - 1][1])
                if score > best_score:
                    best, best_score = k, score
                    if score == 3:
                        break
            j = best
        start, end = offsets[i][0], offsets[j - 1][1]
        spans.append(Span(len(spans), start, end, j - i))
        if j >= n:
            break
        i = max(i + 1, j - overlap)
    return spans


def chunk_text(text: str, token_offsets: Callable[[str], list[tuple[int, int]]],
               max_tokens: int, overlap: int) -> list[Span]:
    return chunk_spans(text, token_offsets(text), max_tokens, overlap)
