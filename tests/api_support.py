"""Shared helpers of the API tests: the app on an in-memory ASGI transport (its
Temporal client dependency pointed at the test server), the real in-process
workers it talks to, and small polling helpers."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from starters.api import create_app, get_temporal
from stratmaster.settings import Settings
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker

LOOPBACK = ("127.0.0.1", 50123)


def cartridge(mission: str, version: str = "1.0.0", **extra) -> dict:
    return {"format": 1, "metadata": {"id": mission, "name": f"API test {mission}", "version": version,
                                      "owners": ["api-tests@example.invalid"]}, **extra}


def dev(settings: Settings) -> Settings:
    """`settings` with dev auth (no tokens, loopback only), which is never the default."""
    return settings.model_copy(update={"auth_mode": "dev"})


def unlimited(settings: Settings) -> Settings:
    """`settings` without the API's fair-use limits (a fuzzer sends thousands of valid requests)."""
    return settings.model_copy(update={"api_starts_per_minute": 1e9, "api_mission_starts_per_minute": 1e9,
                                       "api_starts_burst": 1e9, "api_streams_per_principal": 1_000_000,
                                       "api_streams_per_mission": 1_000_000, "api_mission_running_research": 0,
                                       "api_mission_running_ingestions": 0})


def make_app(settings: Settings, client: Client, **kwargs):
    app = create_app(settings, **kwargs)
    app.dependency_overrides[get_temporal] = lambda: client
    return app


@contextlib.asynccontextmanager
async def api_client(app, *, peer=LOOPBACK, base_url: str = "http://127.0.0.1", headers: dict | None = None,
                     raise_app_exceptions: bool = True):
    """httpx client on the app (lifespan run, so startup checks apply)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=peer, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers, timeout=60) as c:
            yield c


@contextlib.asynccontextmanager
async def run_workers(client: Client, settings: Settings, queue_names: list[str],
                      stand_ins: dict[str, list[type]] | None = None):
    """Real workers for the given queues, in-process (tests/support/workers.py: queue_worker).
    stand_ins: queue -> workflow classes replacing the real workflows of the same name
    (e.g. idle ones, so that what a fuzzer starts does nothing)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(queue_worker(client, settings, q, workflows=(stand_ins or {}).get(q)))
               for q in queue_names]


async def wait_closed(client: Client, workflow_id: str, timeout: float = 120) -> WorkflowExecutionStatus:
    deadline = time.monotonic() + timeout
    while True:
        desc = await client.get_workflow_handle(workflow_id).describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return desc.status
        if time.monotonic() > deadline:
            raise AssertionError(f"{workflow_id} still running after {timeout}s")
        await asyncio.sleep(0.2)


async def terminate_quietly(client: Client, workflow_ids) -> None:
    """Workflows the tests left pending (no worker for their queue) must not be
    picked up by another test module's worker later in the session."""
    for wid in set(workflow_ids):
        try:
            await client.get_workflow_handle(wid).terminate(reason="api test cleanup")
        except RPCError:
            pass


async def audit_rows(settings: Settings, target: str | None = None, *, actor: str | None = None,
                     mission: str | None = None, since=None, expect: int = 1, timeout: float = 30) -> list[dict]:
    """audit_log rows for a target (or actor, or mission; at or after `since`), waiting for
    the audit workflows to write them."""
    deadline = time.monotonic() + timeout
    async with pg_connect(settings) as conn:
        while True:
            rows = await conn.fetch(
                """SELECT * FROM audit_log WHERE ($1::text IS NULL OR target = $1) AND ($2::text IS NULL OR actor = $2)
                   AND ($3::text IS NULL OR mission = $3) AND ($4::timestamptz IS NULL OR at >= $4)
                   ORDER BY at, id""", target, actor, mission, since)
            if len(rows) >= expect or time.monotonic() > deadline:
                return [{**r, "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]
            await asyncio.sleep(0.2)


async def ensure_mission(api: httpx.AsyncClient, client: Client, mission: str, headers: dict | None = None) -> None:
    """Activate `mission` through the API unless it exists (another module may own it)."""
    r = await api.get(f"/missions/{mission}", headers=headers)
    if r.status_code == 200:
        return
    assert r.status_code == 404, r.text
    r = await api.post("/missions", json=cartridge(mission), headers=headers)
    assert r.status_code == 202, r.text
    assert await wait_closed(client, r.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED


class StubVerifier:
    """OIDC mode without Keycloak: bearer token "user:role,role" is that principal (the
    API's authorisation is under test, not token verification: see test_api_keycloak.py)."""

    async def verify(self, token: str):
        from starters.auth import Principal

        user, _, roles = token.partition(":")
        return Principal(subject=user, username=user, roles=frozenset(r for r in roles.split(",") if r))

    async def aclose(self) -> None:
        pass


def stub_oidc(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": "http://127.0.0.1:9"})


def token(user: str, *roles: str) -> dict:
    return {"Authorization": f"Bearer {user}:{','.join(roles)}"}


async def wait_workflow(api: httpx.AsyncClient, workflow_id: str, timeout: float = 180, headers: dict | None = None) -> dict:
    """GET /workflows/{id} until it is no longer running: the closed workflow's info."""
    deadline = time.monotonic() + timeout
    while True:
        r = await api.get(f"/workflows/{workflow_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "running":
            return r.json()
        assert time.monotonic() < deadline, f"{workflow_id} still running after {timeout}s"
        await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def served(app, port: int | None = None):
    """The app on a real uvicorn server on 127.0.0.1 (in this event loop, beside the workers),
    on a free port unless told which."""
    import uvicorn

    from tests.support.ports import free_port

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
