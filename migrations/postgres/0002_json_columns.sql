-- Bundle payloads and statuses are stored as `json` (their text, as Go Maestro stores them:
-- maestro-reference.md, DB schema) instead of `jsonb`: nothing queries inside them, and
-- producing `jsonb` text for a REST list cost PostgreSQL ~4x the time of returning stored text.
ALTER TABLE resources
    ALTER COLUMN payload TYPE JSON USING payload::json,
    ALTER COLUMN status TYPE JSON USING status::json;
ALTER TABLE status_events
    ALTER COLUMN payload TYPE JSON USING payload::json,
    ALTER COLUMN status TYPE JSON USING status::json;
