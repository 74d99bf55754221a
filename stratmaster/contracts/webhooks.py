"""Contracts of the webhooks (task queue `maintenance-tasks`).

Workflows: AddWebhookWorkflow, ListWebhooksWorkflow, RemoveWebhookWorkflow,
ListWebhookDeliveriesWorkflow (management); EmitEventWorkflow (one per event:
finds the mission's matching endpoints, starts one DeliverWebhookWorkflow each);
DeliverWebhookWorkflow (one per event and endpoint: the signed POST, retried with
backoff within a bounded time and number of attempts).

The API models at the end (`WebhookCreate`, `WebhookCreated`, ...) are what the
REST routes take and answer (see docs/operations.md, "Webhooks").
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from stratmaster.contracts.common import MissionId, PlainText, clipped
from stratmaster.webhooks import EVENT_TYPES, url_problem

EventType = Literal["ingestion.finished", "ingestion.failed", "research.finished", "backup.finished",
                    "mission.activated", "mission.rolled_back", "webhook.test"]
DeliveryStatus = Literal["delivered", "failed", "refused", "skipped"]
MAX_ENDPOINTS_PER_MISSION = 20


def checked_events(events: list[str]) -> list[str]:
    """The subscription: known event types, or ["*"] for all of them."""
    out = sorted({e.strip() for e in events if e.strip()})
    if not out:
        raise ValueError("give at least one event type (or '*' for all)")
    if "*" in out:
        return ["*"]
    unknown = [e for e in out if e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)} (or '*')")
    return out


def _checked_url(url: str) -> str:
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return url


WebhookUrl = Annotated[PlainText, AfterValidator(_checked_url)]
EventFilter = Annotated[list[str], Field(max_length=len(EVENT_TYPES) + 1), AfterValidator(checked_events)]
ErrorText = Annotated[str | None, clipped(500)]
EndpointId = Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{32,36}$")]
EventId = Annotated[str, Field(pattern=r"^evt_[A-Za-z0-9_-]{8,64}$")]
Actor = Annotated[PlainText, Field(min_length=1, max_length=255)]


def delivery_workflow_id(event_id: str, endpoint_id: str) -> str:
    return f"webhook-deliver-{event_id}-{endpoint_id}"


def emit_workflow_id(event_id: str) -> str:
    return f"webhook-emit-{event_id}"


class WebhookEvent(BaseModel):
    """One event. `id` is the business key (stratmaster.webhooks.event_id) and the
    webhook-id header; `data` is already bounded by the emitter. mission None: a
    platform event (a system backup) for every mission with a matching endpoint."""
    id: EventId
    type: EventType
    mission: MissionId | None = None
    timestamp: datetime
    data: dict = Field(default_factory=dict)


class WebhookRetry(BaseModel):
    """Delivery retries: exponential backoff, at most `max_attempts`, all within `max_hours`."""
    initial_s: float = Field(default=5.0, gt=0)
    backoff: float = Field(default=3.0, ge=1.0)
    max_interval_s: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=15, ge=1, le=100)
    max_hours: float = Field(default=24.0, gt=0, le=72)


class EmitPlan(BaseModel):
    targets: list[tuple[str, str]] = Field(default_factory=list)  # (mission, endpoint id)
    retry: WebhookRetry = Field(default_factory=WebhookRetry)


class EmitResult(BaseModel):
    event_id: str
    deliveries: list[str] = Field(default_factory=list)  # DeliverWebhookWorkflow ids


class DeliverInput(BaseModel):
    mission: MissionId
    endpoint_id: EndpointId
    event: WebhookEvent
    retry: WebhookRetry = Field(default_factory=WebhookRetry)


class DeliveryAttempt(BaseModel):
    """One attempt's outcome (as the delivery log records it)."""
    status: DeliveryStatus
    attempt: int
    status_code: int | None = None
    error: ErrorText = None
    duration_ms: float | None = None


class DeliveryResult(BaseModel):
    mission: str
    endpoint_id: str
    event_id: str
    event_type: str
    delivered: bool
    status: DeliveryStatus
    attempts: int
    status_code: int | None = None
    error: ErrorText = None


# ---------------------------------------------------------------- management

class AddWebhookInput(BaseModel):
    mission: MissionId
    url: WebhookUrl
    events: EventFilter = Field(default_factory=lambda: ["*"])
    description: PlainText = Field(default="", max_length=500)
    actor: Actor = "cli"
    # base64 X25519 public key of the caller: the new secret comes back sealed to it, so
    # the workflow history never holds it in the clear (without one it is returned as is)
    reply_key: str | None = Field(default=None, max_length=100)


class WebhookEndpoint(BaseModel):
    """An endpoint as listed: never its secret."""
    endpoint_id: str
    mission: str
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    created_at: datetime | None = None
    created_by: str | None = None


class AddWebhookResult(BaseModel):
    endpoint: WebhookEndpoint
    secret: str | None = None  # only without reply_key
    sealed_secret: str | None = None  # with reply_key: open with stratmaster.webhooks.open_secret


class ListWebhooksInput(BaseModel):
    mission: MissionId


class WebhookList(BaseModel):
    mission: str
    endpoints: list[WebhookEndpoint]


class RemoveWebhookInput(BaseModel):
    mission: MissionId
    endpoint_id: EndpointId
    actor: Actor = "cli"


class RemoveWebhookResult(BaseModel):
    mission: str
    endpoint_id: str
    removed: bool


class DeliveriesInput(BaseModel):
    mission: MissionId
    endpoint_id: EndpointId | None = None
    event_id: EventId | None = None
    limit: int = Field(default=50, ge=1, le=500)


class DeliveryRecord(BaseModel):
    endpoint_id: str
    event_id: str
    event_type: str
    attempt: int
    status: DeliveryStatus
    status_code: int | None = None
    error: ErrorText = None
    duration_ms: float | None = None
    at: datetime


class DeliveryLog(BaseModel):
    mission: str
    deliveries: list[DeliveryRecord]


# ---------------------------------------------------------------- REST API (proposed routes)

class WebhookCreate(BaseModel):
    """POST /missions/{mission}/webhooks"""
    url: WebhookUrl
    events: EventFilter = Field(default_factory=lambda: ["*"])
    description: PlainText = Field(default="", max_length=500)


class WebhookCreated(BaseModel):
    """201 answer: the secret, shown this once."""
    endpoint: WebhookEndpoint
    secret: str = Field(description="whsec_...: verify the webhook-signature header with it; it is never shown again")


class WebhookDeliveryQuery(BaseModel):
    """GET /missions/{mission}/webhooks/deliveries?endpoint_id=&event_id=&limit="""
    endpoint_id: EndpointId | None = None
    event_id: EventId | None = None
    limit: int = Field(default=50, ge=1, le=500)


class WebhookTestResult(BaseModel):
    """POST /missions/{mission}/webhooks/{endpoint_id}/test"""
    delivery: DeliveryResult
