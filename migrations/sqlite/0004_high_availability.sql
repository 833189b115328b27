-- High availability bookkeeping (docs/architecture.md §9). SQLite serves one server instance,
-- but keeps the same tables as PostgreSQL so every statement is shared. Keep equivalent to
-- migrations/postgres/0006_high_availability.sql.
ALTER TABLE server_instances ADD COLUMN started_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_instances ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_instances ADD COLUMN status_cursor INTEGER NOT NULL DEFAULT 0;

ALTER TABLE spec_events ADD COLUMN claimed_by TEXT;
ALTER TABLE spec_events ADD COLUMN claim_until_ms INTEGER;

CREATE TABLE agent_streams (
    consumer_name TEXT NOT NULL,
    instance_id   TEXT NOT NULL REFERENCES server_instances (id) ON DELETE CASCADE,
    PRIMARY KEY (consumer_name, instance_id)
);
CREATE INDEX agent_streams_instance_id_idx ON agent_streams (instance_id);
