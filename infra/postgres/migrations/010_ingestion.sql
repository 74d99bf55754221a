-- Ingestion (migration range 010-019). Additive only: 001_core.sql stays untouched.
-- batch_id: the batch that last (re)indexed the document, so a retried attempt of
-- the same batch reports "ingested" rather than "duplicate".
-- extracted_key: object key of the extracted text that chunk offsets point into.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS batch_id TEXT;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS extracted_key TEXT;
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS metadata JSONB NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX IF NOT EXISTS documents_tenant_idx ON documents (tenant_id, created_at);
