"""Shared helpers for the mission tests: the mission worker in-process on its real
queue (optionally with test-only activity overrides for failure injection),
cartridge builders, and probes of every store's namespace for a mission."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import yaml
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from stratmaster import queues
from stratmaster.contracts.cartridge_validation import validate_cartridge
from stratmaster.contracts.missions import ActivateMissionInput, ActivationResult
from stratmaster.search_attributes import for_mission
from stratmaster.settings import Settings
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "samples" / "cartridges" / "demo.yaml"
INVALID = ROOT / "samples" / "cartridges" / "invalid.yaml"


def new_mission(prefix: str = "m") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def cartridge_dict(mission: str, version: str = "1.0.0", **sections) -> dict:
    """The demo cartridge re-labelled for `mission`/`version`, with section overrides."""
    data = yaml.safe_load(DEMO.read_text())
    data["metadata"]["id"] = mission
    data["metadata"]["version"] = version
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def cartridge_text(mission: str, version: str = "1.0.0", **sections) -> str:
    return yaml.safe_dump(cartridge_dict(mission, version, **sections), sort_keys=False)


def mission_worker(client: Client, settings: Settings, overrides=None, task_queue: str = queues.MISSIONS):
    """The real mission worker; `overrides` (a dict, or a function of the spec returning
    one) maps activity names to test-only replacements (failure injection)."""
    return queue_worker(client, settings, queues.MISSIONS, task_queue=task_queue, activities=overrides,
                        max_heartbeat_throttle_interval=timedelta(milliseconds=300),
                        default_heartbeat_throttle_interval=timedelta(milliseconds=300))


async def start_activation(client: Client, text: str, actor: str = "test",
                           task_queue: str = queues.MISSIONS) -> WorkflowHandle:
    from workflows.missions import ActivateMissionWorkflow, activate_workflow_id

    v = validate_cartridge(text)
    mission, version = (v.cartridge.mission, v.cartridge.version) if v.ok else ("invalid", uuid.uuid4().hex[:8])
    return await client.start_workflow(
        ActivateMissionWorkflow.run, ActivateMissionInput(cartridge_text=text, actor=actor),
        id=f"{activate_workflow_id(mission, version)}-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
        search_attributes=for_mission(mission) if v.ok else None, execution_timeout=timedelta(minutes=2),
    )


async def activate(client: Client, text: str, actor: str = "test", task_queue: str = queues.MISSIONS) -> ActivationResult:
    return await (await start_activation(client, text, actor, task_queue)).result()


async def namespace_state(stores, mission: str) -> dict[str, bool]:
    """Whether each embedded store holds anything for the mission (tests run on the embedded
    defaults: the mission's pgvector table, its on-disk full-text and graph files and objects)."""
    return {
        "vectors": await stores.vectors.collection_config(mission) is not None,
        "fulltext": stores.fulltext._path(mission).exists(),
        "graph": (stores.graph.root / f"{mission}.db").exists(),
        "objects": (stores.objects.bucket_root / "tenants" / mission).exists(),
    }


async def pg_state(settings: Settings, mission: str) -> dict:
    async with pg_connect(settings) as conn:
        row = await conn.fetchrow(
            "SELECT id, status, active_version, previous_version, purge_after, config_revision FROM tenants WHERE name = $1",
            mission)
        versions = [] if row is None else [r["version"] for r in await conn.fetch(
            "SELECT version FROM mission_versions WHERE tenant_id = $1 ORDER BY version", row["id"])]
        audit = [dict(r) for r in await conn.fetch(
            "SELECT actor, action, target, detail FROM audit_log WHERE mission = $1 ORDER BY id", mission)]
        for a in audit:
            a["detail"] = json.loads(a["detail"]) if a["detail"] else {}
        return {"tenant": dict(row) if row else None, "versions": versions, "audit": audit}


async def replay(client: Client, handles: list[WorkflowHandle]) -> None:
    """Replay the recorded histories against the current workflow code (determinism)."""
    from workflows.missions import WORKFLOWS

    async def histories():
        for h in handles:
            yield await h.fetch_history()

    results = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter).replay_workflows(
        histories(), raise_on_replay_failure=False)
    assert not results.replay_failures, results.replay_failures
