-- Sources (migration range 080-089): directories on the ingestion workers' filesystem and
-- S3-compatible bucket prefixes that a mission syncs on a Temporal Schedule and on demand
-- (workflows/sources.py). Keyed by tenant: every query filters by tenant_id, so one
-- mission never sees or syncs another's sources. No secrets here: an S3 source names a
-- credentials profile that the workers resolve from their environment.
CREATE TABLE IF NOT EXISTS sources (
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    source_id TEXT NOT NULL,                       -- [a-z][a-z0-9_-]{1,31}, unique per mission
    kind TEXT NOT NULL CHECK (kind IN ('directory', 's3')),
    spec JSONB NOT NULL,                           -- SourceSpec (path | endpoint, bucket, prefix, profile, ...)
    interval_seconds INTEGER NOT NULL CHECK (interval_seconds >= 60),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removing')),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- sync lease: the workflow id holding it and the token (first run id) of its chain
    sync_owner TEXT,
    sync_token TEXT,
    sync_generation BIGINT NOT NULL DEFAULT 0,     -- the current/last pass (from source_sync_generation)
    sync_started_at TIMESTAMPTZ,
    -- what the current pass (or removal) deleted, counted in the transaction that deletes it:
    -- exact however often a step is retried after a crash
    pass_files_deleted BIGINT NOT NULL DEFAULT 0,
    pass_documents_deleted BIGINT NOT NULL DEFAULT 0,
    -- the last finished pass
    last_sync_status TEXT,                         -- ok | failed | cancelled
    last_sync_workflow TEXT,
    last_sync_at TIMESTAMPTZ,
    last_sync_error TEXT,
    last_sync_totals JSONB,
    PRIMARY KEY (tenant_id, source_id)
);

-- Globally unique pass numbers: ingestion batch ids (src-<source>-g<generation>-p<page>) never repeat,
-- even for a source removed and added again under the same id.
CREATE SEQUENCE IF NOT EXISTS source_sync_generation;

-- The per-source manifest: one row per file/object the source holds (deleted files lose their row
-- once their document is gone from every store).
CREATE TABLE IF NOT EXISTS source_files (
    tenant_id UUID NOT NULL,
    source_id TEXT NOT NULL,
    path TEXT NOT NULL,                            -- relative to the directory / the bucket prefix
    size_bytes BIGINT,
    mtime_ns BIGINT,                               -- directories (cheap pre-filter with size)
    etag TEXT,                                     -- S3 (change detector)
    sha256 CHAR(64),                               -- content hash of the indexed/pending version
    status TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'failed')),
    document_id UUID,                              -- the indexed version's document (documents.id)
    replaced_document_id UUID,                     -- an older version still to delete (crash-safe to-do)
    reason_type TEXT,
    reason TEXT,
    batch_id TEXT,                                 -- the ingestion batch of the last attempt
    seen_generation BIGINT NOT NULL DEFAULT 0,     -- last pass whose listing saw it
    added_generation BIGINT NOT NULL DEFAULT 0,    -- the pass that found it (a retried page still counts it new)
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    indexed_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, source_id, path),
    FOREIGN KEY (tenant_id, source_id) REFERENCES sources (tenant_id, source_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS source_files_document_idx ON source_files (tenant_id, document_id);
CREATE INDEX IF NOT EXISTS source_files_status_idx ON source_files (tenant_id, source_id, status);
CREATE INDEX IF NOT EXISTS source_files_seen_idx ON source_files (tenant_id, source_id, seen_generation);
