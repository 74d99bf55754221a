"""The starter REST API (FastAPI): `uvicorn starters.api:app`.

It only starts, signals, queries, cancels and looks up Temporal workflows; the
workflows' activities do every store read and write (mission lookups run
ListMissionsWorkflow/ShowMissionWorkflow, health checks HealthCheckWorkflow, audit rows
RecordAuditWorkflow, LLM usage LlmUsageWorkflow). Auth: starters/auth.py. OpenAPI docs
at /docs.

Layout:
  application.py  create_app: middleware, error handlers, the routers, OpenAPI extras
  routers/        one APIRouter per area: health, missions, documents, research,
                  reports, sources, webhooks, workflows, operations (backups, restore,
                  schedules, maintenance, analytics), usage
  deps.py         the Temporal client, the caller, platform-admin, mission access
  audit.py        audit_log rows of every authenticated write (RecordAuditWorkflow)
  bodies.py       request bodies: size limits while streaming, UTF-8, depth, U+0000, models
  errors.py       the one error shape (ErrorBody) and its handlers
  events.py       Server-Sent Events of a running workflow's progress
  temporal_ops.py starting/describing workflows, workflow type names
  openapi.py      request body schemas, dev-mode security
  metrics.py      Prometheus request metrics

Idempotency: POSTs accept an `Idempotency-Key` header; the workflow id is
derived from (mission, key) and started with WorkflowIDReusePolicy
REJECT_DUPLICATE, so a repeated request returns the first workflow's id
instead of starting a second one.
"""
from __future__ import annotations

from starters.api.application import ROUTERS, create_app
from starters.api.bodies import (
    CARTRIDGE_BODY_LIMIT, DOCUMENTS_JSON_LIMIT, DOCUMENTS_MULTIPART_LIMIT, INLINE_BUDGET, MAX_JSON_DEPTH,
    RESEARCH_BODY_LIMIT, TEMPORAL_PAYLOAD_LIMIT, json_too_deep,
)
from starters.api.deps import get_temporal, principal_dep, require_platform_admin
from starters.api.errors import ApiError, ErrorBody
from starters.api.temporal_ops import (
    ACTIVATE_WORKFLOW, AUDIT_WORKFLOW, HEALTH_WORKFLOW, INGEST_WORKFLOW, LIST_MISSIONS_WORKFLOW, RESEARCH_WORKFLOW,
    SHOW_MISSION_WORKFLOW,
)

make_app = create_app  # the application factory under both names

# the public surface of the package (tests and tools import these from starters.api)
__all__ = [
    "ACTIVATE_WORKFLOW", "AUDIT_WORKFLOW", "CARTRIDGE_BODY_LIMIT", "DOCUMENTS_JSON_LIMIT", "DOCUMENTS_MULTIPART_LIMIT",
    "HEALTH_WORKFLOW", "INGEST_WORKFLOW", "INLINE_BUDGET", "LIST_MISSIONS_WORKFLOW", "MAX_JSON_DEPTH",
    "RESEARCH_BODY_LIMIT", "RESEARCH_WORKFLOW", "ROUTERS", "SHOW_MISSION_WORKFLOW", "TEMPORAL_PAYLOAD_LIMIT",
    "ApiError", "ErrorBody", "app", "create_app", "get_temporal", "json_too_deep", "make_app", "principal_dep",
    "require_platform_admin",
]

app = create_app()
