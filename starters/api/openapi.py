"""OpenAPI extras FastAPI does not derive itself.

Request bodies are read by hand (size limits while streaming, several media types
per route), so a route declares its body with `json_request_body(Model)` (or
`body_ref(Model)` inside its own `openapi_extra`), which also registers the model:
`finish_openapi` adds every registered model to components/schemas. In dev mode the
document asks for no token (the running server takes none)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

# name -> model of every request body declared through body_ref
BODY_MODELS: dict[str, type[BaseModel]] = {}


def body_ref(model: type[BaseModel]) -> dict:
    """`{"$ref": ...}` to the model's schema (registered for finish_openapi)."""
    BODY_MODELS.setdefault(model.__name__, model)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_request_body(model: type[BaseModel], *, required: bool = True, description: str | None = None) -> dict:
    """`openapi_extra=` of a route whose JSON body is read by `bodies.read_model`."""
    body: dict = {"required": required, "content": {"application/json": {"schema": body_ref(model)}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def finish_openapi(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        _, top = models_json_schema([(m, "validation") for m in BODY_MODELS.values()],
                                    ref_template="#/components/schemas/{model}")
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in top.get("$defs", {}).items():
            schemas.setdefault(name, definition)
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                for code, response in op.get("responses", {}).items() if isinstance(op, dict) else ():
                    # errors are JSON whatever the route's own media type (/metrics: text/plain)
                    content = response.get("content", {})
                    if code[0] in "45" and "application/json" not in content and content:
                        response["content"] = {"application/json": next(iter(content.values()))}
        if app.state.settings.auth_mode == "dev":
            schema["components"].pop("securitySchemes", None)
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    if isinstance(op, dict):
                        op.pop("security", None)
                        responses = op.get("responses", {})
                        responses.pop("401", None)
        return schema  # (FastAPI keeps it as app.openapi_schema)

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents replacing app.openapi this way
