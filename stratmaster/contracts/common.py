from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# Mission ids name collections, indexes, graph spaces and object prefixes, so
# they are restricted to a safe alphabet: no path separators, no quoting.
_MISSION_RE = re.compile(r"^[a-z][a-z0-9_]{1,47}$")


def validate_mission_id(value: str) -> str:
    if not _MISSION_RE.fullmatch(value):
        raise ValueError(
            "mission id must be 2-48 chars of lowercase letters, digits and '_', starting with a letter"
        )
    return value


MissionId = Annotated[str, AfterValidator(validate_mission_id)]
