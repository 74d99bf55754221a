-- API audit trail: one row per write request, written by the RecordAuditWorkflow's
-- activity. request_id makes the insert idempotent (activity retries, duplicate
-- starts); status is the HTTP status the API answered.
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS request_id TEXT;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS status INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_request_id_key ON audit_log (request_id);
CREATE INDEX IF NOT EXISTS audit_log_mission_at_idx ON audit_log (mission, at);
