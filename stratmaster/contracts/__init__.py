"""Pydantic contracts: the one place for workflow and activity inputs/outputs.

Every workflow takes one model and returns one model, so the same JSON works
from the CLI, the API, the `temporal` CLI and the Web UI.
"""
from stratmaster.contracts.common import MissionId, validate_mission_id

__all__ = ["MissionId", "validate_mission_id"]
