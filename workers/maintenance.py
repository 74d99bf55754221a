from __future__ import annotations

from activities.ops.analytics import AnalyticsActivities
from activities.ops.backup import BackupActivities
from activities.ops.health import HealthActivities
from activities.ops.maintenance import MaintenanceActivities
from activities.ops.webhooks import WebhookActivities
from stratmaster.settings import Settings
from workers.audit import api_support
from workers.registry import QueueSpec
from workflows.backup import BackupWorkflow, ListBackupsWorkflow
from workflows.health import HealthCheckWorkflow
from workflows.maintenance import AnalyticsExportWorkflow, MaintenanceWorkflow
from workflows.restore import RestoreWorkflow, VerifyBackupWorkflow
from workflows.webhooks import WORKFLOWS as WEBHOOK_WORKFLOWS


class SharedStores:
    """One Stores bundle per worker, built on first use: a health-only worker never
    opens the stores, and embedded Qdrant allows one client per storage directory."""

    def __init__(self, settings: Settings, stores=None):
        self.settings = settings
        self.stores = stores
        self.owned = stores is None

    def __call__(self):
        if self.stores is None:
            from activities.stores.factory import build_stores

            self.stores = build_stores(self.settings)
        return self.stores

    async def close(self) -> None:
        if self.owned and self.stores is not None:
            await self.stores.close()


async def build(settings: Settings, stores=None) -> QueueSpec:
    """`stores`: pass the test's (or another in-process worker's) bundle to share it."""
    shared = SharedStores(settings, stores)
    health = HealthActivities(settings)
    backup = BackupActivities(settings, shared)
    maintenance = MaintenanceActivities(settings, shared)
    analytics = AnalyticsActivities(settings, shared)
    webhooks = WebhookActivities(settings)  # events -> signed deliveries (workflows/webhooks.py)

    api = api_support(settings)  # RecordAuditWorkflow: audit_log rows for the API

    async def close() -> None:
        await api.close()
        await backup.close()
        await maintenance.close()
        await webhooks.close()
        await shared.close()

    return QueueSpec(
        workflows=[HealthCheckWorkflow, BackupWorkflow, ListBackupsWorkflow, RestoreWorkflow, VerifyBackupWorkflow, MaintenanceWorkflow,
                   AnalyticsExportWorkflow, *api.workflows, *WEBHOOK_WORKFLOWS],
        activities=[health.check_services, *backup.all(), *maintenance.all(), analytics.export_research_metrics, *api.activities,
                    *webhooks.all()],
        close=close,
    )
