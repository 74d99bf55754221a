"""Helpers for the ingestion tests: the ingestion worker in-process on its real
queue, fresh missions, bad documents, and per-store counts."""
from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

from temporalio.client import Client

from activities.stores.tenants import ensure_tenant
from stratmaster import queues
from stratmaster.settings import Settings
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "docs"
# small enough that the oversized test document stays small
TEST_MAX_BYTES = 256 * 1024


def ingestion_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_document_bytes": TEST_MAX_BYTES})


def ingestion_worker(client: Client, settings: Settings, **options):
    """The real ingestion worker polling ingestion-tasks in-process (tests/support/workers.py: queue_worker)."""
    return queue_worker(client, settings, queues.INGESTION, **options)


async def new_mission(settings: Settings, prefix: str = "ing") -> str:
    mission = f"{prefix}_{uuid.uuid4().hex[:10]}"
    async with pg_connect(settings) as conn:
        await ensure_tenant(conn, mission)
    return mission


def write_bad_documents(directory: Path) -> dict[str, str]:
    """One file per failure mode -> expected reason type."""
    directory.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(7)
    files = {
        "corrupt.pdf": (b"%PDF-1.7\n" + bytes(rnd.randrange(256) for _ in range(2000)), "CorruptDocument"),
        "junk.bin": (bytes(rnd.randrange(256) for _ in range(3000)) + b"\x00\x00", "UnsupportedType"),
        "empty.txt": (b"   \n\n  ", "EmptyDocument"),
        "oversized.txt": ((b"storage capacity grows " * 15000)[:TEST_MAX_BYTES + 10], "Oversized"),
        "picture.png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "UnsupportedType"),
        "fake.docx": (b"this is plain text pretending to be a Word file", "CorruptDocument"),
    }
    out = {}
    for name, (data, reason) in files.items():
        (directory / name).write_bytes(data)
        out[str((directory / name).resolve())] = reason
    return out


def write_small_docs(directory: Path, n: int, *, words: int = 260) -> list[Path]:
    """n distinct small text documents, each a few chunks long."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ("battery storage grid operators lithium iron phosphate capacity market revenue solar wind "
             "frequency regulation peak shaving arbitrage utility integrator Helios Voltaris NordCell "
             "degradation warranty cycle efficiency tariff subsidy forecast growth demand supply").split()
    paths = []
    for i in range(n):
        rnd = random.Random(f"doc-{i}")
        sentences = []
        for _ in range(words // 13):
            sentences.append(" ".join(rnd.choice(vocab) for _ in range(12)).capitalize() + ".")
        p = directory / f"note_{i:03d}.txt"
        p.write_text(f"Field note {i}\n\n" + " ".join(sentences) + "\n")
        paths.append(p)
    return paths


async def store_counts(stores, settings: Settings, mission: str) -> dict[str, int]:
    """Records of the mission in every store."""
    async with pg_connect(settings) as conn:
        tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        pg_docs = await conn.fetchval("SELECT count(*) FROM documents WHERE tenant_id = $1", tid)
        pg_chunks = await conn.fetchval("SELECT count(*) FROM chunks WHERE tenant_id = $1", tid)
        distinct = await conn.fetchval("SELECT count(DISTINCT (document_id, ordinal)) FROM chunks WHERE tenant_id = $1",
                                       tid)
        declared = await conn.fetchval("SELECT coalesce(sum(chunk_count), 0) FROM documents WHERE tenant_id = $1", tid)
        failures = await conn.fetchval("SELECT count(*) FROM ingestion_failures WHERE tenant_id = $1", tid)
    entities, relations = await stores.graph.count(mission)
    return {
        "pg_documents": pg_docs, "pg_chunks": pg_chunks, "pg_distinct_chunks": distinct,
        "pg_declared_chunks": int(declared), "failures": failures,
        "vectors": await stores.vectors.count(mission), "fulltext": await stores.fulltext.count(mission),
        "entities": entities, "relations": relations,
        "objects": len(await stores.objects.list(mission, "documents/")),
    }


def worker_env(settings: Settings, address: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "STRATMASTER_TEMPORAL_ADDRESS": address,
        "STRATMASTER_DATABASE_URL": settings.database_url,
        "STRATMASTER_DATA_DIR": str(settings.data_dir),
        "STRATMASTER_MAX_DOCUMENT_BYTES": str(settings.max_document_bytes),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    })
    return env


class CountingEmbedder:
    """The real embedder, recording the texts of each call that embeds chunks."""

    def __init__(self, real):
        self.real = real
        self.calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.real.embed(texts)
