-- Research metrics per mission, read from PostgreSQL through DuckDB's postgres
-- extension. The caller ATTACHes the database as `pg` (READ_ONLY) with the DSN
-- from settings; extensions come from PyPI packages, never INSTALLed at run time.
--
-- Fixed from the seed's view:
--  * COUNT(rs.id) over a LEFT JOIN to claims counted each session once per claim
--    and weighted the average duration by claim count: sessions and claims are
--    aggregated separately, then joined per mission;
--  * missions without completed research are listed (zeros) instead of dropped;
--  * claims are attributed through their session, so a claim row without
--    tenant_id still counts for the right mission;
--  * AVG over DECIMAL confidence is cast to DOUBLE (Parquet-friendly);
--  * no hard-coded credentials in the ATTACH.
CREATE OR REPLACE VIEW tenant_research_metrics AS
WITH sessions AS (
    SELECT rs.tenant_id,
           COUNT(*) AS total_sessions,
           COUNT(*) FILTER (WHERE rs.completed_at IS NOT NULL) AS completed_sessions,
           AVG(EXTRACT(EPOCH FROM (rs.completed_at - rs.created_at)) / 60.0)
               FILTER (WHERE rs.completed_at IS NOT NULL) AS avg_duration_minutes
    FROM pg.public.research_sessions rs
    GROUP BY rs.tenant_id
), claim_stats AS (
    SELECT rs.tenant_id,
           COUNT(c.id) AS total_claims,
           AVG(CAST(c.confidence AS DOUBLE)) AS avg_confidence,
           COUNT(c.id) FILTER (WHERE c.flagged) AS flagged_claims
    FROM pg.public.claims c
    JOIN pg.public.research_sessions rs ON rs.id = c.session_id
    GROUP BY rs.tenant_id
)
SELECT t.name                                   AS tenant_name,
       CAST(COALESCE(s.total_sessions, 0) AS BIGINT)     AS total_sessions,
       CAST(COALESCE(s.completed_sessions, 0) AS BIGINT) AS completed_sessions,
       CAST(s.avg_duration_minutes AS DOUBLE)   AS avg_duration_minutes,
       CAST(COALESCE(cs.total_claims, 0) AS BIGINT)      AS total_claims,
       cs.avg_confidence                        AS avg_confidence,
       CAST(COALESCE(cs.flagged_claims, 0) AS BIGINT)    AS flagged_claims
FROM pg.public.tenants t
LEFT JOIN sessions s ON s.tenant_id = t.id
LEFT JOIN claim_stats cs ON cs.tenant_id = t.id;
