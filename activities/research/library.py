"""A mission's library, read (research worker, for the analyst page and the API): its
documents and the latest ingestion failures, the stored text around a cited span, and
its research history. Every query is filtered by the mission's tenant id: a document or
run of another mission is "not found", exactly like one that does not exist."""
from __future__ import annotations

import uuid

from temporalio import activity

from activities.resources import Resources
from activities.stores.tenants import require_mission
from stratmaster.contracts.library import (
    DOCUMENT_NOT_FOUND, MAX_SPAN, SPAN_OUTSIDE, DocumentEntry, DocumentList, Excerpt, ExcerptInput, IngestionFailureEntry,
    ListDocumentsInput, ListResearchInput, ResearchEntry, ResearchList,
)
from stratmaster.errors import bad_input

LATEST_FAILURES = 50


def stitch(chunks: list[tuple[int, int, str]], lo: int, hi: int, anchor: int) -> tuple[int, int, str]:
    """The document text from lo to hi out of its chunks ((char_start, char_end, text), in
    order; neighbours may overlap): (start, end, text) of the stretch the chunks cover
    without a gap around `anchor` (the cited span's start), or the first after it."""
    segments: list[tuple[int, int, list[str]]] = []
    for c_start, c_end, text in chunks:
        begin, stop = max(c_start, lo), min(c_end, hi)
        if stop <= begin:
            continue
        if segments and c_start <= segments[-1][1]:
            s_start, s_end, parts = segments[-1]
            if stop > s_end:
                parts.append(text[s_end - c_start:stop - c_start])
                segments[-1] = (s_start, stop, parts)
        else:
            segments.append((begin, stop, [text[begin - c_start:stop - c_start]]))
    if not segments:
        return lo, lo, ""
    chosen = next((seg for seg in segments if seg[1] > anchor), segments[-1])
    return chosen[0], chosen[1], "".join(chosen[2])


class LibraryActivities:
    def __init__(self, resources: Resources):
        self.pool = resources.pool

    @activity.defn(name="library_documents")
    async def documents(self, req: ListDocumentsInput) -> DocumentList:
        tenant = await require_mission(self.pool, req.mission)
        total = await self.pool.fetchval("SELECT count(*) FROM documents WHERE tenant_id = $1", tenant)
        rows = await self.pool.fetch(
            """SELECT id::text AS id, source, title, content_type, size_bytes, chunk_count, status, created_at
               FROM documents WHERE tenant_id = $1 ORDER BY created_at DESC, id OFFSET $2 LIMIT $3""",
            tenant, req.offset, req.limit)
        failures = await self.pool.fetch(
            """SELECT batch_id, source, reason_type, reason, created_at FROM ingestion_failures
               WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2""", tenant, LATEST_FAILURES)
        return DocumentList(
            mission=req.mission, total=total, offset=req.offset,
            documents=[DocumentEntry(document_id=r["id"], source=r["source"], title=r["title"],
                                     content_type=r["content_type"], size_bytes=r["size_bytes"],
                                     chunk_count=r["chunk_count"], status=r["status"], created_at=r["created_at"])
                       for r in rows],
            failures=[IngestionFailureEntry(**dict(r)) for r in failures])

    @activity.defn(name="library_excerpt")
    async def excerpt(self, req: ExcerptInput) -> Excerpt:
        """The stored chunks' text around [start, end): what the citation's offsets point into,
        never a re-rendering of its quote."""
        if req.end < req.start or req.end - req.start > MAX_SPAN:
            raise bad_input(f"a span is start <= end, at most {MAX_SPAN} characters long")
        tenant = await require_mission(self.pool, req.mission)
        doc = await self.pool.fetchrow(
            "SELECT source, title, char_count FROM documents WHERE id = $1 AND tenant_id = $2",
            uuid.UUID(req.document_id), tenant)
        if doc is None:
            raise bad_input(f"mission {req.mission!r} has no document {req.document_id}", DOCUMENT_NOT_FOUND)
        if req.end > doc["char_count"]:
            raise bad_input(f"the span ends after the document's end ({doc['char_count']} characters)", SPAN_OUTSIDE)
        lo, hi = max(0, req.start - req.context), min(doc["char_count"], req.end + req.context)
        rows = await self.pool.fetch(
            """SELECT char_start, char_end, text FROM chunks
               WHERE tenant_id = $1 AND document_id = $2 AND char_end > $3 AND char_start < $4
               ORDER BY char_start, ordinal""", tenant, uuid.UUID(req.document_id), lo, hi)
        start, end, text = stitch([(r["char_start"], r["char_end"], r["text"]) for r in rows], lo, hi, req.start)
        return Excerpt(mission=req.mission, document_id=req.document_id, title=doc["title"], source=doc["source"],
                       char_count=doc["char_count"], text_start=start, text_end=end, text=text,
                       start=min(max(req.start, start), end), end=min(max(req.end, start), end))

    @activity.defn(name="library_research")
    async def research(self, req: ListResearchInput) -> ResearchList:
        tenant = await require_mission(self.pool, req.mission)
        total = await self.pool.fetchval("SELECT count(*) FROM research_sessions WHERE tenant_id = $1", tenant)
        rows = await self.pool.fetch(
            """SELECT workflow_id, query, status, outcome, created_at, completed_at FROM research_sessions
               WHERE tenant_id = $1 AND workflow_id IS NOT NULL
               ORDER BY created_at DESC, id OFFSET $2 LIMIT $3""", tenant, req.offset, req.limit)
        outcomes = {"answered", "contested", "insufficient_evidence"}
        return ResearchList(mission=req.mission, total=total, offset=req.offset, runs=[
            ResearchEntry(workflow_id=r["workflow_id"], query=r["query"], status=r["status"] or "pending",
                          outcome=r["outcome"] if r["outcome"] in outcomes else None, created_at=r["created_at"],
                          completed_at=r["completed_at"]) for r in rows])

    def all(self) -> list:
        return [self.documents, self.excerpt, self.research]
