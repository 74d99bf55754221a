"""PostgreSQL side of backup/restore.

Mission scope: every mission table (MISSION_TABLES: the tables keyed by
`tenant_id` this code knows) is exported as CSV (COPY ... WHERE tenant_id = ...),
plus the mission's `tenants` row. Restore never trusts a backup's CSV: it COPYs
each file into a temporary staging table (PostgreSQL's own CSV parser, the very
rows that would be loaded), checks every row belongs to the mission (tenant_id,
mission column), that references stay inside the mission's backup, that keys are
unique and, for a live restore, not used by another mission (stage_mission); only
then are the staged rows inserted (insert_staged). System scope: `pg_dump -Fc`
with the client binaries matching the server's major version.
"""
from __future__ import annotations

import asyncio
import csv
import glob
import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import asyncpg

from stratmaster.errors import ServiceUnavailable

TENANTS = "tenants"
# The mission tables a backup holds and a restore may load: the only names a
# manifest may mention. tests/test_ops_units.py checks this (with NOT_BACKED_UP)
# matches the tables with a tenant_id column after the migrations: a new one must
# be added to one of the two.
MISSION_TABLES = frozenset({
    "documents", "chunks", "ingestion_failures", "research_sessions", "claims", "claim_evidence", "llm_usage",
    "mission_versions", "mission_history",
})
# Tenant-keyed tables deliberately left out of backups (derived data, rebuilt on
# demand); a restore with replace clears them with the rest of the mission.
NOT_BACKED_UP = frozenset({
    "research_cache",  # 070_research_cache.sql: answers cached per mission state
    # 080_sources.sql: a source names a directory on the workers or a bucket and its schedule lives in
    # Temporal (re-register it with `stratmaster sources add`); its manifest is rebuilt by the next sync
    # (restored documents then count as already indexed)
    "sources", "source_files",
    # 090_webhooks.sql: endpoints hold signing secrets, the delivery log is operational
    "webhook_endpoints", "webhook_deliveries",
})
MISSION_COLUMN = "mission"  # a column naming the mission (llm_usage): must match too
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
STAGE_PREFIX = "sm_stage_"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def tenant_tables(conn: asyncpg.Connection) -> list[str]:
    """Public tables keyed by tenant_id, parents before children (FK order)."""
    names = [r["table_name"] for r in await conn.fetch(
        """SELECT c.table_name FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
           WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'
           ORDER BY c.table_name""")]
    deps: dict[str, set[str]] = {n: set() for n in names}
    for r in await conn.fetch(
            """SELECT cl.relname AS child, pcl.relname AS parent FROM pg_constraint k
               JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_class pcl ON pcl.oid = k.confrelid
               JOIN pg_namespace n ON n.oid = cl.relnamespace
               WHERE k.contype = 'f' AND n.nspname = 'public'"""):
        if r["child"] in deps and r["parent"] in deps and r["child"] != r["parent"]:
            deps[r["child"]].add(r["parent"])
    ordered: list[str] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if not d - set(ordered))
        if not ready:  # FK cycle: keep the rest alphabetical
            ready = sorted(deps)
        for n in ready:
            ordered.append(n)
            deps.pop(n)
    return ordered


async def mission_tables(conn: asyncpg.Connection) -> tuple[list[str], list[str]]:
    """(mission tables in FK order, tenant-keyed tables this code does not know)."""
    found = await tenant_tables(conn)
    return ([t for t in found if t in MISSION_TABLES],
            [t for t in found if t not in MISSION_TABLES and t not in NOT_BACKED_UP])


async def copy_columns(conn: asyncpg.Connection, table: str, schema: str = "public") -> list[str]:
    """Insertable columns (generated columns cannot be COPYed in)."""
    return [r["column_name"] for r in await conn.fetch(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER'
           ORDER BY ordinal_position""", schema, table)]


async def export_table(conn: asyncpg.Connection, table: str, tenant_id, out: Path) -> int:
    cols = await copy_columns(conn, table)
    key = "id" if table == TENANTS else "tenant_id"
    order = ", ".join(_ident(c) for c in cols)  # stable output: same rows, same bytes
    status = await conn.copy_from_query(
        f"SELECT {', '.join(_ident(c) for c in cols)} FROM {_ident(table)} WHERE {key} = $1 ORDER BY {order}",
        tenant_id, output=str(out), format="csv", header=True)
    return int(status.split()[-1])


def read_header(path: Path) -> list[str]:
    """The CSV header's column names ([] when the file is empty)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return next(csv.reader(fh), [])


async def _unique_keys(conn: asyncpg.Connection, table: str) -> list[list[str]]:
    """Column lists of the table's unique indexes (primary key included; expression
    indexes left out)."""
    rows = await conn.fetch(
        """SELECT ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                        WHERE k.o <= i.indnkeyatts ORDER BY k.o) AS cols
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relname = $1 AND i.indisunique AND i.indexprs IS NULL
           ORDER BY i.indexrelid""", table)
    return [list(r["cols"]) for r in rows if r["cols"]]


async def _foreign_keys(conn: asyncpg.Connection, table: str) -> list[tuple[str, list[str], list[str]]]:
    """(parent table, columns, parent columns) of the table's foreign keys."""
    rows = await conn.fetch(
        """SELECT p.relname AS parent,
                  ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY x(n, o)
                        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.n ORDER BY x.o) AS cols,
                  ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY x(n, o)
                        JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.n ORDER BY x.o) AS pcols
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_class p ON p.oid = k.confrelid
           WHERE k.contype = 'f' AND n.nspname = 'public' AND c.relname = $1 ORDER BY k.conname""", table)
    return [(r["parent"], list(r["cols"]), list(r["pcols"])) for r in rows]


def _owner(table: str) -> str:
    return "id" if table == TENANTS else "tenant_id"


def _stage(table: str) -> str:
    return "pg_temp." + _ident(STAGE_PREFIX + table)


@dataclass
class Staged:
    """What stage_mission found. `problems`: the backup itself is wrong (corrupt or
    crafted); `clashes`: its keys are used by another mission in the live tables."""
    mission: str
    tenant_id: uuid.UUID | None = None
    tables: dict[str, list[str]] = field(default_factory=dict)  # staged table -> its columns, load order
    problems: list[str] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)
    owners: list[uuid.UUID] = field(default_factory=list)  # live tenant ids a restore replaces


async def stage_mission(conn: asyncpg.Connection, mission: str, files: dict[str, Path], tables: list[str], *,
                        live: bool) -> Staged:
    """COPY one mission's CSV files into temporary staging tables and check every
    row. Call inside a transaction: roll it back to only check, or insert_staged
    then commit (the staging tables drop at commit). `tables`: the live mission
    tables in FK order; `files`: table -> CSV (tenants included). `live`: the rows
    go into the live tables, so keys another mission uses now are clashes."""
    out = Staged(mission=mission)
    where = f"mission {mission!r}"
    for name in files:
        if name != TENANTS and name not in tables:
            out.problems.append(f"{where}: {name!r} is not a mission table")
    if TENANTS not in files:
        out.problems.append(f"{where}: no tenants row in the backup")
        return out
    for table in [TENANTS, *[t for t in tables if t in files]]:
        try:
            cols = read_header(files[table])
        except csv.Error as exc:
            out.problems.append(f"{where}: {table}.csv has an unreadable header: {exc}")
            continue
        live_cols = set(await copy_columns(conn, table))
        bad = [c for c in cols if not _COLUMN.fullmatch(c) or c not in live_cols]
        if not cols or bad or len(set(cols)) != len(cols) or _owner(table) not in cols \
                or (table == TENANTS and "name" not in cols):
            out.problems.append(f"{where}: {table}.csv has a bad header {clip_list(cols)}"
                                + (f" (unknown columns {clip_list(bad)})" if bad else ""))
            continue
        try:
            async with conn.transaction():  # a savepoint: one bad file does not abort the rest
                await conn.execute(f"DROP TABLE IF EXISTS {_stage(table)}")
                await conn.execute(f"CREATE TEMP TABLE {_ident(STAGE_PREFIX + table)} (LIKE public.{_ident(table)} "
                                   "INCLUDING DEFAULTS INCLUDING CONSTRAINTS) ON COMMIT DROP")
                await conn.copy_to_table(STAGE_PREFIX + table, source=str(files[table]), columns=cols,
                                         schema_name="pg_temp", format="csv", header=True)
        except (asyncpg.PostgresError, UnicodeError) as exc:
            out.problems.append(f"{where}: {table}.csv cannot be loaded: {str(exc).splitlines()[0][:300]}")
            continue
        out.tables[table] = cols
    if TENANTS not in out.tables:
        return out

    rows = await conn.fetch(f"SELECT id, name FROM {_stage(TENANTS)} LIMIT 2")
    if len(rows) != 1 or rows[0]["name"] != mission:
        out.problems.append(f"{where}: tenants.csv must hold exactly this mission's row, found "
                            f"{clip_list([r['name'] for r in rows])}")
        return out
    tid = out.tenant_id = rows[0]["id"]

    for table, cols in out.tables.items():
        if table == TENANTS:
            continue
        for r in await conn.fetch(f"SELECT tenant_id::text AS t, COUNT(*) AS n FROM {_stage(table)} "
                                  "WHERE tenant_id IS DISTINCT FROM $1 GROUP BY 1 ORDER BY 2 DESC LIMIT 3", tid):
            out.problems.append(f"{where}: {table}.csv has {r['n']} row(s) of another mission (tenant_id {r['t']}, "
                                f"the mission's is {tid})")
        if MISSION_COLUMN in cols:
            n = await conn.fetchval(f"SELECT COUNT(*) FROM {_stage(table)} WHERE {_ident(MISSION_COLUMN)} IS NOT NULL "
                                    f"AND {_ident(MISSION_COLUMN)} <> $1", mission)
            if n:
                out.problems.append(f"{where}: {table}.csv has {n} row(s) naming another mission in column "
                                    f"{MISSION_COLUMN!r}")

    for table in out.tables:
        # references stay inside the mission's own backup
        for parent, fcols, pcols in await _foreign_keys(conn, table):
            if parent != TENANTS and parent not in MISSION_TABLES:
                continue  # a shared table: the real foreign key checks it on insert
            notnull = " AND ".join(f"c.{_ident(c)} IS NOT NULL" for c in fcols)
            if parent in out.tables:
                match = " AND ".join(f"p.{_ident(pc)} = c.{_ident(fc)}" for fc, pc in zip(fcols, pcols))
                missing = f"NOT EXISTS (SELECT 1 FROM {_stage(parent)} p WHERE {match})"
            else:
                missing = "TRUE"
            n = await conn.fetchval(f"SELECT COUNT(*) FROM {_stage(table)} c WHERE {notnull} AND {missing}")
            if n:
                out.problems.append(f"{where}: {table}.csv has {n} row(s) whose {clip_list(fcols)} reference "
                                    f"{parent} rows outside this mission's backup")
        for key in await _unique_keys(conn, table):
            if not set(key) <= set(out.tables[table]):
                continue
            cols_sql = ", ".join(_ident(c) for c in key)
            notnull = " AND ".join(f"{_ident(c)} IS NOT NULL" for c in key)
            n = await conn.fetchval(f"SELECT COUNT(*) FROM (SELECT 1 FROM {_stage(table)} WHERE {notnull} "
                                    f"GROUP BY {cols_sql} HAVING COUNT(*) > 1) d")
            if n:
                out.problems.append(f"{where}: {table}.csv repeats {n} value(s) of unique key {clip_list(key)}")

    if live:
        # the rows a restore replaces: the backup's mission id (unless another mission has it now)
        # and the live mission of that name
        owner = await conn.fetchval("SELECT name FROM public.tenants WHERE id = $1", tid)
        current = await conn.fetchval("SELECT id FROM public.tenants WHERE name = $1", mission)
        if owner not in (None, mission):
            out.clashes.append(f"{where}: its mission id {tid} belongs to mission {owner!r} now")
        out.owners = [t for t in {tid if owner in (None, mission) else None, current} if t is not None]
        for table in out.tables:
            for key in await _unique_keys(conn, table):
                if not set(key) <= set(out.tables[table]):
                    continue
                match = " AND ".join(f"x.{_ident(c)} = s.{_ident(c)}" for c in key)
                n = await conn.fetchval(
                    f"SELECT COUNT(*) FROM public.{_ident(table)} x JOIN {_stage(table)} s ON {match} "
                    f"WHERE COALESCE(x.{_ident(_owner(table))} <> ALL($1::uuid[]), TRUE)", out.owners)
                if n:
                    out.clashes.append(f"{where}: {n} {table} row(s) of the backup have the {clip_list(key)} of "
                                       "another mission's rows")
    return out


async def insert_staged(conn: asyncpg.Connection, staged: Staged, schema: str = "public") -> dict[str, int]:
    """Insert the checked staging rows into `schema` in FK order; rows per table."""
    counts = {}
    for table, cols in staged.tables.items():
        names = ", ".join(_ident(c) for c in cols)
        status = await conn.execute(f"INSERT INTO {_ident(schema)}.{_ident(table)} ({names}) "
                                    f"SELECT {names} FROM {_stage(table)}")
        counts[table] = int(status.split()[-1])
    return counts


def clip_list(items, limit: int = 5) -> str:
    items = [str(i)[:60] for i in items]
    return "[" + ", ".join(items[:limit]) + (f", +{len(items) - limit} more" if len(items) > limit else "") + "]"


async def tenant_row_counts(conn: asyncpg.Connection, tables: list[str], tenant_id, schema: str = "public") -> dict[str, int]:
    counts = {}
    for t in tables:
        counts[t] = await conn.fetchval(
            f"SELECT COUNT(*) FROM {_ident(schema)}.{_ident(t)} WHERE tenant_id = $1", tenant_id)
    return counts


async def delete_tenant_rows(conn: asyncpg.Connection, tables: list[str], tenant_id) -> None:
    for t in reversed(tables):
        await conn.execute(f"DELETE FROM {_ident(t)} WHERE tenant_id = $1", tenant_id)
    await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)


async def create_scratch_schema(conn: asyncpg.Connection, schema: str, tables: list[str]) -> None:
    """Column-only copies of the live tables (no constraints): a drill restores the
    same primary keys next to the live rows without touching them."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
    for t in [TENANTS, *tables]:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {_ident(schema)}.{_ident(t)} (LIKE public.{_ident(t)})")


async def drop_scratch_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {_ident(schema)} CASCADE")


# ---------------------------------------------------------------- pg_dump / pg_restore

def client_bindir(server_version_num: int) -> Path:
    """Debian's client binaries for the server's major version (pg_dump refuses
    servers newer than itself; an older server is fine)."""
    major = server_version_num // 10000
    exact = Path(f"/usr/lib/postgresql/{major}/bin")
    if (exact / "pg_dump").exists():
        return exact
    for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=lambda p: int(Path(p).parent.parent.name)
                    if Path(p).parent.parent.name.isdigit() else 0):
        ver = Path(p).parent.parent.name
        if ver.isdigit() and int(ver) >= major:
            return Path(p).parent
    raise ServiceUnavailable(f"no pg_dump for PostgreSQL {major}: install Debian's postgresql-client-{major}")


def _libpq_env(dsn: str) -> dict:
    env = dict(os.environ)
    u = urlparse(dsn)
    if u.password:
        env["PGPASSWORD"] = u.password
    return env


def _dsn_without_password(dsn: str) -> str:
    u = urlparse(dsn)
    if not u.password:
        return dsn
    netloc = (u.username or "") + "@" + (u.hostname or "") + (f":{u.port}" if u.port else "")
    return u._replace(netloc=netloc).geturl()


async def pg_dump(dsn: str, server_version_num: int, out: Path, heartbeat) -> None:
    args = [str(client_bindir(server_version_num) / "pg_dump"), "-Fc", "--no-owner", "-f", str(out),
            "-d", _dsn_without_password(dsn)]
    await _run(args, dsn, heartbeat)


async def pg_restore(dsn: str, server_version_num: int, src: Path, heartbeat, clean: bool) -> None:
    args = [str(client_bindir(server_version_num) / "pg_restore"), "--no-owner", "--exit-on-error",
            "-d", _dsn_without_password(dsn)]
    if clean:
        args[1:1] = ["--clean", "--if-exists"]
    args.append(str(src))
    await _run(args, dsn, heartbeat)


async def pg_restore_list(dsn: str, server_version_num: int, src: Path) -> str:
    res = await asyncio.to_thread(subprocess.run, [str(client_bindir(server_version_num) / "pg_restore"), "-l", str(src)],
                                  capture_output=True, text=True)
    if res.returncode != 0:
        raise ValueError(f"not a pg_dump archive: {res.stderr.strip()}")
    return res.stdout


async def _run(args: list[str], dsn: str, heartbeat) -> None:
    proc = await asyncio.create_subprocess_exec(*args, env=_libpq_env(dsn),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    waiter = asyncio.ensure_future(proc.communicate())
    while not waiter.done():
        heartbeat(Path(args[0]).name)
        await asyncio.wait([waiter], timeout=5)
    _, err = waiter.result()
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({proc.returncode}): {err.decode(errors='replace').strip()[:2000]}")
