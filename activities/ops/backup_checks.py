"""What a restore checks in a backup before it touches anything (pure functions;
the PostgreSQL rows are checked by pg_dumps.stage_mission).

A manifest is data from the object store, not something this code wrote: every
name in it is checked against what the backup code would have written.
  missions      valid mission ids, no repeats (one for a mission-scope backup)
  tables        only MISSION_TABLES (pg_dumps): never any other public table
  artefacts     a known kind, a sha256, and exactly the name the backup derives
                from (kind, mission, table | key):
                  postgres/<mission>/<table>.csv   postgres/stratmaster.dump
                  stores/<mission>/<kind>.<jsonl|bin>
                  objects/<mission>/<sha256 of the key>  (format 1: objects/<mission>/<key>)
                names are also checked against SAFE_NAME (no '..', no separators
                inside a segment), object keys against the object stores' own rule
                (objects_fs.mission_key_problem), so restore never builds a path or
                key from an unchecked string
  store dumps   JSON lines of the shape the stores' load hooks take
"""
from __future__ import annotations

import hashlib
import json
import re

from pydantic import ValidationError

from activities.ops.pg_dumps import MISSION_TABLES, TENANTS
from activities.stores.base import parse_graph_dump
from activities.stores.objects_fs import key_problem, mission_key_problem
from stratmaster.contracts.common import validate_mission_id
from stratmaster.contracts.knowledge import Chunk
from stratmaster.contracts.maintenance import MANIFEST_FORMAT, Artefact, Manifest
from temporalio.exceptions import ApplicationError

STORE_KINDS = ("vectors", "fulltext", "graph")
KINDS = frozenset({"postgres-table", "postgres-dump", "object", *STORE_KINDS})
SAFE_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}"
SAFE_NAME = re.compile(rf"^{SAFE_SEGMENT}(/{SAFE_SEGMENT}){{0,4}}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DUMP_NAME = "postgres/stratmaster.dump"


def object_artefact_name(mission: str, key: str) -> str:
    """An object's artefact name: the key's sha256, so any key the object store
    accepts gives a short, safe name (the key itself is kept in source_key)."""
    return f"objects/{mission}/{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def table_artefact_name(mission: str, table: str) -> str:
    return f"postgres/{mission}/{table}.csv"


def store_artefact_name(mission: str, kind: str, fmt: str) -> str:
    return f"stores/{mission}/{kind}.{'jsonl' if fmt == 'jsonl' else 'bin'}"


def _show(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _artefact_problem(art: Artefact, scope: str, missions: set[str]) -> str | None:
    what = f"artefact {_show(art.name)}"
    if art.kind not in KINDS:
        return f"{what}: unknown kind {_show(art.kind)}"
    if art.size < 0 or not _SHA256.fullmatch(art.sha256):
        return f"{what}: bad size or sha256"
    if art.kind == "postgres-dump":
        if scope != "system" or art.mission is not None or art.name != DUMP_NAME or art.format != "pg_dump":
            return f"{what}: a pg_dump must be {DUMP_NAME!r} of a system backup"
        return None
    if art.mission not in missions:
        return f"{what}: mission {_show(art.mission)} is not one of the backup's missions"
    if art.kind == "postgres-table":
        table = art.source_key
        if table != TENANTS and table not in MISSION_TABLES:
            return f"{what}: table {_show(table)} is not a mission table"
        expected = table_artefact_name(art.mission, table)
        if art.name != expected or art.format != "csv":
            return f"{what}: the rows of table {table} must be {expected!r} (csv)"
    elif art.kind in STORE_KINDS:
        if art.format not in ("jsonl", "raw"):
            return f"{what}: unknown format {_show(art.format)}"
        expected = store_artefact_name(art.mission, art.kind, art.format)
        if art.name != expected:
            return f"{what}: a {art.kind} dump must be {expected!r}"
    else:  # object
        key = art.source_key
        problem = mission_key_problem(key)
        if problem or key is None:  # (a None key is a problem)
            return f"{what}: {problem}"
        legacy = f"objects/{art.mission}/{key}"
        if art.name == legacy:
            return key_problem(art.name, "artefact name")  # format 1 named objects by their key
        expected = object_artefact_name(art.mission, key)
        if art.name != expected:
            return f"{what}: the object {_show(art.source_key)} must be {expected!r}"
        return None
    if not SAFE_NAME.fullmatch(art.name):
        return f"{what}: not a safe name"
    return None


def manifest_problems(manifest: Manifest, backup_id: str) -> list[str]:
    """Everything wrong with the manifest's names and structure (empty: fine)."""
    problems: list[str] = []
    if manifest.backup_id != backup_id:
        problems.append(f"the manifest names backup {_show(manifest.backup_id)}")
    if manifest.format not in (1, MANIFEST_FORMAT):
        problems.append(f"unknown manifest format {manifest.format}")
    if manifest.scope not in ("mission", "system"):
        problems.append(f"unknown scope {_show(manifest.scope)}")
    missions: set[str] = set()
    for m in manifest.missions:
        try:
            validate_mission_id(m)
        except (ValueError, TypeError):
            problems.append(f"bad mission id {_show(m)}")
            continue
        if m in missions:
            problems.append(f"mission {m!r} listed twice")
        missions.add(m)
    if manifest.scope == "mission" and len(manifest.missions) != 1:
        problems.append("a mission backup must hold exactly one mission")
    for t in manifest.tables:
        if t not in MISSION_TABLES:
            problems.append(f"table {_show(t)} is not a mission table")
    for m in manifest.counts:
        if m not in missions:
            problems.append(f"counts for {_show(m)}, which is not one of the backup's missions")
    names: set[str] = set()
    slots: set[tuple] = set()
    tenants_rows: set[str] = set()
    for art in manifest.artefacts:
        problem = _artefact_problem(art, manifest.scope, missions)
        if problem:
            problems.append(problem)
            continue
        slot = (art.kind, art.mission, art.source_key if art.kind in ("postgres-table", "object") else None)
        if art.name in names or slot in slots:
            problems.append(f"artefact {_show(art.name)} listed twice")
        names.add(art.name)
        slots.add(slot)
        if art.kind == "postgres-table" and art.source_key == TENANTS and art.mission is not None:
            tenants_rows.add(art.mission)  # (checked above: one of the backup's missions)
    for m in sorted(missions - tenants_rows):
        problems.append(f"mission {m!r} has no tenants row in the backup")
    return problems


def store_payload_problem(kind: str, payload: bytes, fmt: str) -> str | None:
    """Whether a store dump has the shape the stores' load hooks take (checked
    before the restore wipes anything, so a bad dump cannot fail half-way)."""
    if fmt == "raw":
        return None  # an opaque snapshot of the store's own: its load hook judges it
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            return f"line {i} is not JSON"
        if not isinstance(row, dict):
            return f"line {i} is not a JSON object"
        rows.append(row)
    try:
        if kind == "fulltext":
            for row in rows:
                Chunk.model_validate(row)
        elif kind == "graph":
            parse_graph_dump(rows)
        elif kind == "vectors":
            dims = set()
            for row in rows:
                vec = row.get("vector")
                if not isinstance(row.get("id"), (str, int)) or not isinstance(vec, list) or not vec \
                        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec) \
                        or not isinstance(row.get("payload", {}), (dict, type(None))):
                    return f"vector row {_show(row.get('id'))} is not {{id, vector, payload}}"
                dims.add(len(vec))
            if len(dims) > 1:
                return "vector rows have mixed dimensions"
    except (ValidationError, ApplicationError) as exc:
        return str(exc).splitlines()[0][:200]
    return None
