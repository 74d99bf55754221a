-- Daily research activity per mission and query (fixed from the seed: the
-- seed's ungrouped `created_at`/`confidence` were ambiguous between sessions and
-- claims, and it filtered on tenant id with a mission name). Parameter $1: mission name.
SELECT DATE_TRUNC('day', rs.created_at) AS day,
       rs.query,
       COUNT(DISTINCT rs.id)               AS sessions,
       COUNT(c.id)                         AS claims,
       AVG(CAST(c.confidence AS DOUBLE))   AS avg_confidence
FROM pg.public.research_sessions rs
JOIN pg.public.tenants t ON t.id = rs.tenant_id
LEFT JOIN pg.public.claims c ON c.session_id = rs.id
WHERE t.name = $1
GROUP BY day, rs.query
ORDER BY day DESC, sessions DESC;
