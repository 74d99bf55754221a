"""research-tasks: ResearchWorkflow and its activities (stores, PostgreSQL, embedder, LLM)."""
from __future__ import annotations

from activities.ingest.embedding import get_embedder
from activities.research.reports import ReportActivities
from activities.research.activities import ResearchActivities
from activities.stores.factory import build_stores
from activities.stores.postgres import create_pool
from stratmaster.settings import Settings
from workers.registry import QueueSpec
from workflows.reports import RenderReportWorkflow
from workflows.research import ResearchWorkflow


async def build(settings: Settings) -> QueueSpec:
    stores = build_stores(settings)
    pool = await create_pool(settings.database_url)
    acts = ResearchActivities(settings, stores, pool, get_embedder(settings))
    reports = ReportActivities(stores, pool)  # shareable reports: RenderReportWorkflow

    async def close() -> None:
        await acts.cache.close()
        await pool.close()
        await stores.close()

    return QueueSpec(
        workflows=[ResearchWorkflow, RenderReportWorkflow],
        activities=[acts.start_session, acts.cache_lookup, acts.plan, acts.retrieve, acts.synthesise, acts.persist,
                    acts.cache_store, acts.finish_session, reports.render_report],
        close=close,
        extra={"research": acts},
    )
