"""Analytics: DuckDB reads research metrics per mission from PostgreSQL (the
postgres extension, loaded from its PyPI package — nothing downloads at run
time) and exports them to Parquet, locally and into the object store."""
from __future__ import annotations

import asyncio
import pathlib
from pathlib import Path

from temporalio import activity

from activities.ops.system_area import system_put
from activities.resources import Resources
from stratmaster.contracts.maintenance import AnalyticsExportInput, AnalyticsExportResult, MissionMetrics, analytics_key
from stratmaster.errors import ServiceUnavailable, bad_input

QUERIES_DIR = Path(__file__).resolve().parents[2] / "infra" / "duckdb" / "queries"


def postgres_extension_file(duckdb_version: str) -> Path:
    """The postgres_scanner binary shipped by the duckdb-extension-postgres-scanner
    wheel for exactly this DuckDB version (extensions are ABI-bound to it)."""
    try:
        import duckdb_extension_postgres_scanner as pkg
    except ImportError as exc:
        raise ServiceUnavailable("DuckDB postgres extension missing: pip install duckdb-extension-postgres-scanner") from exc
    path = pathlib.Path(pkg.__file__).parent / "extensions" / duckdb_version / "postgres_scanner.duckdb_extension"
    if not path.exists():
        raise ServiceUnavailable(
            f"no postgres_scanner extension for DuckDB {duckdb_version} in {path.parent.parent}: "
            "pin duckdb and duckdb-extension-postgres-scanner to the same version")
    return path


def duckdb_connect(database_url: str):
    """In-memory DuckDB with PostgreSQL attached read-only as `pg`; extension
    auto-install/auto-load disabled so nothing is fetched from the network."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    row = con.sql("PRAGMA version").fetchone()
    if row is None:
        raise ServiceUnavailable("DuckDB reported no version")
    version = row[0]
    con.execute(f"LOAD '{postgres_extension_file(version)}'")
    con.execute(f"ATTACH '{_quote(database_url)}' AS pg (TYPE postgres, READ_ONLY)")
    return con, version


def _quote(value: str) -> str:
    return value.replace("'", "''")


def export_metrics(database_url: str, out: Path, missions: list[str]) -> tuple[list[MissionMetrics], str]:
    con, version = duckdb_connect(database_url)
    try:
        con.execute((QUERIES_DIR / "tenant_research_metrics.sql").read_text())
        where, params = "", []
        if missions:
            where = f"WHERE tenant_name IN ({', '.join('?' for _ in missions)})"
            params = list(missions)
        select = f"SELECT * FROM tenant_research_metrics {where} ORDER BY tenant_name"
        # Materialise once so the Parquet file and the returned rows are the same snapshot.
        con.execute(f"CREATE TEMP TABLE export AS {select}", params)
        out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY export TO '{_quote(str(out))}' (FORMAT PARQUET)")
        cols = [d[0] for d in con.execute("SELECT * FROM export").description]
        rows = [MissionMetrics(**dict(zip(cols, r))) for r in con.execute("SELECT * FROM export").fetchall()]
        return rows, version
    finally:
        con.close()


class AnalyticsActivities:
    def __init__(self, resources: Resources):
        self.resources = resources
        self.settings = resources.settings

    def _objects(self):
        return self.resources.stores.objects

    @activity.defn(name="export_research_metrics")
    async def export_research_metrics(self, req: AnalyticsExportInput) -> AnalyticsExportResult:
        export_id = req.export_id or activity.info().workflow_id
        if not export_id:  # an activity run outside a workflow must name its export
            raise bad_input("export_id is required outside a workflow")
        key = analytics_key(export_id)
        out = self.settings.abs_data_dir / "exports" / key
        rows, version = await asyncio.to_thread(export_metrics, self.settings.database_url, out, req.missions)
        await system_put(self._objects(), key, out.read_bytes(), "application/vnd.apache.parquet")
        return AnalyticsExportResult(export_id=export_id, parquet_path=str(out), object_key=f"system/{key}",
                                     rows=rows, duckdb_version=version)
