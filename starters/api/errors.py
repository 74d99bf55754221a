"""The one error shape of the API and the handlers that produce it.

Every error response, whatever raised it (a route, FastAPI's request validation,
routing, an unexpected exception), is the JSON `ErrorBody`
{"error": code, "detail": message or [{loc, msg, type}]}; OpenAPI declares it for
each status a route can answer (`error_responses`)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.service import RPCError

from stratmaster.contracts.health import HealthReport
from stratmaster.errors import ServiceUnavailable

log = logging.getLogger("stratmaster.api")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: ['body', 'top_k'], ['path', 'mission'], ...")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error response."""
    error: str = Field(description="machine-readable code, e.g. unauthorized, unknown_mission, invalid_input",
                       examples=["unknown_mission"])
    detail: str | list[ValidationIssue] = Field(description="a message, or (422) one entry per invalid field")


class HealthUnavailable(ErrorBody):
    """503 of the detailed health checks: the error, and the report when the check ran."""
    report: HealthReport | None = None


ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_input", 429: "rate_limited", 500: "internal_error", 503: "unavailable"}
ERROR_DESCRIPTIONS = {
    400: "malformed request (body not UTF-8, JSON nested too deep, unreadable multipart)",
    401: "no, invalid or expired bearer token",
    403: "the caller's roles do not allow this",
    404: "unknown mission or workflow (also: a workflow the caller may not see)",
    409: "conflict with the resource's state (mission inactive, research not running)",
    413: "request body too large",
    415: "unsupported Content-Type",
    422: "invalid input, with the fields named",
    429: "fair-use limit of the caller or the mission reached (starts of work, open event streams); see Retry-After",
    500: "unexpected server error (details are logged, never returned)",
    503: "Temporal, a worker or the identity provider is unavailable",
}


def error_responses(*codes: int, **models: type[BaseModel]) -> dict[int | str, dict]:
    """`responses=` for a route: each status with the error model."""
    return {c: {"model": models.get(f"m{c}", ErrorBody), "description": ERROR_DESCRIPTIONS[c]} for c in codes}


AUTH_ERRORS = (401, 403, 503)  # every authenticated route (503: identity provider or Temporal unavailable)
BODY_ERRORS = (400, 413, 415, 422)  # every route that reads a request body


class ApiError(HTTPException):
    """HTTPException with a machine-readable code next to the message."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(status, detail=message, headers=headers)
        self.code = code


def error_json(status: int, detail: Any, code: str | None = None, headers: Mapping[str, str] | None = None,
               **extra: Any) -> JSONResponse:
    body = {"error": code or ERROR_CODES.get(status, "error"), "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def validation_error(loc: tuple, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


def pydantic_errors(exc: ValidationError, prefix: tuple = ("body",)) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": prefix + tuple(e["loc"])}
                                   for e in exc.errors(include_url=False, include_context=False)])


def issues(errors: list[dict]) -> list[dict]:
    """Validation errors as returned: where, what and the error type, never the
    offending input (it can be huge, deep or hostile)."""
    return [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))} for e in errors]


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


def _routes(app: FastAPI):
    """Every route of the app, those of included routers too (FastAPI keeps them
    nested under the router they came from)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI versions that flatten included routes
        return app.router.routes
    return iter_route_contexts(app.router.routes)


def allowed_methods(app: FastAPI, scope) -> list[str]:
    """Every method the request's path answers, across all its routes (a path such as
    /missions has one route per method: Starlette's 405 names only the first)."""
    methods: set[str] = set()
    for route in _routes(app):
        match, _ = route.matches(scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods | {"OPTIONS"}) if methods else []


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:  # the real Allow list; OPTIONS answers it (RFC 9110 9.3.7)
            allow = ", ".join(allowed_methods(request.app, request.scope))
            if request.method == "OPTIONS" and allow:
                return Response(status_code=204, headers={"Allow": allow})
            return error_json(405, f"{request.method} is not allowed here; allowed: {allow}", headers={"Allow": allow})
        return error_json(exc.status_code, exc.detail, getattr(exc, "code", None), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return error_json(422, issues(list(exc.errors())))

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable):
        return error_json(503, str(exc))

    @app.exception_handler(RPCError)
    async def rpc_error(request: Request, exc: RPCError):
        log.error("temporal rpc error", extra={"error": str(exc), "status": str(exc.status)})
        return error_json(503, "Temporal is unavailable or refused the request; try again later")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        # ServerErrorMiddleware: the traceback is logged by the server; the caller gets no internals
        log.error("unhandled error", exc_info=exc, extra={"method": request.method, "path": request.url.path})
        return error_json(500, "internal server error")
