"""Timers and retry backoff on Temporal's time-skipping test server: the production
retry schedules run as configured (seconds to hours apart) while the test takes seconds.

Webhook delivery with the real maintenance worker, the real delivery activity and a real
HTTP receiver that always answers 500: the attempts follow the default backoff (5 s x3,
capped at an hour) and stop at `webhook_max_attempts`, or earlier when the next attempt
would fall past `webhook_max_hours` (both set through Settings, as an operator would; the
delivery carries them as EmitEventWorkflow's plan does: activities/ops/webhooks.py:
delivery_retry). The delivery workflow is started directly: the test server does not know
the mission search attribute the emitting workflow sets on its children.
"""
from __future__ import annotations

import time
import uuid

import pytest
import pytest_asyncio

from activities.stores.postgres import create_pool
from activities.stores.tenants import ensure_tenant
from stratmaster import queues
from activities.ops.webhooks import delivery_retry
from stratmaster.contracts.webhooks import DeliverInput, delivery_workflow_id
from tests.support.workers import queue_worker
from tests.test_webhooks import add_endpoint, deliveries, event, receiver  # noqa: F401 - receiver: the fixture
from workflows.webhooks import DeliverWebhookWorkflow

pytestmark = pytest.mark.timeout(180)
MISSION = f"ts_{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module")
async def mission(settings):
    pool = await create_pool(settings.database_url)
    try:
        await ensure_tenant(pool, MISSION)
    finally:
        await pool.close()
    return MISSION


async def _deliver_to_a_dead_receiver(env, settings, receiver, path: str):
    """Deliver one event to an endpoint whose receiver always answers 500; (result, the
    delivery's workflow seconds, wall seconds, the delivery log)."""
    receiver.plan[path] = [500] * 200
    async with queue_worker(env.client, settings, queues.MAINTENANCE):
        endpoint, _ = await add_endpoint(env.client, MISSION, receiver.url + path, ["*"])
        ev = event(MISSION)
        w0 = time.monotonic()
        handle = await env.client.start_workflow(
            DeliverWebhookWorkflow.run,
            DeliverInput(mission=MISSION, endpoint_id=endpoint, event=ev, retry=delivery_retry(settings)),
            id=delivery_workflow_id(ev.id, endpoint), task_queue=queues.MAINTENANCE)
        result = await handle.result()
        events = [e async for e in handle.fetch_history_events()]
        # workflow time, from the server's own event timestamps
        skipped = (events[-1].event_time.ToDatetime() - events[0].event_time.ToDatetime()).total_seconds()
        log = await deliveries(env.client, MISSION, event_id=ev.id, endpoint_id=endpoint)
    return result, skipped, time.monotonic() - w0, log


async def test_attempts_stop_at_the_configured_maximum(time_skipping_env, settings, receiver, mission):
    s = settings.model_copy(update={"webhook_allow_private": True, "webhook_max_attempts": 4, "webhook_timeout_s": 5.0})
    result, skipped, wall, log = await _deliver_to_a_dead_receiver(time_skipping_env, s, receiver, "/down-4")
    assert not result.delivered and result.status == "failed" and result.attempts == 4 and result.status_code == 500
    assert len(receiver.at("/down-4")) == 4 and sorted(d.attempt for d in log) == [1, 2, 3, 4]
    # the default backoff between the four attempts: 5 s, 15 s, 45 s (65 s of workflow time)
    assert 65 <= skipped < 65 + 30, skipped
    assert wall < 60, wall


async def test_attempts_stop_within_the_configured_hours(time_skipping_env, settings, receiver, mission):
    s = settings.model_copy(update={"webhook_allow_private": True, "webhook_max_attempts": 100,
                                    "webhook_max_hours": 1.0, "webhook_timeout_s": 5.0})
    result, skipped, wall, log = await _deliver_to_a_dead_receiver(time_skipping_env, s, receiver, "/down-1h")
    # attempts at 0, 5, 20, 65, 200, 605 and 1820 s; the next would be at 5420 s (the interval
    # capped at an hour), past the hour: the delivery gives up there, not after 100 attempts
    assert not result.delivered and result.status == "failed" and result.attempts == 7, result
    assert len(receiver.at("/down-1h")) == 7 and len(log) == 7
    assert 1820 <= skipped <= 3600 + 60, skipped
    assert wall < 60, wall
