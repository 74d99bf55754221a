-- What a research run concluded (answered / contested / insufficient_evidence) and its short answer.
ALTER TABLE research_sessions
    ADD COLUMN IF NOT EXISTS outcome TEXT,
    ADD COLUMN IF NOT EXISTS answer TEXT;
