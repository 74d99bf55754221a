"""Probes, detailed health (HealthCheckWorkflow, platform-admin) and Prometheus metrics."""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError

from starters.api.deps import Cached, get_temporal, require_platform_admin, resolve_temporal
from starters.api.errors import AUTH_ERRORS, HealthUnavailable, error_json, error_responses
from starters.api.temporal_ops import HEALTH_WORKFLOW
from starters.auth import Principal
from stratmaster import queues
from stratmaster.contracts.health import HealthCheckInput, HealthReport

log = logging.getLogger("stratmaster.api")

HEALTH_TIMEOUT = timedelta(seconds=15)
HEALTH_CACHE_SECONDS = 5.0
READY_CACHE_SECONDS = 2.0

router = APIRouter(tags=["health"])


class Status(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/healthz", summary="liveness: the process answers (no auth, reveals nothing)", response_model=Status)
async def healthz():
    return Status()


async def temporal_reachable(request: Request) -> bool:
    try:
        client = await resolve_temporal(request)
        return await client.service_client.check_health(timeout=timedelta(seconds=3))
    except Exception as exc:  # any failure is "not ready"; the reason is logged, not returned
        log.warning("readiness check failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return False


@router.get("/readyz", summary="readiness: Temporal answers (no auth, reveals nothing; cached 2 s)",
            response_model=Status, responses=error_responses(503))
async def readyz(request: Request):
    state = request.app.state
    if getattr(state, "ready_cache", None) is None:
        state.ready_cache = Cached(READY_CACHE_SECONDS)
    if not await state.ready_cache.get(lambda: temporal_reachable(request)):
        return error_json(503, "not ready")
    return Status()


async def run_health(request: Request, client: Client, services: list[str]):
    """HealthCheckWorkflow's report, cached HEALTH_CACHE_SECONDS per service set and
    single-flight: concurrent requests share one workflow run."""
    key = ",".join(services) or "all"
    cache = request.app.state.health_cache.get(key)
    if cache is None:
        cache = request.app.state.health_cache[key] = Cached(HEALTH_CACHE_SECONDS)

    async def check():
        try:
            report = await client.execute_workflow(
                HEALTH_WORKFLOW, HealthCheckInput(services=services), id=f"api-health-{uuid.uuid4().hex}",
                task_queue=queues.MAINTENANCE, execution_timeout=HEALTH_TIMEOUT, result_type=HealthReport,
            )
        except WorkflowFailureError as exc:
            log.error("health check did not complete", extra={"error": str(exc.cause or exc)})
            return None
        return report

    report: HealthReport | None = await cache.get(check)
    if report is None:
        return error_json(503, f"health check did not complete (is the {queues.MAINTENANCE} worker running?)",
                          report=None)
    if not report.ok:
        down = ", ".join(s.name for s in report.services if not s.ok)
        return error_json(503, f"unavailable: {down}", report=report.model_dump(mode="json"))
    return report


HEALTH_ERRORS = error_responses(*AUTH_ERRORS, m503=HealthUnavailable)


@router.get("/health/database", response_model=HealthReport, responses=HEALTH_ERRORS,
            summary="PostgreSQL reachable (platform-admin; runs HealthCheckWorkflow, cached 5 s)")
async def health_database(request: Request, principal: Principal = Depends(require_platform_admin),
                          client: Client = Depends(get_temporal)):
    return await run_health(request, client, ["database"])


@router.get("/health/services", response_model=HealthReport, responses=HEALTH_ERRORS,
            summary="every configured service (platform-admin; runs HealthCheckWorkflow, cached 5 s)")
async def health_services(request: Request, principal: Principal = Depends(require_platform_admin),
                          client: Client = Depends(get_temporal)):
    return await run_health(request, client, [])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def metrics(request: Request):
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
