"""One trace from an API request through the workflow and its activity:
server span -> StartWorkflow -> RunWorkflow -> StartActivity -> RunActivity,
collected in process; the tracing interceptor keeps replay deterministic."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from activities.ops.health import HealthActivities
from activities.resources import Resources
from stratmaster import queues
from stratmaster.contracts.health import HealthCheckInput
from stratmaster.settings import Settings
from stratmaster.telemetry import instrument_fastapi, interceptors, otlp_traces_endpoint
from workflows.health import HealthCheckWorkflow


async def test_api_request_workflow_and_activity_share_one_trace(client, settings, task_queue):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cfg = client.config()
    cfg["interceptors"] = interceptors(provider)
    traced = Client(**cfg)  # same connection, tracing on; workers built from it inherit it

    app = FastAPI()
    instrument_fastapi(app, tracer_provider=provider)
    wf_id = f"health-trace-{uuid.uuid4().hex[:8]}"

    @app.post("/health")
    async def start_health() -> dict:
        report = await traced.execute_workflow(HealthCheckWorkflow.run, HealthCheckInput(services=["database"]),
                                               id=wf_id, task_queue=task_queue)
        return {"ok": report.ok}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    async with Worker(traced, task_queue=task_queue, workflows=[HealthCheckWorkflow],
                      activities=[HealthActivities(Resources(settings)).check_services],
                      activity_executor=ThreadPoolExecutor(2)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            # a caller's traceparent is honoured: the whole chain joins the caller's trace
            caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            resp = await http.post("/health", headers={"traceparent": caller})
            assert resp.status_code == 200 and resp.json() == {"ok": True}
            assert (await http.get("/healthz")).status_code == 200
    provider.force_flush()

    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    http_spans = [s for s in spans if s.kind == trace.SpanKind.SERVER and "http.route" in (s.attributes or {})]
    assert [s.attributes["http.route"] for s in http_spans] == ["/health"]  # /healthz is not traced
    server = http_spans[0]
    chain = [server, by_name["StartWorkflow:HealthCheckWorkflow"], by_name["RunWorkflow:HealthCheckWorkflow"],
             by_name["StartActivity:check_services"], by_name["RunActivity:check_services"]]
    assert {s.context.trace_id for s in chain} == {0x0af7651916cd43dd8448eb211c80319c}
    assert server.parent.span_id == 0xb7ad6b7169203331
    names = {s.context.span_id: s.name for s in spans}
    parent_of = {s.name: names.get(s.parent.span_id) for s in chain[1:]}
    # TracingInterceptor's workflow spans are zero-duration markers: work the workflow
    # schedules hangs off the span that started the workflow (carried in the headers).
    assert parent_of == {
        "StartWorkflow:HealthCheckWorkflow": server.name,
        "RunWorkflow:HealthCheckWorkflow": "StartWorkflow:HealthCheckWorkflow",
        "StartActivity:check_services": "StartWorkflow:HealthCheckWorkflow",
        "RunActivity:check_services": "StartActivity:check_services",
    }

    # replaying the recorded history with the tracing interceptor is deterministic
    history = await client.get_workflow_handle(wf_id).fetch_history()
    await Replayer(workflows=[HealthCheckWorkflow], interceptors=interceptors(TracerProvider())).replay_workflow(history)


def test_otlp_endpoint_accepts_collector_base_url():
    assert otlp_traces_endpoint("http://otel-collector:4318") == "http://otel-collector:4318/v1/traces"
    assert otlp_traces_endpoint("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"


def test_worker_process_exports_spans_over_otlp(temporal_env, settings, tmp_path):
    """A real worker process with STRATMASTER_OTLP_ENDPOINT set ships its spans to
    an OTLP/HTTP receiver (a tiny in-test HTTP server standing in for the collector)."""
    import asyncio  # noqa: F401  (the test runs the workflow through asyncio below)
    import os
    import signal
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    received.extend(s.name for s in ss.spans)
            received.append("path:" + self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    from tests.support.ports import free_port

    metrics_port = free_port()
    env = dict(os.environ, STRATMASTER_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
               STRATMASTER_DATABASE_URL=settings.database_url, STRATMASTER_DATA_DIR=str(settings.data_dir),
               STRATMASTER_OTLP_ENDPOINT=f"http://127.0.0.1:{srv.server_port}")
    proc = subprocess.Popen([sys.executable, "-m", "workers", "--queue", queues.MAINTENANCE,
                             "--metrics-port", str(metrics_port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import asyncio as aio

        async def go():
            cfg = temporal_env.client.config()
            cfg["interceptors"] = interceptors(TracerProvider())
            await Client(**cfg).execute_workflow(
                HealthCheckWorkflow.run, HealthCheckInput(services=["database"]),
                id=f"health-otlp-{uuid.uuid4().hex[:8]}", task_queue=queues.MAINTENANCE)

        aio.run(go())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        srv.shutdown()
    assert proc.returncode == 0, out
    assert "path:/v1/traces" in received
    assert {"RunWorkflow:HealthCheckWorkflow", "RunActivity:check_services"} <= set(received), received
    # JSON logs from the worker carry the trace id of the activity that logged nothing but the
    # worker's own lines are still structured JSON
    import json

    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(line.get("msg") == "worker stopped" for line in lines)


def test_settings_otlp_default_off():
    assert Settings(_env_file=None).otlp_endpoint is None


async def test_real_api_health_request_is_one_trace_with_its_workflow(temporal_env, settings):
    """The real starters.api app: GET /health/database starts HealthCheckWorkflow on the
    maintenance queue; the API's server span is the root of the workflow's spans."""
    from starters.api import create_app

    api_settings = settings.model_copy(update={
        "temporal_address": temporal_env.client.service_client.config.target_host, "auth_mode": "dev"})
    app = create_app(api_settings)  # installs the global tracer provider (once per process)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    cfg = temporal_env.client.config()
    cfg["interceptors"] = interceptors()  # the worker side, as `python -m workers` does
    worker_client = Client(**cfg)
    async with Worker(worker_client, task_queue=queues.MAINTENANCE, workflows=[HealthCheckWorkflow],
                      activities=[HealthActivities(Resources(settings)).check_services],
                      activity_executor=ThreadPoolExecutor(2)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            resp = await http.get("/health/database")
    assert resp.status_code == 200, resp.text
    provider.force_flush()
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if (s.attributes or {}).get("http.route") == "/health/database")
    run_activity = next(s for s in spans if s.name == "RunActivity:check_services")
    start_wf = next(s for s in spans if s.name == "StartWorkflow:HealthCheckWorkflow")
    assert start_wf.parent.span_id == server.context.span_id
    assert run_activity.context.trace_id == server.context.trace_id
