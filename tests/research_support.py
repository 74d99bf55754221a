"""Shared fixtures of the research tests: a small corpus (with documents that
disagree), its ingestion into a mission through the ingestion workflow, and an
in-process research worker."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid

from temporalio import activity
from temporalio.client import Client

from activities.research.activities import ResearchActivities
from stratmaster import queues
from stratmaster.contracts.research import RetrieveInput, RetrieveOutput
from stratmaster.settings import Settings
from tests.support.postgres import pg_connect
from tests.support.workers import activity_name, queue_worker

CORPUS: dict[str, str] = {
    "xr7-lab-report.md": (
        "# XR-7 battery laboratory report\n\n"
        "The XR-7 battery retains 90 percent of its capacity after 1000 charge cycles. "
        "The cells were cycled at room temperature in a controlled laboratory. "
        "Charging the XR-7 battery to full takes about 45 minutes with the standard charger.\n\n"
        "Cold weather does not reduce the driving range of vehicles using the XR-7 battery. "
        "The thermal management system keeps the cells warm.\n"
    ),
    "xr7-field-study.md": (
        "# XR-7 field study\n\n"
        "A two-year field study followed delivery vans in northern Europe. "
        "The XR-7 battery retains 60 percent of its capacity after 1000 charge cycles. "
        "Fleet operators reported more frequent charging in winter.\n\n"
        "Cold weather reduces the driving range of vehicles using the XR-7 battery by about 30 percent.\n"
    ),
    "xr7-independent-test.md": (
        "# Independent test of the XR-7\n\n"
        "An independent laboratory confirmed that the XR-7 battery retains 90 percent of its capacity after "
        "1000 charge cycles. The test used the manufacturer's recommended charging profile. "
        "The XR-7 battery uses a lithium iron phosphate chemistry developed by Voltara.\n"
    ),
    "solar-panels.md": (
        "# Rooftop solar panels\n\n"
        "Monocrystalline solar panels convert about 22 percent of incoming sunlight into electricity. "
        "Panel output falls slightly as the panels heat up in summer. "
        "Most rooftop installations pay for themselves within eight to twelve years.\n"
    ),
    "wind-turbines.md": (
        "# Offshore wind\n\n"
        "Offshore wind turbines benefit from stronger and steadier winds than onshore turbines. "
        "Modern offshore turbines have rotor diameters above 200 metres. "
        "Maintenance at sea is more expensive because crews need vessels or helicopters.\n"
    ),
}

async def activate_mission(client: Client, settings: Settings, mission: str, version: str = "1.0.0", **sections) -> None:
    """Activate `mission`'s cartridge (the demo one with these section overrides) through
    ActivateMissionWorkflow on the real mission worker: research reads it from there."""
    from tests.missions_support import activate, cartridge_text, mission_worker

    async with mission_worker(client, settings):
        result = await activate(client, cartridge_text(mission, version, **sections))
    assert result.status == "activated", result


async def ingest_corpus(client: Client, settings: Settings, mission: str, corpus: dict[str, str] = CORPUS) -> dict[str, str]:
    """Activate `mission` and ingest the corpus through the real ingestion workflow."""
    from stratmaster.contracts.ingestion import DocumentRef

    await ingest_documents(client, settings, mission, [
        DocumentRef(name=name, content_b64=base64.b64encode(text.encode()).decode()) for name, text in corpus.items()])
    return dict(corpus)


async def ingest_documents(client: Client, settings: Settings, mission: str, refs: list) -> None:
    """Create the mission row and run IngestDocumentsWorkflow on `refs` with an
    in-process ingestion worker; every document must land."""
    from activities.stores.postgres import create_pool
    from activities.stores.tenants import ensure_tenant
    from stratmaster.contracts.ingestion import IngestInput
    from stratmaster.search_attributes import for_mission
    from workflows.ingestion import IngestDocumentsWorkflow

    pool = await create_pool(settings.database_url)
    try:
        await ensure_tenant(pool, mission)
    finally:
        await pool.close()
    async with queue_worker(client, settings, queues.INGESTION):
        result = await client.execute_workflow(
            IngestDocumentsWorkflow.run, IngestInput(mission=mission, documents=refs),
            id=f"ingest-{mission}-{uuid.uuid4().hex[:8]}", task_queue=queues.INGESTION,
            search_attributes=for_mission(mission))
    assert result.totals.ingested == len(refs) and not result.failures, result.failures


async def document_texts(settings: Settings, mission: str) -> dict[str, str]:
    """document_id -> the original extracted text, read back from the object store
    (the documents row's extracted_key). Documents without one are missing, so a
    test comparing citations against these texts cannot pass vacuously."""
    from activities.stores.factory import build_stores

    async with pg_connect(settings) as conn:
        has_extracted = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'documents' AND column_name = 'extracted_key'")
        rows = await conn.fetch(
            f"""SELECT d.id::text AS id, d.object_key, {'d.extracted_key' if has_extracted else 'NULL'} AS extracted_key
                FROM documents d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = $1""", mission)
    stores = build_stores(settings)
    texts: dict[str, str] = {}
    try:
        for r in rows:
            for key in _text_keys(r["id"], r["object_key"], r["extracted_key"]):
                with contextlib.suppress(Exception):
                    if await stores.objects.exists(mission, key):
                        texts[r["id"]] = (await stores.objects.get(mission, key)).decode()
                        break
    finally:
        await stores.close()
    return texts


def _text_keys(doc_id: str, object_key: str, extracted_key: str | None) -> list[str]:
    keys = [extracted_key] if extracted_key else []
    return keys + [f"documents/{doc_id}/extracted.txt", object_key]


def research_worker(client: Client, settings: Settings, acts_cls=None, **worker_options):
    """The real research-tasks worker in-process (optionally with a subclass of
    ResearchActivities, e.g. a slow retrieve for the cancel test)."""
    def subclassed(spec) -> dict:
        base = spec.extra["research"]
        acts = acts_cls(base.resources)
        return {activity_name(a): getattr(acts, a.__name__) for a in spec.activities
                if getattr(a, "__self__", None) is base}
    return queue_worker(client, settings, queues.RESEARCH, activities=subclassed if acts_cls else None, **worker_options)


class SlowRetrieve(ResearchActivities):
    """Retrieval that only ends when cancelled: holds the workflow in `retrieving`."""

    @activity.defn(name="research_retrieve")
    async def retrieve(self, req: RetrieveInput) -> RetrieveOutput:
        for _ in range(600):
            activity.heartbeat()
            await asyncio.sleep(0.1)
        raise AssertionError("not cancelled")
