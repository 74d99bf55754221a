"""Records shared by the stores, ingestion and research."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Chunk(BaseModel):
    """A span of a document. start/end are character offsets into the document's
    extracted text, so citations can point at the exact span."""

    chunk_id: str  # deterministic: uuid5(document_id, ordinal)
    document_id: str  # deterministic: uuid5(mission, sha256)
    ordinal: int
    text: str
    start: int
    end: int
    token_count: int
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchHit(BaseModel):
    chunk_id: str
    document_id: str
    text: str
    start: int
    end: int
    score: float  # the store's raw score (BM25, cosine, fused)
    source: str  # "bm25" | "dense" | "hybrid" | "graph" | "web"
    title: str | None = None
    url: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)  # per-retriever scores kept through fusion
    # the converter's structure for this passage (activities/ingest/structure.py), read from the
    # chunk row by research: the heading path, and (start, end, term) of definition descriptions
    section: str | None = None
    terms: list[tuple[int, int, str]] = Field(default_factory=list)
    structured: bool = False  # the converter knew the structure: none is guessed from the text


class Entity(BaseModel):
    entity_id: str  # deterministic from (type, normalised name)
    name: str
    type: str  # PERSON | ORGANIZATION | CONCEPT | custom types from the cartridge


class Relation(BaseModel):
    source_id: str
    target_id: str
    type: str  # MENTIONS | RELATES_TO | SOURCES_FROM
    weight: float = 1.0
    context: str = ""
