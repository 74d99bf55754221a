"""A long-lived event stream ends when the caller's token expires: the verifier keeps the
token's `exp`, and the stream sends an `error` event `token_expired` and stops reading."""
from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from starters.api.events import workflow_events
from starters.auth import OidcVerifier

ISSUER = "http://kc.test/realms/r"


def oidc(private_key) -> httpx.AsyncClient:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/certs"})
        return httpx.Response(200, json={"keys": [public | {"kid": "k1", "use": "sig", "alg": "RS256"}]})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_the_principal_keeps_its_token_expiry():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    exp = int(time.time()) + 120
    token = jwt.encode({"sub": "u1", "preferred_username": "ana", "iss": ISSUER, "aud": "api", "iat": int(time.time()),
                        "exp": exp, "typ": "Bearer"}, key, algorithm="RS256", headers={"kid": "k1"})
    verifier = OidcVerifier("http://kc.test", "r", "api", http=oidc(key))
    try:
        principal = await verifier.verify(token)
    finally:
        await verifier.aclose()
    assert principal.actor == "ana" and principal.expires_at == exp


class Running:
    """A workflow handle that never closes and answers its progress query."""

    def __init__(self):
        self.queries = 0

    async def result(self):
        await asyncio.Event().wait()

    async def query(self, name, rpc_timeout=None):
        self.queries += 1
        return {"step": self.queries}


async def frames(until: float | None, limit: int) -> list[bytes]:
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(events_poll_seconds=0.01)),
                              is_disconnected=lambda: asyncio.sleep(0, result=False))
    out = []
    stream = workflow_events(request, Running(), opening={"status": "running"}, query="progress",
                             differ=lambda seen, p: [("progress", p)], outcome=None, mission="m", until=until)
    async for f in stream:
        out.append(f)
        if len(out) >= limit:
            break
    await stream.aclose()
    return out


async def test_a_stream_ends_when_the_token_expires():
    out = await frames(until=time.time() + 0.3, limit=10_000)
    assert out[-1].startswith(b"event: error") and b"token_expired" in out[-1]
    assert any(f.startswith(b"event: progress") for f in out)  # it streamed until then


async def test_a_stream_without_expiry_keeps_streaming():
    out = await frames(until=None, limit=20)
    assert len(out) == 20 and not any(b"token_expired" in f for f in out)


def test_a_missions_streams_share_a_budget_of_progress_queries():
    from starters.api.events import poll_interval

    state = SimpleNamespace(settings=SimpleNamespace(api_mission_stream_queries_per_s=4.0),
                            streams_by_mission={"flood": 20, "quiet": 1})
    assert poll_interval(state, "flood") == 5.0  # 20 streams, 4 queries a second between them
    assert poll_interval(state, "quiet") == 0.5  # another mission's stream polls as usual
    assert poll_interval(SimpleNamespace(settings=SimpleNamespace(api_mission_stream_queries_per_s=0),
                                         streams_by_mission={"flood": 20}), "flood") == 0.5  # 0: no budget
