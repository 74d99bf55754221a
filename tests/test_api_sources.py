"""The sources routes against the real Temporal test server, PostgreSQL and the real
missions, maintenance and ingestion workers (OIDC mode with a stub verifier): a
directory source added (platform-admin only) and synced through the API ends with
its files indexed; listing, status and manifest; removal; an S3 source added by the
mission admin (MinIO); allowed and refused roles on every route, another mission's
source is a 404, every write an audit row."""
from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from stratmaster import queues
from tests.adapters_support import MINIO_ENV, require_server
from tests.api_support import (
    StubVerifier, api_client, audit_rows, cartridge, make_app, run_workers, stub_oidc, token, wait_workflow,
)
from tests.ingestion_support import write_small_docs
from tests.support.postgres import pg_connect

pytestmark = pytest.mark.timeout(600)

M = f"apisrc_{uuid.uuid4().hex[:8]}"
O = f"apisrco_{uuid.uuid4().hex[:8]}"
ROOT = token("root", "platform-admin")
M_ADMIN = token("madmin", f"mission:{M}:admin")
WRITER = token("mwriter", f"mission:{M}:writer")
READER = token("mreader", f"mission:{M}:reader")
O_ADMIN = token("oadmin", f"mission:{O}:admin")


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE, queues.MISSIONS, queues.INGESTION]):
        yield


@pytest.fixture(scope="module")
async def api(temporal_env, settings, workers):
    async with api_client(make_app(stub_oidc(settings), temporal_env.client, verifier=StubVerifier())) as c:
        for mission in (M, O):
            r = await c.post("/missions", json=cartridge(mission), headers=ROOT)
            assert r.status_code == 202, r.text
            assert (await wait_workflow(c, r.json()["workflow_id"], headers=ROOT))["status"] == "completed"
        yield c


def directory(path) -> dict:
    return {"kind": "directory", "path": str(path)}


async def documents_of(settings, mission: str) -> set[str]:
    async with pg_connect(settings) as conn:
        rows = await conn.fetch("SELECT d.id::text AS id FROM documents d JOIN tenants t ON t.id = d.tenant_id "
                                "WHERE t.name = $1", mission)
    return {r["id"] for r in rows}


async def audited(settings, actor: str, action: str, status: int) -> dict:
    """The API's audit row of `actor`'s request (the audit workflow writes it shortly after)."""
    deadline = time.monotonic() + 30
    while True:
        rows = await audit_rows(settings, actor=actor, mission=M, expect=0)
        found = [r for r in rows if r["action"] == action and r["status"] == status]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no audit row {action} {status} by {actor}: {rows}"
        await asyncio.sleep(0.3)


async def test_directory_source_through_the_api(api, settings, session_dir):
    root = session_dir / f"api-src-{M}"
    write_small_docs(root, 3, words=120)
    body = {"source_id": "notes", "spec": directory(root), "interval_seconds": 7200}

    # directory sources: platform-admin only (the mission's own admin is refused, before any workflow)
    r = await api.post(f"/missions/{M}/sources", json=body, headers=M_ADMIN)
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    for who in (WRITER, READER, O_ADMIN):  # adding needs the mission's admin role at least
        assert (await api.post(f"/missions/{M}/sources", json=body, headers=who)).status_code == 403
    # the schema states the contract's rules: relative and unnormalised paths, unknown fields, wrong types
    for bad in ({**body, "spec": directory("relative/dir")}, {**body, "spec": directory(f"{root}/")},
                {**body, "spec": directory("/")}, {**body, "surprise": 1}, {**body, "interval_seconds": "7200"},
                {**body, "interval_seconds": 59}, {**body, "source_id": "Notes"}, {"source_id": "x1", "spec": {}}):
        r = await api.post(f"/missions/{M}/sources", json=bad, headers=ROOT)
        assert r.status_code == 422 and isinstance(r.json()["detail"], list), (bad, r.text)

    r = await api.post(f"/missions/{M}/sources", json=body, headers=ROOT)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["status"] == "created" and added["location"] == str(root) and added["interval_seconds"] == 7200
    assert added["workflow_id"] == f"source-add-{M}-notes"
    assert added["schedule_id"] == f"stratmaster-source-sync-{M}-notes"
    r = await api.post(f"/missions/{M}/sources", json=body, headers=ROOT)
    assert r.status_code == 200 and r.json()["status"] == "unchanged", r.text
    # the id is taken by another definition: 409; a directory the workers do not have: 422
    (session_dir / f"elsewhere-{M}").mkdir()
    r = await api.post(f"/missions/{M}/sources", json={**body, "spec": directory(session_dir / f"elsewhere-{M}")},
                       headers=ROOT)
    assert r.status_code == 409 and r.json()["error"] == "source_exists", r.text
    r = await api.post(f"/missions/{M}/sources", json={"source_id": "missing", "spec": directory(root / "nope")},
                       headers=ROOT)
    assert r.status_code == 422 and "does not exist" in r.json()["detail"][0]["msg"], r.text
    row = await audited(settings, "root", "source.add", 201)
    assert row["target"] == f"source-add-{M}-notes" and row["detail"]["source_id"] == "notes"
    assert (await audited(settings, "madmin", "source.add", 403))["detail"]["kind"] == "directory"

    # list and status: read
    r = await api.get(f"/missions/{M}/sources", headers=READER)
    assert r.status_code == 200 and [s["source_id"] for s in r.json()["sources"]] == ["notes"], r.text
    assert (await api.get(f"/missions/{M}/sources", headers=O_ADMIN)).status_code == 403
    r = await api.get(f"/missions/{M}/sources/notes", headers=READER)
    assert r.status_code == 200 and r.json()["source"]["last_sync_status"] is None and r.json()["files"] == []

    # sync: write (a reader is refused); 202 with the business-key id, followed on /workflows
    assert (await api.post(f"/missions/{M}/sources/notes/sync", headers=READER)).status_code == 403
    r = await api.post(f"/missions/{M}/sources/notes/sync", json={"page_size": 2}, headers=WRITER)
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    assert wid == f"source-sync-{M}-notes" and r.json()["source_id"] == "notes"
    assert r.json()["status_url"] == f"/workflows/{wid}"
    info = await wait_workflow(api, wid, headers=READER)
    assert info["type"] == "SourceSyncWorkflow" and info["mission"] == M and info["status"] == "completed", info
    result = info["result"]
    assert result["outcome"] == "synced" and result["totals"]["ingested"] == 3, result
    assert (await audit_rows(settings, wid))[0]["action"] == "source.sync"

    # its files are indexed: the manifest, and the documents in PostgreSQL
    r = await api.get(f"/missions/{M}/sources/notes", headers=READER)
    status = r.json()
    assert status["source"]["files"] == {"indexed": 3} and status["matching"] == 3
    assert {f["path"] for f in status["files"]} == {"note_000.txt", "note_001.txt", "note_002.txt"}
    assert all(f["status"] == "indexed" and f["document_id"] for f in status["files"])
    assert {f["document_id"] for f in status["files"]} <= await documents_of(settings, M)
    r = await api.get(f"/missions/{M}/sources/notes", params={"status": "failed", "limit": 0}, headers=READER)
    assert r.json()["files"] == [] and r.json()["matching"] == 0
    r = await api.get(f"/missions/{M}/sources/notes", params={"limit": 1, "offset": 1}, headers=READER)
    assert [f["path"] for f in r.json()["files"]] == ["note_001.txt"]
    assert (await api.get(f"/missions/{M}/sources/notes", params={"status": "gone"}, headers=READER)).status_code == 422

    # another mission has no source "notes": 404 everywhere, even for its own admin
    for method, path in (("GET", f"/missions/{O}/sources/notes"), ("POST", f"/missions/{O}/sources/notes/sync"),
                         ("DELETE", f"/missions/{O}/sources/notes")):
        r = await api.request(method, path, headers=O_ADMIN)
        assert r.status_code == 404 and r.json()["error"] == "unknown_source", (method, path, r.text)
    assert (await api.get(f"/missions/{O}/sources", headers=O_ADMIN)).json()["sources"] == []
    assert (await api.get(f"/missions/{M}/sources/nosuch", headers=READER)).status_code == 404

    # removal: the mission admin (a writer is refused); documents only the source held are deleted
    r = await api.delete(f"/missions/{M}/sources/notes", headers=WRITER)
    assert r.status_code == 403
    assert (await audited(settings, "mwriter", "source.remove", 403))["detail"]["path"] == f"/missions/{M}/sources/notes"
    r = await api.delete(f"/missions/{M}/sources/notes", headers=M_ADMIN)
    assert r.status_code == 202, r.text
    rid = r.json()["workflow_id"]
    assert rid == f"source-remove-{M}-notes"
    info = await wait_workflow(api, rid, headers=M_ADMIN)
    assert info["status"] == "completed" and info["result"]["status"] == "removed", info
    assert info["result"]["files_removed"] == 3 and info["result"]["documents_deleted"] == 3
    assert await documents_of(settings, M) == set()
    r = await api.get(f"/missions/{M}/sources/notes", headers=READER)
    assert r.status_code == 404 and r.json()["error"] == "unknown_source"
    rows = await audit_rows(settings, rid)
    assert rows[0]["action"] == "source.remove" and rows[0]["status"] == 202 and rows[0]["actor"] == "madmin"


async def test_s3_source_by_the_mission_admin(api, settings, monkeypatch):
    from minio import Minio

    endpoint = require_server(MINIO_ENV, "minio.sh")
    access, secret = os.environ["STRATMASTER_TEST_MINIO_ACCESS_KEY"], os.environ["STRATMASTER_TEST_MINIO_SECRET_KEY"]
    bucket = f"apisrc-{uuid.uuid4().hex[:10]}"
    Minio(endpoint, access_key=access, secret_key=secret, secure=False).make_bucket(bucket)
    profile = f"api{uuid.uuid4().hex[:6]}"
    body = {"source_id": "bucket", "interval_seconds": 600,
            "spec": {"kind": "s3", "endpoint": endpoint, "bucket": bucket, "prefix": "reports",
                     "credentials_profile": profile, "secure": False}}

    assert (await api.post(f"/missions/{M}/sources", json=body, headers=WRITER)).status_code == 403
    # the profile is not configured on the workers: 422 with the reason, nothing stored
    r = await api.post(f"/missions/{M}/sources", json=body, headers=M_ADMIN)
    assert r.status_code == 422 and "STRATMASTER_S3_PROFILE_<NAME>_" in r.json()["detail"][0]["msg"], r.text
    monkeypatch.setenv(f"STRATMASTER_S3_PROFILE_{profile.upper()}_ACCESS_KEY", access)
    monkeypatch.setenv(f"STRATMASTER_S3_PROFILE_{profile.upper()}_SECRET_KEY", secret)
    # the operator binds the profile to this mission and pins it to the (loopback) endpoint
    monkeypatch.setenv(f"STRATMASTER_S3_PROFILE_{profile.upper()}_MISSIONS", M)
    monkeypatch.setenv(f"STRATMASTER_S3_PROFILE_{profile.upper()}_ENDPOINT", endpoint)
    r = await api.post(f"/missions/{M}/sources", json=body, headers=M_ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["location"] == f"http://{endpoint}/{bucket}/reports/"
    listed = (await api.get(f"/missions/{M}/sources", headers=READER)).json()["sources"]
    assert [(s["kind"], s["created_by"]) for s in listed if s["source_id"] == "bucket"] == [("s3", "madmin")]
    assert secret not in str(listed)
    r = await api.delete(f"/missions/{M}/sources/bucket", headers=M_ADMIN)
    assert r.status_code == 202
    assert (await wait_workflow(api, r.json()["workflow_id"], headers=M_ADMIN))["result"]["status"] == "removed"
