"""Scheduled maintenance: VACUUM (ANALYZE) + table statistics, index
optimisation, retention from the missions' cartridges, capacity report."""
from __future__ import annotations

import asyncio
import sqlite3

from temporalio import activity

from activities.heartbeat import keep_alive
from activities.ops import pg_dumps
from activities.resources import ActivityResources
from activities.ops.retention import enforce_retention, expire_documents
from stratmaster.contracts.maintenance import (
    CapacityReport, Empty, ExpireDocumentsInput, ExpireDocumentsResult, MissionCapacity, OptimiseReport,
    RetentionInput, RetentionReport, TableStats, VacuumReport,
)


class MaintenanceActivities(ActivityResources):
    async def _missions(self) -> list[str]:
        return [r["name"] for r in await (await self.pool()).fetch("SELECT name FROM tenants ORDER BY name")]

    @activity.defn(name="vacuum_analyze")
    async def vacuum_analyze(self, _: Empty) -> VacuumReport:
        """VACUUM (ANALYZE) every public table (outside a transaction, one at a
        time so autovacuum and traffic keep their share), then pg_stat_user_tables."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            tables = [r["relname"] for r in await conn.fetch(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname")]
            for t in tables:
                async with keep_alive(f"vacuum {t}"):
                    await conn.execute(f'VACUUM (ANALYZE) "{t}"')
            # the statistics collector reports asynchronously; take a fresh snapshot
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = await conn.fetch(
                """SELECT relname, n_live_tup, n_dead_tup, seq_scan, COALESCE(idx_scan, 0) AS idx_scan,
                          GREATEST(last_vacuum, last_autovacuum) AS last_vacuum,
                          GREATEST(last_analyze, last_autoanalyze) AS last_analyze,
                          pg_total_relation_size(relid) AS total_bytes
                   FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname""")
        return VacuumReport(tables=tables, stats=[TableStats(
            table=r["relname"], live_rows=r["n_live_tup"], dead_rows=r["n_dead_tup"], seq_scans=r["seq_scan"],
            index_scans=r["idx_scan"], last_vacuum=r["last_vacuum"], last_analyze=r["last_analyze"],
            total_bytes=r["total_bytes"]) for r in rows])

    def _optimise_fts5_file(self, mission: str) -> str:
        """FTS5 'optimize' merges the index b-trees into one (faster BM25 queries)."""
        path = self.settings.abs_data_dir / "fulltext" / f"{mission}.db"
        if not path.exists():
            return "no-op: no index"
        con = sqlite3.connect(path, timeout=30)
        try:
            tables = [r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%USING fts5%'")]
            for t in tables:
                con.execute(f"INSERT INTO \"{t}\"(\"{t}\") VALUES('optimize')")
            con.commit()
            return f"optimized ({', '.join(tables)})" if tables else "no-op: no FTS5 table"
        finally:
            con.close()

    async def _optimise(self, store, mission: str, fallback) -> str:
        hook = getattr(store, "optimize", None)
        if hook is not None:
            return str(await hook(mission) or "optimized")
        return await fallback(mission)

    @activity.defn(name="optimise_indexes")
    async def optimise_indexes(self, _: Empty) -> OptimiseReport:
        actions: dict[str, dict[str, str]] = {}
        local_fts = not self.settings.opensearch_url  # the SQLite FTS5 engine (tantivy has its optimize hook)

        async def fts(mission: str) -> str:
            if local_fts:
                return await asyncio.to_thread(self._optimise_fts5_file, mission)
            return "no-op: OpenSearch merges segments itself (force-merge is for read-only indexes)"

        async def vectors(mission: str) -> str:  # pgvector's store vacuums through its optimize hook
            if self.settings.qdrant_url:
                return "no-op: Qdrant server optimizers run continuously on their own thresholds"
            return "no-op: Qdrant local mode has no optimizer (points live in one in-process segment)"

        async def graph(mission: str) -> str:
            return "no-op: the graph store has nothing to compact"

        for mission in await self._missions():
            async with keep_alive(f"optimise {mission}"):
                actions[mission] = {
                    "fulltext": await self._optimise(self.stores.fulltext, mission, fts),
                    "vectors": await self._optimise(self.stores.vectors, mission, vectors),
                    "graph": await self._optimise(self.stores.graph, mission, graph),
                }
        return OptimiseReport(actions=actions)

    @activity.defn(name="enforce_retention")
    async def enforce_retention(self, req: RetentionInput) -> RetentionReport:
        return await enforce_retention(self.settings, await self.pool(), self.stores, req.now, activity.heartbeat)

    @activity.defn(name="expire_documents")
    async def expire_documents(self, req: ExpireDocumentsInput) -> ExpireDocumentsResult:
        """documents_days: one bounded batch of expired documents out of every store."""
        return await expire_documents(await self.pool(), self.stores, req.now, req.limit, activity.heartbeat)

    @activity.defn(name="capacity_report")
    async def capacity_report(self, req: RetentionInput) -> CapacityReport:
        pool = await self.pool()
        out = []
        async with pool.acquire() as conn:
            tables = await pg_dumps.tenant_tables(conn)
            tenants = await conn.fetch("SELECT id, name FROM tenants ORDER BY name")
            db_bytes = await conn.fetchval("SELECT pg_database_size(current_database())")
            for t in tenants:
                async with keep_alive(f"capacity {t['name']}"):
                    out.append(await self._mission_capacity(conn, tables, t["id"], t["name"]))
        return CapacityReport(generated_at=req.now, missions=out, database_bytes=db_bytes)

    async def _mission_capacity(self, conn, tables: list[str], tenant_id, mission: str) -> MissionCapacity:
        rows = await pg_dumps.tenant_row_counts(conn, tables, tenant_id)
        # sizes from the listing: nothing is read, and a key a mission's own MinIO user
        # wrote that `get` would refuse cannot fail the report of every mission
        sizes = await self.stores.objects.sizes(mission)
        entities, relations = await self.stores.graph.count(mission)
        return MissionCapacity(
            mission=mission, rows=rows, vectors=await self.stores.vectors.count(mission),
            index_docs=await self.stores.fulltext.count(mission), graph_entities=entities,
            graph_relations=relations, objects=len(sizes), object_bytes=sum(sizes.values()))

    def all(self) -> list:
        return [self.vacuum_analyze, self.optimise_indexes, self.enforce_retention, self.expire_documents,
                self.capacity_report]

