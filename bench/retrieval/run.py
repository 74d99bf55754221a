"""Retrieval bench on Cranfield (1,400 abstracts, 225 queries, graded judgements).

    python bench/retrieval/run.py [--dataset ../shared/datasets/cranfield] [--latency-queries 60]

1. Ingests the 1,400 documents once into the bench mission `bench_cranfield`
   (chunked with the ingestion chunker, embedded, written to the embedded
   full-text and vector stores, mission row in a bench PostgreSQL); cached under
   <data dir>/bench-retrieval (STRATMASTER_BENCH_DIR to move it).
2. Quality: nDCG@10 and recall@100 (document level) for BM25, dense,
   hybrid-minmax (a few BM25/dense weights) and hybrid-rrf.
3. Latency of the retrieval step: direct (Retriever.retrieve) vs through
   ResearchWorkflow in retrieve-only mode (`mode: "retrieve"`, the query as the
   only sub-question) on a real Temporal dev server, p50/p95 side by side.
Results are printed and written to bench/retrieval/results.md (one section per command line).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MISSION = "bench_cranfield"
DOC_NS = uuid.UUID("c5a1f1d2-7b0e-4a2f-9d4e-1f3b5a7c9e01")


# ---------------------------------------------------------------- dataset

def parse_fields(text: str) -> list[dict[str, str]]:
    records, cur, field = [], None, None
    for line in text.splitlines():
        m = re.match(r"^\.([ITABW])(?:\s+(\d+))?\s*$", line)
        if m:
            if m.group(1) == "I":
                cur = {"I": m.group(2)}
                records.append(cur)
                field = None
            else:
                field = m.group(1)
                cur[field] = ""
            continue
        if cur is not None and field:
            cur[field] += line + "\n"
    return records


def load_cranfield(root: Path):
    docs = {int(r["I"]): (" ".join(r.get("T", "").split()), r.get("W", "").strip())
            for r in parse_fields((root / "cran.all.1400").read_text(errors="replace"))}
    queries = [" ".join(r.get("W", "").split()) for r in parse_fields((root / "cran.qry").read_text())]
    qrels: dict[int, dict[int, int]] = {}
    for line in (root / "cranqrel").read_text().split("\n"):
        parts = line.split()
        if len(parts) != 3:
            continue
        q, d, r = int(parts[0]), int(parts[1]), int(parts[2])
        if 1 <= r <= 4:  # -1: judged not relevant
            qrels.setdefault(q, {})[d] = 5 - r
    return docs, queries, qrels


def doc_uuid(n: int) -> str:
    return str(uuid.uuid5(DOC_NS, f"cranfield:{n}"))


# ---------------------------------------------------------------- metrics

def ndcg_at(ranked: list[int], rels: dict[int, int], k: int = 10) -> float:
    dcg = sum((2 ** rels.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[int], rels: dict[int, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(rels)) / len(rels) if rels else 0.0


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]


# ---------------------------------------------------------------- setup

async def ensure_ingested(settings, docs, stores, embedder, pool) -> dict:
    from activities.ingest.chunking import chunk_id, chunk_text
    from activities.stores.tenants import ensure_tenant
    from stratmaster.contracts.knowledge import Chunk

    marker = settings.abs_data_dir / "ingested.json"
    fingerprint = hashlib.sha256(json.dumps([settings.embedding_model, settings.chunk_tokens, settings.chunk_overlap_tokens,
                                             len(docs), getattr(stores.vectors, "backend", "")]).encode()).hexdigest()[:16]
    await ensure_tenant(pool, MISSION)
    if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
        return json.loads(marker.read_text())
    t0 = time.perf_counter()
    await stores.vectors.drop(MISSION)
    await stores.fulltext.drop(MISSION)
    (settings.abs_data_dir / "padded.json").unlink(missing_ok=True)
    n_chunks = 0
    batch: list = []

    async def flush():
        nonlocal batch
        if not batch:
            return
        vecs = await asyncio.to_thread(embedder.embed, [c.text for c in batch])
        await stores.fulltext.index(MISSION, batch)
        await stores.vectors.upsert(MISSION, batch, vecs)
        batch = []

    for n, (title, body) in sorted(docs.items()):
        text = f"{title}\n\n{body}"
        did = doc_uuid(n)
        for span in chunk_text(text, embedder.token_offsets, settings.chunk_tokens, settings.chunk_overlap_tokens):
            batch.append(Chunk(chunk_id=chunk_id(did, span.ordinal), document_id=did, ordinal=span.ordinal,
                               text=text[span.start:span.end], start=span.start, end=span.end,
                               token_count=span.token_count, title=title, metadata={"cranfield": n}))
            n_chunks += 1
        if len(batch) >= 256:
            await flush()
            print(f"  ingested up to document {n} ({n_chunks} chunks)", file=sys.stderr)
    await flush()
    info = {"fingerprint": fingerprint, "documents": len(docs), "chunks": n_chunks,
            "seconds": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(info))
    return info


async def ensure_padded(settings, stores, pad: int) -> int:
    """Grow the mission to `pad` extra chunks for the latency-at-scale figures: copies of the
    ingested chunks, each with its words shuffled and its vector moved by noise (so the index
    sees the corpus's own distribution, not uniform random points), written straight into the
    stores as the issue's 100k case allows. Padding documents are in no qrels: use --skip-quality."""
    import numpy as np

    from stratmaster.contracts.knowledge import Chunk

    marker = settings.abs_data_dir / "padded.json"
    have = json.loads(marker.read_text()).get("pad", 0) if marker.exists() else 0
    if have >= pad:
        return have
    rows = [r for r in await stores.vectors.dump(MISSION) if not r["payload"]["document_id"].startswith("pad-")]
    rng = np.random.default_rng(have)
    t0 = time.perf_counter()
    for start in range(have, pad, 1000):
        chunks, vecs = [], []
        for i in range(start, min(pad, start + 1000)):
            src = rows[i % len(rows)]
            words = src["payload"]["text"].split()
            rng.shuffle(words)
            v = np.asarray(src["vector"]) + rng.normal(0, 0.02, len(src["vector"]))
            chunks.append(Chunk(chunk_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pad-{i}")), document_id=f"pad-{i // 4}",
                                ordinal=i % 4, text=" ".join(words), start=0, end=len(" ".join(words)),
                                token_count=len(words), title=src["payload"].get("title")))
            vecs.append((v / np.linalg.norm(v)).tolist())
        await stores.fulltext.index(MISSION, chunks)
        await stores.vectors.upsert(MISSION, chunks, vecs)
        marker.write_text(json.dumps({"pad": start + len(chunks)}))
        print(f"  padded {start + len(chunks)}/{pad} chunks ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return pad


def doc_ranking(hits, doc_of: dict[str, int]) -> list[int]:
    seen, out = set(), []
    for h in hits:
        d = doc_of.get(h.document_id)
        if d is not None and d not in seen:
            seen.add(d)
            out.append(d)
    return out


# ---------------------------------------------------------------- main

async def main(args) -> dict:
    from temporalio.worker import Worker

    from workers.registry import WORKFLOW_RUNNER

    from activities.ingest.embedding import get_embedder
    from activities.research.fusion import fuse
    from activities.research.activities import ResearchActivities
    from activities.resources import Resources
    from activities.stores.factory import build_stores
    from activities.stores.postgres import create_pool
    from stratmaster.migrations import apply_migrations
    from stratmaster import queues
    from stratmaster.contracts.research import ResearchInput, RetrieveInput
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.settings import Settings
    from tests.support.ports import free_port
    from workflows.research import ResearchWorkflow

    bench_dir = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-retrieval")).resolve()
    bench_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(bench_dir, 0o755)
    pg = LocalPostgres(data_dir=bench_dir / "pg", port=free_port())
    pg.start()
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=bench_dir / "data", database_url=pg.dsn, postgres_port=pg.port)
        docs, queries, qrels = load_cranfield(Path(args.dataset))
        doc_of = {doc_uuid(n): n for n in docs}
        stores = build_stores(settings)
        embedder = get_embedder(settings)
        pool = await create_pool(pg.dsn)
        acts = ResearchActivities(Resources(settings, stores=stores, pool=pool, embedder=embedder))
        info = await ensure_ingested(settings, docs, stores, embedder, pool)
        print(f"corpus: {info['documents']} documents, {info['chunks']} chunks (ingested in {info['seconds']} s, cached)")
        if args.pad:
            info["padding_chunks"] = await ensure_padded(settings, stores, args.pad)
            info["mission_chunks"] = await stores.vectors.count(MISSION)
            print(f"padded: the mission holds {info['mission_chunks']} chunks ({stores.vectors.backend})")

        # ---- quality
        retr = acts.retriever
        judged = [q for q in range(1, len(queries) + 1) if qrels.get(q)]
        runs: dict[str, list[tuple[float, float]]] = {}
        t0 = time.perf_counter()
        for q in ([] if args.skip_quality else judged):
            text = queries[q - 1]
            bm25 = await retr.bm25(MISSION, text, 100)
            dense = await retr.dense(MISSION, text, 100)
            lists = {"bm25": bm25, "dense": dense}
            variants = {"bm25": bm25, "dense": dense,
                        "hybrid-rrf": fuse(lists, "rrf", 100)}
            for w in (0.3, 0.5, 0.7):
                variants[f"hybrid-minmax w_bm25={w}"] = fuse(lists, "minmax", 100, {"bm25": w, "dense": 1 - w})
            for name, hits in variants.items():
                ranked = doc_ranking(hits, doc_of)
                runs.setdefault(name, []).append((ndcg_at(ranked, qrels[q]), recall_at(ranked, qrels[q])))
        if args.skip_quality:
            runs = {}
        quality = {name: {"ndcg@10": round(statistics.mean(x[0] for x in v), 4),
                          "recall@100": round(statistics.mean(x[1] for x in v), 4)} for name, v in runs.items()}
        print(f"\nquality over {len(judged)} judged queries ({time.perf_counter() - t0:.0f} s)")
        print(f"{'retriever':<28}{'nDCG@10':>10}{'recall@100':>12}")
        for name, m in quality.items():
            print(f"{name:<28}{m['ndcg@10']:>10.4f}{m['recall@100']:>12.4f}")

        # ---- latency: direct vs through the workflow (retrieve-only mode)
        lat_queries = [queries[q - 1] for q in judged[: args.latency_queries]]
        # Interleaved (one direct call, then one workflow run, per query) so load from
        # other processes on the machine hits both sides alike.
        direct: list[float] = []
        parts: dict[str, list[float]] = {}
        through: list[float] = []
        activity_ms: list[float] = []
        env = await start_local_env()
        try:
            with ThreadPoolExecutor(4) as ex:
                async with Worker(env.client, task_queue=queues.RESEARCH, workflows=[ResearchWorkflow],
                                  activities=[acts.retrieve, acts.plan], activity_executor=ex,
                                  workflow_runner=WORKFLOW_RUNNER):
                    for i, text in enumerate([lat_queries[0]] + lat_queries):  # first: warm-up, not counted
                        # each call embeds its question, as a new question would (the embedder keeps
                        # the last questions' vectors)
                        embedder.forget_queries()
                        t = time.perf_counter()
                        out = await retr.retrieve(RetrieveInput(mission=MISSION, query=text, top_k=10, fusion="minmax"))
                        d_ms = (time.perf_counter() - t) * 1000
                        embedder.forget_queries()
                        t = time.perf_counter()
                        res = await env.client.execute_workflow(
                            ResearchWorkflow.run,
                            ResearchInput(mission=MISSION, query=text, subquestions=[text], top_k=10, mode="retrieve"),
                            id=f"bench-retrieve-{uuid.uuid4().hex[:10]}", task_queue=queues.RESEARCH)
                        w_ms = (time.perf_counter() - t) * 1000
                        if i == 0:
                            continue
                        direct.append(d_ms)
                        through.append(w_ms)
                        activity_ms.append(res.timings_ms.get("retrieve", 0.0))
                        for k, v in out.timings_ms.items():
                            parts.setdefault(k, []).append(v)
        finally:
            await env.shutdown()
        lat = {
            "direct": {"p50": pct(direct, 50), "p95": pct(direct, 95)},
            "workflow": {"p50": pct(through, 50), "p95": pct(through, 95)},
            "workflow_retrieve_step": {"p50": pct(activity_ms, 50), "p95": pct(activity_ms, 95)},
            "direct_parts_p50": {k: pct(v, 50) for k, v in parts.items()},
        }
        print(f"\nretrieval latency over {len(lat_queries)} queries (hybrid-minmax, top 10), ms")
        print(f"{'':<10}{'direct':>10}{'workflow':>12}{'ratio':>8}   (workflow retrieve step alone)")
        for p in ("p50", "p95"):
            d, w, s = lat["direct"][p], lat["workflow"][p], lat["workflow_retrieve_step"][p]
            print(f"{p:<10}{d:>10.1f}{w:>12.1f}{w / d:>8.2f}   ({s:.1f})")
        print("direct, p50 per part (bm25 and dense run concurrently): "
              + ", ".join(f"{k} {v:.1f}" for k, v in lat["direct_parts_p50"].items()))

        best = max(quality, key=lambda k: (quality[k]["ndcg@10"], quality[k]["recall@100"])) if quality else "n/a"
        out = {"corpus": info, "quality": quality, "latency_ms": lat, "best": best,
               "queries": len(judged), "latency_queries": len(lat_queries)}
        print(f"\nbest by nDCG@10: {best}")
        await pool.close()
        await stores.close()
        return out
    finally:
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=str(Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cranfield"))
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--skip-quality", action="store_true", help="latency only")
    parser.add_argument("--pad", type=int, default=0,
                        help="grow the mission by this many synthetic chunks first (latency at scale; with --skip-quality)")
    args = parser.parse_args()
    from bench.results import recorded

    with recorded(__file__, "Retrieval (Cranfield)"):
        asyncio.run(main(args))
