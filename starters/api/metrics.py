"""Prometheus request metrics of the API (served by GET /metrics, routers/health.py)."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram


METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def _method(scope) -> str:
    """The request method as a label: one of the methods HTTP routes use, else OTHER (an
    unauthenticated client can send any token as a method; labels must stay a bounded set)."""
    method = scope.get("method", "")
    return method if method in METHODS else "OTHER"


def _route_path(scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "<unmatched>"


class MetricsMiddleware:
    """http_requests_total{method,path,status} and http_request_duration_seconds{method,path}
    (the names the alert rules use); path is the route template, so labels stay bounded."""

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "path", "status"], registry=registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "path"],
                                 registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = _route_path(scope)
            method = _method(scope)
            self.requests.labels(method, path, str(status["code"])).inc()
            self.latency.labels(method, path).observe(time.perf_counter() - t0)
