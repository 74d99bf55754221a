"""OpenTelemetry tracing: OTLP export when STRATMASTER_OTLP_ENDPOINT is set.

One trace follows a request end to end: the API's server span (FastAPI
instrumentation) -> StartWorkflow (client TracingInterceptor, context carried
in the Temporal headers) -> RunWorkflow -> StartActivity -> RunActivity (worker
TracingInterceptor). Starters and workers connect with `interceptors()`.
"""
from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanProcessor

from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.telemetry")

_configured = False
# Requests the probes and Prometheus make all the time: not worth a trace each.
UNTRACED_URLS = "healthz,readyz,metrics"


def otlp_traces_endpoint(endpoint: str) -> str:
    """Accept the collector base URL (http://otel-collector:4318) or the full
    /v1/traces URL, as the OTLP/HTTP exporter wants the latter."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def configure_tracing(service_name: str, settings: Settings, extra_processor: SpanProcessor | None = None) -> TracerProvider | None:
    """Install a global tracer provider once per process."""
    global _configured
    if _configured:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name, "service.namespace": "stratmaster"}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_traces_endpoint(settings.otlp_endpoint))))
        log.info("tracing to %s", settings.otlp_endpoint, extra={"service": service_name})
    if extra_processor:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


def shutdown_tracing() -> None:
    """Flush pending spans (BatchSpanProcessor) before the process exits."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def tracing_interceptor(tracer_provider: TracerProvider | None = None):
    """Temporal's OTel interceptor; on a client it also applies to workers built from it."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("temporalio")
    return TracingInterceptor(tracer)


def interceptors(tracer_provider: TracerProvider | None = None) -> list[Any]:
    """Interceptors for `stratmaster.temporal_client.connect(..., interceptors=...)`:
    tracing plus mission-tagged activity logs."""
    from stratmaster.logging import MissionLogInterceptor

    return [tracing_interceptor(tracer_provider), MissionLogInterceptor()]


def instrument_fastapi(app: Any, tracer_provider: TracerProvider | None = None) -> None:
    """Server span per request (W3C traceparent from the caller is honoured), so the
    workflows an endpoint starts join the caller's trace."""
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:  # the instrumentation package is optional: a minimal middleware instead
        _instrument_with_middleware(app, tracer_provider)
        return
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, excluded_urls=UNTRACED_URLS,
                                       exclude_spans=["receive", "send"])


def _instrument_with_middleware(app: Any, tracer_provider: TracerProvider | None) -> None:
    from opentelemetry.propagate import extract

    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("stratmaster.api")
    skip = {"/" + u for u in UNTRACED_URLS.split(",")}

    @app.middleware("http")
    async def _trace(request, call_next):  # pragma: no cover - only without the instrumentation package
        if request.url.path in skip:
            return await call_next(request)
        with tracer.start_as_current_span(f"{request.method} {request.url.path}", context=extract(dict(request.headers)),
                                          kind=trace.SpanKind.SERVER) as span:
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            return response
