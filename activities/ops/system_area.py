"""The object store's `system/` area (backups, analytics exports): the adapters'
put_system/get_system/list_system/list_system_modified/delete_system, with key checks
and one not-found rule. Keys are relative to `system/`, e.g. `backups/<id>/manifest.json`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from stratmaster.errors import bad_input


def _check(key: str) -> str:
    if key.startswith("/") or ".." in key.split("/"):
        raise bad_input(f"bad system key {key!r}")
    return key


async def system_put(objects: Any, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    await objects.put_system(_check(key), data, content_type)
    return key


async def system_get(objects: Any, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return await objects.get_system(_check(key))
    except (FileNotFoundError, KeyError):
        return None
    except Exception as exc:  # adapters raise their client's not-found error
        if "NoSuchKey" in type(exc).__name__ or "NoSuchKey" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


async def system_list(objects: Any, prefix: str) -> list[str]:
    return sorted(await objects.list_system(_check(prefix)))


async def system_delete(objects: Any, key: str) -> None:
    await objects.delete_system(_check(key))


async def system_list_modified(objects: Any, prefix: str) -> list[tuple[str, datetime]]:
    """(key, last modified) under `prefix`, the time being the store's own record of
    the write (MinIO's Last-Modified, the file's mtime), never a field inside the
    object: what orders backups for the verify drill and retention."""
    return sorted(await objects.list_system_modified(_check(prefix)))
