"""Webhook activities (maintenance worker): a mission's endpoints, the endpoints an
event goes to, and the delivery itself.

Delivery (`webhook_deliver`, one call per attempt, retried by DeliverWebhookWorkflow):
load the endpoint (by id *and* mission: another mission's endpoint is never used),
check the event still matches its filter, resolve its host and refuse any
non-public address unless STRATMASTER_WEBHOOK_ALLOW_PRIVATE is set (checked at every
attempt, and the connection goes to the very address checked: a DNS answer that
changes between the check and the connect cannot redirect it), POST the bounded,
signed payload (Standard Webhooks headers; no redirects followed, no proxy from the
environment, the response body never read), and write one delivery-log row.
A 2xx delivers; anything else raises a retryable error (a 429/503 Retry-After is
honoured); a refused target is not retried.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.resources import ActivityResources
from activities.stores.tenants import require_mission
from stratmaster.contracts.webhooks import (
    MAX_ENDPOINTS_PER_MISSION, AddWebhookInput, AddWebhookResult, DeliverInput, DeliveriesInput, DeliveryAttempt,
    DeliveryLog, DeliveryRecord, DeliveryStatus, EmitPlan, ListWebhooksInput, RemoveWebhookInput, RemoveWebhookResult,
    WebhookEndpoint, WebhookEvent, WebhookList, WebhookRetry,
)
from stratmaster import sealing
from stratmaster.errors import bad_input, redact
from stratmaster.sealing import Unsealable, is_sealed
from stratmaster.settings import Settings
from stratmaster.addresses import TargetRefused
from stratmaster.webhooks import (
    TEST_EVENT, bounded_data, canonical_json, new_secret, payload, resolve_target, seal_secret, sign,
)

TARGET_REFUSED = "WebhookTargetRefused"
DELIVERY_FAILED = "WebhookDeliveryFailed"
ENDPOINT_NS = uuid.UUID("5b0f3c8e-2a61-4d7b-9e3f-0c4a7d21e9b6")
LOG_DAYS = 30  # delivery-log rows older than this are pruned when the mission's next event is planned
MAX_TARGETS = 10_000  # endpoints one platform event (a system backup) may fan out to


def _in_activity() -> bool:
    return activity.in_activity()


def _endpoint_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise bad_input(f"no webhook endpoint {value!r}") from None


def _endpoint(row, mission: str) -> WebhookEndpoint:
    return WebhookEndpoint(endpoint_id=str(row["id"]), mission=mission, url=row["url"], events=list(row["events"]),
                           description=row["description"], enabled=row["enabled"], created_at=row["created_at"],
                           created_by=row["created_by"])


# an enabled endpoint of an active mission takes the event: by name, or '*'
_MATCH = "e.enabled AND t.status = 'active' AND (e.events @> ARRAY['*'] OR $1 = ANY(e.events))"


async def subscribed(pool: asyncpg.Pool, mission: str, event_type: str) -> bool:
    """Whether any endpoint of `mission` takes `event_type` now (what plan_event would find)."""
    return bool(await pool.fetchval(
        f"""SELECT EXISTS (SELECT 1 FROM webhook_endpoints e JOIN tenants t ON t.id = e.tenant_id
                           WHERE {_MATCH} AND t.name = $2)""", event_type, mission))


def delivery_retry(s: Settings) -> WebhookRetry:
    """The operator's delivery retry schedule (STRATMASTER_WEBHOOK_*), carried by each delivery."""
    return WebhookRetry(initial_s=s.webhook_retry_initial_s, max_interval_s=s.webhook_retry_max_interval_s,
                        max_attempts=s.webhook_max_attempts, max_hours=s.webhook_max_hours)


class WebhookActivities(ActivityResources):
    def all(self) -> list:
        return [self.add_webhook, self.list_webhooks, self.remove_webhook, self.list_deliveries, self.plan_event,
                self.deliver]

    # signing secrets are sealed at rest, bound to their endpoint (stratmaster/sealing.py)
    def _seal(self, endpoint_id: uuid.UUID, secret: str) -> str:
        return sealing.seal(sealing.secrets_key(self.settings), secret, f"webhook:{endpoint_id}")

    def _unseal(self, endpoint_id: uuid.UUID, stored: str) -> str:
        return sealing.unseal(sealing.secrets_key(self.settings), stored, f"webhook:{endpoint_id}")

    # ------------------------------------------------------------ management
    @activity.defn(name="webhook_add")
    async def add_webhook(self, req: AddWebhookInput) -> AddWebhookResult:
        pool = await self.pool()
        tenant_id = await require_mission(pool, req.mission)
        try:
            await resolve_target(req.url, self.settings.webhook_allow_private)
        except TargetRefused as exc:
            raise bad_input(f"webhook target refused: {exc}") from None
        except OSError:
            pass  # not resolvable yet: every delivery checks the address again
        # one endpoint per starting workflow run: a retried activity finds the row it wrote
        if _in_activity():
            info = activity.info()
            endpoint_id = uuid.uuid5(ENDPOINT_NS, f"{info.workflow_id}/{info.workflow_run_id}")
        else:
            endpoint_id = uuid.uuid4()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(727090, hashtext($1))", req.mission)
            existing = await conn.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", endpoint_id)
            if existing is None:
                count = await conn.fetchval("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", tenant_id)
                if count >= MAX_ENDPOINTS_PER_MISSION:
                    raise bad_input(f"mission {req.mission!r} already has {count} webhook endpoints "
                                    f"(at most {MAX_ENDPOINTS_PER_MISSION}); remove one first")
                existing = await conn.fetchrow(
                    """INSERT INTO webhook_endpoints (id, tenant_id, url, secret, events, description, created_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
                    endpoint_id, tenant_id, req.url, self._seal(endpoint_id, new_secret()), req.events,
                    req.description, req.actor)
                await _audit(conn, req.actor, req.mission, "webhook.add", str(endpoint_id),
                             {"url": req.url, "events": req.events})
        secret = self._unseal(endpoint_id, existing["secret"])
        endpoint = _endpoint(existing, req.mission)
        if req.reply_key:
            try:
                return AddWebhookResult(endpoint=endpoint, sealed_secret=seal_secret(secret, req.reply_key))
            except ValueError as exc:
                raise bad_input(f"reply_key is not a base64 X25519 public key: {exc}") from None
        return AddWebhookResult(endpoint=endpoint, secret=secret)

    @activity.defn(name="webhook_list")
    async def list_webhooks(self, req: ListWebhooksInput) -> WebhookList:
        pool = await self.pool()
        tenant_id = await require_mission(pool, req.mission)
        rows = await pool.fetch("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id)
        return WebhookList(mission=req.mission, endpoints=[_endpoint(r, req.mission) for r in rows])

    @activity.defn(name="webhook_remove")
    async def remove_webhook(self, req: RemoveWebhookInput) -> RemoveWebhookResult:
        pool = await self.pool()
        tenant_id = await require_mission(pool, req.mission)
        endpoint_id = _endpoint_uuid(req.endpoint_id)
        async with pool.acquire() as conn, conn.transaction():
            status = await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2",
                                        endpoint_id, tenant_id)
            removed = status.endswith(" 1")
            if removed:
                await _audit(conn, req.actor, req.mission, "webhook.remove", str(endpoint_id), {})
        if not removed and not _in_activity_retry():
            raise bad_input(f"mission {req.mission!r} has no webhook endpoint {req.endpoint_id!r}")
        return RemoveWebhookResult(mission=req.mission, endpoint_id=str(endpoint_id), removed=removed)

    @activity.defn(name="webhook_deliveries")
    async def list_deliveries(self, req: DeliveriesInput) -> DeliveryLog:
        pool = await self.pool()
        tenant_id = await require_mission(pool, req.mission)
        args: list = [tenant_id, req.limit]
        where = "tenant_id = $1"
        if req.endpoint_id:
            args.append(_endpoint_uuid(req.endpoint_id))
            where += f" AND endpoint_id = ${len(args)}"
        if req.event_id:
            args.append(req.event_id)
            where += f" AND event_id = ${len(args)}"
        rows = await pool.fetch(
            f"""SELECT endpoint_id::text AS endpoint_id, event_id, event_type, attempt, status, status_code, error,
                       duration_ms, at FROM webhook_deliveries WHERE {where} ORDER BY at DESC, id DESC LIMIT $2""", *args)
        return DeliveryLog(mission=req.mission, deliveries=[DeliveryRecord(**dict(r)) for r in rows])

    # ------------------------------------------------------------ events
    @activity.defn(name="webhook_plan_event")
    async def plan_event(self, event: WebhookEvent) -> EmitPlan:
        """The (mission, endpoint) pairs an event goes to: enabled endpoints of active
        missions whose filter names the event type (or '*'). A mission event only ever
        reaches that mission's endpoints."""
        pool = await self.pool()
        match = _MATCH
        if event.mission is not None:
            rows = await pool.fetch(
                f"""SELECT t.name AS mission, t.id AS tenant_id, e.id::text AS endpoint_id FROM webhook_endpoints e
                    JOIN tenants t ON t.id = e.tenant_id WHERE {match} AND t.name = $2 ORDER BY e.created_at, e.id""",
                event.type, event.mission)
        else:
            rows = await pool.fetch(
                f"""SELECT t.name AS mission, t.id AS tenant_id, e.id::text AS endpoint_id FROM webhook_endpoints e
                    JOIN tenants t ON t.id = e.tenant_id WHERE {match} ORDER BY t.name, e.created_at, e.id LIMIT $2""",
                event.type, MAX_TARGETS)
        tenants = list({r["tenant_id"] for r in rows})
        if tenants:
            await pool.execute(
                f"DELETE FROM webhook_deliveries WHERE tenant_id = ANY($1::uuid[]) AND at < NOW() - interval '{LOG_DAYS} days'",
                tenants)
        return EmitPlan(targets=[(r["mission"], r["endpoint_id"]) for r in rows],
                        retry=delivery_retry(self.settings))

    @activity.defn(name="webhook_deliver")
    async def deliver(self, req: DeliverInput) -> DeliveryAttempt:
        attempt = activity.info().attempt if _in_activity() else 1
        pool = await self.pool()
        event = req.event
        endpoint_id = _endpoint_uuid(req.endpoint_id)
        row = await pool.fetchrow(
            """SELECT e.url, e.secret, e.events, e.enabled, t.id AS tenant_id FROM webhook_endpoints e
               JOIN tenants t ON t.id = e.tenant_id WHERE e.id = $1 AND t.name = $2""", endpoint_id, req.mission)
        if row is None or not row["enabled"]:
            return DeliveryAttempt(status="skipped", attempt=attempt, error="endpoint removed or disabled")
        log = _Logger(pool, row["tenant_id"], endpoint_id, event, attempt)
        events = set(row["events"])
        if event.type != TEST_EVENT and "*" not in events and event.type not in events:
            return await log.write("skipped", error=f"endpoint no longer subscribes to {event.type}")

        data = {**event.data, "mission": req.mission}
        stamp = event.timestamp.isoformat().replace("+00:00", "Z")
        body = canonical_json(payload(event.type, stamp, bounded_data(event.type, stamp, data)))
        started = time.perf_counter()
        try:
            addresses = await resolve_target(row["url"], self.settings.webhook_allow_private)
        except TargetRefused as exc:
            await log.write("refused", error=str(exc))
            raise ApplicationError(f"webhook target refused: {exc}", {"attempt": attempt}, type=TARGET_REFUSED,
                                   non_retryable=True) from None
        except OSError as exc:
            await log.write("failed", error=f"cannot resolve the host: {exc}", started=started)
            raise ApplicationError(f"cannot resolve the webhook host: {exc}", {"attempt": attempt},
                                   type=DELIVERY_FAILED) from None

        try:
            secret = self._unseal(endpoint_id, row["secret"])
        except Unsealable as exc:  # a backup restored on a platform with another key
            await log.write("refused", error=str(exc))
            raise ApplicationError(f"{exc}: add the endpoint again", {"attempt": attempt}, type=TARGET_REFUSED,
                                   non_retryable=True) from None
        if not is_sealed(row["secret"]):  # stored before secrets were sealed: sealed now
            await pool.execute("UPDATE webhook_endpoints SET secret = $2 WHERE id = $1 AND secret = $3",
                               endpoint_id, self._seal(endpoint_id, secret), row["secret"])
        url = httpx.URL(row["url"])
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "StratMaster-Webhooks/1",
            "host": url.netloc.decode("ascii"),
            "webhook-id": event.id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, event.id, ts, body),
        }
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        retry_after: float | None = None
        try:
            async with httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                         timeout=httpx.Timeout(self.settings.webhook_timeout_s)) as client:
                for i, address in enumerate(addresses[:4]):
                    try:
                        # to an address just checked; Host header and TLS SNI/verification keep the name
                        async with client.stream("POST", url.copy_with(host=address), content=body, headers=headers,
                                                 extensions=extensions) as resp:
                            code = resp.status_code
                            if code in (429, 503):
                                retry_after = _retry_after(resp.headers.get("retry-after"))
                        break
                    except httpx.ConnectError:
                        if i == min(len(addresses), 4) - 1:
                            raise  # the next address only when this one cannot be reached at all
        except httpx.HTTPError as exc:
            error = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            await log.write("failed", error=error, started=started)
            raise ApplicationError(f"webhook delivery failed: {error}", {"attempt": attempt},
                                   type=DELIVERY_FAILED) from None
        if 200 <= code < 300:
            return await log.write("delivered", code=code, started=started)
        error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        await log.write("failed", code=code, error=error, started=started)
        delay = None
        if retry_after is not None:
            delay = timedelta(seconds=min(retry_after, req.retry.max_interval_s))
        raise ApplicationError(f"webhook delivery failed: {error}", {"attempt": attempt, "status_code": code},
                               type=DELIVERY_FAILED, next_retry_delay=delay)


class _Logger:
    """Writes one delivery-log row per attempt and returns it as a DeliveryAttempt."""

    def __init__(self, pool: asyncpg.Pool, tenant_id, endpoint_id: uuid.UUID, event: WebhookEvent, attempt: int):
        self.pool, self.tenant_id, self.endpoint_id, self.event, self.attempt = pool, tenant_id, endpoint_id, event, attempt

    async def write(self, status: DeliveryStatus, *, code: int | None = None, error: str | None = None,
                    started: float | None = None) -> DeliveryAttempt:
        duration = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
        error = error[:500] if error else None
        await self.pool.execute(
            """INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, attempt, status,
                   status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (endpoint_id, event_id, attempt) DO UPDATE SET status = EXCLUDED.status,
                   status_code = EXCLUDED.status_code, error = EXCLUDED.error, duration_ms = EXCLUDED.duration_ms,
                   at = NOW()""",
            self.tenant_id, self.endpoint_id, self.event.id, self.event.type, self.attempt, status, code, error, duration)
        return DeliveryAttempt(status=status, attempt=self.attempt, status_code=code, error=error, duration_ms=duration)


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: leave it to the backoff
    return seconds if seconds is not None and seconds >= 0 else None


def _in_activity_retry() -> bool:
    """True on a retried attempt (the first may have done the work before failing)."""
    return _in_activity() and activity.info().attempt > 1


async def _audit(conn, actor: str, mission: str, action: str, target: str, detail: dict) -> None:
    op_key = None
    if _in_activity():
        info = activity.info()
        op_key = f"{info.workflow_run_id}/{info.activity_id}"
    await conn.execute(
        """INSERT INTO audit_log (actor, mission, action, target, detail, op_key) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (op_key) WHERE op_key IS NOT NULL DO NOTHING""",
        actor, mission, action, target, json.dumps(detail, default=str), op_key)
