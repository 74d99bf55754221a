"""Workflow ids (business keys) of the missions and operations jobs: one builder per
job, shared by the CLI (starters/cli_missions.py, starters/cli_ops.py) and the REST
API (starters/api/), so an operation started either way gets the same id scheme.

`run_key` distinguishes runs of a job that may repeat (a random hex from the CLI,
or the API's digest of an Idempotency-Key, "k" + 24 hex). Ingestion and research
ids live with their contracts (`contracts.ingestion.workflow_id_for`,
`contracts.research.workflow_id_for`), audit ids in `contracts.audit`.
"""
from __future__ import annotations

from stratmaster.contracts.maintenance import BackupInput

# ---------------------------------------------------------------- missions (mission-tasks)


def activate_workflow_id(mission: str, version: str) -> str:
    """ActivateMissionWorkflow: one activation per mission version."""
    return f"mission-activate-{mission}-{version}"


def rollback_workflow_id(mission: str) -> str:
    return f"mission-rollback-{mission}"


def deactivate_workflow_id(mission: str) -> str:
    return f"mission-deactivate-{mission}"


def export_workflow_id(mission: str, run_key: str) -> str:
    return f"mission-export-{mission}-{run_key}"


def show_workflow_id(mission: str, run_key: str) -> str:
    return f"mission-show-{mission}-{run_key}"


def list_missions_workflow_id(run_key: str) -> str:
    return f"mission-list-{run_key}"


# ---------------------------------------------------------------- operations (maintenance-tasks)


def new_backup_id(mission: str | None, run_key: str) -> str:
    """A backup id when the caller names none: `<mission|system>-<run_key>`."""
    return f"{mission or 'system'}-{run_key}"


def backup_workflow_id(req: BackupInput) -> str:
    """BackupWorkflow: one run per scope/mission/backup id."""
    return f"backup-{req.scope}-{req.mission or 'system'}" + (f"-{req.backup_id}" if req.backup_id else "")


def list_backups_workflow_id(run_key: str) -> str:
    return f"backup-list-{run_key}"


def verify_backup_workflow_id(backup_id: str | None, run_key: str) -> str:
    """VerifyBackupWorkflow of a backup, or of the newest one (`backup_id` None)."""
    return f"verify-backup-{backup_id or 'newest'}-{run_key}"


def restore_workflow_id(backup_id: str, run_key: str) -> str:
    return f"restore-{backup_id}-{run_key}"


def maintenance_workflow_id(kind: str, run_key: str) -> str:
    return f"maintenance-{kind}-{run_key}"


def new_export_id(run_key: str) -> str:
    """An analytics export id when the caller names none."""
    return f"export-{run_key}"


def analytics_workflow_id(export_id: str) -> str:
    return f"analytics-{export_id}"


def llm_usage_workflow_id(mission: str, run_key: str) -> str:
    """LlmUsageWorkflow: a read of a mission's LLM usage totals."""
    return f"llm-usage-{mission}-{run_key}"


# ---------------------------------------------------------------- reports (research-tasks)


def report_workflow_id(mission: str, research_workflow_id: str, request_id: str) -> str:
    """RenderReportWorkflow: one render per request of a research's report."""
    return f"report-{mission}-{research_workflow_id[-60:]}-{request_id}"
