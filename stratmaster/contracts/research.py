"""Contracts of the research workflow and its activities.

`ResearchInput` is plain JSON-friendly: only `mission` and `query` are required, so
`temporal workflow start --type ResearchWorkflow --task-queue research-tasks
--input '{"mission": "demo", "query": "..."}'` works as is.

Citation offsets (`start`/`end`) are character offsets into the cited document's
extracted text, like Chunk.start/end, so `quote == document_text[start:end]` and
`quote == chunk.text[start - chunk.start : end - chunk.start]`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from stratmaster.contracts.common import MissionId, PlainText
from stratmaster.contracts.knowledge import SearchHit

Fusion = Literal["minmax", "rrf"]
Status = Literal["pending", "planning", "retrieving", "synthesising", "persisting", "completed", "failed", "cancelled"]
# What a completed run concluded: findings passed the mission's quality bar (answered),
# more of them contradicted than the bar allows (contested), or none passed (abstained).
Outcome = Literal["answered", "contested", "insufficient_evidence"]
# use: answer a repeated question from the mission's cache when its documents and
# cartridge are unchanged; refresh: run anyway and cache the new answer; off: neither.
CacheMode = Literal["use", "refresh", "off"]


class ResearchInput(BaseModel):
    mission: MissionId
    query: PlainText = Field(min_length=1, max_length=4000)
    max_subquestions: int = Field(default=4, ge=1, le=12)
    top_k: int = Field(default=8, ge=1, le=100, description="hits kept per sub-question after fusion")
    fusion: Fusion = "minmax"
    # None: the mission's cartridge decides (engines.graph / engines.web). True cannot turn
    # on an engine the cartridge turns off: the run records a "disabled by mission" note.
    use_graph: bool | None = None
    use_web: bool | None = None
    # Bench / API: skip planning with explicit sub-questions; stop after retrieval.
    subquestions: list[PlainText] | None = Field(default=None, max_length=12)
    mode: Literal["full", "retrieve"] = "full"
    cache: CacheMode = "use"

    def cache_params(self) -> dict:
        """What besides the question shapes the answer (part of the cache key)."""
        return self.model_dump(mode="json", exclude={"mission", "query", "cache"})

    @field_validator("query")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("query must not be blank")
        return v


class Citation(BaseModel):
    chunk_id: str
    document_id: str
    start: int  # document-level character offsets of the quote
    end: int
    quote: str
    title: str | None = None
    url: str | None = None
    score: float = 0.0  # retrieval score of the cited hit (fused, normalised 0..1)
    source: str = "hybrid"


class Claim(BaseModel):
    claim_id: str
    ordinal: int
    text: str
    confidence: float = Field(ge=0.0, le=1.0)
    supporting: list[Citation]
    contradicting: list[Citation] = Field(default_factory=list)
    flagged: bool = False
    flag_reason: str | None = None
    confidence_factors: dict[str, float] = Field(default_factory=dict)
    # set on claims kept out of the findings: why they are below the mission's quality bar
    below_bar_reason: str | None = None


class AnswerSentence(BaseModel):
    text: str  # extractive: the cited quote itself; LLM: a sentence whose citations were verified verbatim
    citations: list[Citation] = Field(min_length=1)


class Answer(BaseModel):
    question: str
    text: str  # the sentences joined; "" when abstaining
    sentences: list[AnswerSentence] = Field(default_factory=list)
    confidence: float = 0.0
    method: str = "extractive"  # "extractive" | "llm"


class Gates(BaseModel):
    """The quality bar a run applied (from the mission's cartridge, `quality`)."""
    min_confidence: float = 0.3
    min_sources: int = 1
    max_contradiction_ratio: float = 0.5
    min_retrieval_score: float = 0.0


# ---------------------------------------------------------------- activity I/O

class SessionInput(BaseModel):
    mission: str
    workflow_id: str
    query: str
    params: dict = Field(default_factory=dict)


class SessionInfo(BaseModel):
    session_id: str
    tenant_id: str


class PlanInput(BaseModel):
    mission: str
    query: str
    max_subquestions: int = 4


class Plan(BaseModel):
    subquestions: list[str]
    planner: str  # "llm" | "deterministic" | "given"
    notes: list[str] = Field(default_factory=list)
    discarded: list[str] = Field(default_factory=list)  # LLM sub-questions not about the question
    # LLM plans: the first `grounding` sub-questions are the deterministic plan; their hits alone
    # decide whether the run answers at all (the model's extra sub-questions add evidence, never
    # an answer the deterministic path would not give). 0: every sub-question counts.
    grounding: int = 0


class RetrieveInput(BaseModel):
    mission: str
    query: str
    top_k: int = 8
    fusion: Fusion = "minmax"
    use_graph: bool | None = None  # None: as the cartridge says
    use_web: bool | None = None
    candidates: int = 50  # per retriever, before fusion


class RetrieveOutput(BaseModel):
    query: str
    hits: list[SearchHit]
    expansion_terms: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    engines: list[str] = Field(default_factory=list)  # the retrievers that ran
    notes: list[str] = Field(default_factory=list)  # e.g. "web: disabled by mission"


class SynthesiseInput(BaseModel):
    mission: str
    query: str
    hits: list[SearchHit]
    max_claims: int = 8
    subquestions: list[str] = Field(default_factory=list)
    # the deterministic plan's sub-questions and hits (Plan.grounding), when an LLM planned more
    grounding_subquestions: list[str] | None = None
    grounding_hits: list[SearchHit] | None = None


class Synthesis(BaseModel):
    claims: list[Claim]  # findings: claims that passed the mission's quality bar
    synthesiser: str  # "llm" | "extractive" | "extractive-fallback"
    dropped_claims: int = 0  # LLM claims whose citations failed verification
    below_bar: list[Claim] = Field(default_factory=list)  # each with its below_bar_reason
    outcome: Outcome = "answered"
    answer: Answer | None = None
    subanswers: list[Answer] = Field(default_factory=list)
    closest_evidence: list[Citation] = Field(default_factory=list)  # when abstaining: what came nearest
    gates: Gates = Field(default_factory=Gates)
    notes: list[str] = Field(default_factory=list)


class PersistInput(BaseModel):
    mission: str
    session_id: str
    workflow_id: str
    query: str
    plan: Plan
    hits: list[SearchHit]
    synthesis: Synthesis
    started_at: datetime
    finished_at: datetime
    notes: list[str] = Field(default_factory=list)  # plan's and retrieval's ("disabled by mission", ...)


class PersistOutput(BaseModel):
    report_md_key: str
    report_json_key: str
    claims: list[Claim]  # as stored: citations re-verified against the stored chunk text
    dropped_claims: int = 0
    synthesis: Synthesis | None = None  # the synthesis as stored (gates re-applied after re-verification)
    subscribed: bool = True  # an endpoint of the mission takes research.finished (no event workflow otherwise)


class FinishInput(BaseModel):
    mission: str
    workflow_id: str
    status: Status
    error: str | None = None


# ---------------------------------------------------------------- workflow output / queries

class ResearchProgress(BaseModel):
    workflow_id: str
    mission: str
    query: str
    status: Status
    session_id: str | None = None
    subquestions: list[str] = Field(default_factory=list)
    retrieved: dict[str, int] = Field(default_factory=dict)  # sub-question -> hits
    hits: list[SearchHit] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    error: str | None = None


class ResearchResult(BaseModel):
    workflow_id: str
    session_id: str | None
    mission: str
    query: str
    status: Status
    planner: str
    subquestions: list[str]
    hits: list[SearchHit]
    claims: list[Claim]  # the findings: passed the mission's quality bar
    synthesiser: str | None = None
    dropped_claims: int = 0
    outcome: Outcome | None = None  # None in retrieve-only mode
    answer: Answer | None = None
    subanswers: list[Answer] = Field(default_factory=list)
    below_bar: list[Claim] = Field(default_factory=list)
    closest_evidence: list[Citation] = Field(default_factory=list)
    gates: Gates | None = None
    engines: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    discarded_subquestions: list[str] = Field(default_factory=list)
    report_md_key: str | None = None
    report_json_key: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    cached: bool = False  # answered from the mission's cache: the run `cached_from` made this answer
    cached_from: str | None = None


class CacheLookupInput(BaseModel):
    mission: str
    query: str
    params: dict = Field(default_factory=dict)


class CacheLookupResult(BaseModel):
    key: str | None = None  # the mission's state the answer must match; None: caching is off
    result: ResearchResult | None = None  # a hit
    similarity: float | None = None  # of the cached question to this one (1.0: the same after normalising)
    # on a hit: does an endpoint of the mission take research.finished? (no event workflow otherwise)
    subscribed: bool = True


class CacheStoreInput(BaseModel):
    mission: str
    key: str
    query: str
    result: ResearchResult


def workflow_id_for(mission: str, query: str, request_id: str) -> str:
    """Business key: research-<mission>-<hash of query + request id (or timestamp)>."""
    import hashlib

    digest = hashlib.sha256(f"{' '.join(query.split())}\x00{request_id}".encode()).hexdigest()[:16]
    return f"research-{mission}-{digest}"
