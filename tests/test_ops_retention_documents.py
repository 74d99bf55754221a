"""Cartridge retention `documents_days` against the real Temporal dev server, real
PostgreSQL and the embedded stores: missions activated by the missions area's
workflow, documents ingested by the ingestion workflow, some backdated in
PostgreSQL, then the retention maintenance run deletes the expired ones from
every store (in bounded batches), audits each deletion, leaves recent documents,
research evidence and a keep-forever mission alone, and a second run is a no-op."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from activities.ingest.entities import document_entity
from activities.ops.retention import expire_documents
from activities.stores.graph_sqlite import SqliteGraphStore
from stratmaster.principals import path_ref
from stratmaster import queues
from stratmaster.contracts.ingestion import IngestInput, workflow_id_for
from stratmaster.contracts.knowledge import Entity, Relation
from stratmaster.contracts.maintenance import MaintenanceInput
from stratmaster.search_attributes import for_mission
from tests.ingestion_support import ingestion_settings, ingestion_worker
from tests.missions_support import activate, cartridge_text, mission_worker, new_mission
from tests.ops_support import maintenance_worker, replay_histories
from workflows.ingestion import IngestDocumentsWorkflow
from workflows.maintenance import MaintenanceWorkflow
from tests.support.postgres import pg_connect

pytestmark = pytest.mark.timeout(300)

OLD, RECENT = ("old_a", "old_b", "old_c"), ("new_a", "new_b")


def _doc_text(name: str) -> str:
    # a word only this document has (full-text probe), an organisation only this
    # document mentions, and one every document mentions (shared graph entity)
    org = f"Zeta{name.replace('_', '').capitalize()} Analytics"
    body = (f"Field report {name}. The token marker{name.replace('_', '')} appears only here. "
            f"{org} signed a supply agreement with Helios Energy last quarter. ")
    return f"Report {name}\n\n" + body * 6


async def _ingest(client, settings, mission: str, directory) -> dict[str, str]:
    """name -> document id, through the real ingestion workflow."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in OLD + RECENT:
        p = directory / f"{name}.txt"
        p.write_text(_doc_text(name))
        paths[str(p.resolve())] = name
    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, p) for p in sorted(paths)])
    result = await client.execute_workflow(
        IngestDocumentsWorkflow.run, req, id=workflow_id_for(mission, req.resolved_batch_id()),
        task_queue=queues.INGESTION, search_attributes=for_mission(mission))
    assert result.totals.failed == 0, result.failures
    return {paths[d.source]: d.document_id for d in result.documents}


async def _backdate(conn, doc_ids: list[str], days: int) -> None:
    await conn.execute("UPDATE documents SET created_at = NOW() - make_interval(days => $2) WHERE id = ANY($1::uuid[])",
                       doc_ids, days)


async def _state(stores, conn, mission: str, ids: dict[str, str]) -> dict:
    """Per document name: is it in PostgreSQL, vectors, full text, graph, objects."""
    tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
    rows = {str(r["id"]): r for r in await conn.fetch(
        "SELECT d.id, d.sha256, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks "
        "FROM documents d WHERE d.tenant_id = $1", tid)}
    vector_docs = {p["payload"]["document_id"] for p in await stores.vectors.dump(mission)}
    graph = await stores.graph.dump(mission)
    mentions = {r["source_id"] for r in graph if r["kind"] == "relation" and r["type"] == "MENTIONS"}
    entities = {r["name"] for r in graph if r["kind"] == "entity"}
    objects = await stores.objects.list(mission, "documents/")
    out = {}
    for name, doc_id in ids.items():
        hits = await stores.fulltext.search(mission, f"marker{name.replace('_', '')}", 5)
        out[name] = {
            "pg": doc_id in rows and rows[doc_id]["chunks"] > 0,
            "vectors": doc_id in vector_docs,
            "fulltext": any(h.document_id == doc_id for h in hits),
            "graph": document_entity(doc_id, None).entity_id in mentions,
            "org": f"Zeta{name.replace('_', '').capitalize()} Analytics" in entities,
        }
    out["_objects"] = objects
    out["_shared_entity"] = "Helios Energy" in entities
    return out


async def test_documents_days_deletes_expired_documents_from_every_store(client, settings, stores, session_dir):
    s = ingestion_settings(settings)
    limited, forever = new_mission("docret"), new_mission("docret")
    async with mission_worker(client, s):
        await activate(client, cartridge_text(limited, retention={"documents_days": 30}))
        await activate(client, cartridge_text(forever, retention={"documents_days": None}))
    async with ingestion_worker(client, s):
        ids = {m: await _ingest(client, s, m, session_dir / f"docs-{m}") for m in (limited, forever)}

    async with pg_connect(settings) as conn:
        for m in (limited, forever):
            await _backdate(conn, [ids[m][n] for n in OLD], 60)
            await _backdate(conn, [ids[m][n] for n in RECENT], 5)
        tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", limited)
        old_docs = {r["id"]: r["sha256"].strip() for r in await conn.fetch(
            "SELECT id, sha256 FROM documents WHERE id = ANY($1::uuid[])", [ids[limited][n] for n in OLD])}
        # a research claim citing a chunk of an old document: its evidence is history and stays
        cited = await conn.fetchrow("SELECT id, text FROM chunks WHERE document_id = $1 ORDER BY ordinal LIMIT 1",
                                    uuid.UUID(ids[limited]["old_a"]))
        sid = await conn.fetchval(
            "INSERT INTO research_sessions (tenant_id, workflow_id, query, status) VALUES ($1, $2, 'q', 'completed') "
            "RETURNING id", tid, f"research-{limited}")
        claim = await conn.fetchval(
            "INSERT INTO claims (session_id, tenant_id, text, supporting_evidence) VALUES ($1, $2, 'c', $3::jsonb) "
            "RETURNING id", sid, tid, json.dumps([{"chunk_id": str(cited["id"]), "quote": cited["text"][:40]}]))
        await conn.execute(
            """INSERT INTO claim_evidence (claim_id, tenant_id, kind, ordinal, chunk_id, document_id, char_start,
                                           char_end, quote, source) VALUES ($1, $2, 'support', 0, $3, $4, 0, 40, $5, 'local')""",
            claim, tid, str(cited["id"]), ids[limited]["old_a"], cited["text"][:40])
        before = {m: await _state(stores, conn, m, ids[m]) for m in (limited, forever)}
    for m in (limited, forever):
        assert all(all(v for v in before[m][n].values()) for n in OLD + RECENT), before[m]
        assert before[m]["_shared_entity"]
    assert {k.split("/")[1] for k in before[limited]["_objects"]} >= set(old_docs.values())

    # a crashed earlier attempt: one old document already gone from vectors and objects
    await stores.vectors.delete_document(limited, ids[limited]["old_b"])
    for key in await stores.objects.list(limited, f"documents/{old_docs[uuid.UUID(ids[limited]['old_b'])]}/"):
        await stores.objects.delete(limited, key)

    async with maintenance_worker(client, settings, stores), mission_worker(client, settings):
        wf_id = f"maintenance-docret-{uuid.uuid4().hex[:8]}"
        first = await client.execute_workflow(MaintenanceWorkflow.run, MaintenanceInput(kind="retention", document_batch=1),
                                              id=wf_id, task_queue=queues.MAINTENANCE)
        second = await client.execute_workflow(MaintenanceWorkflow.run, MaintenanceInput(kind="retention"),
                                               id=f"{wf_id}-again", task_queue=queues.MAINTENANCE)

    assert first.retention.expired_documents.get(limited) == len(OLD)
    assert forever not in first.retention.expired_documents
    assert not any("documents_days" in n for n in first.retention.notes)
    # batch of 1: one activity call per document (each call sees whether more remain)
    history = await client.get_workflow_handle(wf_id).fetch_history()
    calls = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
             and e.activity_task_scheduled_event_attributes.activity_type.name == "expire_documents"]
    assert len(calls) == len(OLD)
    assert limited not in second.retention.expired_documents  # nothing left: a no-op

    async with pg_connect(settings) as conn:
        after = {m: await _state(stores, conn, m, ids[m]) for m in (limited, forever)}
        audit = await conn.fetch("SELECT action, target, detail FROM audit_log WHERE actor = 'retention' AND mission = $1",
                                 limited)
        evidence = await conn.fetchrow("SELECT chunk_id, document_id, quote FROM claim_evidence WHERE claim_id = $1",
                                       claim)
        claim_row = await conn.fetchrow("SELECT text, supporting_evidence FROM claims WHERE id = $1", claim)
        chunk_rows = await conn.fetchval("SELECT count(*) FROM chunks WHERE document_id = ANY($1::uuid[])",
                                         list(old_docs))

    for name in OLD:
        assert not any(after[limited][name].values()), (name, after[limited][name])
    for name in RECENT:
        assert all(after[limited][name].values()), (name, after[limited][name])
    assert chunk_rows == 0  # chunks went with their document row
    remaining = {k.split("/")[1] for k in after[limited]["_objects"]}
    assert not remaining & set(old_docs.values())
    assert len(after[limited]["_objects"]) == 2 * len(RECENT)  # original + _extracted.txt each
    assert after[limited]["_shared_entity"]  # still mentioned by the recent documents
    assert after[forever] == before[forever]  # same old dates, documents_days unset: untouched

    assert sorted(r["target"] for r in audit) == sorted(ids[limited][n] for n in OLD)  # once each, both runs
    assert {r["action"] for r in audit} == {"retention.document_deleted"}
    detail = json.loads(audit[0]["detail"])
    assert detail["documents_days"] == 30 and detail["sha256"] in old_docs.values()

    assert evidence is not None and evidence["quote"] == cited["text"][:40]
    assert evidence["chunk_id"] == str(cited["id"]) and evidence["document_id"] == ids[limited]["old_a"]
    assert claim_row["text"] == "c" and json.loads(claim_row["supporting_evidence"])[0]["quote"]

    import workers.maintenance

    spec = await workers.maintenance.build(settings, stores)
    try:
        assert await replay_histories(client, spec.workflows, ["MaintenanceWorkflow"]) >= 2
    finally:
        await spec.close()


async def test_expire_documents_is_bounded_and_skips_missions_without_documents_days(settings, stores):
    """The activity body on its own: the limit caps one call, `more` says whether
    to call again, missions without documents_days are never read."""
    mission = new_mission("docret")
    async with direct_mission(settings, mission, {"documents_days": 10}) as tid:
        async with pg_connect(settings) as conn:
            for i in range(3):
                doc = uuid.uuid4()
                await conn.execute(
                    """INSERT INTO documents (id, tenant_id, sha256, source, object_key, content_type, size_bytes,
                                              created_at) VALUES ($1, $2, $3, $4, $5, 'text/plain', 1, NOW() - interval '20 days')""",
                    doc, tid, f"{i:064x}", f"d{i}", f"documents/{i:064x}/d{i}.txt")
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        beats = []
        try:
            now = datetime.now(timezone.utc)
            first = await expire_documents(pool, stores, now, 2, beats.append)
            assert len(first.deleted[mission]) == 2 and first.more
            second = await expire_documents(pool, stores, now, 2, beats.append)
            assert len(second.deleted[mission]) == 1
            third = await expire_documents(pool, stores, now, 2, beats.append)
            assert mission not in third.deleted
            # a cut-off before the documents' dates deletes nothing
            assert mission not in (await expire_documents(pool, stores, now - timedelta(days=30), 5, beats.append)).deleted
        finally:
            await pool.close()
        assert [b["mission"] for b in beats] == [mission] * 3  # one heartbeat per document


class direct_mission:  # noqa: N801 (used as a context manager)
    """A mission row with an active cartridge written directly (the activation
    workflow is exercised by the test above)."""

    def __init__(self, settings, mission: str, retention: dict):
        self.settings, self.mission, self.retention = settings, mission, retention

    async def __aenter__(self):
        async with pg_connect(self.settings) as conn:
            tid = await conn.fetchval("INSERT INTO tenants (name) VALUES ($1) RETURNING id", self.mission)
            cartridge = {"format": 1, "metadata": {"id": self.mission}, "retention": self.retention}
            await conn.execute(
                """INSERT INTO mission_versions (tenant_id, version, cartridge, sha256, created_by, activated_at)
                   VALUES ($1, '1.0.0', $2::jsonb, $3, 'test', NOW())""", tid, json.dumps(cartridge), "0" * 64)
            await conn.execute("UPDATE tenants SET active_version = '1.0.0' WHERE id = $1", tid)
        return tid

    async def __aexit__(self, *exc):
        async with pg_connect(self.settings) as conn:
            await conn.execute("DELETE FROM tenants WHERE name = $1", self.mission)


async def test_sqlite_graph_delete_document_keeps_shared_entities(tmp_path):
    graph = SqliteGraphStore(tmp_path)
    d1, d2 = str(uuid.uuid4()), str(uuid.uuid4())
    v1, v2 = document_entity(d1, "one"), document_entity(d2, "two")
    ents = [v1, v2, Entity(entity_id="org:only1", name="Only One Inc", type="ORGANIZATION"),
            Entity(entity_id="org:both", name="Both Ltd", type="ORGANIZATION")]
    rels = [Relation(source_id=v1.entity_id, target_id="org:only1", type="MENTIONS"),
            Relation(source_id=v1.entity_id, target_id="org:both", type="MENTIONS"),
            Relation(source_id=v2.entity_id, target_id="org:both", type="MENTIONS"),
            Relation(source_id="org:only1", target_id="org:both", type="RELATES_TO")]
    await graph.upsert("alpha", ents, rels)
    await graph.upsert("beta", ents, rels)
    assert await graph.delete_document("alpha", d1) == 2
    rows = await graph.dump("alpha")
    assert {r["entity_id"] for r in rows if r["kind"] == "entity"} == {v2.entity_id, "org:both"}
    assert [(r["source_id"], r["target_id"]) for r in rows if r["kind"] == "relation"] == [(v2.entity_id, "org:both")]
    assert await graph.delete_document("alpha", d1) == 0  # already gone: a no-op
    assert await graph.delete_document("ghost", d1) == 0  # no graph at all
    assert await graph.count("beta") == (4, 4)  # other mission untouched
