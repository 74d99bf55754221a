"""AnalyticsExportWorkflow: DuckDB (postgres extension from its PyPI package, no
runtime download) reads research metrics from the real PostgreSQL and writes
Parquet; the Parquet is read back and checked against SQL run on PostgreSQL."""
from __future__ import annotations

import math
import uuid

import asyncpg
import duckdb
import pytest

from activities.ops.analytics import duckdb_connect
from activities.stores.factory import build_stores
from stratmaster import queues
from stratmaster.contracts.maintenance import AnalyticsExportInput
from tests.ops_support import maintenance_worker, new_mission, replay_histories, seed_mission
from workflows.maintenance import AnalyticsExportWorkflow

EXPECTED_SQL = """
SELECT t.name,
       (SELECT COUNT(*) FROM research_sessions rs WHERE rs.tenant_id = t.id) AS total_sessions,
       (SELECT COUNT(*) FROM research_sessions rs WHERE rs.tenant_id = t.id AND completed_at IS NOT NULL) AS completed,
       (SELECT AVG(EXTRACT(EPOCH FROM (completed_at - created_at)) / 60.0) FROM research_sessions rs
         WHERE rs.tenant_id = t.id AND completed_at IS NOT NULL)::float8 AS avg_minutes,
       (SELECT COUNT(*) FROM claims c JOIN research_sessions rs ON rs.id = c.session_id WHERE rs.tenant_id = t.id) AS claims,
       (SELECT AVG(c.confidence) FROM claims c JOIN research_sessions rs ON rs.id = c.session_id
         WHERE rs.tenant_id = t.id)::float8 AS avg_conf,
       (SELECT COUNT(*) FROM claims c JOIN research_sessions rs ON rs.id = c.session_id
         WHERE rs.tenant_id = t.id AND c.flagged) AS flagged
FROM tenants t WHERE t.name = ANY($1::text[]) ORDER BY t.name
"""


def _close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9))


async def test_export_research_metrics_to_parquet_matches_sql(client, settings):
    stores = build_stores(settings)
    busy, idle = new_mission("ana"), new_mission("ana")
    await seed_mission(settings, stores, busy, docs=1, sessions=3)
    await seed_mission(settings, stores, idle, docs=1, sessions=0)
    conn = await asyncpg.connect(settings.database_url)
    try:  # a running session (no completed_at) and a flagged claim: the seed view miscounted both
        tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", busy)
        sid = await conn.fetchval("INSERT INTO research_sessions (tenant_id, query, created_at) VALUES ($1, 'open', NOW()) "
                                  "RETURNING id", tid)
        await conn.execute("INSERT INTO claims (session_id, tenant_id, text, confidence, flagged) "
                           "VALUES ($1, $2, 'x', 0.95, TRUE)", sid, tid)
        expected = await conn.fetch(EXPECTED_SQL, [busy, idle])
    finally:
        await conn.close()

    export_id = f"t-{uuid.uuid4().hex[:8]}"
    async with maintenance_worker(client, settings, stores):
        result = await client.execute_workflow(
            AnalyticsExportWorkflow.run, AnalyticsExportInput(export_id=export_id, missions=[busy, idle]),
            id=f"analytics-{export_id}", task_queue=queues.MAINTENANCE)
    assert result.duckdb_version == "v" + duckdb.__version__

    rows = duckdb.connect().execute(
        f"SELECT * FROM read_parquet('{result.parquet_path}') ORDER BY tenant_name").fetchall()
    # mission names are random: both sides are ordered by name
    assert [r[0] for r in rows] == sorted([busy, idle]) == [r["name"] for r in expected]
    for got, want in zip(rows, expected):
        name, total, completed, minutes, claims, conf, flagged = got
        assert (total, completed, claims, flagged) == (want["total_sessions"], want["completed"], want["claims"],
                                                      want["flagged"])
        assert _close(minutes, want["avg_minutes"]) and _close(conf, want["avg_conf"])
    by_name = {r[0]: r for r in rows}
    assert by_name[busy][1:3] == (4, 3) and by_name[busy][4] == 7 and by_name[busy][6] == 1  # 3 done + 1 open; 6 + 1 claims
    assert by_name[idle][1] == 0 and by_name[idle][3] is None  # idle mission listed with zeros
    # the same numbers came back in the workflow result, and the file is in the object store
    assert [(m.tenant_name, m.total_sessions, m.total_claims) for m in result.rows] == [(r[0], r[1], r[4]) for r in rows]
    assert result.object_key == f"system/analytics/{export_id}/tenant_research_metrics.parquet"
    stored = await stores.objects.get_system(f"analytics/{export_id}/tenant_research_metrics.parquet")
    assert stored[:4] == b"PAR1"

    import workers.maintenance

    spec = await workers.maintenance.build(settings, stores)
    assert await replay_histories(client, spec.workflows, ["AnalyticsExportWorkflow"]) >= 1


def test_duckdb_never_downloads_extensions(settings):
    con, version = duckdb_connect(settings.database_url)
    try:
        settings_rows = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
        assert settings_rows == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
        # an extension that is not shipped by a PyPI package fails instead of downloading
        with pytest.raises(duckdb.Error):
            con.execute("LOAD httpfs")
        assert con.execute("SELECT COUNT(*) FROM pg.public.tenants").fetchone()[0] >= 0
    finally:
        con.close()
