"""research-tasks: ResearchWorkflow and its activities (stores, PostgreSQL, embedder, LLM); shareable
reports; the library reads (a mission's documents, excerpts, research history)."""
from __future__ import annotations

import asyncio

from activities.research.activities import ResearchActivities
from activities.research.confidence import use_ranker
from activities.research.library import LibraryActivities
from activities.research.reports import ReportActivities
from activities.resources import Resources
from stratmaster.settings import Settings
from workers.registry import QueueSpec
from workflows.library import WORKFLOWS as LIBRARY_WORKFLOWS
from workflows.reports import RenderReportWorkflow
from workflows.research import ResearchWorkflow


async def build(settings: Settings) -> QueueSpec:
    use_ranker(settings.answer_ranker)  # a ranker that is not there fails the worker's start, not each run
    resources = Resources(settings)
    await resources.open_pool()  # before polling: the first research must not pay for it
    # the sentence encoder too (and a missing model fails here, not on every research run)
    await asyncio.to_thread(resources.sentence_encoder.embed, ["warm up"])
    acts = ResearchActivities(resources)
    reports = ReportActivities(resources)  # shareable reports: RenderReportWorkflow
    library = LibraryActivities(resources)  # documents, excerpts and history for the page and the API

    async def close() -> None:
        await acts.cache.close()
        await resources.close()

    return QueueSpec(
        workflows=[ResearchWorkflow, RenderReportWorkflow, *LIBRARY_WORKFLOWS],
        activities=[acts.start_session, acts.cache_lookup, acts.plan, acts.retrieve, acts.synthesise, acts.persist,
                    acts.cache_store, acts.finish_session, reports.render_report, *library.all()],
        close=close,
        extra={"research": acts, "resources": resources},
    )
