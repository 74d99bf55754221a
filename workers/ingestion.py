"""ingestion-tasks: IngestDocumentsWorkflow, its slice children and their activities; the sources
workflows (sync, add, remove, list, status) and theirs."""
from __future__ import annotations

import asyncio

from activities.ingest.embedding import get_embedder
from activities.ingest.activities import IngestionActivities
from activities.ingest.sandbox import warm_up as start_parser_server
from activities.ingest.sources import SourceActivities
from activities.stores.factory import build_stores
from activities.stores.postgres import create_pool
from stratmaster.settings import Settings
from workers.registry import QueueSpec
from workflows.ingestion import IngestDocumentsWorkflow, IngestSliceWorkflow
from workflows.sources import WORKFLOWS as SOURCE_WORKFLOWS


async def build(settings: Settings, *, warm_up: bool = True) -> QueueSpec:
    stores = build_stores(settings)
    pool = await create_pool(settings.database_url)
    embedder = get_embedder(settings)
    if warm_up:
        # load the model before polling, so the first document is not slow to heartbeat
        await asyncio.to_thread(embedder.embed, ["warm up"])
        await asyncio.to_thread(start_parser_server)  # the parsers' forkserver, likewise
    acts = IngestionActivities(settings, pool, stores, embedder)
    # Sources (workflows/sources.py): synced here, on the workers that read the directories
    sources = SourceActivities(settings, pool, stores)

    async def close() -> None:
        await pool.close()
        await stores.close()

    return QueueSpec(
        workflows=[IngestDocumentsWorkflow, IngestSliceWorkflow, *SOURCE_WORKFLOWS],
        activities=[acts.check_mission, acts.ingest_document, acts.ingest_documents, acts.record_failure,
                    *sources.all()],
        close=close,
        # async activities; embedding/parsing run in threads, torch uses both cores anyway
        max_concurrent_activities=4,
        extra={"ingestion": acts, "sources": sources, "stores": stores, "pool": pool},
    )
