-- Operations (backup/restore/maintenance/analytics).
-- The active cartridge of every active mission, for retention enforcement
-- (tenants.active_version -> mission_versions.cartridge, from 030_missions.sql).
CREATE OR REPLACE VIEW mission_retention AS
SELECT t.id AS tenant_id, t.name AS mission, mv.version, mv.cartridge
FROM tenants t
JOIN mission_versions mv ON mv.tenant_id = t.id AND mv.version = t.active_version
WHERE t.status = 'active';
-- (retention's DELETE by (tenant_id, created_at) uses research_sessions_tenant_idx from 020_research.sql)
