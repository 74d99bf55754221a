from __future__ import annotations

from activities.ops.analytics import AnalyticsActivities
from activities.ops.backup import BackupActivities
from activities.ops.health import HealthActivities
from activities.ops.maintenance import MaintenanceActivities
from activities.ops.restore import RestoreActivities
from activities.ops.restore_drill import DrillActivities
from activities.ops.webhooks import WebhookActivities
from stratmaster import sealing
from activities.resources import Resources
from stratmaster.settings import Settings
from workers.audit import api_support
from workers.registry import QueueSpec
from workflows.backup import BackupWorkflow, ListBackupsWorkflow
from workflows.health import HealthCheckWorkflow
from workflows.maintenance import AnalyticsExportWorkflow, MaintenanceWorkflow
from workflows.restore import RestoreWorkflow, VerifyBackupWorkflow
from workflows.webhooks import WORKFLOWS as WEBHOOK_WORKFLOWS


async def build(settings: Settings, stores=None) -> QueueSpec:
    """`stores`: pass the test's (or another in-process worker's) bundle to share it."""
    resources = Resources(settings, stores=stores)  # opened on first use: a health-only worker never connects
    health = HealthActivities(resources)
    backup, restore, drill = BackupActivities(resources), RestoreActivities(resources), DrillActivities(resources)
    maintenance = MaintenanceActivities(resources)
    analytics = AnalyticsActivities(resources)
    sealing.secrets_key(settings)  # a malformed STRATMASTER_SECRETS_KEY fails the start, not each delivery
    webhooks = WebhookActivities(resources)  # events -> signed deliveries (workflows/webhooks.py)
    api = api_support(resources)  # RecordAuditWorkflow: audit_log rows for the API

    return QueueSpec(
        workflows=[HealthCheckWorkflow, BackupWorkflow, ListBackupsWorkflow, RestoreWorkflow, VerifyBackupWorkflow, MaintenanceWorkflow,
                   AnalyticsExportWorkflow, *api.workflows, *WEBHOOK_WORKFLOWS],
        activities=[health.check_services, *backup.all(), *restore.all(), *drill.all(), *maintenance.all(), analytics.export_research_metrics, *api.activities,
                    *webhooks.all()],
        close=resources.close,
    )
