"""Error types. Activities raise ApplicationError with these types for bad input
so Temporal does not retry them (listed in non_retryable_error_types)."""
from __future__ import annotations

from temporalio.exceptions import ApplicationError

BAD_INPUT = "BadInput"
UNKNOWN_MISSION = "UnknownMission"
CORRUPT_DOCUMENT = "CorruptDocument"
OVERSIZED = "Oversized"
UNSUPPORTED_TYPE = "UnsupportedType"
INVALID_CARTRIDGE = "InvalidCartridge"
CORRUPT_BACKUP = "CorruptBackup"

NON_RETRYABLE = [BAD_INPUT, UNKNOWN_MISSION, CORRUPT_DOCUMENT, OVERSIZED, UNSUPPORTED_TYPE, INVALID_CARTRIDGE, CORRUPT_BACKUP]


def bad_input(message: str, kind: str = BAD_INPUT) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


class ServiceUnavailable(RuntimeError):
    """A backing service cannot be reached; starters print this, not a traceback."""
