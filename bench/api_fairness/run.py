"""The noisy neighbour, measured: mission A floods the API while mission B asks its usual questions.

    bash bench/api_fairness/install.sh            # Locust from PyPI, in its own venv
    python bench/api_fairness/run.py [--seconds 60] [--flooders 20]

The local stack for real: a Temporal dev server (fairness keys on), a bench PostgreSQL, the
missions, ingestion, research and maintenance workers (this process), the API in a uvicorn
process of its own with its default fair-use limits, and Locust (bench/api_fairness/locustfile.py)
as the load. Two phases of the same length: quiet (B's analysts alone) and flood (the same
analysts while A's flooders start research and ingestions and open event streams without pause,
each flooder a principal of its own). Then every workflow either mission started must have
closed completed, and no chunk may be stored twice.

Writes bench/api_fairness/results.md (date, command, machine): B's research p50/p95 quiet and
under the flood, their ratio, and A's requests accepted and refused (429 with Retry-After).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")

A, B = "fair_flood", "fair_quiet"
QUESTIONS = [
    "How much capacity does the XR-7 battery retain after 1000 charge cycles?",
    "Does cold weather reduce the driving range of the XR-7?",
    "What share of sunlight do monocrystalline solar panels convert?",
    "How long does charging the XR-7 battery take?",
    "Which chemistry does the XR-7 battery use?",
]
LOCUST = Path(os.environ.get("STRATMASTER_LOCUST_VENV", Path.home() / ".cache/stratmaster/locust-venv")) / "bin/locust"


def locust(host: str, seconds: int, users: int, classes: list[str], prefix: Path, analysts: int) -> dict[str, dict]:
    env = dict(os.environ, FAIR_MISSION_A=A, FAIR_MISSION_B=B, FAIR_QUESTIONS=json.dumps(QUESTIONS),
               FAIR_ANALYSTS=str(analysts))
    subprocess.run([str(LOCUST), "-f", str(HERE / "locustfile.py"), "--headless", "--host", host, "-u", str(users),
                    "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "35", "--csv", str(prefix),
                    "--only-summary", *classes], env=env, check=False, capture_output=True, timeout=seconds + 120)
    with open(f"{prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


async def main(args) -> None:
    from temporalio.client import WorkflowExecutionStatus

    from stratmaster import queues
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.migrations import apply_migrations
    from stratmaster.settings import Settings
    from tests.api_support import run_workers
    from tests.support.ports import free_port
    from tests.research_support import ingest_corpus

    if not LOCUST.exists():
        sys.exit(f"{LOCUST} is missing: run `bash bench/api_fairness/install.sh`")
    tmp = Path(tempfile.mkdtemp(prefix="bench-fair-"))
    pg = LocalPostgres(data_dir=tmp / "pg", port=free_port())
    pg.start()
    env = await start_local_env()
    api = None
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=tmp / "data", database_url=pg.dsn, postgres_port=pg.port)
        client = env.client
        for m in (A, B):  # (with workers of its own)
            await ingest_corpus(client, settings, m)
        async with run_workers(client, settings, [queues.MISSIONS, queues.MAINTENANCE, queues.INGESTION, queues.RESEARCH]):
            port = free_port()
            api_env = dict(os.environ, STRATMASTER_DATA_DIR=str(tmp / "data"), STRATMASTER_DATABASE_URL=pg.dsn,
                           STRATMASTER_TEMPORAL_ADDRESS=client.service_client.config.target_host,
                           STRATMASTER_AUTH_MODE="oidc", STRATMASTER_KEYCLOAK_URL="http://127.0.0.1:9",
                           STRATMASTER_BIND_HOST="127.0.0.1")
            api = subprocess.Popen([sys.executable, str(HERE / "serve.py"), str(port)], env=api_env, cwd=ROOT)
            host = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=host) as http:
                for _ in range(200):
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            run = asyncio.to_thread
            since = datetime.now(timezone.utc)
            print(f"quiet: {args.analysts} analysts of {B} for {args.seconds} s", file=sys.stderr)
            quiet = await run(locust, host, args.seconds, args.analysts, ["Analyst"], tmp / "quiet", args.analysts)
            print(f"flood: the same, and {args.flooders} flooders of {A}", file=sys.stderr)
            flood = await run(locust, host, args.seconds, args.analysts + args.flooders, ["Analyst", "Flooder"],
                              tmp / "flood", args.analysts)
            # nothing lost or duplicated: everything started closes completed
            counts: dict[str, dict[str, int]] = {}
            deadline = time.monotonic() + 900
            while True:
                counts = {m: {} for m in (A, B)}
                for m in (A, B):
                    async for wf in client.list_workflows(f"Mission = '{m}' AND StartTime >= '{since.isoformat()}'"):
                        status = WorkflowExecutionStatus(wf.status).name.lower()
                        counts[m][status] = counts[m].get(status, 0) + 1
                if not any(c.get("running") for c in counts.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(5)
            pool = settings.database_url
            import asyncpg

            conn = await asyncpg.connect(pool)
            try:
                dupes = await conn.fetchval(
                    "SELECT count(*) - count(DISTINCT (document_id, ordinal)) FROM chunks")
            finally:
                await conn.close()
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        await env.shutdown()
        pg.stop()
    report(args, quiet, flood, counts, dupes)


def limits() -> str:
    from stratmaster.settings import Settings

    s = Settings(_env_file=None)
    return (f"{s.api_starts_per_minute:g} starts/min per principal, {s.api_mission_starts_per_minute:g} per mission, "
            f"burst {s.api_starts_burst:g}; {s.api_streams_per_principal} streams per principal, "
            f"{s.api_streams_per_mission} per mission; at most {s.api_mission_running_research} research runs and "
            f"{s.api_mission_running_ingestions} ingestions running per mission")


def num(row: dict | None, key: str) -> float:
    try:
        return float(row[key]) if row else float("nan")
    except (KeyError, ValueError):
        return float("nan")


def report(args, quiet: dict, flood: dict, counts: dict, dupes: int) -> None:
    qb, fb = quiet.get("B research"), flood.get("B research")
    ratio = num(fb, "95%") / num(qb, "95%")
    accepted = {k: int(num(flood.get(f"A {k}"), "Request Count")) for k in ("research", "ingest", "stream")}
    refused = {k: int(num(flood.get(f"A {k} 429"), "Request Count") or 0) if flood.get(f"A {k} 429") else 0
               for k in ("research", "ingest", "stream")}
    for k in accepted:
        accepted[k] -= refused[k]
    body = [
        f"{args.analysts} analysts of mission B ask questions one at a time (POST research ?wait=30), "
        f"{args.seconds} s quiet, then {args.seconds} s while {args.flooders} principals of mission A start research "
        "and ingestions and open event streams without pause. The API, the workers and Locust share the machine. "
        f"Fair-use limits: {limits()}.", "",
        "| | B research requests | B failures | B p50 ms | B p95 ms |", "|---|---|---|---|---|",
        f"| quiet | {int(num(qb, 'Request Count'))} | {int(num(qb, 'Failure Count'))} | {num(qb, '50%'):.0f} | {num(qb, '95%'):.0f} |",
        f"| flood | {int(num(fb, 'Request Count'))} | {int(num(fb, 'Failure Count'))} | {num(fb, '50%'):.0f} | {num(fb, '95%'):.0f} |",
        "", f"B's p95 under the flood: **{ratio:.2f}x** quiet (target <= 1.5x).", "",
        "| mission A | accepted | refused (429 with Retry-After) |", "|---|---|---|",
        *[f"| {k} | {accepted[k]} | {refused[k]} |" for k in accepted], "",
        "Workflows after the run (every one started closed): " + "; ".join(
            f"{m}: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items())) for m, c in counts.items()) +
        f". Chunks stored twice: {dupes}.", "",
    ]
    path = results.write(__file__, "API fairness under load", body)
    print("\n".join(body))
    print(f"(written to {path})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--analysts", type=int, default=2)
    ap.add_argument("--flooders", type=int, default=20)
    asyncio.run(main(ap.parse_args()))
