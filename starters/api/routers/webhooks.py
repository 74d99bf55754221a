"""Webhook endpoints of a mission (workflows/webhooks.py, queue maintenance-tasks):
register one (its signing secret is shown once), list them, remove one, the
delivery log, and a test delivery. Registering, removing and testing need the
mission's admin role; the lists its read role.

The secret never crosses a workflow history in the clear: the API makes a one-off
X25519 key pair per request, AddWebhookWorkflow returns the secret sealed to its
public key, and the API opens it for the 201 answer (stratmaster/webhooks.py)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.convertors import Convertor, register_url_convertor
from temporalio.client import Client, WorkflowFailureError

from starters.api.audit import audit
from starters.api.bodies import NO_NUL, StrictBody, parse_model, read_model
from starters.api.deps import MissionAccess, get_temporal, mission_access
from starters.api.errors import AUTH_ERRORS, BODY_ERRORS, ApiError, error_responses, validation_error
from starters.api.openapi import json_request_body
from starters.api.temporal_ops import (
    ADD_WEBHOOK_WORKFLOW, DELIVER_WEBHOOK_WORKFLOW, LIST_WEBHOOKS_WORKFLOW, REMOVE_WEBHOOK_WORKFLOW,
    WEBHOOK_DELIVERIES_WORKFLOW, )
from starters.failures import failure_message, failure_type
from starters.auth import ADMIN, READ
from stratmaster import queues
from stratmaster.contracts import webhooks as wh
from stratmaster.errors import BAD_INPUT, UNKNOWN_MISSION
from stratmaster.search_attributes import for_mission
from stratmaster.webhooks import (
    EVENT_TYPES, MAX_URL_LENGTH, TEST_EVENT, SubscribableEvent, event_id, open_secret, reply_keypair,
)

router = APIRouter(tags=["webhooks"])

TIMEOUT = timedelta(minutes=1)
TEST_TIMEOUT = timedelta(minutes=2)  # one attempt (the per-attempt timeout is the worker's, 10 s by default)

# The schema states what stratmaster.webhooks.url_problem accepts (and a host name the
# workers can resolve: labels of 1-63 characters), so a URL the schema accepts is never
# refused for its form: http(s), a host name or IPv4 address, an optional port 1-65535,
# printable ASCII after it, no credentials, no #fragment.
_LABEL = r"[A-Za-z0-9-]{1,63}"
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
WEBHOOK_URL = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_LABEL}(\.{_LABEL})*\.?(:{_PORT})?([/?][\x21\x22\x24-\x7e]*)?$"
ENDPOINT_ID = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"
EVENT_ID = r"^evt_[A-Za-z0-9_-]{8,64}$"

Subscription = Literal[SubscribableEvent, "*"]
EndpointPath = Annotated[str, Path(description="the endpoint's id (a UUID)", pattern=ENDPOINT_ID)]


class EndpointIdConvertor(Convertor[str]):
    """`{endpoint_id:webhook_endpoint}`: the route matches endpoint ids only, so that
    /missions/{m}/webhooks/deliveries is not also the DELETE route's path (its Allow
    header would name DELETE); any other segment there is a 404."""
    regex = ENDPOINT_ID.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("webhook_endpoint", EndpointIdConvertor())


def _all_events() -> list[Subscription]:
    return ["*"]


class WebhookCreate(StrictBody):
    """The body of POST /missions/{mission}/webhooks (contract: stratmaster.contracts.webhooks.WebhookCreate)."""
    url: str = Field(max_length=MAX_URL_LENGTH, pattern=WEBHOOK_URL,
                     description="the receiver: http(s), host name or IPv4 address, no credentials, no fragment; "
                                 "private and loopback addresses are refused unless the workers allow them",
                     examples=["https://hooks.example.com/stratmaster"])
    events: list[Subscription] = Field(default_factory=_all_events, min_length=1, max_length=len(EVENT_TYPES) + 1,
                                       description="the event types sent to it, or ['*'] for all")
    description: str = Field(default="", max_length=500, pattern=NO_NUL)


class WebhookTestRequest(StrictBody):
    """The body of POST /missions/{mission}/webhooks/{endpoint_id}/test: nothing to say ({} or empty)."""


def _webhook_error(exc: WorkflowFailureError, what: str, *, bad_input: ApiError | None = None) -> Exception:
    kind, message = failure_type(exc), failure_message(exc, root=True)
    if kind == UNKNOWN_MISSION:
        return ApiError(404, "unknown_mission", message)
    if kind == BAD_INPUT:
        return bad_input or validation_error(("body",), message)
    if kind is not None:
        return ApiError(409, "conflict", message)
    return ApiError(503, "unavailable", f"{what} did not complete (is the {queues.MAINTENANCE} worker running?)")


async def _execute(client: Client, workflow: str, arg, *, prefix: str, mission: str, result_type, what: str,
                   workflow_id: str | None = None, timeout: timedelta = TIMEOUT, bad_input: ApiError | None = None):
    try:
        return await client.execute_workflow(
            workflow, arg, id=workflow_id or f"{prefix}-{mission}-{uuid.uuid4().hex[:12]}",
            task_queue=queues.MAINTENANCE, execution_timeout=timeout, result_type=result_type,
            search_attributes=for_mission(mission))
    except WorkflowFailureError as exc:
        raise _webhook_error(exc, what, bad_input=bad_input) from None


def _unknown_endpoint(mission: str, endpoint_id: str) -> ApiError:
    return ApiError(404, "unknown_endpoint", f"mission {mission!r} has no webhook endpoint {endpoint_id!r}")


async def list_endpoints(client: Client, mission: str) -> wh.WebhookList:
    return await _execute(client, LIST_WEBHOOKS_WORKFLOW, wh.ListWebhooksInput(mission=mission), prefix="webhook-list",
                          mission=mission, result_type=wh.WebhookList, what="the webhook listing")


@router.post("/missions/{mission}/webhooks", status_code=201, name="webhook.add",
             summary="register a webhook endpoint; the answer holds its signing secret, this once (mission admin) "
                     "-> AddWebhookWorkflow",
             description="201 with the endpoint and `secret` (`whsec_...`): verify each request's "
                         "`webhook-signature` with it (Standard Webhooks). It is never shown again. 422: the URL's "
                         "host resolves to a refused address, or the mission has 20 endpoints already.",
             response_model=wh.WebhookCreated, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404, 409),
             openapi_extra=json_request_body(WebhookCreate))
async def add_webhook(request: Request, access: MissionAccess = Depends(mission_access(ADMIN)),
                      client: Client = Depends(get_temporal)):
    body: WebhookCreate = await read_model(request, WebhookCreate)
    mission = access.mission
    audit(request, events=body.events)
    private, public = reply_keypair()  # the secret comes back sealed to this one-off key
    req = parse_model(wh.AddWebhookInput, {"url": body.url, "events": body.events, "description": body.description},
                      mission=mission, actor=access.principal.actor[:255], reply_key=public)
    workflow_id = f"webhook-add-{mission}-{uuid.uuid4().hex[:12]}"
    audit(request, target=workflow_id)
    result = await _execute(client, ADD_WEBHOOK_WORKFLOW, req, prefix="webhook-add", workflow_id=workflow_id,
                            mission=mission, result_type=wh.AddWebhookResult, what="registering the webhook")
    secret = open_secret(result.sealed_secret, private) if result.sealed_secret else result.secret
    if not secret:
        raise ApiError(503, "unavailable", "the webhook worker returned no secret")
    audit(request, endpoint_id=result.endpoint.endpoint_id)
    created = wh.WebhookCreated(endpoint=result.endpoint, secret=secret)
    # the secret must not stay in any cache on the way
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/missions/{mission}/webhooks", summary="the mission's webhook endpoints, never their secrets (read) "
                                                    "-> ListWebhooksWorkflow",
            response_model=wh.WebhookList, responses=error_responses(*AUTH_ERRORS, 404, 409, 422))
async def list_webhooks(access: MissionAccess = Depends(mission_access(READ, require_active=True)),
                        client: Client = Depends(get_temporal)):
    listing = await list_endpoints(client, access.mission)
    if access.principal.can(access.mission, ADMIN):
        return listing
    # a URL's path and query are often themselves credentials (tokens in chat-hook URLs): readers see its origin
    return listing.model_copy(update={"endpoints": [e.model_copy(update={"url": url_origin(e.url)})
                                                    for e in listing.endpoints]})


def url_origin(url: str) -> str:
    """scheme://host[:port]/… of a webhook URL: where it goes, not what it carries."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.scheme and parts.netloc else "…"


@router.get("/missions/{mission}/webhooks/deliveries",
            summary="the mission's delivery log, newest first: one row per attempt (read) "
                    "-> ListWebhookDeliveriesWorkflow",
            response_model=wh.DeliveryLog, responses=error_responses(*AUTH_ERRORS, 404, 409, 422))
async def webhook_deliveries(access: MissionAccess = Depends(mission_access(READ, require_active=True)),
                             client: Client = Depends(get_temporal),
                             endpoint_id: Annotated[str | None, Query(pattern=ENDPOINT_ID,
                                                                      description="only this endpoint")] = None,
                             event_id: Annotated[str | None, Query(pattern=EVENT_ID,
                                                                   description="only this event (webhook-id)")] = None,
                             limit: Annotated[int, Query(ge=1, le=500)] = 50):
    mission = access.mission
    query = wh.WebhookDeliveryQuery(endpoint_id=str(uuid.UUID(endpoint_id)) if endpoint_id else None,
                                    event_id=event_id, limit=limit)
    return await _execute(client, WEBHOOK_DELIVERIES_WORKFLOW, wh.DeliveriesInput(mission=mission, **query.model_dump()),
                          prefix="webhook-deliveries", mission=mission, result_type=wh.DeliveryLog,
                          what="the delivery log")


@router.delete("/missions/{mission}/webhooks/{endpoint_id:webhook_endpoint}", name="webhook.remove",
               summary="remove a webhook endpoint; its delivery log stays (mission admin) -> RemoveWebhookWorkflow",
               response_model=wh.RemoveWebhookResult, responses=error_responses(*AUTH_ERRORS, 404, 409, 422))
async def remove_webhook(request: Request, endpoint_id: EndpointPath,
                         access: MissionAccess = Depends(mission_access(ADMIN)), client: Client = Depends(get_temporal)):
    mission, endpoint = access.mission, str(uuid.UUID(endpoint_id))
    workflow_id = f"webhook-remove-{mission}-{uuid.uuid4().hex[:12]}"
    audit(request, target=workflow_id, endpoint_id=endpoint)
    return await _execute(client, REMOVE_WEBHOOK_WORKFLOW,
                          wh.RemoveWebhookInput(mission=mission, endpoint_id=endpoint,
                                                actor=access.principal.actor[:255]),
                          prefix="webhook-remove", workflow_id=workflow_id, mission=mission,
                          result_type=wh.RemoveWebhookResult, what="removing the webhook",
                          bad_input=_unknown_endpoint(mission, endpoint))


@router.post("/missions/{mission}/webhooks/{endpoint_id:webhook_endpoint}/test", name="webhook.test",
             summary="send one signed webhook.test event to the endpoint now, one attempt (mission admin) "
                     "-> DeliverWebhookWorkflow",
             description="Waits for the attempt; `delivery.delivered` says whether the receiver answered 2xx "
                         "(`status`, `status_code`, `error` otherwise). The attempt is in the delivery log.",
             response_model=wh.WebhookTestResult, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404, 409),
             openapi_extra=json_request_body(WebhookTestRequest, required=False))
async def test_webhook(request: Request, endpoint_id: EndpointPath,
                       access: MissionAccess = Depends(mission_access(ADMIN)), client: Client = Depends(get_temporal)):
    await read_model(request, WebhookTestRequest, required=False)
    mission, endpoint = access.mission, str(uuid.UUID(endpoint_id))
    audit(request, endpoint_id=endpoint)
    if endpoint not in {e.endpoint_id for e in (await list_endpoints(client, mission)).endpoints}:
        raise _unknown_endpoint(mission, endpoint)
    eid = event_id(TEST_EVENT, f"api-{uuid.uuid4().hex}")
    event = wh.WebhookEvent(id=eid, type=TEST_EVENT, mission=mission, timestamp=datetime.now(timezone.utc),
                            data={"mission": mission, "message": "test event from the StratMaster API"})
    req = wh.DeliverInput(mission=mission, endpoint_id=endpoint, event=event, retry=wh.WebhookRetry(max_attempts=1))
    workflow_id = wh.delivery_workflow_id(eid, endpoint)
    audit(request, target=workflow_id, event_id=eid)
    result = await _execute(client, DELIVER_WEBHOOK_WORKFLOW, req, prefix="webhook-deliver", workflow_id=workflow_id,
                            mission=mission, result_type=wh.DeliveryResult, what="the test delivery",
                            timeout=TEST_TIMEOUT, bad_input=_unknown_endpoint(mission, endpoint))
    audit(request, delivered=result.delivered, status_code=result.status_code)
    return wh.WebhookTestResult(delivery=result)
