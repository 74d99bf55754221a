"""Error types. Activities raise ApplicationError with these types for bad input
so Temporal does not retry them (listed in non_retryable_error_types)."""
from __future__ import annotations

import re

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

BAD_INPUT = "BadInput"
UNKNOWN_MISSION = "UnknownMission"
CORRUPT_DOCUMENT = "CorruptDocument"
OVERSIZED = "Oversized"
UNSUPPORTED_TYPE = "UnsupportedType"
INVALID_CARTRIDGE = "InvalidCartridge"
CORRUPT_BACKUP = "CorruptBackup"

NON_RETRYABLE = [BAD_INPUT, UNKNOWN_MISSION, CORRUPT_DOCUMENT, OVERSIZED, UNSUPPORTED_TYPE, INVALID_CARTRIDGE, CORRUPT_BACKUP]


# `@workflow.defn(failure_exception_types=...)`: an input that does not decode
# into the workflow's pydantic model (a plain JSON start from the `temporal` CLI
# bypasses the API's checks) fails the run instead of failing its workflow task,
# which Temporal would retry forever.
WORKFLOW_INPUT_ERRORS = [ValidationError]


def bad_input(message: str, kind: str = BAD_INPUT) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it masked: error messages end up
    in Temporal histories, logs and research_sessions.error."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


class ServiceUnavailable(RuntimeError):
    """A backing service cannot be reached; starters print this, not a traceback.
    The message never carries a URL's password (see `redact`)."""

    def __init__(self, message: str = "", *args: object):
        super().__init__(redact(str(message)), *args)
