"""Reading request bodies: size limits checked on Content-Length first and counted
while streaming, before anything is parsed; a body that is not UTF-8, is nested
deeper than MAX_JSON_DEPTH or holds U+0000 is refused (400/400/422) before it
reaches a workflow; JSON objects validated into strict pydantic models."""
from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from starters.api.errors import ApiError, pydantic_errors, too_large, validation_error

# Temporal refuses payloads above its blob size limit (2 MiB by default), so inline
# uploads are capped below it; larger documents go to the object store first and
# are ingested by {"object_key"}.
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
INLINE_BUDGET = int(TEMPORAL_PAYLOAD_LIMIT * 0.9)
MULTIPART_OVERHEAD = 64 * 1024
# Request body limits (bytes). A body that could never fit the workflow payload is
# refused before it is read: the JSON upload limit is the inline budget itself, the
# multipart one the raw bytes that fit it once base64-encoded.
RESEARCH_BODY_LIMIT = 64 * 1024
CARTRIDGE_BODY_LIMIT = 512 * 1024
DOCUMENTS_JSON_LIMIT = INLINE_BUDGET + 16 * 1024
DOCUMENTS_MULTIPART_LIMIT = INLINE_BUDGET * 3 // 4 + MULTIPART_OVERHEAD
OPERATION_BODY_LIMIT = 16 * 1024  # the small JSON bodies of lifecycle and operations routes
MAX_JSON_DEPTH = 64
JSON_MEDIA_TYPES = ("application/json",)
YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold U+0000


class StrictBody(BaseModel):
    """Base of the API's own request bodies: no unknown fields, no coercion ("5" is
    not an integer, 0 not a boolean), but 3.0 is an integer as JSON Schema says."""
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        return integral_numbers(cls, data)


def integral_numbers(model: type[BaseModel], data: Any) -> Any:
    """Top-level integer fields given as integral floats (3.0) -> int."""
    if not isinstance(data, dict):
        return data
    ints = {name for name, f in model.model_fields.items() if f.annotation in (int, int | None)}
    return {k: int(v) if k in ints and isinstance(v, float) and v.is_integer() else v for k, v in data.items()}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def unsupported_media_type(ctype: str, accepted: tuple[str, ...]) -> ApiError:
    return ApiError(415, "unsupported_media_type", f"Content-Type {ctype!r} is not accepted here; "
                                                   f"use {' or '.join(accepted)}")


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (checked
    on Content-Length first, then while streaming), before anything is started."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise too_large(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    if hasattr(request, "_body"):
        if len(request._body) > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        return request._body
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # request.form()/json() reuse it
    return request._body


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Nesting deeper than `limit`, found without parsing (json.loads, and any
    recursive walk after it, would overflow the stack on a hostile body)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def no_nul(value: Any, loc: tuple) -> None:
    """PostgreSQL text cannot hold U+0000: refused here (422) rather than accepted
    and failed in a workflow, attempt after attempt. Depth is bounded already."""
    if isinstance(value, str):
        if "\x00" in value:
            raise validation_error(loc, "must not contain the NUL character (U+0000)")
    elif isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                raise validation_error(loc, "keys must not contain the NUL character (U+0000)")
            no_nul(v, loc + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            no_nul(v, loc + (i,))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_request", f"request body is not valid UTF-8 (at byte {exc.start})") from None


def parse_json(text: str) -> Any:
    """JSON text to Python: 400 when too deep, 422 when not JSON or holding U+0000."""
    if json_too_deep(text):
        raise ApiError(400, "bad_request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if not text.strip():
        raise validation_error(("body",), "a JSON body is required")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, "bad_request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers beyond the digit limit
        raise validation_error(("body",), f"invalid JSON: {getattr(exc, 'msg', None) or exc}") from None
    no_nul(data, ("body",))
    return data


def check_json_media_type(request: Request) -> None:
    ctype = media_type(request)
    if ctype and ctype not in JSON_MEDIA_TYPES and not ctype.endswith("+json"):
        raise unsupported_media_type(ctype, JSON_MEDIA_TYPES)


async def read_json(request: Request, limit: int) -> Any:
    check_json_media_type(request)
    return parse_json(decode_text(await read_limited(request, limit)))


def parse_model(model: type[BaseModel], data: Any, **extra: Any) -> Any:
    try:
        return model.model_validate({**data, **extra} if isinstance(data, dict) else data)
    except ValidationError as exc:
        raise pydantic_errors(exc) from None


async def read_model(request: Request, model: type[BaseModel], limit: int = OPERATION_BODY_LIMIT, *,
                     required: bool = True) -> Any:
    """A JSON object body validated into `model` (declare it with
    openapi.json_request_body). Not `required`: an empty body is `{}`."""
    check_json_media_type(request)
    text = decode_text(await read_limited(request, limit))
    data = {} if not required and not text.strip() else parse_json(text)
    if not isinstance(data, dict):
        raise validation_error(("body",), "expected a JSON object")
    return parse_model(model, data)
