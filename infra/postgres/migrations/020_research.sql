-- Research sessions, claims and their evidence (research area: migrations 020-029).
ALTER TABLE research_sessions
    ADD COLUMN IF NOT EXISTS params JSONB,
    ADD COLUMN IF NOT EXISTS error TEXT,
    ADD COLUMN IF NOT EXISTS report_json_key TEXT,
    ADD COLUMN IF NOT EXISTS synthesiser TEXT,
    ADD COLUMN IF NOT EXISTS hit_count INTEGER,
    ADD COLUMN IF NOT EXISTS claim_count INTEGER,
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW();
CREATE INDEX IF NOT EXISTS research_sessions_tenant_idx ON research_sessions (tenant_id, created_at);

ALTER TABLE claims
    ADD COLUMN IF NOT EXISTS flag_reason TEXT,
    ADD COLUMN IF NOT EXISTS confidence_factors JSONB;

-- One row per citation, so evidence can be queried (which claims cite this document?)
-- without unpacking JSONB. chunk_id is TEXT: web evidence has no chunks row.
CREATE TABLE IF NOT EXISTS claim_evidence (
    claim_id UUID NOT NULL REFERENCES claims(id) ON DELETE CASCADE,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind VARCHAR(16) NOT NULL CHECK (kind IN ('support', 'contradict')),
    ordinal INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    quote TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    url TEXT,
    PRIMARY KEY (claim_id, kind, ordinal)
);
CREATE INDEX IF NOT EXISTS claim_evidence_doc_idx ON claim_evidence (tenant_id, document_id);
