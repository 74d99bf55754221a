"""Run the worker for one task queue: `python -m workers --queue research-tasks`.

Graceful shutdown on SIGTERM/SIGINT (in-flight activities get
graceful_shutdown_timeout to finish); Prometheus metrics from the Temporal
runtime on a per-worker port.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from stratmaster import queues
from stratmaster.errors import ServiceUnavailable
from stratmaster.logging import configure_logging
from stratmaster.settings import get_settings
from stratmaster.telemetry import configure_tracing, interceptors, shutdown_tracing
from stratmaster.temporal_client import connect
from workers.ports import metrics_port_for
from workers.registry import build, serving

log = logging.getLogger("stratmaster.worker")


# Batch work that may take both cores for minutes; research is what someone waits for.
BACKGROUND_QUEUES = frozenset({queues.INGESTION, queues.MAINTENANCE})


def lower_priority(queue: str, nice: int, sched_idle: bool) -> tuple[int, str]:
    """Run a background queue's worker at `nice`, and under SCHED_IDLE when asked (before
    torch or the Temporal runtime start their threads, which inherit both); the process's
    niceness and scheduling policy after.

    Nice alone shares the CPU in proportion, but a research task that wakes (a reply from
    PostgreSQL, a workflow task) still waits for a running embedding thread's time slice;
    a SCHED_IDLE thread is preempted at once (research p95 while ingesting 74 -> 64-66 ms,
    bench/research_scale.py). Both apply where workers share a machine."""
    if queue in BACKGROUND_QUEUES:
        if nice > os.getpriority(os.PRIO_PROCESS, 0):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        if sched_idle:
            try:
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            except OSError as exc:  # refused (a seccomp profile, say): the niceness still applies
                log.warning("SCHED_IDLE refused: %s", exc, extra={"queue": queue})
    policy = "idle" if os.sched_getscheduler(0) == os.SCHED_IDLE else "normal"
    return os.getpriority(os.PRIO_PROCESS, 0), policy


async def run(queue: str, metrics_port: int | None, nice: int = 0, policy: str = "normal") -> None:
    settings = get_settings()
    configure_tracing(f"stratmaster-worker-{queue}", settings)
    port = metrics_port if metrics_port is not None else metrics_port_for(queue, settings.metrics_port_base)
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{settings.bind_host}:{port}")))
    except ValueError as exc:  # the core reports a taken port as ValueError
        raise ServiceUnavailable(
            f"cannot serve worker metrics on {settings.bind_host}:{port}: {exc}; "
            "pass --metrics-port or set STRATMASTER_METRICS_PORT_BASE") from exc
    client = await connect(settings, runtime=runtime, interceptors=interceptors())
    spec = await build(queue, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serving(client, queue, spec, graceful_shutdown_timeout=timedelta(seconds=20)):
        log.info("worker started", extra={"queue": queue, "metrics_port": port, "nice": nice, "sched": policy,
                                            "workflows": [w.__name__ for w in spec.workflows]})
        await stop.wait()
        log.info("worker stopping", extra={"queue": queue})
    log.info("worker stopped", extra={"queue": queue})
    shutdown_tracing()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers")
    parser.add_argument("--queue", required=True, choices=list(queues.ALL))
    parser.add_argument("--metrics-port", type=int, default=None)
    args = parser.parse_args(argv)
    configure_logging(json_logs=get_settings().log_json)
    try:
        # first, in the main thread: every thread started later inherits it
        settings = get_settings()
        nice, policy = lower_priority(args.queue, settings.background_worker_nice, settings.background_worker_sched_idle)
        asyncio.run(run(args.queue, args.metrics_port, nice, policy))
        # Stopped cleanly (everything closed, logs written): leave without interpreter
        # finalisation, which the Temporal runtime's and gRPC's native threads can race
        # ("PyGILState_Release ... finalizing", exit -6, seen under load).
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    except OSError as exc:  # e.g. metrics port taken
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
