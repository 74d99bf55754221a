"""Mission lifecycle activities: validate a cartridge, provision the mission's
namespace in every store step by step (each step has an undo for the saga),
record the active version, deactivate with retention, purge, list/show/export.

Every write records an audit_log row in the same activity; rows carry an
op_key (workflow run + activity id) so an activity retry never adds a second.
Undo steps only remove what the activation created: the stores of a mission
that existed before the run are never dropped.
"""
from __future__ import annotations

import inspect
import json
import logging
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeat
from activities.resources import ActivityResources, Resources
from stratmaster.contracts.cartridge import Cartridge, cartridge_yaml, same_cartridge, stored_digest
from stratmaster.contracts.cartridge_validation import format_problems, validate_cartridge
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.missions import (
    ActivationPlan, DeactivateStep, DeactivationResult, ExportResult, HistoryEntry, ListMissionsInput, MissionDetail,
    MissionList, MissionRef, MissionSummary, PlanActivationInput, PlanRollbackInput, PurgeExpiredInput, PurgeResult,
    StepInput, StepResult, UndoInput, ValidatedCartridge, ValidateInput,
)
from stratmaster.errors import BAD_INPUT, INVALID_CARTRIDGE, UNKNOWN_MISSION, bad_input
from activities.mission_config import MissionConfigReader
from stratmaster.contracts.missions import MissionConfig

log = logging.getLogger(__name__)

CONCURRENT_CHANGE = "ConcurrentMissionChange"


def cartridge_key(version: str) -> str:
    """Object key (relative to tenants/<mission>/) of a stored cartridge version."""
    return f"artifacts/cartridge/{version}.json"


def _op_key(suffix: str = "") -> str | None:
    if not activity.in_activity():
        return None
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}{suffix}"


async def audit(conn, actor: str, mission: str, action: str, target: str | None = None,
                detail: dict | None = None, op_key: str | None = None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor, mission, action, target, detail, op_key) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (op_key) WHERE op_key IS NOT NULL DO NOTHING""",
        actor, mission, action, target, json.dumps(detail or {}, default=str), op_key,
    )


class MissionActivities(ActivityResources):
    def __init__(self, resources: Resources, reader: MissionConfigReader | None = None):
        super().__init__(resources)
        self.reader = reader or MissionConfigReader(resources.settings)

    async def close(self) -> None:
        """The reader's own pool (the worker closes its Resources)."""
        await self.reader.close()

    def _vector_dim(self) -> int:
        try:
            from activities.ingest.embedding import model_dir

            return int(json.loads((model_dir(self.settings.embedding_model) / "config.json").read_text())["hidden_size"])
        except Exception:  # the model package is optional for the mission worker
            return 384

    async def _tenant(self, conn, mission: str, lock: bool = False):
        return await conn.fetchrow(
            "SELECT id, name, display_name, status, active_version, previous_version, purge_after, config_revision, updated_at "
            f"FROM tenants WHERE name = $1{' FOR UPDATE' if lock else ''}", mission)

    async def _owned_by_run(self, plan: ActivationPlan) -> bool:
        """Whether the mission's namespace belongs to this (failed) run: it did not
        exist before and no other activation has made the mission active since."""
        if plan.tenant_existed:
            return False
        row = await self._tenant(await self.pool(), plan.mission)
        return row is None or row["status"] == "provisioning" or row["active_version"] in (None, plan.version)

    # -------------------------------------------------------------- validate / plan

    @activity.defn(name="mission_validate")
    async def validate(self, req: ValidateInput) -> ValidatedCartridge:
        result = validate_cartridge(req.cartridge_text, data=req.cartridge)  # the object wins when both are given
        if not result.ok or result.cartridge is None or result.sha256 is None:  # ok: both are set
            raise ApplicationError(f"invalid cartridge: {format_problems(result.problems)}",
                                   [p.model_dump() for p in result.problems], type=INVALID_CARTRIDGE, non_retryable=True)
        return ValidatedCartridge(cartridge=result.cartridge, sha256=result.sha256)

    @activity.defn(name="mission_plan_activation")
    async def plan_activation(self, req: PlanActivationInput) -> ActivationPlan:
        cartridge, sha = req.validated.cartridge, req.validated.sha256
        mission, version = cartridge.mission, cartridge.version
        pool = await self.pool()
        row = await self._tenant(pool, mission)
        if row is None:
            return ActivationPlan(mission=mission, version=version, sha256=sha, cartridge=cartridge,
                                  tenant_existed=False, version_existed=False, vector_dim=self._vector_dim())
        if row["status"] == "purging":
            raise bad_input(f"mission {mission!r} is being purged; activate it again once the purge finished")
        stored = await pool.fetchrow("SELECT cartridge, sha256 FROM mission_versions WHERE tenant_id = $1 AND version = $2",
                                     row["id"], version)
        if stored is not None and not same_cartridge(stored["cartridge"], stored["sha256"], sha):
            raise bad_input(f"version {version} of mission {mission!r} already exists with different content; "
                            "bump metadata.version", INVALID_CARTRIDGE)
        active = row["active_version"]
        unchanged = row["status"] == "active" and active == version
        return ActivationPlan(
            mission=mission, version=version, sha256=sha, cartridge=cartridge, unchanged=unchanged,
            # a mission left half-made by a crash (status provisioning) counts as new: its undo may drop it
            tenant_existed=row["status"] != "provisioning", version_existed=stored is not None,
            previous_status=row["status"], previous_version=active, previous_previous=row["previous_version"],
            previous_purge_after=row["purge_after"],
            new_previous=active if active not in (None, version) else row["previous_version"],
            vector_dim=self._vector_dim(),
        )

    @activity.defn(name="mission_plan_rollback")
    async def plan_rollback(self, req: PlanRollbackInput) -> ActivationPlan:
        pool = await self.pool()
        row = await self._tenant(pool, req.mission)
        if row is None:
            raise bad_input(f"unknown mission {req.mission!r}", UNKNOWN_MISSION)
        if row["status"] != "active":
            raise bad_input(f"mission {req.mission!r} is {row['status']}; activate it before rolling back")
        active = row["active_version"]
        target = req.to_version or row["previous_version"]
        if not target:
            raise bad_input(f"mission {req.mission!r} has no previous version to roll back to")
        if target == active:
            raise bad_input(f"version {target} is already active")
        stored = await pool.fetchrow("SELECT cartridge, sha256 FROM mission_versions WHERE tenant_id = $1 AND version = $2",
                                     row["id"], target)
        if stored is None:
            raise bad_input(f"mission {req.mission!r} has no version {target}")
        if req.to_version:
            new_previous = active
        else:  # stack semantics: rolling back again returns to what preceded the target
            new_previous = await pool.fetchval(
                """SELECT rollback_to FROM mission_history WHERE tenant_id = $1 AND version = $2
                   AND action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1""", row["id"], target)
        cartridge = Cartridge.model_validate(json.loads(stored["cartridge"]))
        return ActivationPlan(
            mission=req.mission, version=target, sha256=stored["sha256"], cartridge=cartridge, action="rollback",
            tenant_existed=True, version_existed=True, previous_status=row["status"], previous_version=active,
            previous_previous=row["previous_version"], previous_purge_after=row["purge_after"],
            new_previous=new_previous, vector_dim=self._vector_dim(),
        )

    # -------------------------------------------------------------- provisioning steps

    @activity.defn(name="mission_provision_postgres")
    async def provision_postgres(self, req: StepInput) -> StepResult:
        plan = req.plan
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            row = await self._tenant(conn, plan.mission, lock=True)
            created = row is None
            if created:
                tenant_id = await conn.fetchval(
                    """INSERT INTO tenants (name, display_name, status) VALUES ($1, $2, 'provisioning')
                       ON CONFLICT (name) DO NOTHING RETURNING id""", plan.mission, plan.cartridge.metadata.name)
                if tenant_id is None:
                    raise ApplicationError("mission row appeared concurrently", type=CONCURRENT_CHANGE)
            else:
                tenant_id = row["id"]
            added = await conn.fetchval(
                """INSERT INTO mission_versions (tenant_id, version, cartridge, sha256, created_by)
                   VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT (tenant_id, version) DO NOTHING RETURNING version""",
                tenant_id, plan.version, plan.cartridge.model_dump_json(), plan.sha256, req.actor)
            await audit(conn, req.actor, plan.mission, f"{plan.action}.provision.postgres", plan.version,
                        {"tenant_created": created, "version_created": added is not None, "workflow_id": req.workflow_id},
                        _op_key())
        return StepResult(step="postgres", detail=f"tenant {'created' if created else 'exists'}, "
                                                   f"version {'stored' if added else 'exists'}")

    async def _store_step(self, req: StepInput, step: str, fn) -> StepResult:
        await fn()
        async with (await self.pool()).acquire() as conn:
            await audit(conn, req.actor, req.plan.mission, f"{req.plan.action}.provision.{step}", req.plan.version,
                        {"workflow_id": req.workflow_id}, _op_key())
        return StepResult(step=step)

    @activity.defn(name="mission_provision_vectors")
    async def provision_vectors(self, req: StepInput) -> StepResult:
        plan = req.plan
        v = plan.cartridge.storage.vectors
        ensure = self.stores.vectors.ensure_collection
        # Per-mission collection parameters when the adapter takes them.
        wanted = {"hnsw_m": v.hnsw_m, "hnsw_ef_construct": v.hnsw_ef_construct,
                  "quantization": v.quantization != "none", "shards": v.shards, "replicas": v.replicas}
        params = inspect.signature(ensure).parameters
        kwargs = {k: val for k, val in wanted.items() if k in params}
        return await self._store_step(req, "vectors", lambda: ensure(plan.mission, plan.vector_dim, **kwargs))

    @activity.defn(name="mission_provision_fulltext")
    async def provision_fulltext(self, req: StepInput) -> StepResult:
        f = req.plan.cartridge.storage.fulltext
        ensure = self.stores.fulltext.ensure_index
        # Per-mission shards/replicas when the adapter has them (OpenSearch; not the embedded index).
        params = inspect.signature(ensure).parameters
        kwargs = {k: val for k, val in {"shards": f.shards, "replicas": f.replicas}.items() if k in params}
        return await self._store_step(req, "fulltext", lambda: ensure(req.plan.mission, **kwargs))

    @activity.defn(name="mission_provision_graph")
    async def provision_graph(self, req: StepInput) -> StepResult:
        return await self._store_step(req, "graph", lambda: self.stores.graph.ensure_space(req.plan.mission))

    @activity.defn(name="mission_provision_objects")
    async def provision_objects(self, req: StepInput) -> StepResult:
        plan = req.plan
        body = json.dumps({"sha256": plan.sha256, "cartridge": plan.cartridge.model_dump(mode="json")},
                          indent=2, sort_keys=True).encode()
        return await self._store_step(req, "objects", lambda: self.stores.objects.put(
            plan.mission, cartridge_key(plan.version), body, "application/json"))

    @activity.defn(name="mission_record_active")
    async def record_active(self, req: StepInput) -> StepResult:
        plan = req.plan
        op = _op_key()
        async with (await self.pool()).acquire() as conn, conn.transaction():
            row = await self._tenant(conn, plan.mission, lock=True)
            if row is None:
                raise ApplicationError(f"mission {plan.mission!r} vanished during activation", type=CONCURRENT_CHANGE,
                                       non_retryable=True)
            if op and await conn.fetchval("SELECT 1 FROM mission_history WHERE op_key = $1", op):
                return StepResult(step="record", detail="already recorded")  # retry after a lost reply
            if row["active_version"] != plan.previous_version:
                raise ApplicationError(
                    f"mission {plan.mission!r} changed during activation (active version now {row['active_version']}, "
                    f"expected {plan.previous_version})", type=CONCURRENT_CHANGE, non_retryable=True)
            await conn.execute(
                """UPDATE tenants SET status = 'active', active_version = $2, previous_version = $3, display_name = $4,
                          deactivated_at = NULL, purge_after = NULL, config_revision = config_revision + 1,
                          updated_at = NOW() WHERE id = $1""",
                row["id"], plan.version, plan.new_previous, plan.cartridge.metadata.name)
            await conn.execute("UPDATE mission_versions SET activated_at = NOW() WHERE tenant_id = $1 AND version = $2",
                               row["id"], plan.version)
            await conn.execute(
                """INSERT INTO mission_history (tenant_id, action, version, replaced_version, rollback_to, actor, op_key)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                row["id"], plan.action, plan.version, plan.previous_version, plan.new_previous, req.actor, op)
            await audit(conn, req.actor, plan.mission, plan.action, plan.version,
                        {"previous_version": plan.previous_version, "sha256": plan.sha256,
                         "workflow_id": req.workflow_id}, op)
        self.reader.invalidate(plan.mission)
        return StepResult(step="record", detail=f"{plan.previous_version} -> {plan.version}")

    # -------------------------------------------------------------- saga compensation

    @activity.defn(name="mission_undo")
    async def undo(self, req: UndoInput) -> StepResult:
        plan, step = req.step.plan, req.name
        pool = await self.pool()
        done = "nothing to undo"
        if step == "record":
            async with pool.acquire() as conn, conn.transaction():
                row = await self._tenant(conn, plan.mission, lock=True)
                if row is not None and row["active_version"] == plan.version and row["status"] == "active" \
                        and plan.previous_version != plan.version:
                    status = plan.previous_status if plan.tenant_existed else "provisioning"
                    await conn.execute(
                        """UPDATE tenants SET active_version = $2, previous_version = $3, status = $4::varchar,
                                  purge_after = $5,
                                  deactivated_at = CASE WHEN $4::varchar = 'deactivated' THEN deactivated_at END,
                                  config_revision = config_revision + 1, updated_at = NOW() WHERE id = $1""",
                        row["id"], plan.previous_version, plan.previous_previous, status, plan.previous_purge_after)
                    await conn.execute(
                        """INSERT INTO mission_history (tenant_id, action, version, replaced_version, rollback_to, actor)
                           VALUES ($1, 'undo', $2, $3, $4, $5)""",
                        row["id"], plan.previous_version, plan.version, plan.previous_previous, req.step.actor)
                    done = f"active version restored to {plan.previous_version}"
                await audit(conn, req.step.actor, plan.mission, f"{plan.action}.undo.record", plan.version,
                            {"result": done, "workflow_id": req.step.workflow_id}, _op_key())
            self.reader.invalidate(plan.mission)
            return StepResult(step=step, detail=done)
        if step == "postgres":
            async with pool.acquire() as conn, conn.transaction():
                row = await self._tenant(conn, plan.mission, lock=True)
                if row is not None and not plan.tenant_existed and row["status"] == "provisioning":
                    await conn.execute("DELETE FROM tenants WHERE id = $1", row["id"])  # cascades mission_versions
                    done = "mission row removed"
                elif row is not None and not plan.version_existed and row["active_version"] != plan.version:
                    await conn.execute("DELETE FROM mission_versions WHERE tenant_id = $1 AND version = $2",
                                       row["id"], plan.version)
                    done = f"version {plan.version} removed"
                await audit(conn, req.step.actor, plan.mission, f"{plan.action}.undo.postgres", plan.version,
                            {"result": done, "workflow_id": req.step.workflow_id}, _op_key())
            return StepResult(step=step, detail=done)
        owned = await self._owned_by_run(plan)
        if step == "objects":
            if owned:
                await self.stores.objects.delete_mission(plan.mission)
                done = "object prefix removed"
            elif not plan.version_existed:
                await self.stores.objects.delete(plan.mission, cartridge_key(plan.version))
                done = "cartridge object removed"
        elif step in ("vectors", "fulltext", "graph") and owned:
            await getattr(self.stores, step).drop(plan.mission)
            done = f"{step} namespace dropped"
        async with pool.acquire() as conn:
            await audit(conn, req.step.actor, plan.mission, f"{plan.action}.undo.{step}", plan.version,
                        {"result": done, "workflow_id": req.step.workflow_id}, _op_key())
        return StepResult(step=step, detail=done)

    # -------------------------------------------------------------- deactivate / purge

    @activity.defn(name="mission_deactivate")
    async def deactivate(self, req: DeactivateStep) -> DeactivationResult:
        async with (await self.pool()).acquire() as conn, conn.transaction():
            row = await self._tenant(conn, req.mission, lock=True)
            if row is None:
                raise bad_input(f"unknown mission {req.mission!r}", UNKNOWN_MISSION)
            if row["status"] in ("deactivated", "purging"):
                return DeactivationResult(mission=req.mission, status="unchanged", purge_after=row["purge_after"])
            if row["status"] != "active":
                raise bad_input(f"mission {req.mission!r} is {row['status']}")
            days = req.retention_days
            if days is None:
                days = await self._retention_days(conn, row)
            purge_after = req.now + timedelta(days=days)
            await conn.execute(
                """UPDATE tenants SET status = 'deactivated', deactivated_at = $2, purge_after = $3,
                          config_revision = config_revision + 1, updated_at = NOW() WHERE id = $1""",
                row["id"], req.now, purge_after)
            await conn.execute(
                """INSERT INTO mission_history (tenant_id, action, version, replaced_version, actor, op_key)
                   VALUES ($1, 'deactivate', $2, $2, $3, $4) ON CONFLICT (op_key) DO NOTHING""",
                row["id"], row["active_version"], req.actor, _op_key())
            await audit(conn, req.actor, req.mission, "deactivate", row["active_version"],
                        {"retention_days": days, "purge_after": purge_after.isoformat(), "workflow_id": req.workflow_id},
                        _op_key())
        self.reader.invalidate(req.mission)
        return DeactivationResult(mission=req.mission, status="deactivated", purge_after=purge_after)

    async def _retention_days(self, conn, row) -> int:
        raw = await conn.fetchval("SELECT cartridge FROM mission_versions WHERE tenant_id = $1 AND version = $2",
                                  row["id"], row["active_version"])
        if raw is None:
            return 30
        return Cartridge.model_validate(json.loads(raw)).retention.deactivated_days

    @activity.defn(name="purge_expired_missions")
    async def purge_expired_missions(self, req: PurgeExpiredInput) -> PurgeResult:
        """Drop every store namespace and the rows of missions deactivated longer
        than their retention. Idempotent: a crash mid-way leaves the mission
        'purging' and the next run finishes it."""
        if req.now is None:
            raise bad_input("purge_expired_missions needs `now` (the workflow passes workflow.now())")
        pool = await self.pool()
        result = PurgeResult()
        rows = await pool.fetch(
            "SELECT name, purge_after, status FROM tenants WHERE status IN ('deactivated', 'purging') ORDER BY name")
        for row in rows:
            mission = row["name"]
            if req.missions is not None and mission not in req.missions:
                continue
            if row["purge_after"] is not None and row["purge_after"] > req.now:
                result.waiting[mission] = row["purge_after"]
                continue
            heartbeat(mission)
            claimed = await pool.fetchval(
                """UPDATE tenants SET status = 'purging', updated_at = NOW()
                   WHERE name = $1 AND status IN ('deactivated', 'purging') AND (purge_after IS NULL OR purge_after <= $2)
                   RETURNING id""", mission, req.now)
            if claimed is None:
                continue  # reactivated meanwhile
            try:
                check_mission(mission)
            except ApplicationError:
                log.warning("skipping purge of a mission row with an invalid id", extra={"mission": mission})
                continue
            await self.stores.vectors.drop(mission)
            await self.stores.fulltext.drop(mission)
            await self.stores.graph.drop(mission)
            removed = await self.stores.objects.delete_mission(mission)
            heartbeat(mission)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("DELETE FROM tenants WHERE id = $1 AND status = 'purging'", claimed)
                await audit(conn, req.actor, mission, "purge", None,
                            {"purge_after": row["purge_after"], "objects_removed": removed, "now": req.now},
                            _op_key(f"/{mission}"))
            self.reader.invalidate(mission)
            result.purged.append(mission)
        return result

    # -------------------------------------------------------------- read side

    def _summary(self, row, versions: int) -> MissionSummary:
        return MissionSummary(mission=row["name"], name=row["display_name"], status=row["status"],
                              active_version=row["active_version"], previous_version=row["previous_version"],
                              versions=versions, purge_after=row["purge_after"], updated_at=row["updated_at"])

    @activity.defn(name="mission_list")
    async def list_missions(self, req: ListMissionsInput) -> MissionList:
        rows = await (await self.pool()).fetch(
            """SELECT t.name, t.display_name, t.status, t.active_version, t.previous_version, t.purge_after, t.updated_at,
                      (SELECT count(*) FROM mission_versions v WHERE v.tenant_id = t.id) AS versions
               FROM tenants t WHERE $1 OR t.status = 'active' ORDER BY t.name""", req.include_deactivated)
        return MissionList(missions=[self._summary(r, r["versions"]) for r in rows])

    async def _require(self, conn, mission: str):
        row = await self._tenant(conn, mission)
        if row is None:
            raise bad_input(f"unknown mission {mission!r}", UNKNOWN_MISSION)
        return row

    async def _cartridge(self, conn, row, version: str | None) -> tuple[Cartridge, str] | None:
        version = version or row["active_version"]
        if version is None:
            return None
        got = await conn.fetchrow("SELECT cartridge, sha256 FROM mission_versions WHERE tenant_id = $1 AND version = $2",
                                  row["id"], version)
        if got is None:
            raise bad_input(f"mission {row['name']!r} has no version {version}")
        if stored_digest(got["cartridge"]) != got["sha256"]:  # stored JSON must match its recorded digest
            raise ApplicationError(f"stored cartridge of {row['name']} {version} fails its checksum",
                                   type=BAD_INPUT, non_retryable=True)
        return Cartridge.model_validate(json.loads(got["cartridge"])), got["sha256"]

    @activity.defn(name="mission_show")
    async def show_mission(self, req: MissionRef) -> MissionDetail:
        check_mission(req.mission)
        async with (await self.pool()).acquire() as conn:
            row = await self._require(conn, req.mission)
            versions = [r["version"] for r in await conn.fetch(
                "SELECT version FROM mission_versions WHERE tenant_id = $1 ORDER BY created_at, version", row["id"])]
            history = [HistoryEntry(at=r["at"], action=r["action"], version=r["version"],
                                    replaced_version=r["replaced_version"], actor=r["actor"])
                       for r in await conn.fetch(
                           """SELECT at, action, version, replaced_version, actor FROM mission_history
                              WHERE tenant_id = $1 ORDER BY id DESC LIMIT 50""", row["id"])]
            found = await self._cartridge(conn, row, req.version)
        return MissionDetail(summary=self._summary(row, len(versions)), versions=versions, history=history,
                             cartridge=found[0] if found else None)

    @activity.defn(name="mission_export")
    async def export_mission(self, req: MissionRef) -> ExportResult:
        check_mission(req.mission)
        async with (await self.pool()).acquire() as conn:
            row = await self._require(conn, req.mission)
            found = await self._cartridge(conn, row, req.version)
        if found is None:
            raise bad_input(f"mission {req.mission!r} has no active cartridge")
        cartridge, sha = found
        return ExportResult(mission=req.mission, version=cartridge.version, sha256=sha, cartridge=cartridge,
                            yaml=cartridge_yaml(cartridge))

    @activity.defn(name="mission_effective_config")
    async def effective_config(self, req: MissionRef) -> MissionConfig:
        """The mission's active config as every worker sees it (cached, hot-reloaded)."""
        check_mission(req.mission)
        return await self.reader.get(req.mission)

    def all(self) -> list:
        return [self.validate, self.plan_activation, self.plan_rollback, self.provision_postgres,
                self.provision_vectors, self.provision_fulltext, self.provision_graph, self.provision_objects,
                self.record_active, self.undo, self.deactivate, self.purge_expired_missions, self.list_missions,
                self.show_mission, self.export_mission, self.effective_config]

