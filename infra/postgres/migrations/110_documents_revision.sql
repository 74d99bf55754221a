-- The research answer cache files answers under the mission's state (activities/research/
-- cache.py: mission_state). A counter that every change to a mission's documents bumps (in the
-- same transaction) makes that state a one-row read, where it was a count, max and sum over all
-- of the mission's documents on every research run.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS documents_revision BIGINT NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION bump_documents_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE tenants SET documents_revision = documents_revision + 1 WHERE id = OLD.tenant_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) THEN
        UPDATE tenants SET documents_revision = documents_revision + 1 WHERE id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS documents_revision ON documents;
CREATE TRIGGER documents_revision AFTER INSERT OR UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION bump_documents_revision();
