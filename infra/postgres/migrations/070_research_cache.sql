-- The research answer cache (embedded default; production may use Redis/Valkey).
-- entry_key = the mission's state (cartridge + documents) and the request parameters;
-- norm = the question's normalised words. See activities/research/cache.py.
CREATE TABLE IF NOT EXISTS research_cache (
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    entry_key TEXT NOT NULL,
    norm TEXT NOT NULL,
    query TEXT NOT NULL,
    vector REAL[] NOT NULL,
    result TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (tenant_id, entry_key, norm)
);
CREATE INDEX IF NOT EXISTS research_cache_recent_idx ON research_cache (tenant_id, entry_key, created_at DESC);
