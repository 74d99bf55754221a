"""Filesystem object store (embedded default for MinIO/S3).

Layout mirrors the bucket: <data_dir>/objects/<bucket>/tenants/<mission>/{documents,
artifacts,embeddings}/... and <data_dir>/objects/<bucket>/system/... . Writes go to a
temp file outside the bucket tree and are renamed into place (atomic on POSIX), so
readers and `list` never see half-written objects.
"""
from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from activities.stores.base import ObjectNotFound, object_prefix
from stratmaster.contracts.common import check_mission
from stratmaster.errors import bad_input

AREAS = ("documents", "artifacts", "embeddings")


# One key rule for every adapter and for backup/restore (activities/ops/backup.py, restore.py),
# so a key is either writable, readable, backed up and restorable everywhere or
# refused everywhere. The limits keep the bucket name `tenants/<mission>/<key>`
# (mission <= 48 chars) under S3's 1024 bytes and every segment under MinIO's and
# the filesystems' 255 bytes; control characters are refused (they never come
# from the platform: uploads use activities.ingest.parsing.safe_filename).
MAX_KEY_BYTES = 900
MAX_SEGMENT_BYTES = 255


def key_problem(key, what: str = "object key") -> str | None:
    """Why `key` is not a safe relative key (None when it is)."""
    if not isinstance(key, str) or not key:
        return f"bad {what} {key!r}: empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"bad {what} {key[:60]!r}...: longer than {MAX_KEY_BYTES} bytes"
    if key.startswith("/") or "\\" in key:
        return f"bad {what} {key!r}: must be a relative path with '/' separators"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"bad {what} {key!r}: control characters"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return f"bad {what} {key!r}: not valid UTF-8"
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"bad {what} {key!r}: empty, '.' or '..' segment"
    if any(len(part.encode("utf-8")) > MAX_SEGMENT_BYTES for part in parts):
        return f"bad {what} {key[:60]!r}: a segment longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def mission_key_problem(key) -> str | None:
    """Why `key` (relative to tenants/<mission>/) is not a mission object key."""
    problem = key_problem(key)
    if problem:
        return problem
    if key.split("/", 1)[0] not in AREAS or "/" not in key:
        return f"bad object key {key!r}: must start with one of {', '.join(a + '/' for a in AREAS)}"
    return None


def clean_key(key: str, what: str = "object key") -> str:
    """The key if it is a safe relative path; BadInput otherwise. Shared by the
    object store adapters so MinIO and the filesystem accept the same keys."""
    problem = key_problem(key, what)
    if problem:
        raise bad_input(problem)
    return key


def mission_key(mission: str, key: str) -> str:
    """Key relative to tenants/<mission>/, accepting the full form put() returns."""
    full = object_prefix(mission)
    if isinstance(key, str) and key.startswith(full):
        key = key[len(full):]
    problem = mission_key_problem(key)
    if problem:
        raise bad_input(problem)
    return key


def prefix_ok(prefix: str) -> str:
    if prefix:
        clean_key(prefix.rstrip("/") or ".", "key prefix")
    return prefix


class FsObjectStore:
    backend = "filesystem"

    def __init__(self, root: Path):
        self.bucket_root = Path(root).resolve()
        self._tmp = self.bucket_root.parent / ".tmp"

    # --- paths -----------------------------------------------------------
    def _mission_root(self, mission: str) -> Path:
        return self.bucket_root / object_prefix(check_mission(mission))

    def _system_root(self) -> Path:
        return self.bucket_root / "system"

    @staticmethod
    def _inside(base: Path, rel: str) -> Path:
        path = base / rel
        # Defence in depth against symlinks planted under the tree.
        if not path.resolve().is_relative_to(base.resolve()):
            raise bad_input(f"object key {rel!r} escapes its namespace")
        return path

    # --- blocking primitives (run in a thread) ----------------------------
    def _write(self, path: Path, data: bytes) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path, shown: str) -> bytes:
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {shown!r}") from None

    @staticmethod
    def _list(base: Path, prefix: str) -> list[str]:
        if not base.is_dir():
            return []
        # Walk only the directory part of the prefix, then filter by the rest.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / head if head else base
        if not start.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                rel = Path(dirpath, name).relative_to(base).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except (FileNotFoundError, IsADirectoryError):
            return False

    # --- mission objects ---------------------------------------------------
    async def put(self, mission: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        rel = mission_key(mission, key)
        path = self._inside(self._mission_root(mission), rel)
        await asyncio.to_thread(self._write, path, bytes(data))
        return object_prefix(mission) + rel

    async def get(self, mission: str, key: str) -> bytes:
        rel = mission_key(mission, key)
        path = self._inside(self._mission_root(mission), rel)
        return await asyncio.to_thread(self._read, path, rel)

    async def exists(self, mission: str, key: str) -> bool:
        rel = mission_key(mission, key)
        path = self._inside(self._mission_root(mission), rel)
        return await asyncio.to_thread(path.is_file)

    async def list(self, mission: str, prefix: str = "") -> list[str]:
        base = self._mission_root(mission)
        prefix_ok(prefix)
        return await asyncio.to_thread(self._list, base, prefix)

    async def sizes(self, mission: str) -> dict[str, int]:
        """Every object's size from the listing (nothing read; any key, even one `get` refuses)."""
        base = self._mission_root(mission)

        def stat_all() -> dict[str, int]:
            out = {}
            for rel in self._list(base, ""):
                try:
                    out[rel] = (base / rel).lstat().st_size
                except OSError:  # deleted meanwhile
                    pass
            return out
        return await asyncio.to_thread(stat_all)

    async def delete(self, mission: str, key: str) -> bool:
        rel = mission_key(mission, key)
        path = self._inside(self._mission_root(mission), rel)
        return await asyncio.to_thread(self._unlink, path)

    async def delete_mission(self, mission: str) -> int:
        base = self._mission_root(mission)

        def rm() -> int:
            n = len(self._list(base, ""))
            shutil.rmtree(base, ignore_errors=True)
            return n
        return await asyncio.to_thread(rm)

    async def drop(self, mission: str) -> None:
        await self.delete_mission(mission)

    # --- system area (system/<key>) ----------------------------------------
    async def put_system(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        path = self._inside(self._system_root(), clean_key(key, "system key"))
        await asyncio.to_thread(self._write, path, bytes(data))
        return "system/" + key

    async def get_system(self, key: str) -> bytes:
        path = self._inside(self._system_root(), clean_key(key, "system key"))
        return await asyncio.to_thread(self._read, path, key)

    async def list_system(self, prefix: str = "") -> builtins.list[str]:
        prefix_ok(prefix)
        return await asyncio.to_thread(self._list, self._system_root(), prefix)

    async def delete_system(self, key: str) -> bool:
        path = self._inside(self._system_root(), clean_key(key, "system key"))
        return await asyncio.to_thread(self._unlink, path)

    async def list_system_modified(self, prefix: str = "") -> builtins.list[tuple[str, datetime]]:
        """(key, last modified) of every system object under `prefix`: the time the
        store recorded for the write, not anything written inside the object."""
        prefix_ok(prefix)
        root = self._system_root()

        def run() -> list[tuple[str, datetime]]:
            out = []
            for rel in self._list(root, prefix):
                try:
                    mtime = (root / rel).stat().st_mtime
                except FileNotFoundError:
                    continue
                out.append((rel, datetime.fromtimestamp(mtime, tz=timezone.utc)))
            return out
        return await asyncio.to_thread(run)

    async def probe(self) -> str:
        def check() -> str:
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
            return f"writable at {self.bucket_root}"
        return await asyncio.to_thread(check)
