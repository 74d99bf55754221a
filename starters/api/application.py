"""The FastAPI application: settings, auth check at start, middleware, error
handlers, the routers (one per area, starters/api/routers/) and OpenAPI extras."""
from __future__ import annotations

import asyncio
import importlib
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from starters.api.audit import AuditMiddleware
from starters.api.deps import MissionDirectoryCache
from starters.api.errors import error_responses, install_error_handlers
from starters.api.inflight import InFlight
from starters.api.limits import Limits
from starters.api.metrics import MetricsMiddleware
from starters.api.openapi import finish_openapi
from starters.auth import OidcVerifier, check_auth_config, warn_dev_mode
from stratmaster import telemetry
from stratmaster.settings import Settings, get_settings

# starters/api/routers/<name>.py, each exposing `router`: a new area is its module plus its name here.
ROUTERS = ("health", "missions", "documents", "research", "reports", "workflows", "operations", "usage", "sources",
           "webhooks", "library", "web")


def create_app(settings: Settings | None = None, *, verifier: OidcVerifier | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        s = app.state.settings
        check_auth_config(s)  # refuses dev mode on a non-loopback bind, and no auth at all
        if s.auth_mode == "dev":
            warn_dev_mode(s)
        if s.auth_mode == "oidc" and app.state.verifier is None:
            app.state.verifier = OidcVerifier(s.keycloak_url, s.keycloak_realm, s.keycloak_audience)
        try:
            yield
        finally:
            await app.state.limits.close()
            if app.state.verifier is not None:
                await app.state.verifier.aclose()

    app = FastAPI(
        title="StratMaster API", version="0.1.0", lifespan=lifespan,
        description="Starts, queries and cancels StratMaster's Temporal workflows. "
                    "Bearer tokens from the Keycloak realm `stratmaster` (dev mode: loopback only, no token). "
                    "Every error is an `ErrorBody`.",
        responses=error_responses(500),
    )
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.temporal = None
    app.state.temporal_lock = asyncio.Lock()
    app.state.missions = MissionDirectoryCache()
    app.state.limits = Limits.from_settings(settings)
    app.state.inflight = InFlight.from_settings(settings)
    app.state.health_cache = {}
    app.state.ready_cache = None
    app.state.registry = CollectorRegistry()
    app.add_middleware(AuditMiddleware)
    app.add_middleware(MetricsMiddleware, registry=app.state.registry)
    # one trace per request, continued by the workflows it starts (stratmaster/telemetry.py)
    telemetry.configure_tracing("stratmaster-api", settings)
    telemetry.instrument_fastapi(app)
    install_error_handlers(app)
    for name in ROUTERS:
        app.include_router(importlib.import_module(f"starters.api.routers.{name}").router)
    finish_openapi(app)
    return app
