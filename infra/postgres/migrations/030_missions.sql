-- Mission lifecycle: cartridge versions, activation history, deactivation with
-- retention, idempotent audit rows.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS previous_version TEXT;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS deactivated_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS purge_after TIMESTAMP WITH TIME ZONE;
-- bumped on every change of the active config: workers' config readers compare it
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS config_revision BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS mission_versions (
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    cartridge JSONB NOT NULL,
    sha256 CHAR(64) NOT NULL,           -- of the canonical JSON: versions are immutable
    created_by TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    activated_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE IF NOT EXISTS mission_history (
    id BIGSERIAL PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    action TEXT NOT NULL,                -- activate | rollback | deactivate
    version TEXT,
    replaced_version TEXT,               -- active version before this entry
    -- for activate/rollback: the version a later rollback returns to
    rollback_to TEXT,
    actor TEXT NOT NULL,
    op_key TEXT UNIQUE                   -- workflow run + activity: retries do not duplicate
);
CREATE INDEX IF NOT EXISTS mission_history_tenant_idx ON mission_history (tenant_id, id);

-- Audit rows written by retried activities carry a key so a retry does not add a second row.
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS op_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_op_key_idx ON audit_log (op_key) WHERE op_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tenants_purge_idx ON tenants (purge_after) WHERE status <> 'active';
