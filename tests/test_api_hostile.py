"""Hostile requests against the REST API (security review, issue 11), with the real
Temporal test server, PostgreSQL and the missions + maintenance workers: health
probes that reveal nothing and cannot be flooded, dev auth refusing proxies,
workflow lookups that do not tell outsiders what exists, bodies limited while
streaming and refused cleanly when malformed, one error shape everywhere, and an
OpenAPI document that declares what the routes answer.

OIDC-mode cases here use a stub verifier (token "user:role,role") so they need no
Keycloak; token verification itself is tested against the real Keycloak in
test_api_keycloak.py."""
from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter

import httpx
import pytest

from starters.api import (
    DOCUMENTS_JSON_LIMIT, DOCUMENTS_MULTIPART_LIMIT, HEALTH_WORKFLOW, INGEST_WORKFLOW, RESEARCH_WORKFLOW, get_temporal,
)
from starters.auth import Principal
from stratmaster import queues
from tests.api_support import api_client, cartridge, dev, ensure_mission, make_app, run_workers, terminate_quietly

MISSION = "api_hostile"
OUTSIDER = {"Authorization": "Bearer outsider:mission:other_mission:writer"}
READER = {"Authorization": f"Bearer reader:mission:{MISSION}:reader"}
WRITER = {"Authorization": f"Bearer writer:mission:{MISSION}:writer"}
ADMIN = {"Authorization": "Bearer root:platform-admin"}
NO_ROLES = {"Authorization": "Bearer nobody:offline_access"}


class StubVerifier:
    """Bearer token "user:role,role" -> that principal (the API's authorisation is
    under test here, not token verification)."""

    async def verify(self, token: str) -> Principal:
        user, _, roles = token.partition(":")
        return Principal(subject=user, username=user, roles=frozenset(r for r in roles.split(",") if r))

    async def aclose(self) -> None:
        pass


class CountingClient:
    """The real Temporal client, counting the workflows the API starts by type."""

    def __init__(self, client):
        self._client = client
        self.started: Counter[str] = Counter()

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def execute_workflow(self, workflow, *args, **kwargs):
        self.started[workflow] += 1
        return await self._client.execute_workflow(workflow, *args, **kwargs)

    async def start_workflow(self, workflow, *args, **kwargs):
        self.started[workflow] += 1
        return await self._client.start_workflow(workflow, *args, **kwargs)


def assert_error_shape(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) - {"report"} == {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], (str, list))
    if code:
        assert body["error"] == code, body
    return body


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE, queues.MISSIONS]):
        yield


@pytest.fixture
async def started(client):
    ids: list[str] = []
    yield ids
    await terminate_quietly(client, ids)


@pytest.fixture
def counting(client):
    return CountingClient(client)


@pytest.fixture
async def dev_api(counting, settings, workers):
    app = make_app(dev(settings), counting)
    async with api_client(app, raise_app_exceptions=False) as c:
        await ensure_mission(c, counting, MISSION)
        yield c


@pytest.fixture
async def oidc_api(counting, settings, workers, dev_api):
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": "http://127.0.0.1:9"})
    async with api_client(make_app(oidc, counting, verifier=StubVerifier()), raise_app_exceptions=False) as c:
        yield c


# ---------------------------------------------------------------- 1. health probes

async def test_probes_reveal_nothing_and_detailed_health_needs_platform_admin(oidc_api, counting):
    for path in ("/healthz", "/readyz"):
        r = await oidc_api.get(path)  # anonymous
        assert r.status_code == 200 and r.json() == {"status": "ok"}, (path, r.text)
    before = counting.started[HEALTH_WORKFLOW]
    for path in ("/health/services", "/health/database"):
        assert_error_shape(await oidc_api.get(path), 401, "unauthorized")
        assert_error_shape(await oidc_api.get(path, headers=WRITER), 403, "forbidden")
    assert counting.started[HEALTH_WORKFLOW] == before  # no workflow for refused callers
    r = await oidc_api.get("/health/database", headers=ADMIN)
    assert r.status_code == 200 and r.json()["services"][0]["name"] == "database"


async def test_readiness_says_not_ready_without_internals(client, settings):
    down = dev(settings).model_copy(update={"temporal_address": "127.0.0.1:9"})
    app = make_app(down, client)
    del app.dependency_overrides[get_temporal]  # the real connection, to nowhere
    async with api_client(app) as c:
        r = await c.get("/readyz")
        body = assert_error_shape(r, 503, "unavailable")
        assert body["detail"] == "not ready" and "127.0.0.1" not in r.text
        assert (await c.get("/healthz")).status_code == 200


async def test_a_flood_of_health_requests_runs_one_workflow(dev_api, counting):
    before = counting.started[HEALTH_WORKFLOW]
    replies = await asyncio.gather(*(dev_api.get("/health/services") for _ in range(25)))
    assert {r.status_code for r in replies} <= {200, 503}
    assert len({r.text for r in replies}) == 1  # one report, shared
    assert counting.started[HEALTH_WORKFLOW] - before == 1
    await asyncio.gather(*(dev_api.get("/health/services") for _ in range(10)))  # cached
    assert counting.started[HEALTH_WORKFLOW] - before == 1


# ---------------------------------------------------------------- 2. dev auth

@pytest.mark.parametrize("header", ["X-Real-IP", "X-Forwarded-Host", "Forwarded", "Via", "X-Forwarded-Proto"])
async def test_dev_mode_refuses_requests_through_a_proxy(dev_api, header):
    r = await dev_api.get("/missions", headers={header: "203.0.113.9"})
    body = assert_error_shape(r, 403, "forbidden")
    assert header.lower() in body["detail"]


async def test_dev_mode_refuses_rebinding_and_cross_site_requests(dev_api, counting):
    assert_error_shape(await dev_api.get("/missions", headers={"Host": "attacker.example"}), 403)
    before = counting.started[RESEARCH_WORKFLOW]
    r = await dev_api.post(f"/missions/{MISSION}/research", content=b'{"query": "csrf"}',
                           headers={"Origin": "https://attacker.example", "Content-Type": "text/plain"})
    assert_error_shape(r, 403)
    assert counting.started[RESEARCH_WORKFLOW] == before


async def test_dev_mode_warns_loudly_at_start(client, settings, caplog):
    with caplog.at_level(logging.WARNING, logger="stratmaster.api.auth"):
        async with api_client(make_app(dev(settings), client)):
            pass
    assert any("AUTHENTICATION DISABLED" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- 3. workflow lookups

async def test_outsiders_cannot_tell_a_workflow_exists(oidc_api, counting, started):
    doc = {"name": "secret-plan.txt", "content_b64": base64.b64encode(b"the secret plan").decode()}
    r = await oidc_api.post(f"/missions/{MISSION}/documents", json={"documents": [doc]}, headers=WRITER)
    assert r.status_code == 202, r.text
    ingest = r.json()["workflow_id"]
    r = await oidc_api.post(f"/missions/{MISSION}/research", json={"query": "the plan?"}, headers=WRITER)
    research = r.json()["workflow_id"]
    started += [ingest, research]
    missing_ingest = ingest[:-4] + "0000" if not ingest.endswith("0000") else ingest[:-4] + "1111"
    missing_research = research[:-4] + "0000" if not research.endswith("0000") else research[:-4] + "1111"
    system = "mission-activate-" + MISSION  # not a workflow id; and a real system workflow below
    health = [w async for w in counting.list_workflows("WorkflowType = 'HealthCheckWorkflow'", limit=1)]

    def same(a: httpx.Response, b: httpx.Response, a_id: str, b_id: str) -> None:
        assert a.status_code == b.status_code == 404, (a.text, b.text)
        assert a.text.replace(a_id, "ID") == b.text.replace(b_id, "ID")

    for who in (OUTSIDER, NO_ROLES):
        for path, present, absent in (("/workflows/{}", ingest, missing_ingest),
                                      ("/research/{}", research, missing_research)):
            same(await oidc_api.get(path.format(present), headers=who),
                 await oidc_api.get(path.format(absent), headers=who), present, absent)
        same(await oidc_api.delete(f"/research/{research}", headers=who),
             await oidc_api.delete(f"/research/{missing_research}", headers=who), research, missing_research)
        if health:
            same(await oidc_api.get(f"/workflows/{health[0].id}", headers=who),
                 await oidc_api.get(f"/workflows/{system}", headers=who), health[0].id, system)
    # the mission's own reader sees it, and is refused (403) only what it may not do
    assert (await oidc_api.get(f"/workflows/{ingest}", headers=READER)).json()["type"] == INGEST_WORKFLOW
    assert_error_shape(await oidc_api.delete(f"/research/{research}", headers=READER), 403)
    assert_error_shape(await oidc_api.get(f"/workflows/{missing_ingest}", headers=READER), 404, "unknown_workflow")


# ---------------------------------------------------------------- 4. bodies

class Feed:
    """A request body served in chunks, counting what the server pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024, first: bytes = b""):
        self.total, self.chunk, self.first, self.pulled = total, chunk, first, 0

    async def __aiter__(self):
        sent = 0
        while sent < self.total:
            data = (self.first if sent == 0 and self.first else b"A" * self.chunk)[: self.total - sent]
            self.pulled += len(data)
            sent += len(data)
            yield data


@pytest.mark.parametrize("kind", ["json", "multipart"])
async def test_oversized_bodies_are_refused_while_streaming(dev_api, counting, kind):
    total = 24 * 1024 * 1024
    ctype = "application/json" if kind == "json" else "multipart/form-data; boundary=x"
    limit = DOCUMENTS_JSON_LIMIT if kind == "json" else DOCUMENTS_MULTIPART_LIMIT
    before = counting.started[INGEST_WORKFLOW]
    # declared too large: refused before a byte is read
    feed = Feed(total)
    r = await dev_api.post(f"/missions/{MISSION}/documents", content=feed,
                           headers={"Content-Type": ctype, "Content-Length": str(total)})
    assert_error_shape(r, 413, "payload_too_large")
    assert feed.pulled <= 64 * 1024
    # not declared (chunked): refused as soon as the count passes the limit
    feed = Feed(total, first=b'{"documents": [{"name": "a", "content_b64": "' if kind == "json" else b"--x\r\n")
    r = await dev_api.post(f"/missions/{MISSION}/documents", content=feed, headers={"Content-Type": ctype})
    assert_error_shape(r, 413, "payload_too_large")
    assert feed.pulled <= limit + 64 * 1024, (feed.pulled, limit)
    assert counting.started[INGEST_WORKFLOW] == before


POST_ROUTES = ["/missions", f"/missions/{MISSION}/documents", f"/missions/{MISSION}/research"]


@pytest.mark.parametrize("path", POST_ROUTES)
async def test_undecodable_and_deep_bodies_are_400(dev_api, path):
    r = await dev_api.post(path, content=b'{"query": "caf\xe9 \xff\xfe"}', headers={"Content-Type": "application/json"})
    assert "UTF-8" in assert_error_shape(r, 400, "bad_request")["detail"]
    for depth in (65, 1000, 20000):
        deep = b'{"query": "q", "x": ' + b"[" * depth + b"]" * depth + b"}"
        r = await dev_api.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert "nested deeper" in assert_error_shape(r, 400, "bad_request")["detail"], depth
    r = await dev_api.post(path, content=b"[" * 3000, headers={"Content-Type": "application/json"})
    assert_error_shape(r, 400, "bad_request")


@pytest.mark.parametrize("path", POST_ROUTES)
async def test_malformed_json_values_are_422_not_500(dev_api, path):
    for raw in (b'{"query": NaN}', b'{"top_k": ' + b"9" * 5000 + b"}", b"", b"{", b'"just a string'):
        r = await dev_api.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert_error_shape(r, 422, "invalid_input")
    assert_error_shape(await dev_api.post(path, content=b"query=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type")


async def test_nul_characters_are_refused_at_the_api(dev_api, counting, started):
    work = (RESEARCH_WORKFLOW, INGEST_WORKFLOW, "ActivateMissionWorkflow")
    before = {t: counting.started[t] for t in work}
    nul = "a\u0000b"
    r = await dev_api.post(f"/missions/{MISSION}/research", json={"query": f"what is {nul}?"})
    assert_error_shape(r, 422, "invalid_input")
    doc = {"name": f"{nul}.txt", "content_b64": base64.b64encode(b"x").decode()}
    r = await dev_api.post(f"/missions/{MISSION}/documents", json={"documents": [doc]})
    assert ["body", "documents", 0, "name"] in [e["loc"] for e in assert_error_shape(r, 422)["detail"]]
    # raw multipart: httpx would percent-encode the NUL of a file name, a hostile client does not
    raw = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a\x00b.txt"\r\n'
           b"Content-Type: text/plain\r\n\r\nx\r\n--xyz--\r\n")
    r = await dev_api.post(f"/missions/{MISSION}/documents", content=raw,
                           headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert_error_shape(r, 422, "invalid_input")
    r = await dev_api.post(f"/missions/{MISSION}/documents", json={"documents": [{"object_key": nul}]})
    assert_error_shape(r, 422, "invalid_input")
    r = await dev_api.post("/missions", json=cartridge("api_nul", description=nul))
    assert_error_shape(r, 422, "invalid_input")
    r = await dev_api.post("/missions", content=f"format: 1\nmetadata:\n  id: api_nul\n  name: {nul}\n".encode(),
                           headers={"Content-Type": "application/yaml"})
    assert_error_shape(r, 422, "invalid_input")
    assert_error_shape(await dev_api.get("/workflows/abc%00def"), 422, "invalid_input")
    assert {t: counting.started[t] for t in work} == before  # nothing started that would fail in PostgreSQL


# ---------------------------------------------------------------- 6. one error shape

async def test_every_error_has_the_same_shape(dev_api, oidc_api, client, settings):
    assert_error_shape(await dev_api.get("/no/such/route"), 404, "not_found")
    assert_error_shape(await dev_api.get("/missions/Bad-Id!"), 422, "invalid_input")
    assert_error_shape(await dev_api.get("/missions/nosuchmission"), 404, "unknown_mission")
    assert_error_shape(await oidc_api.get("/missions"), 401, "unauthorized")
    assert_error_shape(await oidc_api.get(f"/missions/{MISSION}", headers=OUTSIDER), 403, "forbidden")
    r = await dev_api.post(f"/missions/{MISSION}/research", json={"top_k": "many"})
    issues = assert_error_shape(r, 422, "invalid_input")["detail"]
    assert all(set(i) == {"loc", "msg", "type"} for i in issues)  # never the input back
    r = await dev_api.patch("/missions")
    assert_error_shape(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, OPTIONS, POST"

    # an unexpected exception: a JSON 500 that leaks nothing
    app = make_app(dev(settings), client)

    def broken():
        raise RuntimeError("db password hunter2 at 10.1.2.3")

    app.dependency_overrides[get_temporal] = broken
    async with api_client(app, raise_app_exceptions=False) as c:
        r = await c.get("/missions")
        body = assert_error_shape(r, 500, "internal_error")
        assert "hunter2" not in r.text and "10.1.2.3" not in r.text and body["detail"] == "internal server error"


async def test_options_and_405_advertise_every_method_of_the_path(dev_api):
    for path, allow in (("/missions", "GET, OPTIONS, POST"), ("/research/some-id", "DELETE, GET, OPTIONS"),
                        ("/healthz", "GET, OPTIONS"), (f"/missions/{MISSION}/research", "GET, OPTIONS, POST")):
        r = await dev_api.options(path)
        assert r.status_code == 204 and r.headers["allow"] == allow, (path, r.status_code, r.headers)
        r = await dev_api.put(path)
        assert r.status_code == 405 and r.headers["allow"] == allow


# ---------------------------------------------------------------- 7. OpenAPI

async def test_openapi_declares_errors_models_and_media_types(dev_api, oidc_api):
    spec = (await oidc_api.get("/openapi.json")).json()
    error_ref = "#/components/schemas/ErrorBody"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            ok = [c for c in responses if c.startswith("2")]
            assert ok, (method, path)
            for code in ok:
                content = responses[code]["content"]
                schema = next(iter(content.values()))["schema"]
                assert schema and schema != {}, (method, path, code)
            assert "500" in responses, (method, path)
            for code, resp in responses.items():
                if code[0] in "45":
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref in (error_ref, "#/components/schemas/HealthUnavailable"), (method, path, code)
            if op.get("security"):
                assert {"401", "403", "503"} <= set(responses), (method, path)
            if method in ("post",):
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
                assert op["requestBody"]["content"], (method, path)
            if "{workflow_id}" in path or "{mission}" in path:
                assert {"404", "422"} <= set(responses), (method, path)
    assert set(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert spec["components"]["schemas"]["ResearchRequest"]["properties"]["query"]
    r = await oidc_api.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain") and "http_requests_total" in r.text
    # dev mode: the server takes no token, so its document asks for none
    dev_spec = (await dev_api.get("/openapi.json")).json()
    assert "securitySchemes" not in dev_spec["components"]
    assert not any("security" in op for ops in dev_spec["paths"].values() for op in ops.values())


async def test_idempotency_key_is_declared_and_checked(dev_api, started):
    spec = (await dev_api.get("/openapi.json")).json()
    params = spec["paths"]["/missions/{mission}/research"]["post"]["parameters"]
    assert any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in params)
    r = await dev_api.post(f"/missions/{MISSION}/research", json={"query": "q"}, headers={"Idempotency-Key": "k" * 256})
    assert_error_shape(r, 422, "invalid_input")
    r = await dev_api.post(f"/missions/{MISSION}/research", json={"query": "q", "surprise": 1})
    assert ["body", "surprise"] in [e["loc"] for e in assert_error_shape(r, 422)["detail"]]
