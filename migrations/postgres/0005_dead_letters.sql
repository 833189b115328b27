-- Events set aside for good (docs/security.md, "Dead letters"): statuses and requests from
-- agents that can never be handled, and spec events a broker refused for good. Times are
-- milliseconds since the Unix epoch so that SQLite and PostgreSQL share every statement.
-- Keep equivalent to migrations/sqlite/0003_dead_letters.sql.
CREATE TABLE dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    received_at_ms BIGINT NOT NULL,
    origin         TEXT NOT NULL,
    broker         TEXT NOT NULL,
    consumer_name  TEXT,
    resource_id    TEXT,
    event_id       TEXT,
    event_type     TEXT,
    reason         TEXT NOT NULL,
    event          TEXT,
    event_bytes    BIGINT NOT NULL
);
CREATE INDEX dead_letters_consumer_name_id_idx ON dead_letters (consumer_name, id);
