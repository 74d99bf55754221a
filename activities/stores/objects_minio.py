"""Object store on MinIO / S3 (used when STRATMASTER_MINIO_ENDPOINT is set).

Same keys and rules as the filesystem store (objects_fs: key_problem / clean_key /
mission_key are shared, also with backup and restore): bucket `settings.object_bucket`, mission objects under
`tenants/<mission>/{documents,artifacts,embeddings}/...`, the system area under
`system/...`. The minio client is blocking, so calls run in a thread.
"""
from __future__ import annotations

import asyncio
import builtins
import io
from datetime import datetime
from typing import Callable, TypeVar

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from activities.stores.base import ObjectNotFound, object_prefix
from stratmaster.contracts.common import check_mission
from activities.stores.objects_fs import clean_key, mission_key, prefix_ok
from stratmaster.settings import Settings

T = TypeVar("T")
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}
SYSTEM_PREFIX = "system/"


class MinioObjectStore:
    backend = "minio"

    def __init__(self, endpoint: str, access_key: str | None, secret_key: str | None, *,
                 bucket: str = "stratmaster", secure: bool = False, client: Minio | None = None):
        self.bucket = bucket
        self.endpoint = endpoint
        self._client = client or Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)
        self._bucket_ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "MinioObjectStore":
        if not settings.minio_endpoint:
            raise ValueError("MinioObjectStore needs settings.minio_endpoint")
        secret = settings.minio_secret_key.get_secret_value() if settings.minio_secret_key else None
        return cls(settings.minio_endpoint, settings.minio_access_key, secret,
                   bucket=settings.object_bucket, secure=settings.minio_secure)

    # --- plumbing ------------------------------------------------------------
    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        if not self._client.bucket_exists(self.bucket):
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:  # another worker made it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_ready = True

    def _put(self, name: str, data: bytes, content_type: str) -> None:
        self._ensure_bucket()
        self._client.put_object(self.bucket, name, io.BytesIO(data), len(data), content_type=content_type)

    def _get(self, name: str, shown: str) -> bytes:
        try:
            resp = self._client.get_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(f"no object {shown!r}") from None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def _exists(self, name: str) -> bool:
        try:
            self._client.stat_object(self.bucket, name)
            return True
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise

    def _list(self, base: str, prefix: str) -> list[str]:
        try:
            objs = self._client.list_objects(self.bucket, prefix=base + prefix, recursive=True)
            return sorted(o.object_name[len(base):] for o in objs if not o.is_dir)
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return []
            raise

    def _list_modified(self, base: str, prefix: str) -> list[tuple[str, datetime]]:
        try:
            objs = self._client.list_objects(self.bucket, prefix=base + prefix, recursive=True)
            return sorted((o.object_name[len(base):], o.last_modified) for o in objs if not o.is_dir)
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return []
            raise

    def _delete(self, name: str) -> bool:
        if not self._exists(name):  # S3 deletes are silent about missing keys
            return False
        self._client.remove_object(self.bucket, name)
        return True

    def _delete_prefix(self, base: str) -> int:
        names = [base + rel for rel in self._list(base, "")]
        # A mission's own user can write keys (control characters) that the
        # multi-object delete's XML body cannot carry: those go one by one.
        odd = {n for n in names if any(ord(c) < 32 or ord(c) == 127 for c in n)}
        batch = [n for n in names if n not in odd]
        if batch:
            errors = list(self._client.remove_objects(self.bucket, (DeleteObject(n) for n in batch)))
            if errors:
                raise RuntimeError(f"MinIO could not delete {len(errors)} objects under {base}: {errors[0]}")
        for n in sorted(odd):
            self._client.remove_object(self.bucket, n)
        return len(names)

    # --- mission objects -------------------------------------------------------
    async def put(self, mission: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        rel = mission_key(check_mission(mission), key)
        name = object_prefix(mission) + rel
        await self._run(lambda: self._put(name, bytes(data), content_type))
        return name

    async def get(self, mission: str, key: str) -> bytes:
        rel = mission_key(check_mission(mission), key)
        return await self._run(lambda: self._get(object_prefix(mission) + rel, rel))

    async def exists(self, mission: str, key: str) -> bool:
        rel = mission_key(check_mission(mission), key)
        return await self._run(lambda: self._exists(object_prefix(mission) + rel))

    async def list(self, mission: str, prefix: str = "") -> list[str]:
        base = object_prefix(check_mission(mission))
        prefix_ok(prefix)
        return await self._run(lambda: self._list(base, prefix))

    async def sizes(self, mission: str) -> dict[str, int]:
        """Every object's size from the listing (nothing read; any key, even one `get` refuses)."""
        base = object_prefix(check_mission(mission))

        def listing() -> dict[str, int]:
            try:
                objs = self._client.list_objects(self.bucket, prefix=base, recursive=True)
                return {o.object_name[len(base):]: o.size or 0 for o in objs if not o.is_dir}
            except S3Error as exc:
                if exc.code == "NoSuchBucket":
                    return {}
                raise
        return await self._run(listing)

    async def delete(self, mission: str, key: str) -> bool:
        rel = mission_key(check_mission(mission), key)
        return await self._run(lambda: self._delete(object_prefix(mission) + rel))

    async def delete_mission(self, mission: str) -> int:
        base = object_prefix(check_mission(mission))
        return await self._run(lambda: self._delete_prefix(base))

    async def drop(self, mission: str) -> None:
        await self.delete_mission(mission)

    # --- system area (system/<key>) ----------------------------------------------
    async def put_system(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        name = SYSTEM_PREFIX + clean_key(key, "system key")
        await self._run(lambda: self._put(name, bytes(data), content_type))
        return name

    async def get_system(self, key: str) -> bytes:
        name = SYSTEM_PREFIX + clean_key(key, "system key")
        return await self._run(lambda: self._get(name, key))

    async def list_system(self, prefix: str = "") -> builtins.list[str]:
        prefix_ok(prefix)
        return await self._run(lambda: self._list(SYSTEM_PREFIX, prefix))

    async def delete_system(self, key: str) -> bool:
        name = SYSTEM_PREFIX + clean_key(key, "system key")
        return await self._run(lambda: self._delete(name))

    async def list_system_modified(self, prefix: str = "") -> builtins.list[tuple[str, datetime]]:
        """(key, last modified) of every system object under `prefix`: MinIO's own
        timestamp of the write, not anything written inside the object."""
        prefix_ok(prefix)
        return await self._run(lambda: self._list_modified(SYSTEM_PREFIX, prefix))

    async def probe(self) -> str:
        def check() -> str:
            exists = self._client.bucket_exists(self.bucket)
            return f"bucket {self.bucket!r} {'present' if exists else 'not created yet'} at {self.endpoint}"
        return await self._run(check)

    async def close(self) -> None:
        http = getattr(self._client, "_http", None)  # urllib3 pool: drop idle connections
        if http is not None:
            http.clear()
