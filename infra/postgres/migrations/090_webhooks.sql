-- Webhooks (activities/ops/webhooks.py): a mission's endpoints and the delivery log.
-- Tenant-keyed and dropped with the mission (ON DELETE CASCADE). Not in backups
-- (activities/ops/pg_dumps.py: NOT_BACKED_UP): endpoints hold signing secrets, the log is
-- operational; re-register endpoints after restoring a mission elsewhere.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,                       -- whsec_<base64>: HMAC key, shown once at creation
    events TEXT[] NOT NULL,                     -- event types, or {'*'}
    description TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_by TEXT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id);

-- One row per delivery attempt (kept after the endpoint is removed, pruned after 30 days).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    endpoint_id UUID NOT NULL,
    event_id TEXT NOT NULL,                     -- = the webhook-id header (idempotency key)
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,                       -- delivered | failed | refused | skipped
    status_code INTEGER,
    error TEXT,
    duration_ms DOUBLE PRECISION,
    at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    UNIQUE (endpoint_id, event_id, attempt)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_tenant_idx ON webhook_deliveries (tenant_id, at DESC);
