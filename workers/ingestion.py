"""ingestion-tasks: IngestDocumentsWorkflow, its slice children and their activities; the sources
workflows (sync, add, remove, list, status) and theirs."""
from __future__ import annotations

import asyncio

from activities.ingest.activities import IngestionActivities
from activities.ingest.sandbox import warm_up as start_parser_server
from activities.ingest.sources import SourceActivities
from activities.resources import Resources
from stratmaster.settings import Settings
from workers.registry import QueueSpec
from workflows.ingestion import IngestDocumentsWorkflow, IngestSliceWorkflow
from workflows.sources import WORKFLOWS as SOURCE_WORKFLOWS


async def build(settings: Settings, *, warm_up: bool = True) -> QueueSpec:
    resources = Resources(settings)
    await resources.open_pool()
    if warm_up:
        # load the model before polling, so the first document is not slow to heartbeat
        await asyncio.to_thread(resources.embedder.embed, ["warm up"])
        await asyncio.to_thread(resources.sentence_encoder.embed, ["warm up"])
        await asyncio.to_thread(start_parser_server)  # the parsers' forkserver, likewise
    acts = IngestionActivities(resources)
    # Sources (workflows/sources.py): synced here, on the workers that read the directories
    sources = SourceActivities(resources)

    return QueueSpec(
        workflows=[IngestDocumentsWorkflow, IngestSliceWorkflow, *SOURCE_WORKFLOWS],
        activities=[acts.check_mission, acts.ingest_document, acts.ingest_documents, acts.record_failure,
                    *sources.all()],
        close=resources.close,
        # async activities; embedding/parsing run in threads, torch uses both cores anyway
        max_concurrent_activities=4,
        extra={"ingestion": acts, "sources": sources, "stores": resources.stores, "pool": resources.pool},
    )
