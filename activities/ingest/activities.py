"""Ingestion activities: one document end to end, idempotently.

`ingest_document` reads the bytes, stores the original, parses, chunks, embeds,
and writes every store with deterministic ids (document_id = uuid5(mission,
sha256), chunk_id = uuid5(document_id, ordinal)), so a retry after a crash, or
re-ingesting the same bytes, rewrites the same records instead of adding new
ones. PostgreSQL is written last in one transaction: a `documents` row with
status 'indexed' means every store has the document, which is what the
duplicate check trusts.

Only small things cross the history: the document reference in, a
DocumentResult out. A background task heartbeats the current stage every few
seconds while parsing (in a child process, bounded in memory and time: see
activities/ingest/sandbox.py) and embedding (in a thread) run, so a crashed worker's attempt
is retried after the (short) heartbeat timeout; the heartbeat details carry how
many chunks already reached the vector store, so the retry skips re-embedding them.

`ingest_documents` does the same for a group of small documents in one call (the
per-call Temporal round trip dominates tiny documents): each is read, parsed and
chunked on its own (a bad one fails alone, its failure row written here), their
chunks are embedded in one batched call and written to the vector and full-text
stores in one write each, then each document's graph and PostgreSQL rows; the heartbeat details
list the finished documents' results so a retry skips them. A document over the
group's byte limit is handed back for `ingest_document`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import keep_alive
from activities.ingest.chunking import chunk_id, chunk_text, document_id
from activities.ingest.embedding import Embedder, embed_passages
from activities.ingest.entities import extract
from activities.ingest.sandbox import parse_in_child
from activities.ingest.structure import DocumentStructure
from activities.ingest.parsing import ParsedDocument, page_of, safe_filename
from activities.research.sentence_vectors import pack
from activities.research.synthesis import passage_units
from activities.resources import Resources
from activities.stores.base import ObjectNotFound
from activities.stores.factory import Stores
from activities.stores.tenants import require_mission
from stratmaster.contracts.ingestion import (
    EMPTY_DOCUMENT, CheckMissionInput, DocumentRef, DocumentResult, IngestDocumentInput, IngestGroupInput,
    IngestGroupResult, RecordFailureInput,
)
from stratmaster.contracts.knowledge import Chunk
from stratmaster import principals
from stratmaster.contracts.sources import FORBIDDEN
from stratmaster.errors import BAD_INPUT, NON_RETRYABLE, OVERSIZED, bad_input, redact
from activities.mission_config import MissionConfigReader

log = logging.getLogger("stratmaster.ingestion")

HEARTBEAT_EVERY_S = 2.0


def extracted_key(sha256: str) -> str:
    """Object key of a document's extracted text (chunk offsets point into it). The
    leading '_' cannot collide with an original: safe_filename never starts with one."""
    return f"documents/{sha256}/_extracted.txt"


def _bad_document(err: ApplicationError) -> bool:
    """A document's own fault (fails it alone); anything else is retried."""
    return err.non_retryable or err.type in (*NON_RETRYABLE, EMPTY_DOCUMENT)


@dataclass
class _Prepared:
    """A parsed and chunked document, not yet in the vector/full-text/graph/SQL stores."""
    ref: DocumentRef
    sha: str
    doc_id: str
    size: int
    parsed: ParsedDocument
    title: str
    object_key: str
    chunks: list[Chunk]
    t0: float
    # chunk id -> (sentence_spans, sentence_vectors) for its row (research's sentence vectors)
    sentences: dict[str, tuple[list[int], bytes]] = field(default_factory=dict)


@dataclass
class _Source:
    name: str  # file name used for type detection and the object key
    data: bytes


# A stage heartbeat hands its details to the SDK (encoded, through the core bridge): ten
# stages a document made heartbeats a visible share of an ingestion's CPU, while the
# server receives them throttled to a fraction of the heartbeat timeout anyway
BEAT_MIN_S = 0.5


class _Beat:
    """Progress `details`, heartbeated at each stage (at most every BEAT_MIN_S), every
    HEARTBEAT_EVERY_S while a stage runs, and once more when the activity ends."""

    def __init__(self, details: dict[str, Any]):
        self.details = details
        self.timings: dict[str, float] = {}  # seconds per stage, for the log line
        self._stage, self._since = details.get("stage", "start"), time.perf_counter()
        self._sent = -BEAT_MIN_S
        self._unsent = False

    def stage(self, name: str, **extra: Any) -> None:
        now = time.perf_counter()
        self.timings[self._stage] = round(self.timings.get(self._stage, 0.0) + now - self._since, 4)
        self._stage, self._since = name, now
        self.details.update(stage=name, **extra)
        self._unsent = True
        if now - self._sent >= BEAT_MIN_S:
            self._send()

    def _send(self) -> None:
        activity.heartbeat(dict(self.details))
        self._sent, self._unsent = time.perf_counter(), False

    @asynccontextmanager
    async def running(self):
        try:
            async with keep_alive(lambda: dict(self.details), every=HEARTBEAT_EVERY_S):
                yield self
        finally:
            if self._unsent:  # the last progress, for a retry of a failed attempt
                self._send()


class IngestionActivities:
    def __init__(self, resources: Resources):
        self.resources = resources
        self.settings = resources.settings
        self.pool = resources.pool
        self.stores: Stores = resources.stores
        # the mission's active cartridge: custom entity types (hot-reloaded, see activities/mission_config.py)
        self.config = MissionConfigReader(self.settings, pool=self.pool)

    @property
    def embedder(self) -> Embedder:
        """Loaded on first use: parsing and chunking never pay for torch."""
        return self.resources.embedder

    # ------------------------------------------------------------ activities
    @activity.defn(name="ingest_check_mission")
    async def check_mission(self, req: CheckMissionInput) -> str:
        """The mission's tenant id; UnknownMission (non-retryable) otherwise."""
        return str(await require_mission(self.pool, req.mission))

    @activity.defn(name="ingest_record_failure")
    async def record_failure(self, req: RecordFailureInput) -> None:
        tenant = await require_mission(self.pool, req.mission)
        await self._record_failure(tenant, req.batch_id, req.source, req.reason_type, req.reason)

    @activity.defn(name="ingest_document")
    async def ingest_document(self, req: IngestDocumentInput) -> DocumentResult:
        info = activity.info()
        previous = info.heartbeat_details[0] if info.heartbeat_details else {}
        if not isinstance(previous, dict):
            previous = {}
        beat = _Beat({"source": req.ref.label, "stage": "start"})
        async with beat.running():
            return await self._ingest(req, beat, previous, info.attempt)

    @activity.defn(name="ingest_documents")
    async def ingest_documents(self, req: IngestGroupInput) -> IngestGroupResult:
        """Several small documents in one call: each parsed/chunked/written on its own
        (a bad one fails alone, with its failure row), all their chunks embedded in one
        batched call. Heartbeat details carry the finished documents' results, so a
        retry after a crash skips them."""
        info = activity.info()
        previous = info.heartbeat_details[0] if info.heartbeat_details else {}
        finished = previous.get("finished") if isinstance(previous, dict) else None
        results: list[DocumentResult | None] = [None] * len(req.refs)
        done: dict[str, dict] = {}
        for key, value in (finished or {}).items():
            if key.isdigit() and int(key) < len(req.refs):
                results[int(key)] = DocumentResult.model_validate(value)
                done[key] = value
        beat = _Beat({"stage": "start", "documents": len(req.refs), "finished": dict(done)})
        async with beat.running():
            tenant = await require_mission(self.pool, req.mission)

            def finish(i: int, result: DocumentResult) -> None:
                results[i] = result
                done[str(i)] = result.model_dump(mode="json")
                beat.stage("document-done", finished=dict(done))

            prepared: list[tuple[int, _Prepared]] = []
            for i, ref in enumerate(req.refs):
                if str(i) in done:
                    continue
                try:
                    if await self._too_big_for_group(req.mission, ref, req.max_doc_bytes):
                        continue  # results[i] stays None: the workflow ingests it alone
                    p = await self._prepare(tenant, req.mission, req.batch_id, ref, beat, info.attempt,
                                            max_bytes=req.max_doc_bytes)
                except ApplicationError as err:
                    if not _bad_document(err):
                        raise  # infrastructure trouble: retry the group (finished documents are skipped)
                    finish(i, await self._failed(tenant, req.batch_id, ref, err))
                    continue
                if p is None:
                    continue  # bigger than the group limit once read
                if isinstance(p, DocumentResult):
                    finish(i, p)
                elif any(q.doc_id == p.doc_id for _, q in prepared):
                    # the same bytes twice in one group: the second is a duplicate, as it would be in sequence
                    finish(i, DocumentResult(
                        source=ref.label, status="duplicate", document_id=p.doc_id, sha256=p.sha,
                        content_type=p.parsed.content_type, title=p.title, object_key=p.object_key,
                        chars=len(p.parsed.text), chunks=len(p.chunks)))
                else:
                    prepared.append((i, p))

            # one embedding call for every chunk of the group (the embedder batches it)
            chunks = [c for _, p in prepared for c in p.chunks]
            beat.stage("embed", total_chunks=len(chunks))
            vectors = await self._embed(chunks, [p for _, p in prepared])
            # the group's vectors and full text in one write each (one Tantivy commit or OpenSearch
            # refresh instead of one per document: each is most of a small document's storing).
            # A document counts only once its PostgreSQL rows are written; the stores upsert by
            # chunk id, so a retry after a crash in between writes the rest again
            beat.stage("vectors")
            await self.stores.vectors.upsert(req.mission, chunks, vectors)
            beat.stage("fulltext")
            await self.stores.fulltext.index(req.mission, chunks)
            for i, p in prepared:
                finish(i, await self._store(tenant, req.mission, req.batch_id, p, beat))
        return IngestGroupResult(results=results)

    # ------------------------------------------------------------ stages
    async def _ingest(self, req: IngestDocumentInput, beat: _Beat, previous: dict, attempt: int) -> DocumentResult:
        mission = req.mission
        tenant = await require_mission(self.pool, mission)
        p = await self._prepare(tenant, mission, req.batch_id, req.ref, beat, attempt)
        if isinstance(p, DocumentResult):
            return p
        assert p is not None  # None only with max_bytes (groups)
        chunks = p.chunks
        # Vectors: embed + upsert per slice; resume after the slices a crashed attempt already wrote.
        done = int(previous.get("vectors_done", 0)) if previous.get("sha256") == p.sha else 0
        done = min(done, len(chunks))
        step = max(self.settings.embedding_batch_size * 4, 32)
        beat.stage("embed", total_chunks=len(chunks), vectors_done=done)
        for i in range(done, len(chunks), step):
            part = chunks[i:i + step]
            vectors = await self._embed(part, [p])
            beat.stage("vectors")
            await self.stores.vectors.upsert(mission, part, vectors)
            beat.stage("embed", vectors_done=i + len(part))
        beat.stage("fulltext")
        await self.stores.fulltext.index(mission, chunks)
        return await self._store(tenant, mission, req.batch_id, p, beat)

    async def _embed(self, chunks: list[Chunk], owners: list["_Prepared"]) -> list[list[float]]:
        """The chunks' vectors; the vectors of their sentences (what research scores) go to
        their document's `sentences`, written with the chunk rows."""
        if not chunks:
            return []
        units = [passage_units(c.text, c.metadata) for c in chunks]
        encoder = self.resources.sentence_encoder
        vectors, unit_vectors = await asyncio.to_thread(
            embed_passages, self.embedder, encoder, [c.text for c in chunks], [[t for _, t in us] for us in units])
        owner = {c.chunk_id: p for p in owners for c in p.chunks}
        for c, us, m in zip(chunks, units, unit_vectors):
            owner[c.chunk_id].sentences[c.chunk_id] = pack([span for span, _ in us], m, encoder.model_id)
        return vectors

    async def _prepare(self, tenant, mission: str, batch_id: str, ref: DocumentRef, beat: _Beat, attempt: int,
                       max_bytes: int | None = None) -> "_Prepared | DocumentResult | None":
        """Read, duplicate check, parse, keep the original and extracted text, chunk.
        A DocumentResult when it is already indexed; None when over `max_bytes` (groups)."""
        t0 = time.perf_counter()
        beat.stage("read", source=ref.label)
        src = await self._read(mission, ref)
        if max_bytes is not None and len(src.data) > max_bytes:
            return None
        sha = hashlib.sha256(src.data).hexdigest()
        doc_id = document_id(mission, sha)
        beat.stage("check", sha256=sha)

        existing = await self.pool.fetchrow(
            """SELECT status, batch_id, title, content_type, object_key, char_count, chunk_count
               FROM documents WHERE id = $1 AND tenant_id = $2""", doc_id, tenant)
        if existing is not None and existing["status"] == "indexed":
            # A retry of this very batch that already committed counts as ingested, not as a duplicate.
            mine = existing["batch_id"] == batch_id and attempt > 1
            return DocumentResult(
                source=ref.label, status="ingested" if mine else "duplicate", document_id=doc_id, sha256=sha,
                content_type=existing["content_type"], title=existing["title"], object_key=existing["object_key"],
                chars=existing["char_count"], chunks=existing["chunk_count"])

        beat.stage("parse")
        # in a child process under a memory cap and a deadline (killed past it); the event loop,
        # and so the heartbeat, runs meanwhile
        parsed: ParsedDocument = await parse_in_child(src.name, src.data, timeout_s=self.settings.parse_timeout_s,
                                                      memory_mb=self.settings.parse_memory_mb)
        title = parsed.title or Path(src.name).stem

        # only documents that parse are kept: a bad one leaves nothing behind but its failure row
        beat.stage("store-original")
        filename = safe_filename(src.name)
        object_key = await self.stores.objects.put(mission, f"documents/{sha}/{filename}", src.data)

        beat.stage("chunk")
        spans = await asyncio.to_thread(chunk_text, parsed.text, self.embedder.token_offsets,
                                        self.settings.chunk_tokens, self.settings.chunk_overlap_tokens)
        chunks = []
        structure = DocumentStructure(parsed)
        for s in spans:
            meta: dict[str, Any] = {"source": ref.label, "content_type": parsed.content_type, "sha256": sha,
                                    **structure.for_chunk(s.start, s.end)}
            page = page_of(parsed, s.start)
            if page is not None:
                meta["page"] = page
            chunks.append(Chunk(chunk_id=chunk_id(doc_id, s.ordinal), document_id=doc_id, ordinal=s.ordinal,
                                text=parsed.text[s.start:s.end], start=s.start, end=s.end,
                                token_count=s.token_count, title=title, metadata=meta))
        # the extracted text, so citations (chunk start/end) can be resolved later
        await self.stores.objects.put(mission, extracted_key(sha), parsed.text.encode("utf-8"),
                                      "text/plain; charset=utf-8")
        return _Prepared(ref, sha, doc_id, len(src.data), parsed, title, object_key, chunks, t0)

    async def _store(self, tenant, mission: str, batch_id: str, p: "_Prepared", beat: _Beat) -> DocumentResult:
        """Graph, then PostgreSQL last (vectors and full text are already written)."""
        chunks = p.chunks

        beat.stage("graph")
        cartridge = (await self.config.get(mission)).cartridge
        extraction = await asyncio.to_thread(extract, p.doc_id, p.title, [c.text for c in chunks],
                                             custom=cartridge.entity_keywords(), patterns=cartridge.entity_patterns())
        await self.stores.graph.upsert(mission, extraction.entities, extraction.relations)

        beat.stage("database")
        await self._write_rows(tenant, p.doc_id, p.sha, p.ref, p.object_key, p.parsed, p.title, chunks, batch_id,
                               p.size, p.sentences)
        beat.stage("done")
        log.info("document ingested", extra={"mission": mission, "source": p.ref.label, "document_id": p.doc_id,
                                             "chunks": len(chunks), "seconds": round(time.perf_counter() - p.t0, 3),
                                             "stages": beat.timings})
        return DocumentResult(
            source=p.ref.label, status="ingested", document_id=p.doc_id, sha256=p.sha,
            content_type=p.parsed.content_type, title=p.title, object_key=p.object_key, chars=len(p.parsed.text),
            chunks=len(chunks), entities=len(extraction.entities), relations=len(extraction.relations))

    def _path_refusal(self, mission: str, ref: DocumentRef) -> str | None:
        """Why the worker may not read `ref.path` (None: a valid grant for this path and mission)."""
        try:
            principals.verify_path(principals.load_key(self.settings), ref.grant, mission, ref.path or "")
        except principals.GrantRefused as exc:
            return (f"{ref.path}: reading the ingestion worker's filesystem needs a platform admin's signed grant "
                    f"for this path and mission ({exc}); upload the file, or ingest through the API or CLI")
        return None

    async def _too_big_for_group(self, mission: str, ref: DocumentRef, max_bytes: int) -> bool:
        """Cheap size check before reading (paths, inline); object keys are checked once read.
        Unreadable paths are not 'too big': reading them fails with the readable reason."""
        if ref.path is not None:
            if self._path_refusal(mission, ref):
                return False  # not even a stat of a path nobody granted: reading it fails with the reason
            try:
                size = Path(ref.path).expanduser().stat().st_size
            except OSError:
                return False
            return max_bytes < size <= self.settings.max_document_bytes
        if ref.content_b64 is not None:
            size = len(ref.content_b64) * 3 // 4
            return max_bytes + 3 < size <= self.settings.max_document_bytes
        if ref.source_object is not None and ref.source_object.size is not None:  # the source listing's size
            return max_bytes < ref.source_object.size <= self.settings.max_document_bytes
        return False

    async def _failed(self, tenant, batch_id: str, ref: DocumentRef, err: ApplicationError) -> DocumentResult:
        reason_type, reason = err.type or "ApplicationError", err.message
        await self._record_failure(tenant, batch_id, ref.label, reason_type, reason)
        return DocumentResult(source=ref.label, status="failed", reason_type=reason_type, reason=reason)

    async def _record_failure(self, tenant, batch_id: str, source: str, reason_type: str, reason: str) -> None:
        await self.pool.execute(
            """INSERT INTO ingestion_failures (tenant_id, batch_id, source, reason_type, reason)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (tenant_id, batch_id, source)
               DO UPDATE SET reason_type = EXCLUDED.reason_type, reason = EXCLUDED.reason, created_at = NOW()""",
            tenant, batch_id, source[:2000], reason_type, redact(reason)[:4000],
        )

    async def _read(self, mission: str, ref: DocumentRef) -> _Source:
        limit = self.settings.max_document_bytes
        too_big = "{name}: {size} bytes is over the limit of {limit} bytes (STRATMASTER_MAX_DOCUMENT_BYTES)"
        if ref.path is not None:
            refused = self._path_refusal(mission, ref)
            if refused:
                raise bad_input(refused, FORBIDDEN)
            path = Path(ref.path).expanduser()
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise bad_input(f"{ref.path}: no such file on the ingestion worker", BAD_INPUT) from None
            except OSError as exc:
                raise bad_input(f"{ref.path}: cannot read: {exc.strerror}", BAD_INPUT) from None
            if not path.is_file():
                raise bad_input(f"{ref.path}: not a regular file", BAD_INPUT)
            if size > limit:
                raise bad_input(too_big.format(name=ref.path, size=size, limit=limit), OVERSIZED)
            data = await asyncio.to_thread(path.read_bytes)
            return _Source(path.name, data)
        if ref.object_key is not None:
            try:
                data = await self.stores.objects.get(mission, ref.object_key)
            except (ObjectNotFound, FileNotFoundError):
                raise bad_input(f"object {ref.object_key!r} not found in mission {mission!r}", BAD_INPUT) from None
            if len(data) > limit:
                raise bad_input(too_big.format(name=ref.object_key, size=len(data), limit=limit), OVERSIZED)
            return _Source(os.path.basename(ref.object_key), data)
        if ref.source_object is not None:  # a file of one of the mission's sources (activities/ingest/sources.py)
            from activities.ingest.sources import read_source_object

            name, data = await read_source_object(self.pool, mission, ref.source_object, limit,
                                                  self.settings.s3_allow_private)
            return _Source(name, data)
        # inline
        encoded = ref.content_b64 or ""
        if len(encoded) * 3 // 4 > limit + 3:
            raise bad_input(too_big.format(name=ref.name, size=len(encoded) * 3 // 4, limit=limit), OVERSIZED)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad_input(f"{ref.name}: content_b64 is not valid base64", BAD_INPUT) from None
        return _Source(ref.name or "document", data)

    async def _write_rows(self, tenant, doc_id: str, sha: str, ref: DocumentRef, object_key: str,
                          parsed: ParsedDocument, title: str, chunks: list[Chunk], batch_id: str, size: int,
                          sentences: dict[str, tuple[list[int], bytes]]) -> None:
        rows = [(c.chunk_id, tenant, doc_id, c.ordinal, c.text, c.start, c.end, c.token_count,
                 json.dumps(c.metadata), *sentences.get(c.chunk_id, (None, None))) for c in chunks]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO documents (id, tenant_id, sha256, source, object_key, content_type, title,
                                          size_bytes, char_count, chunk_count, status, batch_id, extracted_key)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'indexed', $11, $12)
                   ON CONFLICT (id) DO UPDATE SET status = 'indexed', chunk_count = EXCLUDED.chunk_count,
                       char_count = EXCLUDED.char_count, title = EXCLUDED.title,
                       content_type = EXCLUDED.content_type, object_key = EXCLUDED.object_key,
                       batch_id = EXCLUDED.batch_id, extracted_key = EXCLUDED.extracted_key""",
                doc_id, tenant, sha, ref.label[:2000], object_key, parsed.content_type, title,
                size, len(parsed.text), len(chunks),
                batch_id, extracted_key(sha),
            )
            await conn.executemany(
                """INSERT INTO chunks (id, tenant_id, document_id, ordinal, text, char_start, char_end,
                                       token_count, metadata, sentence_spans, sentence_vectors)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)
                   ON CONFLICT (id) DO NOTHING""", rows)
            # a document that lands clears an earlier failure of the same source in this batch
            await conn.execute("DELETE FROM ingestion_failures WHERE tenant_id = $1 AND batch_id = $2 AND source = $3",
                               tenant, batch_id, ref.label[:2000])
