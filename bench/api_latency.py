"""API latency through the ASGI app (dev mode) against a real Temporal dev server,
a throwaway PostgreSQL and the real missions + maintenance workers in-process:
p50/p95 per route, and the cost of a workflow round-trip relative to a bare route.
(The seeds' target: API p95 < 500 ms.) Writes bench/results/api_latency.md.

    python bench/api_latency.py [--n 200]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from stratmaster.migrations import apply_migrations  # noqa: E402
from stratmaster import queues  # noqa: E402
from stratmaster.local_postgres import LocalPostgres  # noqa: E402
from stratmaster.local_temporal import start_local_env  # noqa: E402
from stratmaster.settings import Settings  # noqa: E402
from tests.api_support import api_client, cartridge, make_app, run_workers, terminate_quietly, wait_closed  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from bench.results import recorded  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def timed(n: int, call) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = await call(i)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code < 400, r.text
    return out


async def run(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    pg = LocalPostgres(data_dir=tmp / "pg", port=free_port())
    pg.start()
    env = await start_local_env()
    started: list[str] = []
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=tmp / "data", database_url=pg.dsn, auth_mode="dev")
        client = env.client
        async with run_workers(client, settings, [queues.MAINTENANCE, queues.MISSIONS]):
            app = make_app(settings, client)
            async with api_client(app) as api:
                r = await api.post("/missions", json=cartridge("bench_api"))
                await wait_closed(client, r.json()["workflow_id"])
                rows = {}
                rows["GET /healthz"] = await timed(n, lambda i: api.get("/healthz"))
                rows["GET /missions/{m} (cached)"] = await timed(n, lambda i: api.get("/missions/bench_api"))

                async def uncached(i):
                    app.state.missions.forget("bench_api")
                    return await api.get("/missions/bench_api")

                rows["GET /missions/{m} (ShowMissionWorkflow)"] = await timed(max(20, n // 4), uncached)

                async def start(i):
                    r = await api.post("/missions/bench_api/research", json={"query": f"question {i}"})
                    started.append(r.json()["workflow_id"])
                    return r

                rows["POST /missions/{m}/research (+audit)"] = await timed(max(20, n // 4), start)
                rows["GET /workflows/{id} (describe)"] = await timed(
                    max(20, n // 4), lambda i: api.get("/workflows/mission-activate-bench_api-1.0.0"))
                base = statistics.median(rows["GET /healthz"])
                print(f"{'route':<44} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'x healthz':>10}")
                for name, xs in rows.items():
                    print(f"{name:<44} {len(xs):>5} {pct(xs, 50):>8.2f} {pct(xs, 95):>8.2f} "
                          f"{statistics.median(xs) / base:>10.1f}")
                await terminate_quietly(client, started)
    finally:
        await env.shutdown()
        pg.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    with recorded(__file__, "API latency"):
        asyncio.run(run(args.n))
