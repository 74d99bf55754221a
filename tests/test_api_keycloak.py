"""The API in OIDC mode with REAL tokens from the Keycloak started by
scripts/services/keycloak.sh (realm infra/keycloak/realm.json): missing,
forged, expired and wrong-audience tokens are refused; per-mission roles decide
read/write; platform-admin activates missions; every write (accepted or
refused) is audited with the token's user."""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from starters.auth import OidcVerifier
from stratmaster import queues
from tests.api_support import api_client, audit_rows, cartridge, make_app, run_workers, terminate_quietly, wait_closed

KEYCLOAK = os.environ.get("STRATMASTER_TEST_KEYCLOAK_URL")
if not KEYCLOAK:
    if os.environ.get("CI") == "true":
        raise RuntimeError("STRATMASTER_TEST_KEYCLOAK_URL is not set under CI: scripts/services/keycloak.sh did not run")
    pytest.skip("needs Keycloak: source scripts/services/keycloak.sh (sets STRATMASTER_TEST_KEYCLOAK_URL)",
                allow_module_level=True)

pytestmark = pytest.mark.keycloak
TOKEN_URL = f"{KEYCLOAK}/realms/stratmaster/protocol/openid-connect/token"
MISSION = "demo"  # the realm's demo roles are for mission "demo"
PASSWORDS = {"demo-user": "demo123", "demo-reader": "reader123", "other-user": "other123", "admin-user": "admin123"}


async def password_token(user: str, client_id: str = "stratmaster-cli") -> str:
    async with httpx.AsyncClient(timeout=30) as h:
        r = await h.post(TOKEN_URL, data={"grant_type": "password", "client_id": client_id, "username": user,
                                          "password": PASSWORDS[user], "scope": "openid"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def service_token(client_id: str = "stratmaster-api", secret: str = "dev-only-stratmaster-api-secret") -> str:
    async with httpx.AsyncClient(timeout=30) as h:
        r = await h.post(TOKEN_URL, data={"grant_type": "client_credentials", "client_id": client_id,
                                          "client_secret": secret})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def tokens():
    users = list(PASSWORDS)
    got = await asyncio.gather(*(password_token(u) for u in users))
    return dict(zip(users, got)) | {"service": await service_token()}


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
async def api(client, settings, workers, tokens):
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": KEYCLOAK})
    # leeway 0.5 s (default 5 s) so the expiry test waits less
    app = make_app(oidc, client, verifier=OidcVerifier(KEYCLOAK, "stratmaster", "stratmaster-api", leeway=0.5))
    async with api_client(app) as c:
        r = await c.get(f"/missions/{MISSION}", headers=bearer(tokens["admin-user"]))
        if r.status_code == 404:  # activate "demo" unless another module already did
            r = await c.post("/missions", json=cartridge(MISSION), headers=bearer(tokens["admin-user"]))
            assert r.status_code == 202, r.text
            await wait_closed(client, r.json()["workflow_id"])
        yield c


async def test_missing_malformed_and_forged_tokens_are_401(api, tokens):
    r = await api.get(f"/missions/{MISSION}")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in r.json()["detail"]
    assert (await api.get(f"/missions/{MISSION}", headers={"Authorization": "Basic abc"})).status_code == 401
    assert (await api.get(f"/missions/{MISSION}", headers=bearer("not.a.jwt"))).status_code == 401

    # same claims and key id as a real token, signed with another key
    real = tokens["demo-user"]
    claims = jwt.decode(real, options={"verify_signature": False})
    kid = jwt.get_unverified_header(real)["kid"]
    forged = jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256",
                        headers={"kid": kid})
    r = await api.get(f"/missions/{MISSION}", headers=bearer(forged))
    assert r.status_code == 401 and "invalid token" in r.json()["detail"]
    # alg=none / HS256 with the public key as secret: refused before any key lookup
    none = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    assert (await api.get(f"/missions/{MISSION}", headers=bearer(none))).status_code == 401
    # a tampered payload with the original signature
    head, _, sig = real.split(".")
    payload = base64.urlsafe_b64encode(jwt.utils.force_bytes(
        __import__("json").dumps(claims | {"realm_access": {"roles": ["platform-admin"]}}))).rstrip(b"=").decode()
    assert (await api.get("/missions", headers=bearer(f"{head}.{payload}.{sig}"))).status_code == 401


async def test_expired_token_is_401(api):
    token = await password_token("demo-user", client_id="stratmaster-cli-short")  # 2 s lifespan
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert (await api.get(f"/missions/{MISSION}", headers=bearer(token))).status_code == 200
    await asyncio.sleep(max(0.0, exp - time.time()) + 1.0)
    r = await api.get(f"/missions/{MISSION}", headers=bearer(token))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_wrong_audience_is_401(api):
    token = await password_token("demo-user", client_id="stratmaster-web")  # no stratmaster-api audience
    assert "stratmaster-api" not in jwt.decode(token, options={"verify_signature": False}).get("aud", [])
    r = await api.get(f"/missions/{MISSION}", headers=bearer(token))
    assert r.status_code == 401 and "audience" in r.json()["detail"]


async def test_mission_roles_decide_read_and_write(api, client, settings, tokens, started):
    demo, reader, other = bearer(tokens["demo-user"]), bearer(tokens["demo-reader"]), bearer(tokens["other-user"])
    r = await api.get(f"/missions/{MISSION}", headers=demo)
    assert r.status_code == 200 and r.json()["permissions"] == ["read", "write"]
    assert (await api.get(f"/missions/{MISSION}", headers=reader)).json()["permissions"] == ["read"]
    r = await api.get(f"/missions/{MISSION}", headers=other)
    assert r.status_code == 403 and "other-user" in r.json()["detail"]
    # the list shows only what the caller may read
    assert [m["mission"] for m in (await api.get("/missions", headers=demo)).json()["missions"]] == [MISSION]
    assert MISSION not in [m["mission"] for m in (await api.get("/missions", headers=other)).json()["missions"]]

    # writer starts research; reader and other-mission users may not
    r = await api.post(f"/missions/{MISSION}/research", json={"query": "who?"}, headers=demo)
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    started.append(wid)
    assert (await api.post(f"/missions/{MISSION}/research", json={"query": "who?"}, headers=reader)).status_code == 403
    assert (await api.post(f"/missions/{MISSION}/research", json={"query": "who?"}, headers=other)).status_code == 403
    # workflow routes check the workflow's Mission search attribute
    # (a workflow of a mission the caller cannot read answers like a missing one: 404)
    assert (await api.get(f"/research/{wid}", headers=reader)).status_code == 200
    assert (await api.get(f"/workflows/{wid}", headers=other)).status_code == 404
    assert (await api.get(f"/workflows/{wid}", headers=other)).text == (
        await api.get(f"/workflows/{wid[:-4]}zzzz", headers=other)).text.replace(f"{wid[:-4]}zzzz", wid)
    assert (await api.delete(f"/research/{wid}", headers=reader)).status_code == 403
    assert (await api.delete(f"/research/{wid}", headers=other)).status_code == 404
    # worker-local paths are for platform admins only
    r = await api.post(f"/missions/{MISSION}/documents", json={"documents": [{"path": "/etc/passwd"}]}, headers=demo)
    assert r.status_code == 403 and "platform-admin" in r.json()["detail"]
    # activation needs platform-admin
    r = await api.post("/missions", json=cartridge("api_kc_denied"), headers=demo)
    assert r.status_code == 403

    rows = await audit_rows(settings, wid, expect=3)
    assert {(r["actor"], r["action"], r["mission"], r["status"]) for r in rows} == {
        ("demo-user", "research.start", MISSION, 202), ("demo-reader", "research.cancel", MISSION, 403),
        ("other-user", "research.cancel", MISSION, 404)}
    refused = await audit_rows(settings, actor="other-user", expect=2)
    assert {(r["action"], r["mission"], r["status"]) for r in refused} == {
        ("research.start", MISSION, 403), ("research.cancel", MISSION, 404)}
    assert len(await audit_rows(settings, actor="demo-reader", expect=2)) == 2


async def test_platform_admin_and_service_account(api, client, settings, tokens, started):
    mission = f"api_kc_{uuid.uuid4().hex[:6]}"
    r = await api.post("/missions", json=cartridge(mission), headers=bearer(tokens["service"]))
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    await wait_closed(client, wid)
    assert (await api.get(f"/missions/{mission}", headers=bearer(tokens["admin-user"]))).status_code == 200
    # a mission nobody holds roles for: 403 for demo-user, visible to admins
    assert (await api.get(f"/missions/{mission}", headers=bearer(tokens["demo-user"]))).status_code == 403
    listed = [m["mission"] for m in (await api.get("/missions", headers=bearer(tokens["service"]))).json()["missions"]]
    assert {mission, MISSION} <= set(listed)
    rows = await audit_rows(settings, wid)
    assert rows[0]["actor"] == "service-account-stratmaster-api" and rows[0]["action"] == "mission.activate"


async def test_a_service_key_is_scoped_to_its_mission_and_role(api, client, settings, started):
    """A service (a CI job) holds a Keycloak client of its own (svc-demo-ci: client credentials, the
    role mission:demo:writer, 5-minute tokens): its token starts research in demo and nothing
    elsewhere, every use audited under its service account; a wrong secret gets no token."""
    token = await service_token("svc-demo-ci", "dev-only-svc-demo-ci-secret")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300 and "stratmaster-api" in (
        claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])
    svc = bearer(token)
    r = await api.get(f"/missions/{MISSION}", headers=svc)
    assert r.status_code == 200 and r.json()["permissions"] == ["read", "write"]
    r = await api.post(f"/missions/{MISSION}/research", json={"query": "from CI"}, headers=svc)
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    started.append(wid)
    assert (await api.post("/missions", json=cartridge("api_kc_svc"), headers=svc)).status_code == 403
    assert (await api.get("/missions/other", headers=svc)).status_code == 403
    assert (await api.post(f"/missions/{MISSION}/webhooks", json={"url": "https://example.org/h"},
                           headers=svc)).status_code == 403  # admin, not writer
    rows = await audit_rows(settings, wid)
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["status"]) == ("service-account-svc-demo-ci",
                                                                         "research.start", 202)
    async with httpx.AsyncClient(timeout=30) as h:  # a rotated (here: wrong) secret gets nothing
        r = await h.post(TOKEN_URL, data={"grant_type": "client_credentials", "client_id": "svc-demo-ci",
                                          "client_secret": "the-old-secret"})
    assert r.status_code == 401


async def test_detailed_health_is_for_platform_admins(api, tokens):
    for path in ("/health/services", "/health/database"):
        r = await api.get(path)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await api.get(path, headers=bearer(tokens["demo-user"]))
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = await api.get("/health/database", headers=bearer(tokens["admin-user"]))
    assert r.status_code == 200 and r.json()["services"][0]["name"] == "database"
    assert (await api.get("/healthz")).json() == {"status": "ok"}


class Outage(httpx.AsyncBaseTransport):
    """The verifier's HTTP transport to the real Keycloak; while `down`, every request
    goes to a dead port instead (connection refused). Counts the requests."""

    def __init__(self):
        self.real = httpx.AsyncHTTPTransport()
        self.down = False
        self.requests = 0
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            self.dead_port = s.getsockname()[1]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.down:
            request = httpx.Request(request.method, request.url.copy_with(port=self.dead_port),
                                    headers=request.headers)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_keycloak_outage_keeps_valid_tokens_working(client, settings, workers, tokens):
    """Keycloak down after the keys were cached: valid tokens keep passing on the last good
    keys after their TTL, one refresh attempt per back-off period however many requests
    arrive (no thundering herd); unknown key ids do not trigger a refetch storm; once
    Keycloak is back the keys are refreshed in the background."""
    outage = Outage()
    verifier = OidcVerifier(KEYCLOAK, "stratmaster", "stratmaster-api", cache_seconds=1.0, refetch_interval=30.0,
                            http=httpx.AsyncClient(transport=outage, timeout=10))
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": KEYCLOAK})
    demo = bearer(tokens["demo-user"])
    async with api_client(make_app(oidc, client, verifier=verifier)) as api:
        assert (await api.get(f"/missions/{MISSION}", headers=demo)).status_code == 200
        assert verifier.fetch_attempts == 1
        outage.down = True
        await asyncio.sleep(1.2)  # the cached keys are past their TTL now
        replies = await asyncio.gather(*(api.get(f"/missions/{MISSION}", headers=demo) for _ in range(40)))
        assert [r.status_code for r in replies] == [200] * 40, {r.text for r in replies}
        await asyncio.sleep(0.2)  # let the background refresh fail
        assert verifier.fetch_attempts == 2 and outage.requests == 3  # one attempt for the 40 requests

        # unknown key ids (rotation, or forgery) during the outage: refused, no refetch storm
        claims = jwt.decode(tokens["demo-user"], options={"verify_signature": False})
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = [jwt.encode(claims, key, algorithm="RS256", headers={"kid": f"rotated-{i}"}) for i in range(20)]
        replies = await asyncio.gather(*(api.get(f"/missions/{MISSION}", headers=bearer(t)) for t in forged))
        assert {r.status_code for r in replies} == {401}
        assert verifier.fetch_attempts <= 3
        for _ in range(20):  # valid tokens still pass throughout
            assert (await api.get(f"/missions/{MISSION}", headers=demo)).status_code == 200

        # Keycloak back: after the back-off, one background refresh brings fresh keys
        outage.down = False
        await asyncio.sleep(2.1)
        attempts = verifier.fetch_attempts
        assert (await api.get(f"/missions/{MISSION}", headers=demo)).status_code == 200
        await asyncio.sleep(0.5)
        assert verifier.fetch_attempts == attempts + 1 and verifier._failures == 0


async def test_keycloak_down_at_start_is_a_clean_503(client, settings, workers, tokens):
    """No keys ever fetched: 503 with the error shape and no internal address; concurrent
    requests share one attempt."""
    outage = Outage()
    outage.down = True
    verifier = OidcVerifier(KEYCLOAK, "stratmaster", "stratmaster-api", http=httpx.AsyncClient(transport=outage))
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": KEYCLOAK})
    async with api_client(make_app(oidc, client, verifier=verifier)) as api:
        replies = await asyncio.gather(*(api.get("/missions", headers=bearer(tokens["demo-user"])) for _ in range(20)))
        assert {r.status_code for r in replies} == {503}
        body = replies[0].json()
        assert body["error"] == "unavailable" and "identity provider" in body["detail"]
        assert "127.0.0.1" not in replies[0].text and str(outage.dead_port) not in replies[0].text
        assert verifier.fetch_attempts == 1


async def test_operations_and_lifecycle_roles_with_real_tokens(api, client, settings, tokens, started):
    """The routes added for the CLI's operations, with real tokens: platform-admin runs
    system operations and the mission lifecycle; mission writers may not (refusals
    audited with the mission); mission readers read versions, export and usage; other
    missions' users get 403, and workflows they may not see are 404."""
    admin, demo = bearer(tokens["admin-user"]), bearer(tokens["demo-user"])
    reader, other = bearer(tokens["demo-reader"]), bearer(tokens["other-user"])
    for path in (f"/missions/{MISSION}/versions", f"/missions/{MISSION}/export", f"/missions/{MISSION}/usage"):
        r = await api.get(path, headers=reader)
        assert r.status_code == 200, (path, r.text)
        assert (await api.get(path, headers=other)).status_code == 403, path
    assert "1.0.0" in (await api.get(f"/missions/{MISSION}/versions", headers=demo)).json()["versions"]

    # a mission of the admin's, deactivated by the admin only
    mission = f"api_kc_ops_{uuid.uuid4().hex[:6]}"
    r = await api.post("/missions", json=cartridge(mission), headers=admin)
    assert r.status_code == 202, r.text
    await wait_closed(client, r.json()["workflow_id"])
    assert (await api.post(f"/missions/{MISSION}/rollback", json={}, headers=demo)).status_code == 403
    assert (await api.post(f"/missions/{MISSION}/deactivate", json={}, headers=demo)).status_code == 403
    assert (await api.post(f"/missions/{MISSION}/backups", json={}, headers=demo)).status_code == 403
    r = await api.post(f"/missions/{mission}/deactivate", json={"retention_days": 1}, headers=admin)
    assert r.status_code == 202, r.text
    deactivate = r.json()["workflow_id"]
    await wait_closed(client, deactivate)
    r = await api.get(f"/workflows/{deactivate}", headers=admin)
    assert r.json()["result"]["status"] == "deactivated"

    # system operations: platform-admin; a maintenance run is invisible to mission users
    for method, path, body in (("GET", "/schedules", None), ("GET", "/backups", None),
                               ("POST", "/maintenance", {"kind": "health"}), ("POST", "/backups/verify", {})):
        r = await api.request(method, path, json=body, headers=demo)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (path, r.text)
    r = await api.post("/maintenance", json={"kind": "health"}, headers=admin)
    assert r.status_code == 202, r.text
    maintenance = r.json()["workflow_id"]
    started.append(maintenance)
    assert (await api.get(f"/workflows/{maintenance}", headers=demo)).status_code == 404
    await wait_closed(client, maintenance)
    assert (await api.get(f"/workflows/{maintenance}", headers=admin)).json()["result"]["kind"] == "health"
    assert (await api.get("/schedules", headers=admin)).status_code == 200

    # research progress streams check the mission like the other workflow routes
    r = await api.post(f"/missions/{MISSION}/research", json={"query": "who?"}, headers=demo)
    research = r.json()["workflow_id"]
    started.append(research)
    assert (await api.get(f"/research/{research}/events", headers=other)).status_code == 404
    assert (await api.get(f"/research/{research}/events")).status_code == 401

    rows = await audit_rows(settings, actor="demo-user", mission=MISSION, expect=4)
    assert {(r["action"], r["status"]) for r in rows} >= {
        ("mission.rollback", 403), ("mission.deactivate", 403), ("backup.create", 403), ("research.start", 202)}
    assert {(r["actor"], r["action"], r["status"]) for r in await audit_rows(settings, deactivate)} == {
        ("admin-user", "mission.deactivate", 202)}
    assert [(r["actor"], r["action"], r["status"]) for r in await audit_rows(settings, maintenance)] == [
        ("admin-user", "maintenance.run", 202)]
