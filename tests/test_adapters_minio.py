"""MinIO object store against the real MinIO server from scripts/services/minio.sh
(the shared contract runs too: tests/test_stores_contract.py, param "minio").
Skips locally without STRATMASTER_TEST_MINIO_ENDPOINT; fails under CI=true."""
from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import pytest
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.error import S3Error
from temporalio.exceptions import ApplicationError

from activities.stores.factory import build_stores, health_probes
from activities.stores.objects_minio import MinioObjectStore
from stratmaster.settings import Settings
from tests.adapters_support import MINIO_ENV, make_minio, require_server
from tests.stores_support import new_mission

INFRA = Path(__file__).resolve().parent.parent / "infra" / "minio"

pytestmark = pytest.mark.minio


@pytest.fixture
def endpoint() -> str:
    return require_server(MINIO_ENV, "minio.sh")


def _creds() -> tuple[str, str]:
    return os.environ["STRATMASTER_TEST_MINIO_ACCESS_KEY"], os.environ["STRATMASTER_TEST_MINIO_SECRET_KEY"]


def _raw(endpoint: str, access: str | None = None, secret: str | None = None) -> Minio:
    a, s = _creds()
    return Minio(endpoint, access_key=access or a, secret_key=secret or s, secure=False)


def _bucket_keys(raw: Minio, bucket: str, prefix: str) -> list[str]:
    return sorted(o.object_name for o in raw.list_objects(bucket, prefix=prefix, recursive=True))


async def test_factory_builds_minio_store_with_bucket_layout_and_probe(endpoint, tmp_path):
    access, secret = _creds()
    bucket = f"sm-{uuid.uuid4().hex[:10]}"  # a bucket of its own: created on first write
    settings = Settings(_env_file=None, data_dir=tmp_path, minio_endpoint=endpoint, minio_access_key=access,
                        minio_secret_key=secret, object_bucket=bucket)
    stores = build_stores(settings)
    try:
        assert isinstance(stores.objects, MinioObjectStore) and stores.objects.backend == "minio"
        backend, probe = health_probes(settings)["objects"]
        assert backend == "minio" and "not created yet" in await probe()
        a = new_mission("lay")
        full = await stores.objects.put(a, "documents/d1/report.pdf", b"%PDF", content_type="application/pdf")
        await stores.objects.put_system("backups/b1/manifest.json", b"{}", content_type="application/json")
        raw = _raw(endpoint)
        # Exactly the seeds' layout, in the configured bucket.
        assert _bucket_keys(raw, bucket, "") == sorted([f"tenants/{a}/documents/d1/report.pdf",
                                                         "system/backups/b1/manifest.json"])
        assert full == f"tenants/{a}/documents/d1/report.pdf"
        assert raw.stat_object(bucket, full).content_type == "application/pdf"
        assert "present" in await probe()
    finally:
        await stores.close()


async def test_prefix_sibling_missions_stay_isolated(endpoint):
    """`tenants/ab_x/` must not match `tenants/ab_xy/`: the prefix ends with '/'."""
    store = make_minio()
    try:
        short = new_mission("ab")
        long = short + "y"
        await store.put(short, "documents/a.txt", b"short")
        await store.put(long, "documents/a.txt", b"long")
        await store.put(long, "artifacts/b.txt", b"long2")
        assert await store.list(short) == ["documents/a.txt"]
        assert await store.delete_mission(short) == 1
        assert await store.list(long) == ["artifacts/b.txt", "documents/a.txt"]
        assert await store.get(long, "documents/a.txt") == b"long"
        assert await store.delete_mission(long) == 2
        raw = _raw(endpoint)
        assert _bucket_keys(raw, "stratmaster", f"tenants/{short}") == []
    finally:
        await store.close()


async def test_traversal_never_reaches_the_server(endpoint):
    """Hostile keys are refused before any request: nothing lands outside the prefix."""
    store = make_minio()
    raw = _raw(endpoint)
    try:
        a = new_mission("tr")
        await store.put(a, "documents/ok.txt", b"ok")  # bucket exists from here on
        before = _bucket_keys(raw, "stratmaster", "")
        for key in ("../../system/backups/x", "documents/../../../system/x", "/system/x", "documents/%2e%2e/x/..",
                    "documents\\..\\x"):
            with pytest.raises(ApplicationError):
                await store.put(a, key, b"evil")
        assert _bucket_keys(raw, "stratmaster", "") == before
        # "%2e%2e" is a literal segment name, not a parent reference: S3 keys are not paths.
        name = await store.put(a, "documents/%2e%2e/x", b"literal")
        assert name == f"tenants/{a}/documents/%2e%2e/x"
        assert await store.delete_mission(a) == 2
    finally:
        await store.close()


async def test_large_object_and_many_keys_round_trip(endpoint):
    store = make_minio()
    try:
        a = new_mission("big")
        blob = os.urandom(6 * 1024 * 1024)  # past one multipart part (5 MiB)
        await store.put(a, "embeddings/big.bin", blob)
        assert await store.get(a, "embeddings/big.bin") == blob
        for i in range(30):
            await store.put(a, f"artifacts/r{i:02d}.md", b"x")
        assert await store.list(a, "artifacts/") == [f"artifacts/r{i:02d}.md" for i in range(30)]
        assert await store.delete_mission(a) == 31
    finally:
        await store.close()


async def test_wrong_credentials_fail_the_probe(endpoint, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, minio_endpoint=endpoint, minio_access_key="nobody",
                        minio_secret_key="wrong-secret")
    _backend, probe = health_probes(settings)["objects"]
    with pytest.raises(S3Error):
        await probe()


async def test_infra_policies_confine_a_mission_user(endpoint):
    """infra/minio/tenant-policy.json applied to a real MinIO: a user named after
    the mission reads and writes only tenants/<mission>/; the service policy
    covers the whole bucket."""
    access, secret = _creds()
    admin = MinioAdmin(endpoint=endpoint, credentials=StaticProvider(access, secret), secure=False)
    a, b = new_mission("pa"), new_mission("pb")
    store = make_minio()
    try:
        await store.put(b, "documents/b.txt", b"B")  # also creates the bucket
        await store.put_system("backups/p/manifest.json", b"{}")
        admin.policy_add("stratmaster-tenant", policy_file=str(INFRA / "tenant-policy.json"))
        admin.policy_add("stratmaster-service", policy_file=str(INFRA / "service-policy.json"))
        user_secret = uuid.uuid4().hex
        admin.user_add(a, user_secret)
        admin.attach_policy(["stratmaster-tenant"], user=a)
        tenant = _raw(endpoint, a, user_secret)

        tenant.put_object("stratmaster", f"tenants/{a}/documents/x.txt", io.BytesIO(b"mine"), 4)
        assert tenant.get_object("stratmaster", f"tenants/{a}/documents/x.txt").read() == b"mine"
        assert [o.object_name for o in tenant.list_objects("stratmaster", prefix=f"tenants/{a}/", recursive=True)] \
            == [f"tenants/{a}/documents/x.txt"]
        for action in (lambda: tenant.get_object("stratmaster", f"tenants/{b}/documents/b.txt").read(),
                       lambda: tenant.put_object("stratmaster", f"tenants/{b}/documents/evil", io.BytesIO(b"x"), 1),
                       lambda: tenant.get_object("stratmaster", "system/backups/p/manifest.json").read(),
                       lambda: list(tenant.list_objects("stratmaster", prefix=f"tenants/{b}/", recursive=True))):
            with pytest.raises(S3Error) as ei:
                action()
            assert ei.value.code == "AccessDenied"
        assert await store.get(b, "documents/b.txt") == b"B"  # untouched

        svc_secret = uuid.uuid4().hex
        admin.user_add(f"svc-{a}", svc_secret)
        admin.attach_policy(["stratmaster-service"], user=f"svc-{a}")
        svc = MinioObjectStore(endpoint, f"svc-{a}", svc_secret)
        try:
            assert await svc.get(b, "documents/b.txt") == b"B"
            assert await svc.get_system("backups/p/manifest.json") == b"{}"
        finally:
            await svc.close()
        assert json.loads((INFRA / "tenant-policy.json").read_text())["Statement"][0]["Resource"] == [
            "arn:aws:s3:::stratmaster/tenants/${aws:username}/*"]
    finally:
        for user in (a, f"svc-{a}"):
            try:
                admin.user_remove(user)
            except Exception:
                pass
        await store.delete_mission(a)
        await store.delete_mission(b)
        await store.delete_system("backups/p/manifest.json")
        await store.close()
