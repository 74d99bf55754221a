"""OpenTelemetry tracing: OTLP export when STRATMASTER_OTLP_ENDPOINT is set."""
from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanProcessor

from stratmaster.settings import Settings

_configured = False


def configure_tracing(service_name: str, settings: Settings, extra_processor: SpanProcessor | None = None) -> TracerProvider | None:
    """Install a global tracer provider once per process."""
    global _configured
    if _configured:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    if extra_processor:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    _configured = True
    return provider
