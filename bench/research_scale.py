"""Research at a real mission size: latency at ~10k chunks (ingested through the product), while
an ingestion writes into the same mission, and with 50 missions active at once.

    bash bench/research_qa/install.sh            # the corpus: Debian's python3.11-doc
    python bench/research_scale.py [--chunks 10000] [--missions 50] [--questions 40]

One throwaway PostgreSQL (with pgvector, the embedded vector store) and Temporal dev server;
the real missions and research workers in this process, the ingestion worker in its own
(`python -m workers --queue ingestion-tasks`, as in the local stack). The mission gets the Python
3.11 manual's pages through IngestDocumentsWorkflow (the research QA bench's 64 pages first,
then library/ pages) until it holds --chunks chunks. Then, for the research QA bench's
questions:
  - retrieve-only ResearchWorkflow against the direct retrieval call (workflow overhead; the
    direct call's parts, BM25 / dense / fusion, and its p50 per round);
  - full extractive ResearchWorkflow (cache off);
  - both again while IngestDocumentsWorkflow writes more pages into the same mission (the
    ratio to idle; on 2 cores the ingestion's embedding competes for the CPU as well), with the
    direct call too and the CPU seconds PostgreSQL, the ingestion worker, the Temporal dev
    server and this process spent meanwhile;
  - --missions missions activated and ingested (the research test corpus each), retrieve-only
    research round-robin over them, and the RSS of this process and of PostgreSQL.
Writes bench/results/research_scale.md (one section per command line).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.research_qa.corpora import CORPORA, load_questions  # noqa: E402

PYDOC = CORPORA["pydoc"]
HTML_ROOT = PYDOC.root

MISSION = "bench_scale"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def stats(xs: list[float]) -> dict:
    return {"p50": round(pct(xs, 50), 1), "p95": round(pct(xs, 95), 1), "n": len(xs)}


def rss_mib(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int | str) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children(ppid: int) -> list[int]:
    """The pids of a process's children."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                line = next(x for x in (proc / "status").read_text().splitlines() if x.startswith("PPid:"))
                if int(line.split()[1]) == ppid:
                    out.append(int(proc.name))
            except (OSError, StopIteration, ValueError):
                continue
    return out


def postgres_pids(data_dir: Path) -> list[int]:
    """The bench cluster's processes: the postmaster and its children (none if it is not running)."""
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [postmaster, *children(postmaster)]


def postgres_rss_mib(data_dir: Path) -> float:
    """Sum of the RSS of the bench cluster's processes."""
    return sum(rss_mib(p) for p in postgres_pids(data_dir))


async def main(args) -> dict:
    from temporalio.worker import Worker

    from workers.registry import WORKFLOW_RUNNER

    import workers.missions
    import workers.research
    from stratmaster.migrations import apply_migrations
    from stratmaster import queues
    from stratmaster.contracts.ingestion import DocumentRef, IngestInput
    from stratmaster.principals import path_ref
    from stratmaster.contracts.research import ResearchInput, RetrieveInput
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.search_attributes import for_mission
    from stratmaster.settings import Settings
    from tests.support.ports import free_port
    from tests.ingestion_support import worker_env
    from tests.missions_support import activate, cartridge_text
    from tests.research_support import CORPUS
    from workflows.ingestion import IngestDocumentsWorkflow
    from workflows.research import ResearchWorkflow

    questions = [q["question"] for q in load_questions(PYDOC)][: args.questions]
    first = PYDOC.pages(ROOT / ".data")
    rest = sorted(p for p in (HTML_ROOT / "library").rglob("*.html"))
    bench_dir = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-research-scale")).resolve()
    bench_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(bench_dir, 0o755)
    pg = LocalPostgres(data_dir=bench_dir / "pg", port=free_port())
    pg.start()
    env = None
    ingestion_worker = None
    out: dict = {"command": "python bench/research_scale.py " + " ".join(sys.argv[1:])}
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=bench_dir / "data", database_url=pg.dsn, postgres_port=pg.port)
        env = await start_local_env()
        client = env.client
        specs = {q: await mod.build(settings) for q, mod in ((queues.MISSIONS, workers.missions),
                                                               (queues.RESEARCH, workers.research))}
        ingestion_log = open(bench_dir / "ingestion-worker.log", "ab")
        ingestion_worker = subprocess.Popen(
            [sys.executable, "-m", "workers", "--queue", queues.INGESTION, "--metrics-port", str(free_port())],
            env=worker_env(settings, client.service_client.config.target_host), cwd=ROOT,
            stdout=ingestion_log, stderr=subprocess.STDOUT)
        acts = specs[queues.RESEARCH].extra["research"]
        pool = acts.pool
        # every timed call embeds its question, as a new question would: the embedder keeps the
        # last questions' vectors, and the bench asks the same 40 in every round and mode
        embedder = acts.retriever.embedder

        async def chunks_of(mission: str) -> int:
            return int(await pool.fetchval("SELECT count(*) FROM chunks c JOIN tenants t ON t.id = c.tenant_id "
                                           "WHERE t.name = $1", mission))

        def ingest(mission: str, refs: list):
            return client.execute_workflow(
                IngestDocumentsWorkflow.run, IngestInput(mission=mission, documents=refs),
                id=f"ingest-{mission}-{uuid.uuid4().hex[:8]}", task_queue=queues.INGESTION,
                search_attributes=for_mission(mission))

        async def retrieve_only(mission: str, q: str) -> float:
            embedder.forget_queries()
            t = time.perf_counter()
            await client.execute_workflow(
                ResearchWorkflow.run, ResearchInput(mission=mission, query=q, subquestions=[q], top_k=10, mode="retrieve"),
                id=f"research-{mission}-{uuid.uuid4().hex[:12]}", task_queue=queues.RESEARCH,
                search_attributes=for_mission(mission))
            return (time.perf_counter() - t) * 1000

        async def full(mission: str, q: str) -> float:
            embedder.forget_queries()
            t = time.perf_counter()
            await client.execute_workflow(
                ResearchWorkflow.run, ResearchInput(mission=mission, query=q, cache="off"),
                id=f"research-{mission}-{uuid.uuid4().hex[:12]}", task_queue=queues.RESEARCH,
                search_attributes=for_mission(mission))
            return (time.perf_counter() - t) * 1000

        engine_ms: dict[str, list[float]] = {}

        async def direct(mission: str, q: str) -> float:
            embedder.forget_queries()
            t = time.perf_counter()
            got = await acts.retriever.retrieve(RetrieveInput(mission=mission, query=q, top_k=10, candidates=50))
            for name, ms in got.timings_ms.items():
                engine_ms.setdefault(name, []).append(ms)
            return (time.perf_counter() - t) * 1000

        def by_engine() -> dict:
            """The direct call's parts (p50 / p95 ms), since the last call."""
            out = {name: stats(ms) for name, ms in engine_ms.items() if name != "total"}
            engine_ms.clear()
            return out

        with ThreadPoolExecutor(4) as ex:
            running = [Worker(client, task_queue=q, workflows=s.workflows, activities=s.activities, activity_executor=ex, workflow_runner=WORKFLOW_RUNNER,
                              max_concurrent_activities=s.max_concurrent_activities) for q, s in specs.items()]
            for w in running:
                asyncio.ensure_future(w.run())

            # ---- a mission of ~args.chunks chunks, ingested through the product
            await activate(client, cartridge_text(MISSION))
            t0 = time.perf_counter()
            pages = list(first) + rest
            # pages go in in order, so a mission kept from an earlier run holds the first `done`
            done = int(await pool.fetchval("SELECT count(*) FROM documents d JOIN tenants t ON t.id = d.tenant_id "
                                           "WHERE t.name = $1", MISSION))
            have = await chunks_of(MISSION)
            while have < args.chunks and done < len(pages):
                batch = pages[done:done + 40]
                await ingest(MISSION, [path_ref(settings, MISSION, str(p)) for p in batch])
                done += len(batch)
                have = await chunks_of(MISSION)
                print(f"  ingested {done} pages: {have} chunks ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            out["mission"] = {"pages": done, "chunks": have, "vectors": acts.stores.vectors.backend}
            print(f"mission {MISSION}: {done} pages, {have} chunks ({acts.stores.vectors.backend})")

            # ---- idle: direct vs retrieve-only workflow, and full research
            await retrieve_only(MISSION, questions[0])  # warm-up
            await full(MISSION, questions[0])
            d_ms, r_ms, f_ms = [], [], []
            by_round = []
            # several rounds: a p95 of 40 runs is their second slowest, too noisy a base for the
            # while-ingesting ratio (thousands of runs)
            for _ in range(args.idle_rounds):
                for q in questions:
                    d_ms.append(await direct(MISSION, q))
                    r_ms.append(await retrieve_only(MISSION, q))
                    f_ms.append(await full(MISSION, q))
                by_round.append(round(pct(d_ms[-len(questions):], 50), 1))
            out["idle"] = {"direct_retrieval": stats(d_ms), "direct_parts": by_engine(),
                           "direct_p50_by_round": by_round, "retrieve_only_workflow": stats(r_ms),
                           "full_research": stats(f_ms)}
            out["idle"]["workflow_overhead_p95"] = round(pct(r_ms, 95) / pct(d_ms, 95), 2)

            # ---- the same while an ingestion writes into the mission
            more = [path_ref(settings, MISSION, str(p)) for p in pages[done:done + args.ingest_pages]]
            if len(more) < args.ingest_pages:  # a kept mission holds every page: copies, each its own hash
                tag = uuid.uuid4().hex[:8]
                copies = bench_dir / "copies" / tag
                copies.mkdir(parents=True)
                for p in pages[: args.ingest_pages - len(more)]:
                    (copies / p.name).write_bytes(f"<!-- {tag} -->\n".encode() + p.read_bytes())
                    more.append(path_ref(settings, MISSION, str(copies / p.name)))

            def cpu_by_process() -> dict[str, float]:
                """CPU seconds so far: PostgreSQL (all backends), the ingestion worker, the Temporal
                dev server and this process (research worker, client)."""
                server = [p for p in children(os.getpid()) if p != ingestion_worker.pid]
                return {"postgres": sum(cpu_s(p) for p in postgres_pids(bench_dir / "pg")),
                        "ingestion_worker": cpu_s(ingestion_worker.pid),
                        "temporal_server": sum(cpu_s(p) for p in server), "bench_process": cpu_s("self")}

            cpu0, t_ingest = cpu_by_process(), time.perf_counter()
            writing = asyncio.ensure_future(ingest(MISSION, more))
            before = await chunks_of(MISSION)
            r2, f2, d2 = [], [], []
            while not writing.done():
                for i, q in enumerate(questions):
                    if writing.done():
                        break
                    d2.append(await direct(MISSION, q))
                    r2.append(await retrieve_only(MISSION, q))
                    if i % 4 == 0:  # a full run takes seconds: retrieval gets most samples
                        f2.append(await full(MISSION, q))
            await writing
            wall = time.perf_counter() - t_ingest
            cpu1 = cpu_by_process()
            out["while_ingesting"] = {"pages": len(more), "chunks_written": await chunks_of(MISSION) - before,
                                      "seconds": round(wall, 1),
                                      "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0},
                                      "direct_retrieval": stats(d2), "direct_parts": by_engine(),
                                      "direct_p95_ratio": round(pct(d2, 95) / pct(d_ms, 95), 2),
                                      "retrieve_only_workflow": stats(r2), "full_research": stats(f2),
                                      "retrieve_only_p95_ratio": round(pct(r2, 95) / pct(r_ms, 95), 2),
                                      "full_research_p95_ratio": round(pct(f2, 95) / pct(f_ms, 95), 2)}

            # ---- many missions at once
            rss0, pg0 = rss_mib(), postgres_rss_mib(bench_dir / "pg")
            names = [f"bench_m{i:03d}" for i in range(args.missions)]
            docs = [DocumentRef(name=n, content_b64=base64.b64encode(t.encode()).decode())
                    for n, t in CORPUS.items()]
            t0 = time.perf_counter()
            for m in names:
                await activate(client, cartridge_text(m))
                await ingest(m, docs)
            setup_s = time.perf_counter() - t0
            m_ms = []
            for i in range(2 * len(names)):
                m_ms.append(await retrieve_only(names[i % len(names)], questions[i % len(questions)]))
            out["missions"] = {"count": len(names), "chunks_each": await chunks_of(names[0]),
                               "setup_s": round(setup_s, 1), "retrieve_only_workflow": stats(m_ms),
                               "rss_mib": {"bench_process_before": round(rss0), "bench_process_after": round(rss_mib()),
                                           "postgres_before": round(pg0),
                                           "postgres_after": round(postgres_rss_mib(bench_dir / "pg"))},
                               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            for w in running:
                await w.shutdown()
        for s in specs.values():
            if s.close:
                await s.close()
        print(json.dumps(out, indent=2))
        return out
    finally:
        if ingestion_worker is not None:
            ingestion_worker.terminate()
            ingestion_worker.wait(30)
        if env is not None:
            await env.shutdown()
        pg.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10_000, help="ingest pages until the mission holds this many chunks")
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--idle-rounds", type=int, default=5, help="times each question runs idle")
    ap.add_argument("--ingest-pages", type=int, default=80, help="pages written while research runs")
    ap.add_argument("--missions", type=int, default=50)
    args = ap.parse_args()
    from bench.results import recorded

    with recorded(__file__, "Research at scale"):
        asyncio.run(main(args))
