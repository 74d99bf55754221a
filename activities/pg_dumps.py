"""PostgreSQL side of backup/restore.

Mission scope: every table with a `tenant_id` column is exported as CSV
(COPY ... WHERE tenant_id = ...), plus the mission's `tenants` row; restore
COPYs them back in foreign-key order. System scope: `pg_dump -Fc` with the
client binaries matching the server's major version.
"""
from __future__ import annotations

import asyncio
import csv
import glob
import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import asyncpg

from stratmaster.errors import ServiceUnavailable

TENANTS = "tenants"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def tenant_tables(conn: asyncpg.Connection) -> list[str]:
    """Public tables keyed by tenant_id, parents before children (FK order)."""
    names = [r["table_name"] for r in await conn.fetch(
        """SELECT c.table_name FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
           WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'
           ORDER BY c.table_name""")]
    deps = {n: set() for n in names}
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


async def import_table(conn: asyncpg.Connection, table: str, src: Path, schema: str = "public") -> int:
    with open(src, newline="") as fh:
        header = fh.readline().strip()
    cols = next(csv.reader([header])) if header else []
    status = await conn.copy_to_table(table, source=str(src), columns=cols, schema_name=schema,
                                      format="csv", header=True)
    return int(status.split()[-1])


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
