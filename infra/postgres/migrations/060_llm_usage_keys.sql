-- LLM usage accounting (activities/llm/usage.py): the mission name is kept even
-- when no tenant row exists yet, and call_key makes recording idempotent
-- (one row per LLM call attempt: a retried activity really did spend tokens twice).
ALTER TABLE llm_usage ADD COLUMN IF NOT EXISTS mission TEXT;
ALTER TABLE llm_usage ADD COLUMN IF NOT EXISTS purpose TEXT NOT NULL DEFAULT '';
ALTER TABLE llm_usage ADD COLUMN IF NOT EXISTS call_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS llm_usage_call_key_idx ON llm_usage (call_key);
CREATE INDEX IF NOT EXISTS llm_usage_tenant_at_idx ON llm_usage (tenant_id, at);
CREATE INDEX IF NOT EXISTS llm_usage_mission_at_idx ON llm_usage (mission, at);
