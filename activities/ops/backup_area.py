"""What backup, restore and the restore drill share: the layout of a backup in the object
store and the checked reads of it.

A backup is a folder `system/backups/<backup_id>/` in the object store:
  postgres/<mission>/<table>.csv   mission tables (pg_dumps.MISSION_TABLES): that mission's rows
  postgres/stratmaster.dump        system scope: pg_dump -Fc
  stores/<mission>/{vectors,fulltext,graph}.<jsonl|bin>   the stores' dump hooks
  objects/<mission>/<sha256 of key>  the mission's objects (key in the manifest's source_key)
  parts/<mission|_system>/<step>.json  what each step wrote (BackupPart)
  manifest.json                    written last, from the parts: size + sha256 of every artefact

The activities live in activities/ops/backup.py (writing and listing backups),
activities/ops/restore.py (validating and restoring one) and activities/ops/restore_drill.py
(the checks of VerifyBackupWorkflow's drill); each class derives from BackupArea here.

Activities return summaries, never artefact lists: a payload stays small whatever
the number of missions, tables or objects (the manifest in the object store has
everything). Every activity is idempotent (deterministic artefact names, upserting
loads, restores in one transaction) and heartbeats while it copies.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from activities.ops.backup_checks import manifest_problems
from activities.ops.system_area import system_get
from activities.resources import ActivityResources
from stratmaster.contracts.maintenance import BACKUP_ID, Artefact, Manifest, backup_dir, clip
from stratmaster.errors import CORRUPT_BACKUP, bad_input

TARGET_NOT_EMPTY = "TargetNotEmpty"
MAX_REPORTED = 10  # problems named in one error message


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def show_value(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def problems_text(problems: list[str]) -> str:
    return clip("; ".join(problems[:MAX_REPORTED]) + (f" (+{len(problems) - MAX_REPORTED} more)"
                                                     if len(problems) > MAX_REPORTED else ""), 2000)


class BackupArea(ActivityResources):
    """The plumbing of the backup activities: the stores, a scratch directory, the checked
    reads of artefacts and of the manifest."""
    _manifest_cache: tuple[str, str, Manifest] | None = None  # (backup id, sha256, checked manifest)

    def _store(self, kind: str):
        return getattr(self.stores, kind)  # vectors | fulltext | graph

    def _workdir(self, backup_id: str) -> Path:
        d = self.settings.abs_data_dir / "tmp" / "backups" / backup_id / uuid.uuid4().hex[:8]
        d.mkdir(parents=True, exist_ok=True)
        return d
    async def _get_checked(self, backup_id: str, art: Artefact) -> tuple[bytes, str | None]:
        """(the artefact's bytes, None), or (b"", what is wrong with it)."""
        data = await system_get(self.stores.objects, backup_dir(backup_id) + art.name)
        if data is None:
            return b"", f"{art.name}: missing"
        if len(data) != art.size:
            return b"", f"{art.name}: size {len(data)} != {art.size}"
        if sha256_hex(data) != art.sha256:
            return b"", f"{art.name}: sha256 mismatch"
        return data, None

    async def _fetch(self, backup_id: str, art: Artefact) -> bytes:
        data, problem = await self._get_checked(backup_id, art)
        if problem:
            raise bad_input(f"backup {backup_id}: artefact {problem}", CORRUPT_BACKUP)
        return data

    async def _read_manifest(self, backup_id: str) -> tuple[bytes, Manifest]:
        if not re.fullmatch(BACKUP_ID, backup_id or ""):
            raise bad_input(f"bad backup id {show_value(backup_id)}")
        raw = await system_get(self.stores.objects, backup_dir(backup_id) + "manifest.json")
        if raw is None:
            raise bad_input(f"backup {backup_id}: manifest.json not found (incomplete or unknown backup)",
                            CORRUPT_BACKUP)
        try:
            return raw, Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise bad_input(f"backup {backup_id}: manifest.json is not a valid manifest: {clip(str(exc), 600)}",
                            CORRUPT_BACKUP)

    async def _manifest(self, backup_id: str, expect_sha256: str | None = None) -> Manifest:
        """The manifest, checked; with `expect_sha256`, only the very manifest
        validate_backup checked (a manifest swapped since is refused)."""
        raw = await system_get(self.stores.objects, backup_dir(backup_id) + "manifest.json") \
            if re.fullmatch(BACKUP_ID, backup_id or "") else None
        sha = sha256_hex(raw) if raw is not None else None
        if expect_sha256 and sha != expect_sha256:
            raise bad_input(f"backup {backup_id}: manifest.json changed since it was validated", CORRUPT_BACKUP)
        cached = self._manifest_cache
        if cached and cached[0] == backup_id and cached[1] == sha:
            return cached[2]
        raw, manifest = await self._read_manifest(backup_id)
        problems = manifest_problems(manifest, backup_id)
        if problems:
            raise bad_input(f"backup {backup_id} is corrupt, nothing restored: {problems_text(problems)}",
                            CORRUPT_BACKUP)
        self._manifest_cache = (backup_id, sha256_hex(raw), manifest)
        return manifest

    async def _tenant_id(self, conn, mission: str, schema: str = "public"):
        return await conn.fetchval(f'SELECT id FROM "{schema}".tenants WHERE name = $1', mission)

    async def _store_counts(self, kind: str, mission: str) -> dict[str, int]:
        if kind == "vectors":
            return {"vectors": await self.stores.vectors.count(mission)}
        if kind == "fulltext":
            return {"fulltext_docs": await self.stores.fulltext.count(mission)}
        entities, relations = await self.stores.graph.count(mission)
        return {"graph_entities": entities, "graph_relations": relations}

    async def _wipe_stores(self, mission: str) -> None:
        await self.stores.vectors.drop(mission)
        await self.stores.fulltext.drop(mission)
        await self.stores.graph.drop(mission)
        await self.stores.objects.delete_mission(mission)
