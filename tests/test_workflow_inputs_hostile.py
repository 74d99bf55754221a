"""Workflow inputs are untrusted: the `temporal` CLI and the Web UI bypass the
API. Against the real dev server and the real workers: an input that does not
decode fails the run (instead of a workflow task retried forever), text
PostgreSQL cannot hold is refused or stored escaped, and a huge batch of bad
documents keeps every payload far below Temporal's 2 MB limit."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from stratmaster import queues
from stratmaster.contracts.audit import AuditEntry
from stratmaster.contracts.ingestion import MAX_LISTED_FAILURES, DocumentRef, IngestInput, workflow_id_for
from tests.support.postgres import pg_connect
from tests.api_support import run_workers
from tests.ingestion_support import ingestion_settings, new_mission
from workflows.audit import RecordAuditWorkflow
from workflows.ingestion import IngestDocumentsWorkflow

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, ingestion_settings(settings),
                           [queues.MAINTENANCE, queues.RESEARCH, queues.INGESTION, queues.MISSIONS]):
        yield


@pytest.mark.parametrize("workflow_type, queue, payload, expect", [
    ("ResearchWorkflow", queues.RESEARCH, {"mission": "demo", "query": "capacity\u0000 retention"}, "NUL"),
    ("ResearchWorkflow", queues.RESEARCH, {"mission": "demo"}, "query"),
    ("IngestDocumentsWorkflow", queues.INGESTION,
     {"mission": "demo", "documents": [{"path": "/etc/hostname", "content_b64": "aGk="}]}, "exactly one of"),
    ("IngestDocumentsWorkflow", queues.INGESTION,
     {"mission": "demo", "documents": [{"name": "a\u0000.txt", "content_b64": "aGk="}]}, "NUL"),
    ("RecordAuditWorkflow", queues.MAINTENANCE, {"request_id": "../etc", "actor": "x", "action": "y"}, "request_id"),
    ("ActivateMissionWorkflow", queues.MISSIONS, {"cartridge_text": 5}, "cartridge_text"),
    ("MaintenanceWorkflow", queues.MAINTENANCE, {"kind": "everything"}, "kind"),
    ("HealthCheckWorkflow", queues.MAINTENANCE, {"services": 7}, "services"),
])
async def test_input_that_does_not_decode_fails_the_run(client, workers, workflow_type, queue, payload, expect):
    """What `temporal workflow start --input '<json>'` sends. Before, a decoding
    error failed the workflow task, which the server retries forever: the run
    stayed "Running" and this result never came."""
    handle = await client.start_workflow(workflow_type, payload, id=f"hostile-{uuid.uuid4().hex[:12]}",
                                         task_queue=queue)
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), timeout=60)
    assert expect in str(info.value.cause)


async def test_audit_entry_with_nul_is_stored_escaped(client, settings, workers):
    """A refused hostile request still gets its audit row (U+0000 shown as U+2400);
    before, the insert failed in PostgreSQL and the workflow retried it forever."""
    entry = AuditEntry(request_id=f"nul-{uuid.uuid4().hex}", actor="mallory\x00", action="research.start",
                       target="t-nul", status=422, detail={"query": "a\x00b", "nested": ["\x00"]})
    recorded = await asyncio.wait_for(
        client.execute_workflow(RecordAuditWorkflow.run, entry, id=f"audit-{entry.request_id}",
                                task_queue=queues.MAINTENANCE), timeout=60)
    assert recorded.inserted
    async with pg_connect(settings) as conn:
        row = await conn.fetchrow("SELECT actor, detail::text AS detail FROM audit_log WHERE request_id = $1",
                                  entry.request_id)
    assert row["actor"] == "mallory\u2400" and "a\u2400b" in row["detail"]


async def test_ten_thousand_bad_documents_stay_under_the_payload_limit(client, settings, workers):
    """10,000 empty inline documents (a 400 KB request): every one fails as
    EmptyDocument, the batch finishes, and neither the state carried across
    continue-as-new nor the result grows with the number of failures (before,
    1.75 MB of failures went into continue-as-new: PAYLOADS_TOO_LARGE, forever)."""
    mission = await new_mission(settings, "flood")
    docs = [DocumentRef(name=f"empty-{i:05d}.txt", content_b64="") for i in range(10_000)]
    req = IngestInput(mission=mission, documents=docs, slice_size=500, max_concurrent_slices=2, slices_per_run=6,
                      group_docs=100)
    wf_id = workflow_id_for(mission, req.resolved_batch_id())
    handle = await client.start_workflow(IngestDocumentsWorkflow.run, req, id=wf_id, task_queue=queues.INGESTION)
    result = await asyncio.wait_for(handle.result(), timeout=280)
    assert (result.totals.total, result.totals.failed, result.totals.ingested) == (10_000, 10_000, 0)
    assert len(result.failures) == MAX_LISTED_FAILURES and result.failures_truncated
    assert {f.reason_type for f in result.failures} == {"EmptyDocument"}
    # every run of this batch: results stay small, and the input carried into
    # the next run shrinks with the documents handled instead of growing
    biggest_result, inputs, run_id = 0, [], handle.first_execution_run_id
    while run_id:
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        run_id = None
        for event in history.events:
            for kind, payloads in _payloads_of(event):
                size = sum(p.ByteSize() for p in payloads)
                if kind == "result":
                    biggest_result = max(biggest_result, size)
                elif event.HasField("workflow_execution_started_event_attributes"):
                    inputs.append(size)
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    assert len(inputs) >= 2  # the 6-slices-per-run limit made it continue as new
    assert inputs == sorted(inputs, reverse=True), inputs
    assert biggest_result < 256 * 1024, biggest_result
    async with pg_connect(settings) as conn:
        recorded = await conn.fetchval(
            "SELECT count(*) FROM ingestion_failures f JOIN tenants t ON t.id = f.tenant_id WHERE t.name = $1",
            mission)
    assert recorded == 10_000  # the full list is in the database


def _payloads_of(event):
    for name in ("workflow_execution_started_event_attributes", "workflow_execution_completed_event_attributes",
                 "workflow_execution_continued_as_new_event_attributes", "activity_task_scheduled_event_attributes",
                 "activity_task_completed_event_attributes", "start_child_workflow_execution_initiated_event_attributes",
                 "child_workflow_execution_completed_event_attributes"):
        if event.HasField(name):
            attrs = getattr(event, name)
            for field in ("input", "result"):
                if field in attrs.DESCRIPTOR.fields_by_name and attrs.HasField(field):
                    yield field, getattr(attrs, field).payloads


@pytest.mark.parametrize("text, shown", [
    ("PostgreSQL is not reachable at postgresql://app:s3cr%40t@db:5432/x: refused",
     "PostgreSQL is not reachable at postgresql://app:***@db:5432/x: refused"),
    ("redis://:hunter2@cache:6379/0 down", "redis://:***@cache:6379/0 down"),
    ("http://host:8080/path is fine", "http://host:8080/path is fine"),
])
def test_urls_in_errors_lose_their_password(text, shown):
    from stratmaster.errors import ServiceUnavailable, redact

    assert redact(text) == shown and str(ServiceUnavailable(text)) == shown


async def test_unreachable_database_error_does_not_carry_the_password():
    from activities.stores.postgres import create_pool
    from stratmaster.errors import ServiceUnavailable
    from tests.support.ports import free_port

    with pytest.raises(ServiceUnavailable) as info:
        await create_pool(f"postgresql://app:TopSecret42@127.0.0.1:{free_port()}/x")
    assert "TopSecret42" not in str(info.value) and "app:***@127.0.0.1" in str(info.value)
