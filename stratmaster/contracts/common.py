from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

# Mission ids name collections, indexes, graph spaces and object prefixes, so
# they are restricted to a safe alphabet: no path separators, no quoting.
MISSION_ID_PATTERN = r"^[a-z][a-z0-9_]{1,47}$"
MISSION_ID_RE = re.compile(MISSION_ID_PATTERN)


def validate_mission_id(value: str) -> str:
    """The one mission-id rule (ValueError); check_mission and the API's path check wrap it."""
    if not MISSION_ID_RE.fullmatch(value):
        raise ValueError(
            "mission id must be 2-48 chars of lowercase letters, digits and '_', starting with a letter"
        )
    return value


def check_mission(mission: str) -> str:
    """The validated mission id, or a non-retryable BadInput ApplicationError (activities, stores)."""
    from stratmaster.errors import bad_input

    try:
        return validate_mission_id(mission if isinstance(mission, str) else "")
    except ValueError as exc:
        raise bad_input(f"invalid mission id {mission!r}: {exc}") from None


# the pattern is published in the JSON schema (OpenAPI: a generated client sends what the server
# takes); validate_mission_id enforces it with a message that says what a mission id is
MissionId = Annotated[str, AfterValidator(validate_mission_id),
                      WithJsonSchema({"type": "string", "pattern": MISSION_ID_PATTERN, "minLength": 2, "maxLength": 48})]


def no_nul(value: str | None) -> str | None:
    """PostgreSQL text (and jsonb) cannot hold U+0000: refuse it at the door
    instead of failing the activity that writes it, attempt after attempt."""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


# User-supplied text that ends up in PostgreSQL.
PlainText = Annotated[str, AfterValidator(no_nul)]


def clipped(limit: int):
    """A result string cut to `limit` characters (results must stay far below
    Temporal's 2 MB payload limit whatever a document's name or error says)."""
    def clip(value):
        return value[:limit - 1] + "…" if isinstance(value, str) and len(value) > limit else value
    return BeforeValidator(clip)
