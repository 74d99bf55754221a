"""Ingestion throughput: end to end through Temporal vs embedding alone.

    HF_HUB_OFFLINE=1 python bench/ingest/run.py --docs 300

Writes N Cranfield abstracts (../shared/datasets/cranfield beside the checkout, or --cranfield)
as .txt files, starts a throwaway Temporal dev server and PostgreSQL, runs the
real ingestion worker in-process on `ingestion-tasks`, and times
IngestDocumentsWorkflow over the files (parse, chunk, embed, Qdrant local,
SQLite FTS5, SQLite graph, PostgreSQL, object store). Then it embeds what
ingestion embeds with the same embedder alone: the very same chunk texts and
their sentences (research's sentence vectors, stored with the chunks). Prints
chunks/s for both, the ratio (the orchestration + storage overhead), the chunk
texts alone for scale, and peak RSS of this process; writes bench/ingest/results.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# ../shared/datasets beside the checkout (where the workplace lays it; CI has a copy there too)
DEFAULT_CRANFIELD = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cranfield" / "cran.all.1400"


def cranfield_docs(path: Path, n: int) -> list[tuple[str, str]]:
    """(id, "title\\n\\nabstract") for the first n documents."""
    docs = []
    for block in re.split(r"^\.I ", path.read_text(errors="replace"), flags=re.M)[1:]:
        doc_id = block.split("\n", 1)[0].strip()
        fields = dict(re.findall(r"^\.([TAWB])\n(.*?)(?=^\.[TAWB]\n|\Z)", block, flags=re.M | re.S))
        title = " ".join(fields.get("T", "").split())
        body = " ".join(fields.get("W", "").split())
        if body:
            docs.append((doc_id, f"{title}\n\n{body}\n"))
        if len(docs) >= n:
            break
    return docs


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def main(args) -> None:
    from temporalio.worker import Worker

    from workers.registry import WORKFLOW_RUNNER

    import workers.ingestion
    from activities.ingest.chunking import chunk_text
    from activities.ingest.parsing import parse_document
    from activities.research.synthesis import passage_units
    from stratmaster.migrations import apply_migrations
    from activities.stores.tenants import ensure_tenant
    from stratmaster import queues
    from stratmaster.contracts.ingestion import IngestInput
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.search_attributes import for_mission
    from stratmaster.principals import path_ref
    from stratmaster.settings import Settings
    from tests.support.ports import free_port
    from workflows.ingestion import IngestDocumentsWorkflow

    work = Path(tempfile.mkdtemp(prefix="stratmaster-bench-ingest-"))
    os.chmod(work, 0o755)
    docs_dir = work / "docs"
    docs_dir.mkdir()
    docs = cranfield_docs(args.cranfield, args.docs)
    paths = []
    for doc_id, text in docs:
        p = docs_dir / f"cran_{int(doc_id):04d}.txt"
        p.write_text(text)
        paths.append(p)
    print(f"documents: {len(paths)} Cranfield abstracts ({sum(p.stat().st_size for p in paths) / 1024:.0f} KiB)")

    pg = LocalPostgres(data_dir=work / "pg", port=free_port())
    pg.start()
    env = None
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=work / "data", database_url=pg.dsn, postgres_port=pg.port)
        import asyncpg

        conn = await asyncpg.connect(pg.dsn)
        await ensure_tenant(conn, "bench")
        await conn.close()
        env = await start_local_env()
        client = env.client

        t_load = time.perf_counter()
        spec = await workers.ingestion.build(settings)  # loads + warms the model once
        print(f"model load + worker build: {time.perf_counter() - t_load:.1f}s")
        embedder = spec.extra["ingestion"].embedder
        encoder = spec.extra["ingestion"].resources.sentence_encoder

        # the chunk texts ingestion will produce, to embed alone (not timed)
        texts = []
        for p in paths:
            parsed = parse_document(p.name, p.read_bytes())
            for s in chunk_text(parsed.text, embedder.token_offsets, settings.chunk_tokens,
                                settings.chunk_overlap_tokens):
                texts.append(parsed.text[s.start:s.end])

        units = [[t for _, t in passage_units(text)] for text in texts]

        def embed_alone() -> float:
            # the chunks (MiniLM, torch) and their sentences (bge-small, onnxruntime) in two threads
            # at once, as ingestion's concurrent documents overlap them: embedded one after the
            # other they took longer than the whole ingestion (ratio 1.06), no ceiling
            t = time.perf_counter()
            with ThreadPoolExecutor(2) as pair:
                for f in [pair.submit(embedder.embed, texts), pair.submit(encoder.embed_units, units)]:
                    f.result()
            return time.perf_counter() - t

        t = time.perf_counter()
        embedder.embed(texts)
        chunks_only = time.perf_counter() - t

        # embedding alone before and after the end-to-end run, averaged: the
        # machine may be shared, and load drifts over minutes
        before = embed_alone()
        req = IngestInput(mission="bench", documents=[path_ref(settings, "bench", str(p)) for p in paths],
                          batch_id=f"bench-{uuid.uuid4().hex[:8]}", slice_size=args.slice_size,
                          max_concurrent_slices=args.slices, doc_concurrency=args.doc_concurrency)
        with ThreadPoolExecutor(spec.max_concurrent_activities) as ex:
            async with Worker(client, task_queue=queues.INGESTION, workflows=spec.workflows,
                              activities=spec.activities, activity_executor=ex, workflow_runner=WORKFLOW_RUNNER,
                              max_concurrent_activities=spec.max_concurrent_activities):
                t0 = time.perf_counter()
                result = await client.execute_workflow(
                    IngestDocumentsWorkflow.run, req, id=f"ingest-bench-{req.batch_id}",
                    task_queue=queues.INGESTION, search_attributes=for_mission("bench"))
                e2e = time.perf_counter() - t0
        chunks_e2e, failed = result.totals.chunks, result.totals.failed
        await spec.close()
        after = embed_alone()
        embed_only = (before + after) / 2
        print(f"embedding alone before/after: {before:.1f}s / {after:.1f}s")

        e2e_rate, embed_rate = chunks_e2e / e2e, len(texts) / embed_only
        print(f"chunks: {chunks_e2e} ingested ({failed} documents failed), {len(texts)} re-chunked for embedding")
        print(f"end to end through Temporal: {e2e:.1f}s  {e2e_rate:.1f} chunks/s  {len(paths) / e2e:.1f} docs/s")
        print(f"embedding alone:             {embed_only:.1f}s  {embed_rate:.1f} chunks/s "
              f"(chunks and their {len({u for us in units for u in us})} distinct sentences)")
        print(f"the chunk texts alone:       {chunks_only:.1f}s  {len(texts) / chunks_only:.1f} chunks/s")
        print(f"ratio end-to-end / embedding-only throughput: {e2e_rate / embed_rate:.2f} "
              f"(overhead x{embed_rate / e2e_rate:.2f})")
        print(f"peak RSS of this process (worker + embedder): {peak_rss_mb():.0f} MiB")
    finally:
        if env is not None:
            await env.shutdown()
        pg.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--cranfield", type=Path, default=DEFAULT_CRANFIELD)
    ap.add_argument("--slice-size", type=int, default=25)
    ap.add_argument("--slices", type=int, default=2, help="concurrent child workflows")
    ap.add_argument("--doc-concurrency", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    from bench.results import recorded

    with recorded(__file__, "Ingestion throughput"):
        asyncio.run(main(args))
