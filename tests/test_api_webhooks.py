"""The webhook routes against the real Temporal test server, PostgreSQL and the real
missions and maintenance workers (private targets allowed: the receiver is an
http.server on loopback), OIDC mode with a stub verifier: an endpoint registered
through the API (its secret shown once, sealed in the workflow history) gets a
signed webhook.test from /test, checked with the Standard Webhooks reference
library; list, delivery log, removal; allowed and refused roles on every route,
another mission's endpoint is a 404, every write an audit row."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks

from stratmaster import queues
from tests.api_support import (
    StubVerifier, api_client, audit_rows, cartridge, make_app, run_workers, stub_oidc, token, wait_workflow,
)

pytestmark = pytest.mark.timeout(600)

M = f"apiwh_{uuid.uuid4().hex[:8]}"
O = f"apiwho_{uuid.uuid4().hex[:8]}"
ROOT = token("root", "platform-admin")
M_ADMIN = token("whadmin", f"mission:{M}:admin")
WRITER = token("whwriter", f"mission:{M}:writer")
READER = token("whreader", f"mission:{M}:reader")
O_ADMIN = token("whoadmin", f"mission:{O}:admin")


class Receiver:
    """A webhook receiver on a free loopback port: records every POST, answers 200."""

    def __init__(self):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    s = settings.model_copy(update={"webhook_allow_private": True, "webhook_timeout_s": 5.0})
    async with run_workers(temporal_env.client, s, [queues.MAINTENANCE, queues.MISSIONS]):
        yield


@pytest.fixture(scope="module")
async def api(temporal_env, settings, workers):
    async with api_client(make_app(stub_oidc(settings), temporal_env.client, verifier=StubVerifier())) as c:
        for mission in (M, O):
            r = await c.post("/missions", json=cartridge(mission), headers=ROOT)
            assert r.status_code == 202, r.text
            assert (await wait_workflow(c, r.json()["workflow_id"], headers=ROOT))["status"] == "completed"
        yield c


async def audited(settings, actor: str, action: str, status: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        rows = await audit_rows(settings, actor=actor, mission=M, expect=0)
        found = [r for r in rows if r["action"] == action and r["status"] == status]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no audit row {action} {status} by {actor}: {rows}"
        await asyncio.sleep(0.3)


async def test_webhook_endpoint_through_the_api(api, client, settings, receiver):
    body = {"url": f"{receiver.url}/hook", "events": ["research.finished", "ingestion.failed"],
            "description": "ops channel"}
    for who in (WRITER, READER, O_ADMIN):  # registering needs the mission's admin role
        assert (await api.post(f"/missions/{M}/webhooks", json=body, headers=who)).status_code == 403
    for bad in ({**body, "url": "ftp://example.com/x"}, {**body, "url": "https://user:pw@example.com/"},
                {**body, "url": "https://example.com/#frag"}, {**body, "events": ["nope"]}, {**body, "events": []},
                {**body, "events": ["webhook.test"]}, {**body, "secret": "mine"}, {"events": ["*"]}):
        r = await api.post(f"/missions/{M}/webhooks", json=bad, headers=M_ADMIN)
        assert r.status_code == 422 and isinstance(r.json()["detail"], list), (bad, r.text)

    r = await api.post(f"/missions/{M}/webhooks", json=body, headers=M_ADMIN)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    endpoint, secret = created["endpoint"], created["secret"]
    ep = endpoint["endpoint_id"]
    assert secret.startswith("whsec_") and endpoint["mission"] == M and endpoint["created_by"] == "whadmin"
    assert endpoint["events"] == ["ingestion.failed", "research.finished"] and endpoint["url"] == body["url"]
    row = await audited(settings, "whadmin", "webhook.add", 201)
    assert row["target"].startswith(f"webhook-add-{M}-") and row["detail"]["endpoint_id"] == ep
    # the workflow history holds the secret sealed only
    history = await client.get_workflow_handle(row["target"]).fetch_history()
    assert secret not in json.dumps(history.to_json_dict()) and secret.removeprefix("whsec_") not in str(history)
    assert (await audited(settings, "whwriter", "webhook.add", 403))["status"] == 403

    # listed for readers, never with the secret
    r = await api.get(f"/missions/{M}/webhooks", headers=READER)
    assert r.status_code == 200 and [e["endpoint_id"] for e in r.json()["endpoints"]] == [ep], r.text
    assert "secret" not in r.text and secret.removeprefix("whsec_") not in r.text
    # readers see where an endpoint goes, not its path (often itself a credential); admins see it whole
    origin = body["url"].split("://", 1)[0] + "://" + body["url"].split("://", 1)[1].split("/", 1)[0] + "/…"
    assert r.json()["endpoints"][0]["url"] == origin != body["url"]
    admin_view = (await api.get(f"/missions/{M}/webhooks", headers=M_ADMIN)).json()["endpoints"]
    assert admin_view[0]["url"] == body["url"]
    assert (await api.get(f"/missions/{M}/webhooks", headers=O_ADMIN)).status_code == 403
    assert (await api.get(f"/missions/{O}/webhooks", headers=O_ADMIN)).json()["endpoints"] == []

    # a test delivery: one signed webhook.test at the receiver
    assert (await api.post(f"/missions/{M}/webhooks/{ep}/test", headers=WRITER)).status_code == 403
    r = await api.post(f"/missions/{M}/webhooks/{ep}/test", headers=M_ADMIN)
    assert r.status_code == 200, r.text
    delivery = r.json()["delivery"]
    assert delivery["delivered"] and delivery["status"] == "delivered" and delivery["status_code"] == 200, delivery
    assert delivery["event_type"] == "webhook.test" and delivery["attempts"] == 1
    got = [(h, b) for p, h, b in receiver.requests if p == "/hook"]
    assert len(got) == 1
    headers, raw = got[0]
    data = standardwebhooks.Webhook(secret).verify(raw, headers)  # the reference library checks the signature
    assert data["type"] == "webhook.test" and data["data"]["mission"] == M
    assert headers["webhook-id"] == delivery["event_id"]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + "A" * 43 + "=").verify(raw, headers)
    row = await audited(settings, "whadmin", "webhook.test", 200)
    assert row["detail"]["event_id"] == delivery["event_id"] and row["detail"]["delivered"] is True
    # the same id without hyphens, in capitals, names the same endpoint
    r = await api.post(f"/missions/{M}/webhooks/{ep.replace('-', '').upper()}/test", json={}, headers=M_ADMIN)
    assert r.status_code == 200 and r.json()["delivery"]["endpoint_id"] == ep, r.text

    # the delivery log (read), filtered by endpoint and event
    r = await api.get(f"/missions/{M}/webhooks/deliveries", params={"endpoint_id": ep}, headers=READER)
    assert r.status_code == 200, r.text
    log = r.json()["deliveries"]
    assert len(log) == 2 and {d["status"] for d in log} == {"delivered"} and {d["endpoint_id"] for d in log} == {ep}
    r = await api.get(f"/missions/{M}/webhooks/deliveries", params={"event_id": delivery["event_id"]}, headers=READER)
    assert [d["event_id"] for d in r.json()["deliveries"]] == [delivery["event_id"]]
    assert (await api.get(f"/missions/{M}/webhooks/deliveries", params={"endpoint_id": "nope"},
                          headers=READER)).status_code == 422
    assert (await api.get(f"/missions/{M}/webhooks/deliveries", headers=O_ADMIN)).status_code == 403
    # /webhooks/deliveries is not an endpoint id: only GET there; a malformed id is no route (404)
    assert (await api.options(f"/missions/{M}/webhooks/deliveries")).headers["allow"] == "GET, OPTIONS"
    assert (await api.options(f"/missions/{M}/webhooks/{ep}")).headers["allow"] == "DELETE, OPTIONS"
    r = await api.delete(f"/missions/{M}/webhooks/not-an-id", headers=M_ADMIN)
    assert r.status_code == 404 and set(r.json()) == {"error", "detail"}

    # another mission's admin cannot see, test or remove it through their own mission: 404 / nothing
    r = await api.post(f"/missions/{O}/webhooks/{ep}/test", headers=O_ADMIN)
    assert r.status_code == 404 and r.json()["error"] == "unknown_endpoint", r.text
    r = await api.delete(f"/missions/{O}/webhooks/{ep}", headers=O_ADMIN)
    assert r.status_code == 404 and r.json()["error"] == "unknown_endpoint", r.text
    r = await api.get(f"/missions/{O}/webhooks/deliveries", params={"endpoint_id": ep}, headers=O_ADMIN)
    assert r.status_code == 200 and r.json()["deliveries"] == []
    assert len([1 for p, _, _ in receiver.requests if p == "/hook"]) == 2  # nothing more was sent

    # removal: the mission admin (a writer is refused); then it is gone
    assert (await api.delete(f"/missions/{M}/webhooks/{ep}", headers=WRITER)).status_code == 403
    r = await api.delete(f"/missions/{M}/webhooks/{ep}", headers=M_ADMIN)
    assert r.status_code == 200 and r.json() == {"mission": M, "endpoint_id": ep, "removed": True}, r.text
    r = await api.delete(f"/missions/{M}/webhooks/{ep}", headers=M_ADMIN)
    assert r.status_code == 404 and r.json()["error"] == "unknown_endpoint"
    r = await api.post(f"/missions/{M}/webhooks/{ep}/test", headers=M_ADMIN)
    assert r.status_code == 404
    assert (await api.get(f"/missions/{M}/webhooks", headers=READER)).json()["endpoints"] == []
    row = await audited(settings, "whadmin", "webhook.remove", 200)
    assert row["detail"]["endpoint_id"] == ep and row["target"].startswith(f"webhook-remove-{M}-")
    await audited(settings, "whadmin", "webhook.remove", 404)
    await audited(settings, "whwriter", "webhook.remove", 403)
