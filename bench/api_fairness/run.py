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
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.local_stack import api_process, local_stack, worker_processes  # noqa: E402
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


def _spans() -> dict:
    """Event type -> (what it ends, its attributes, the event it measures from)."""
    from temporalio.api.enums.v1 import EventType

    return {
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: ("workflow tasks queued", "workflow_task_started_event_attributes",
                                                     "scheduled_event_id"),
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: ("workflow tasks running",
                                                       "workflow_task_completed_event_attributes", "started_event_id"),
        EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: ("activities queued", "activity_task_started_event_attributes",
                                                     "scheduled_event_id"),
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("activities running",
                                                       "activity_task_completed_event_attributes", "started_event_id"),
    }


_SPANS = _spans()


async def where_time_went(client, mission: str, since: datetime) -> dict[str, float]:
    """Medians over `mission`'s research runs started since `since`: the whole run, and how much of
    it workflow tasks and activities spent queued (scheduled to started) and running."""
    import statistics

    parts: dict[str, list[float]] = {}
    async for wf in client.list_workflows(f"Mission = '{mission}' AND WorkflowType = 'ResearchWorkflow' "
                                          f"AND StartTime >= '{since.isoformat()}'"):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        at = {e.event_id: e.event_time.ToMilliseconds() for e in history.events}
        sums = dict.fromkeys((label for label, _, _ in _SPANS.values()), 0.0)
        for e in history.events:
            if e.event_type in _SPANS:
                label, attributes, since_field = _SPANS[e.event_type]
                sums[label] += at[e.event_id] - at[getattr(getattr(e, attributes), since_field)]
        sums["whole run"] = at[history.events[-1].event_id] - at[history.events[0].event_id]
        for k, v in sums.items():
            parts.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in parts.items()}


def _label(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if "--queue" in cmdline:
        return "worker " + cmdline[cmdline.index("--queue") + 1]
    for needle, name in (("serve.py", "API"), ("locust", "Locust"), ("temporal", "Temporal server"),
                         ("postgres", "PostgreSQL"), ("api_fairness/run.py", "this bench")):
        if needle in text:
            return name
    return "other"


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far, by kind of process (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        label = _label([c for c in cmdline if c] or ["?"])
        out[label] = out.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def main(args) -> None:
    import asyncpg
    from temporalio.client import WorkflowExecutionStatus

    from stratmaster import queues
    from tests.support.ports import free_port

    if not LOCUST.exists():
        sys.exit(f"{LOCUST} is missing: run `bash bench/api_fairness/install.sh`")
    async with local_stack("bench-fair-", [A, B]) as stack:
        client, tmp = stack.client, stack.tmp
        env = dict(stack.env, STRATMASTER_METRICS_PORT_BASE=str(free_port()))
        # one worker process per queue, as the dev stack and production run them (in-process workers
        # would share one event loop, which no deployment does)
        async with worker_processes(client, env, [queues.MISSIONS, queues.MAINTENANCE, queues.INGESTION,
                                                  queues.RESEARCH]), \
                api_process(lambda port: [sys.executable, str(HERE / "serve.py"), str(port)],
                            dict(env, STRATMASTER_AUTH_MODE="oidc", STRATMASTER_KEYCLOAK_URL="http://127.0.0.1:9",
                                 STRATMASTER_BIND_HOST="127.0.0.1")) as host:
            async with httpx.AsyncClient(base_url=host) as http:
                # warm-up, not measured: each new worker process loads its models on its first run
                for m in (B, A):
                    for q in QUESTIONS:
                        await http.post(f"/missions/{m}/research?wait=30", json={"query": q, "cache": "off"},
                                        headers={"Authorization": f"Bearer warmup:mission:{m}:writer"}, timeout=60)
            run = asyncio.to_thread
            since = datetime.now(timezone.utc)
            print(f"quiet: {args.analysts} analysts of {B} for {args.seconds} s", file=sys.stderr)
            quiet = await run(locust, host, args.seconds, args.analysts, ["Analyst"], tmp / "quiet", args.analysts)
            print(f"flood: the same, and {args.flooders} flooders of {A}", file=sys.stderr)
            before = cpu_seconds()
            flood_started = datetime.now(timezone.utc)
            flood = await run(locust, host, args.seconds, args.analysts + args.flooders, ["Analyst", "Flooder"],
                              tmp / "flood", args.analysts)
            flood_cpu = {k: v - before.get(k, 0.0) for k, v in cpu_seconds().items()}
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
            waits = await where_time_went(client, B, flood_started)
            conn = await asyncpg.connect(stack.settings.database_url)
            try:
                dupes = await conn.fetchval("SELECT count(*) - count(DISTINCT (document_id, ordinal)) FROM chunks")
            finally:
                await conn.close()
    report(args, quiet, flood, counts, dupes, flood_cpu, waits)

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


def report(args, quiet: dict, flood: dict, counts: dict, dupes: int, flood_cpu: dict[str, float],
           waits: dict[str, float]) -> None:
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
        f"CPU seconds during the flood ({args.seconds} s on {os.cpu_count()} cores), by process:", "",
        "| process | CPU s |", "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in sorted(flood_cpu.items(), key=lambda kv: -kv[1]) if v >= 0.5], "",
        "Where B's research runs of the flood spent their time (medians over the runs, ms; from their "
        "histories):", "",
        "| part | ms |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in waits.items()], "",
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
