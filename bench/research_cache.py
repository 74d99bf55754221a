"""Research answer cache latency: the same question asked again, through the
workflow and through the API (`POST /missions/{m}/research?wait=...`), against a
throwaway Temporal dev server, a throwaway PostgreSQL (the embedded default cache
backend) and the real ingestion and research workers in-process, on the research
test corpus. Prints p50/p95 of a full run (cache refresh) and of a cache hit, and
the hit/miss ratio of latencies (written to bench/results/research_cache.md). (The seeds' target:
cache hits < 50 ms.)

    python bench/research_cache.py [--n 50]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from stratmaster.migrations import apply_migrations  # noqa: E402
from stratmaster import queues  # noqa: E402
from stratmaster.contracts.research import ResearchInput  # noqa: E402
from stratmaster.local_postgres import LocalPostgres  # noqa: E402
from stratmaster.local_temporal import start_local_env  # noqa: E402
from stratmaster.search_attributes import for_mission  # noqa: E402
from stratmaster.settings import Settings  # noqa: E402
from tests.research_support import activate_mission, ingest_corpus, research_worker  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.workers import queue_worker  # noqa: E402
from workers.registry import WORKFLOW_RUNNER  # noqa: E402
from workflows.research import ResearchWorkflow  # noqa: E402
from bench.results import recorded  # noqa: E402

QUESTION = "How much capacity does the XR-7 battery keep after 1000 cycles?"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def line(name: str, xs: list[float]) -> str:
    return f"  {name:<34} p50 {pct(xs, 50):7.1f} ms   p95 {pct(xs, 95):7.1f} ms   (n={len(xs)})"


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    pg = LocalPostgres(data_dir=work / "pg", port=free_port())
    pg.start()
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=work / "data", database_url=pg.dsn, postgres_port=pg.port,
                            auth_mode="dev")
        env = await start_local_env()
        try:
            client = env.client
            mission = f"bench_cache_{uuid.uuid4().hex[:6]}"
            await activate_mission(client, settings, mission)
            await ingest_corpus(client, settings, mission)
            # the missions worker answers the API's mission directory (ListMissionsWorkflow)
            # the workers' own workflow runner (the tests' queue_worker defaults to the strict one)
            async with research_worker(client, settings, workflow_runner=WORKFLOW_RUNNER), \
                    queue_worker(client, settings, queues.MISSIONS, workflow_runner=WORKFLOW_RUNNER):
                async def ask(cache: str) -> tuple[float, bool]:
                    t = time.perf_counter()
                    r = await client.execute_workflow(
                        ResearchWorkflow.run, ResearchInput(mission=mission, query=QUESTION, cache=cache),
                        id=f"research-{mission}-{uuid.uuid4().hex[:12]}", task_queue=queues.RESEARCH,
                        search_attributes=for_mission(mission))
                    return (time.perf_counter() - t) * 1000, r.cached

                await ask("refresh")  # warm up the model and fill the cache
                full = [(await ask("refresh"))[0] for _ in range(max(5, n // 5))]
                hits = []
                for _ in range(n):
                    ms, cached = await ask("use")
                    assert cached, "expected a cache hit"
                    hits.append(ms)
                api = await api_hits(client, settings, mission, n)
            print("research answer cache, PostgreSQL backend, research test corpus")
            print(line("full run (cache=refresh), workflow", full))
            print(line("cache hit, workflow", hits))
            if api:
                print(line("cache hit, API ?wait=5", api))
            print(f"  hit / full p50 ratio: {pct(hits, 50) / pct(full, 50):.3f}")
        finally:
            await env.shutdown()
    finally:
        pg.stop()


async def api_hits(client, settings, mission: str, n: int) -> list[float]:
    """Through the real ASGI app in dev mode (skipped when the API has no wait parameter)."""
    from tests.api_support import api_client, make_app

    out = []
    async with api_client(make_app(settings, client)) as api:
        for _ in range(n):
            t = time.perf_counter()
            r = await api.post(f"/missions/{mission}/research", params={"wait": 5}, json={"query": QUESTION})
            ms = (time.perf_counter() - t) * 1000
            if r.status_code != 200:
                print(f"  (API answered {r.status_code}: no synchronous research route; API figures skipped)")
                return []
            assert (r.json().get("result") or {}).get("cached"), r.text[:300]
            out.append(ms)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    with recorded(__file__, "Research answer cache"):
        asyncio.run(main(args.n))
