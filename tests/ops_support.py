"""Shared helpers for the operations tests: the maintenance worker in-process on
its real queue, and a mission seeded directly in every store (fast; the headline
test uses the real ingestion workflow instead)."""
from __future__ import annotations

import hashlib
import random
import uuid

from temporalio.client import Client

from activities.stores.tenants import ensure_tenant
from stratmaster import queues
from stratmaster.contracts.knowledge import Chunk, Entity, Relation
from stratmaster.settings import Settings
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker

DIM = 16
WORDS = ("supply chain resilience pricing power market share churn retention onboarding latency "
         "compliance audit carbon logistics warehouse forecast margin subscription partner channel").split()


def maintenance_worker(client: Client, settings: Settings, stores=None):
    """The real maintenance worker (on `stores` when given: the test's, to inspect them)."""
    return queue_worker(client, settings, queues.MAINTENANCE, build_options={"stores": stores})


def _vector(seed: str) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.uniform(-1, 1) for _ in range(DIM)]


async def seed_mission(settings: Settings, stores, mission: str, docs: int = 3, chunks_per_doc: int = 4,
                       sessions: int = 2) -> dict[str, int]:
    """Rows in PostgreSQL and data in every store, all keyed by the mission."""
    async with pg_connect(settings) as conn:
        pool_like = _ConnPool(conn)
        tid = await ensure_tenant(pool_like, mission)
        all_chunks, vectors = [], []
        rnd = random.Random(mission)
        for d in range(docs):
            text = " ".join(rnd.choice(WORDS) for _ in range(chunks_per_doc * 12))
            sha = hashlib.sha256(f"{mission}-{d}-{text}".encode()).hexdigest()
            doc_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{mission}/{sha}"))
            key = f"documents/{doc_id}/doc-{d}.txt"
            full_key = await stores.objects.put(mission, key, text.encode(), "text/plain")
            await conn.execute(
                """INSERT INTO documents (id, tenant_id, sha256, source, object_key, content_type, title, size_bytes,
                   char_count, chunk_count) VALUES ($1,$2,$3,$4,$5,'text/plain',$6,$7,$8,$9)""",
                uuid.UUID(doc_id), tid, sha, f"doc-{d}.txt", full_key, f"Doc {d}", len(text), len(text),
                chunks_per_doc)
            words = text.split()
            for o in range(chunks_per_doc):
                ctext = " ".join(words[o * 12:(o + 1) * 12])
                cid = str(uuid.uuid5(uuid.UUID(doc_id), str(o)))
                ch = Chunk(chunk_id=cid, document_id=doc_id, ordinal=o, text=ctext, start=o * 100, end=o * 100 + len(ctext),
                           token_count=12, title=f"Doc {d}")
                all_chunks.append(ch)
                vectors.append(_vector(cid))
                await conn.execute(
                    """INSERT INTO chunks (id, tenant_id, document_id, ordinal, text, char_start, char_end, token_count)
                       VALUES ($1,$2,$3,$4,$5,$6,$7,12)""", uuid.UUID(cid), tid, uuid.UUID(doc_id), o, ctext,
                    ch.start, ch.end)
        for s in range(sessions):
            sid = await conn.fetchval(
                """INSERT INTO research_sessions (tenant_id, workflow_id, query, status, plan, created_at, completed_at)
                   VALUES ($1, $2, $3, 'completed', '{"steps": []}'::jsonb, NOW() - interval '30 minutes',
                           NOW() - interval '20 minutes') RETURNING id""",
                tid, f"research-{mission}-{s}", f"question {s} about {WORDS[s]}")
            for c in range(2):
                await conn.execute(
                    """INSERT INTO claims (session_id, tenant_id, ordinal, text, confidence, supporting_evidence)
                       VALUES ($1,$2,$3,$4,$5,'[{"chunk_id": "x"}]'::jsonb)""", sid, tid, c, f"claim {c}", 0.5 + c / 10)
    await stores.vectors.upsert(mission, all_chunks, vectors)
    await stores.fulltext.index(mission, all_chunks)
    ents = [Entity(entity_id=f"e-{w}", name=w, type="CONCEPT") for w in WORDS[:5]]
    rels = [Relation(source_id=ents[i].entity_id, target_id=ents[i + 1].entity_id, type="RELATES_TO", weight=1.0 + i)
            for i in range(4)]
    await stores.graph.upsert(mission, ents, rels)
    return {"documents": docs, "chunks": docs * chunks_per_doc, "research_sessions": sessions, "claims": sessions * 2}


class _ConnPool:
    """ensure_tenant takes a pool; a connection has the same fetchval."""

    def __init__(self, conn):
        self.conn = conn

    async def fetchval(self, *a, **kw):
        return await self.conn.fetchval(*a, **kw)


async def pg_counts(settings: Settings, mission: str) -> dict[str, int]:
    async with pg_connect(settings) as conn:
        tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        out = {}
        for t in ("documents", "chunks", "research_sessions", "claims"):
            out[t] = 0 if tid is None else await conn.fetchval(f"SELECT COUNT(*) FROM {t} WHERE tenant_id = $1", tid)
        return out


async def store_counts(stores, mission: str) -> dict[str, int]:
    ents, rels = await stores.graph.count(mission)
    return {"vectors": await stores.vectors.count(mission), "fulltext_docs": await stores.fulltext.count(mission),
            "graph_entities": ents, "graph_relations": rels, "objects": len(await stores.objects.list(mission))}


async def wipe_mission(settings: Settings, stores, mission: str) -> None:
    """What a lost mission looks like: no rows, no namespace in any store."""
    async with pg_connect(settings) as conn:
        await conn.execute("DELETE FROM tenants WHERE name = $1", mission)  # rows cascade
    await stores.drop_mission(mission)


def new_mission(prefix: str = "ops") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def replay_histories(client: Client, workflows: list, types: list[str]) -> int:
    """Replay every closed run of these workflow types with the current code
    (temporalio Replayer): fails on any non-determinism. Returns the count."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    names = ", ".join(f"'{t}'" for t in types)
    replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    n = 0
    async for wf in client.list_workflows(f"WorkflowType IN ({names}) AND ExecutionStatus != 'Running'"):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        await replayer.replay_workflow(history)
        n += 1
    return n
