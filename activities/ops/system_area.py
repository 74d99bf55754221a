"""The object store's `system/` area (backups, analytics exports).

Uses the object store's put_system/get_system/list_system/delete_system when it
has them; otherwise (an adapter without the system area yet) a directory under
the data dir, so operations still work on the embedded defaults.
Keys are relative to `system/`, e.g. `backups/<id>/manifest.json`.
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from stratmaster.errors import bad_input
from stratmaster.settings import Settings


def _check(key: str) -> str:
    if key.startswith("/") or ".." in key.split("/"):
        raise bad_input(f"bad system key {key!r}")
    return key


def _fallback_root(settings: Settings) -> Path:
    return settings.abs_data_dir / "system"


async def system_put(settings: Settings, objects, key: str, data: bytes,
                     content_type: str = "application/octet-stream") -> str:
    _check(key)
    if objects is not None and hasattr(objects, "put_system"):
        await objects.put_system(key, data, content_type)
        return key
    path = _fallback_root(settings) / key
    tmp = path.with_name(path.name + ".part")

    def write():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half an artefact
    await asyncio.to_thread(write)
    return key


async def system_get(settings: Settings, objects, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    _check(key)
    if objects is not None and hasattr(objects, "get_system"):
        try:
            return await objects.get_system(key)
        except (FileNotFoundError, KeyError):
            return None
        except Exception as exc:  # adapters raise their client's not-found error
            if "NoSuchKey" in type(exc).__name__ or "NoSuchKey" in str(exc) or "not found" in str(exc).lower():
                return None
            raise
    path = _fallback_root(settings) / key
    return await asyncio.to_thread(path.read_bytes) if path.exists() else None


async def system_list(settings: Settings, objects, prefix: str) -> list[str]:
    _check(prefix)
    if objects is not None and hasattr(objects, "list_system"):
        return sorted(await objects.list_system(prefix))
    root = _fallback_root(settings)
    base = root / prefix
    if not base.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file() and not p.name.endswith(".part"))


async def system_delete(settings: Settings, objects, key: str) -> None:
    _check(key)
    if objects is not None and hasattr(objects, "delete_system"):
        await objects.delete_system(key)
        return
    path = _fallback_root(settings) / key
    if path.exists():
        path.unlink()


async def system_list_modified(settings: Settings, objects, prefix: str) -> list[tuple[str, datetime]]:
    """(key, last modified) under `prefix`, the time being the store's own record of
    the write (MinIO's Last-Modified, the file's mtime), never a field inside the
    object: what orders backups for the verify drill and retention."""
    from datetime import datetime, timezone

    _check(prefix)
    if objects is not None and hasattr(objects, "list_system_modified"):
        return sorted(await objects.list_system_modified(prefix))
    root = _fallback_root(settings)
    base = root / prefix

    def run():
        if not base.exists():
            return []
        return sorted((str(p.relative_to(root)), datetime.fromtimestamp(p.stat().st_mtime, tz=timezone.utc))
                      for p in base.rglob("*") if p.is_file() and not p.name.endswith(".part"))
    return await asyncio.to_thread(run)
