"""Webhooks end to end: real emitting workflows (ingestion, research, activation,
rollback, backup) on the Temporal dev server, the maintenance worker delivering to a
real HTTP receiver on loopback (a thread running http.server), signatures checked
with the Standard Webhooks reference library, the delivery log in PostgreSQL."""
from __future__ import annotations

import asyncio
import base64
import os
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import pytest_asyncio
import standardwebhooks
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from typer.testing import CliRunner

from activities.resources import Resources
from activities.stores.postgres import create_pool
from activities.stores.tenants import ensure_tenant
from stratmaster import queues
from stratmaster.contracts.research import ResearchInput, workflow_id_for
from stratmaster.contracts.webhooks import (
    AddWebhookInput, DeliveriesInput, ListWebhooksInput, RemoveWebhookInput, WebhookEvent, checked_events,
    delivery_workflow_id, emit_workflow_id,
)
from stratmaster.search_attributes import for_mission
from stratmaster.addresses import address_problem
from stratmaster.webhooks import (
    MAX_PAYLOAD_BYTES, bounded_data, canonical_json, event_id, new_secret, open_secret, payload,
    reply_keypair, seal_secret, sign, url_problem, verify,
)
from tests.ops_support import maintenance_worker
from tests.research_support import ingest_corpus, research_worker
from workflows.ingestion import IngestDocumentsWorkflow
from workflows.research import ResearchWorkflow
from workflows.webhooks import (
    AddWebhookWorkflow, DeliverWebhookWorkflow, EmitEventWorkflow, ListWebhookDeliveriesWorkflow, ListWebhooksWorkflow,
    RemoveWebhookWorkflow,
)

pytestmark = pytest.mark.timeout(600)
A = f"wa_{uuid.uuid4().hex[:8]}"
B = f"wb_{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- a real receiver

class Receiver:
    """http.server on a free loopback port: records every POST; answers each path
    with the codes planned for it (then 200)."""

    def __init__(self):
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        self.plan: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.lock:
                    codes = outer.plan.get(self.path)
                    code = codes.pop(0) if codes else 200
                    outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body, code))
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str, event_type: str | None = None) -> list[tuple[dict, bytes, int]]:
        with self.lock:
            return [(h, b, c) for p, h, b, c in self.requests
                    if p == path and (event_type is None or json.loads(b)["type"] == event_type)]

    async def wait(self, path: str, event_type: str | None = None, n: int = 1, timeout: float = 90) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.at(path, event_type)
            if len(got) >= n:
                return got
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path}: {len(self.at(path, event_type))} {event_type or ''} requests, wanted {n}; "
                             f"all: {[(p, json.loads(b)['type']) for p, _, b, _ in self.requests]}")


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def wh_settings(settings, allow_private: bool = True):
    # the receiver is on loopback: tests must allow private targets (and retry fast)
    return settings.model_copy(update={"webhook_allow_private": allow_private, "webhook_retry_initial_s": 0.3,
                                       "webhook_retry_max_interval_s": 1.0, "webhook_timeout_s": 5.0})


async def add_endpoint(client, mission: str, url: str, events: list[str]) -> tuple[str, str]:
    """(endpoint id, secret) through AddWebhookWorkflow, the secret sealed to a one-off key."""
    private, public = reply_keypair()
    result = await client.execute_workflow(
        AddWebhookWorkflow.run, AddWebhookInput(mission=mission, url=url, events=events, reply_key=public),
        id=f"webhook-add-{mission}-{uuid.uuid4().hex[:8]}", task_queue=queues.MAINTENANCE)
    assert result.secret is None and result.sealed_secret  # never in the clear in the history
    return result.endpoint.endpoint_id, open_secret(result.sealed_secret, private)


def check_signature(secret: str, headers: dict, body: bytes) -> dict:
    """Verify as a receiver would: the reference library, and the algorithm by hand."""
    data = standardwebhooks.Webhook(secret).verify(body, headers)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert expected in headers["webhook-signature"].split()
    return data


async def deliveries(client, mission: str, **kw):
    return (await client.execute_workflow(ListWebhookDeliveriesWorkflow.run, DeliveriesInput(mission=mission, **kw),
                                          id=f"webhook-deliveries-{uuid.uuid4().hex[:8]}",
                                          task_queue=queues.MAINTENANCE)).deliveries


def event(mission: str | None, event_type: str = "research.finished", data: dict | None = None) -> WebhookEvent:
    return WebhookEvent(id=event_id(event_type, f"test-{uuid.uuid4().hex}"), type=event_type, mission=mission,
                        timestamp=datetime.now(timezone.utc), data=data or {"mission": mission, "n": 1})


@pytest_asyncio.fixture(scope="module")
async def missions(settings):
    pool = await create_pool(settings.database_url)
    try:
        for m in (A, B):
            await ensure_tenant(pool, m)
    finally:
        await pool.close()
    return A, B


# ---------------------------------------------------------------- units

def test_signature_is_standard_webhooks():
    secret = new_secret()
    body = canonical_json(payload("research.finished", "2026-01-01T00:00:00Z", {"answer": "ünïcode <b>"}))
    ts = int(time.time())
    headers = {"webhook-id": "evt_abc12345", "webhook-timestamp": str(ts), "webhook-signature": sign(secret, "evt_abc12345", ts, body)}
    assert standardwebhooks.Webhook(secret).verify(body, headers)["data"]["answer"] == "ünïcode <b>"
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")  # any change to the body
    assert not verify(new_secret(), headers, body)  # another endpoint's secret
    assert not verify(secret, {**headers, "webhook-id": "evt_other123"}, body)  # the id is signed too
    assert not verify(secret, headers, body, now=ts + 3600)  # a replay an hour later
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b"x", headers)


def test_sealed_secret_opens_only_with_the_callers_key():
    private, public = reply_keypair()
    secret = new_secret()
    sealed = seal_secret(secret, public)
    assert secret not in sealed and open_secret(sealed, private) == secret
    with pytest.raises(Exception):
        open_secret(sealed, reply_keypair()[0])


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "224.0.0.1",
    "255.255.255.255",
])
def test_non_public_addresses_are_refused(address):
    assert address_problem(address), address


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):  # classified only: nothing is sent to them
    assert address_problem(address) is None


async def test_an_invalid_host_name_is_refused_not_retried():
    """`a..b` passes the URL check but makes getaddrinfo raise UnicodeError: a refusal
    (non-retryable), not an error the delivery would retry ten times."""
    from stratmaster.webhooks import TargetRefused, resolve_target

    with pytest.raises(TargetRefused, match="not a valid host name"):
        await resolve_target("http://a..b/hook", allow_private=False)


def test_url_and_event_filter_rules():
    assert url_problem("https://hooks.example.com/x") is None
    for bad in ("ftp://x.example/", "https://user:pw@x.example/", "http:///nohost", "https://x.example/#frag",
                "https://x.example/a b", "javascript:alert(1)"):
        assert url_problem(bad), bad
    assert checked_events(["research.finished", " ingestion.failed "]) == ["ingestion.failed", "research.finished"]
    assert checked_events(["*", "research.finished"]) == ["*"]
    with pytest.raises(ValueError):
        checked_events(["research.done"])


def test_payload_is_bounded():
    big = {"mission": "m", "answer": "x" * 100_000, "items": [{"t": "y" * 1000}] * 500}
    cut = bounded_data("research.finished", "2026-01-01T00:00:00Z", big)
    assert cut["truncated"] is True and cut["mission"] == "m"
    assert len(canonical_json(payload("research.finished", "2026-01-01T00:00:00Z", cut))) <= MAX_PAYLOAD_BYTES
    small = {"mission": "m", "answer": "ok"}
    assert bounded_data("research.finished", "t", small) == small


# ---------------------------------------------------------------- end to end

async def test_real_events_are_signed_filtered_and_stay_in_their_mission(temporal_env, settings, receiver, missions):
    client = temporal_env.client
    s = wh_settings(settings)
    async with maintenance_worker(client, s):
        a1, secret_a1 = await add_endpoint(client, A, receiver.url + "/a1", ["ingestion.finished", "research.finished"])
        await add_endpoint(client, A, receiver.url + "/a2", ["backup.finished"])  # filter: none of these events
        await add_endpoint(client, B, receiver.url + "/b1", ["*"])  # another mission: nothing of A's

        await ingest_corpus(client, s, A)
        (headers, body, _), = await receiver.wait("/a1", "ingestion.finished")
        msg = check_signature(secret_a1, headers, body)
        assert msg["data"]["mission"] == A and msg["data"]["totals"]["ingested"] == 5
        assert headers["webhook-id"].startswith("evt_") and headers["content-type"] == "application/json"

        wid = workflow_id_for(A, "How much capacity does the XR-7 battery retain after 1000 charge cycles?", uuid.uuid4().hex)
        async with research_worker(client, s):
            result = await client.execute_workflow(
                ResearchWorkflow.run, ResearchInput(mission=A, query="How much capacity does the XR-7 battery retain "
                                                                      "after 1000 charge cycles?"),
                id=wid, task_queue=queues.RESEARCH, search_attributes=for_mission(A))
        (headers, body, _), = await receiver.wait("/a1", "research.finished")
        assert len(body) <= MAX_PAYLOAD_BYTES
        data = check_signature(secret_a1, headers, body)["data"]
        assert data["workflow_id"] == wid and data["session_id"] == result.session_id
        assert data["outcome"] == result.outcome and data["findings"] == len(result.claims)
        assert data["answer"] == result.answer.text[:1000] or data["answer"].endswith("…")
        assert data["report_md_key"] == result.report_md_key

        await asyncio.sleep(1.5)  # anything misrouted would have arrived by now
        assert receiver.at("/a2") == [] and receiver.at("/b1") == []

        log_a = await deliveries(client, A)
        assert {(d.event_type, d.status, d.status_code) for d in log_a} == {
            ("ingestion.finished", "delivered", 200), ("research.finished", "delivered", 200)}
        assert all(d.endpoint_id == a1 and d.attempt == 1 and d.duration_ms is not None for d in log_a)
        assert await deliveries(client, B) == []

        # B sees none of A's endpoints and cannot remove one
        listed_b = await client.execute_workflow(ListWebhooksWorkflow.run, ListWebhooksInput(mission=B),
                                                 id=f"webhook-list-{uuid.uuid4().hex[:8]}", task_queue=queues.MAINTENANCE)
        assert [e.url for e in listed_b.endpoints] == [receiver.url + "/b1"]
        assert "secret" not in listed_b.model_dump_json()
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(RemoveWebhookWorkflow.run, RemoveWebhookInput(mission=B, endpoint_id=a1),
                                          id=f"webhook-remove-{uuid.uuid4().hex[:8]}", task_queue=queues.MAINTENANCE)
        assert "has no webhook endpoint" in str(info.value.cause)
        # B's delivery of an A event id to A's endpoint: the endpoint is looked up within B -> skipped, nothing sent
        n = len(receiver.requests)
        r = await client.execute_workflow(
            DeliverWebhookWorkflow.run, {"mission": B, "endpoint_id": a1, "event": event(B).model_dump(mode="json")},
            id=f"webhook-deliver-x-{uuid.uuid4().hex[:8]}", task_queue=queues.MAINTENANCE)
        assert r.status == "skipped" and not r.delivered and len(receiver.requests) == n

    # the emitting workflows still replay (the emit is behind workflow.patched)
    replayer = Replayer(workflows=[ResearchWorkflow, IngestDocumentsWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await client.get_workflow_handle(wid).fetch_history())


async def test_failing_receiver_is_retried_and_delivered_once(temporal_env, settings, receiver, missions):
    client = temporal_env.client
    receiver.plan["/flaky"] = [500, 503]
    async with maintenance_worker(client, wh_settings(settings)):
        endpoint, secret = await add_endpoint(client, A, receiver.url + "/flaky", ["*"])
        ev = event(A)
        await client.execute_workflow(EmitEventWorkflow.run, ev, id=emit_workflow_id(ev.id), task_queue=queues.MAINTENANCE)
        result = await client.get_workflow_handle_for(DeliverWebhookWorkflow.run, delivery_workflow_id(ev.id, endpoint)).result()
        assert result.delivered and result.attempts == 3 and result.status_code == 200
        got = receiver.at("/flaky")
        assert [c for _, _, c in got] == [500, 503, 200]
        assert {h["webhook-id"] for h, _, _ in got} == {ev.id}  # one idempotency key for every attempt
        assert len({b for _, b, _ in got}) == 1  # the same body
        for h, b, _ in got:
            check_signature(secret, h, b)

        # the same event emitted again (another emit run, same event id): not delivered twice
        await client.execute_workflow(EmitEventWorkflow.run, ev, id=f"{emit_workflow_id(ev.id)}-again",
                                      task_queue=queues.MAINTENANCE)
        await asyncio.sleep(1.0)
        assert len(receiver.at("/flaky")) == 3 and sum(1 for _, _, c in receiver.at("/flaky") if c == 200) == 1

        log = sorted(await deliveries(client, A, event_id=ev.id, endpoint_id=endpoint), key=lambda d: d.attempt)
        assert [(d.attempt, d.status, d.status_code) for d in log] == [
            (1, "failed", 500), (2, "failed", 503), (3, "delivered", 200)]
        assert log[0].error == "HTTP 500"


async def test_bounded_attempts_then_failed(temporal_env, settings, receiver, missions):
    client = temporal_env.client
    receiver.plan["/never"] = [500] * 10
    async with maintenance_worker(client, wh_settings(settings)):
        endpoint, _ = await add_endpoint(client, B, receiver.url + "/never", ["*"])
        ev = event(B)
        from stratmaster.contracts.webhooks import DeliverInput, WebhookRetry
        r = await client.execute_workflow(
            DeliverWebhookWorkflow.run,
            DeliverInput(mission=B, endpoint_id=endpoint, event=ev, retry=WebhookRetry(initial_s=0.2, max_attempts=3)),
            id=delivery_workflow_id(ev.id, endpoint), task_queue=queues.MAINTENANCE)
    assert not r.delivered and r.status == "failed" and r.attempts == 3 and r.status_code == 500
    assert len(receiver.at("/never")) == 3


async def test_signing_secrets_are_sealed_at_rest(temporal_env, settings, receiver, missions):
    """The row (and so every backup) holds the secret sealed with the platform key, bound to its
    endpoint; a secret stored in the clear before is sealed at its next delivery; a sealed value
    that this key cannot open (a backup restored elsewhere, or moved to another row) is refused."""
    import asyncpg

    from stratmaster.contracts.webhooks import DeliverInput, WebhookRetry

    client = temporal_env.client
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with maintenance_worker(client, wh_settings(settings)):
            endpoint, secret = await add_endpoint(client, B, receiver.url + "/sealed", ["*"])
            other, _ = await add_endpoint(client, B, receiver.url + "/other", ["*"])
            stored = await conn.fetchval("SELECT secret FROM webhook_endpoints WHERE id = $1::uuid", endpoint)
            assert stored.startswith("enc1:") and secret not in stored and secret.removeprefix("whsec_") not in stored

            async def deliver(endpoint_id: str):
                ev = event(B)
                return await client.execute_workflow(
                    DeliverWebhookWorkflow.run, DeliverInput(mission=B, endpoint_id=endpoint_id, event=ev,
                                                             retry=WebhookRetry(initial_s=0.2, max_attempts=2)),
                    id=delivery_workflow_id(ev.id, endpoint_id), task_queue=queues.MAINTENANCE)

            await conn.execute("UPDATE webhook_endpoints SET secret = $2 WHERE id = $1::uuid", endpoint, secret)
            assert (await deliver(endpoint)).delivered  # stored in the clear (before sealing): still signs...
            (headers, body, _), = receiver.at("/sealed")
            check_signature(secret, headers, body)
            resealed = await conn.fetchval("SELECT secret FROM webhook_endpoints WHERE id = $1::uuid", endpoint)
            assert resealed.startswith("enc1:") and resealed != stored  # ...and is sealed now

            await conn.execute("UPDATE webhook_endpoints SET secret = $2 WHERE id = $1::uuid", other, resealed)
            moved = await deliver(other)  # another endpoint's sealed secret does not open here
            assert not moved.delivered and moved.status == "refused" and receiver.at("/other") == []
    finally:
        await conn.close()


async def test_private_targets_refused_unless_allowed(temporal_env, settings, receiver, missions):
    client = temporal_env.client
    async with maintenance_worker(client, wh_settings(settings, allow_private=True)):
        endpoint, _ = await add_endpoint(client, A, receiver.url + "/private", ["research.finished"])
    async with maintenance_worker(client, wh_settings(settings, allow_private=False)):
        for url in (receiver.url + "/x", "http://localhost:9/x", "http://169.254.169.254/latest/meta-data",
                    "http://[::1]:9/x", "http://10.0.0.1/x"):
            with pytest.raises(WorkflowFailureError) as info:
                await add_endpoint(client, A, url, ["*"])
            assert "refused" in str(info.value.cause), url
        # registered while allowed; at delivery time the address is checked again
        ev = event(A)
        await client.execute_workflow(EmitEventWorkflow.run, ev, id=emit_workflow_id(ev.id), task_queue=queues.MAINTENANCE)
        result = await client.get_workflow_handle_for(DeliverWebhookWorkflow.run, delivery_workflow_id(ev.id, endpoint)).result()
    assert result.status == "refused" and not result.delivered and result.attempts == 1
    assert "127.0.0.1 is loopback" in result.error
    assert receiver.at("/private") == []
    async with maintenance_worker(client, wh_settings(settings)):
        (row,) = await deliveries(client, A, event_id=ev.id, endpoint_id=endpoint)
    assert row.status == "refused" and row.status_code is None


async def test_payload_over_the_bound_is_cut(temporal_env, settings, receiver, missions):
    client = temporal_env.client
    async with maintenance_worker(client, wh_settings(settings)):
        endpoint, secret = await add_endpoint(client, B, receiver.url + "/big", ["backup.finished"])
        ev = event(B, "backup.finished", {"mission": B, "blob": "x" * 200_000, "items": list(range(20_000))})
        await client.execute_workflow(EmitEventWorkflow.run, ev, id=emit_workflow_id(ev.id), task_queue=queues.MAINTENANCE)
        (headers, body, _), = await receiver.wait("/big")
    assert len(body) <= MAX_PAYLOAD_BYTES
    data = check_signature(secret, headers, body)["data"]
    assert data["truncated"] is True and data["mission"] == B and len(data["blob"]) < 2100


async def test_activation_rollback_and_backup_events(temporal_env, settings, receiver):
    from stratmaster.contracts.maintenance import BackupInput
    from stratmaster.contracts.missions import RollbackMissionInput
    from tests.missions_support import activate, cartridge_text, mission_worker, new_mission
    from workflows.backup import BackupWorkflow, workflow_id_for as backup_wid
    from workflows.missions import RollbackMissionWorkflow

    client = temporal_env.client
    m = new_mission("wm")
    async with maintenance_worker(client, wh_settings(settings)), mission_worker(client, settings):
        assert (await activate(client, cartridge_text(m, "1.0.0"))).status == "activated"
        _, secret = await add_endpoint(client, m, receiver.url + f"/{m}", ["mission.activated", "mission.rolled_back",
                                                                          "backup.finished"])
        assert (await activate(client, cartridge_text(m, "1.1.0"))).status == "activated"
        (h, b, _), = await receiver.wait(f"/{m}", "mission.activated")
        data = check_signature(secret, h, b)["data"]
        assert (data["version"], data["previous_version"]) == ("1.1.0", "1.0.0")

        await client.execute_workflow(RollbackMissionWorkflow.run, RollbackMissionInput(mission=m),
                                      id=f"mission-rollback-{m}", task_queue=queues.MISSIONS)
        (h, b, _), = await receiver.wait(f"/{m}", "mission.rolled_back")
        assert check_signature(secret, h, b)["data"]["version"] == "1.0.0"

        req = BackupInput(scope="mission", mission=m, backup_id=f"{m}-{uuid.uuid4().hex[:6]}")
        await client.execute_workflow(BackupWorkflow.run, req, id=backup_wid(req), task_queue=queues.MAINTENANCE,
                                      search_attributes=for_mission(m))
        (h, b, _), = await receiver.wait(f"/{m}", "backup.finished")
        data = check_signature(secret, h, b)["data"]
        assert data["backup_id"] == req.backup_id and data["scope"] == "mission" and data["mission"] == m


async def test_cli_add_list_test_deliveries_remove(temporal_env, settings, receiver, missions, monkeypatch):
    from starters.cli import app
    from stratmaster.settings import get_settings

    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    get_settings.cache_clear()

    async def invoke(*args):
        return await asyncio.to_thread(CliRunner().invoke, app, list(args))

    try:
        async with maintenance_worker(temporal_env.client, wh_settings(settings)):
            res = await invoke("webhooks", "add", receiver.url + "/cli", "-m", B, "-e", "research.finished,backup.finished",
                               "--json")
            assert res.exit_code == 0, res.output
            created = json.loads(res.stdout)
            endpoint, secret = created["endpoint_id"], created["secret"]
            assert secret.startswith("whsec_") and created["events"] == ["backup.finished", "research.finished"]

            res = await invoke("webhooks", "list", "-m", B, "--json")
            assert res.exit_code == 0 and endpoint in res.stdout and secret not in res.stdout

            res = await invoke("webhooks", "test", endpoint, "-m", B)
            assert res.exit_code == 0 and "delivered" in res.stdout, res.output
            (h, b, _), = receiver.at("/cli")
            assert check_signature(secret, h, b)["type"] == "webhook.test"

            res = await invoke("webhooks", "deliveries", "-m", B, "--endpoint", endpoint, "--json")
            rows = json.loads(res.stdout)["deliveries"]
            assert [(r["event_type"], r["status"], r["status_code"]) for r in rows] == [("webhook.test", "delivered", 200)]

            res = await invoke("webhooks", "test", endpoint, "-m", A)  # another mission's endpoint id: nothing sent
            assert res.exit_code == 1 and "skipped" in res.stdout and len(receiver.at("/cli")) == 1

            res = await invoke("webhooks", "remove", endpoint, "-m", B)
            assert res.exit_code == 0 and "removed" in res.stdout
            res = await invoke("webhooks", "add", "ftp://nope", "-m", B)
            assert res.exit_code == 2 and "http" in res.output
    finally:
        get_settings.cache_clear()


async def test_next_address_when_the_first_cannot_be_reached(settings, receiver, missions, monkeypatch):
    """A name with several addresses: one that refuses the connection is skipped (the
    activity called directly; 127.0.0.2 is loopback too, with nothing listening)."""
    import activities.ops.webhooks as wh
    from stratmaster.contracts.webhooks import DeliverInput

    acts = wh.WebhookActivities(Resources(wh_settings(settings)))
    try:
        added = await acts.add_webhook(AddWebhookInput(mission=A, url=receiver.url + "/multi", events=["*"]))

        async def two_addresses(url, allow_private):
            return ["127.0.0.2", "127.0.0.1"]

        monkeypatch.setattr(wh, "resolve_target", two_addresses)
        ev = event(A)
        out = await acts.deliver(DeliverInput(mission=A, endpoint_id=added.endpoint.endpoint_id, event=ev))
    finally:
        await acts.resources.close()
    assert out.status == "delivered" and out.status_code == 200
    (h, b, _), = receiver.at("/multi")
    assert check_signature(added.secret, h, b)["data"]["mission"] == A


@pytest.mark.parametrize("value", ["change-me", "a long passphrase nobody will guess", base64.b64encode(b"k" * 16).decode()])
def test_a_weak_or_malformed_secrets_key_is_refused(value):
    from stratmaster.sealing import parse_key

    with pytest.raises(ValueError, match="32 random bytes"):
        parse_key(value)


def test_a_secrets_key_from_a_file_with_its_newline_is_read():
    from stratmaster.sealing import parse_key

    key = os.urandom(32)
    assert parse_key(base64.b64encode(key).decode() + "\n") == key


def test_a_configured_secrets_key_is_the_key_and_no_file_is_made(tmp_path):
    from pydantic import SecretStr

    from stratmaster.sealing import KEY_FILE, secrets_key, seal, unseal
    from stratmaster.settings import Settings

    key = os.urandom(32)
    s = Settings(_env_file=None, data_dir=tmp_path, secrets_key=SecretStr(base64.b64encode(key).decode()))
    assert secrets_key(s) == key and not (tmp_path / KEY_FILE).exists()
    other = Settings(_env_file=None, data_dir=tmp_path / "other")  # no key configured: its own file's key
    sealed = seal(secrets_key(s), "whsec_x", "webhook:e1")
    assert unseal(key, sealed, "webhook:e1") == "whsec_x"
    with pytest.raises(ValueError):
        unseal(secrets_key(other), sealed, "webhook:e1")
