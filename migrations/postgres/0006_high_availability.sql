-- High availability (docs/architecture.md §9): several server instances on one database.
-- Keep equivalent to migrations/sqlite/0004_high_availability.sql. Times in milliseconds since
-- the Unix epoch, taken from the DATABASE's clock (so instances' clocks need not agree).

-- Each running server's row: registered at start, its lease renewed every heartbeat; a row
-- whose lease passed is declared dead (ready = false) by any live instance. status_cursor is
-- the last status event the instance's fan-out delivered: rows up to the lowest live cursor
-- may be pruned.
ALTER TABLE server_instances
    ADD COLUMN started_at_ms  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN status_cursor  BIGINT NOT NULL DEFAULT 0;

-- Spec outbox claims: the instance dispatching a row and until when its claim holds.
ALTER TABLE spec_events
    ADD COLUMN claimed_by     TEXT,
    ADD COLUMN claim_until_ms BIGINT;

-- Which instance holds a gRPC agent stream of which consumer (the gRPC broker is hosted by
-- the server, so only that instance can deliver the consumer's specs).
CREATE TABLE agent_streams (
    consumer_name TEXT NOT NULL,
    instance_id   TEXT NOT NULL REFERENCES server_instances (id) ON DELETE CASCADE,
    PRIMARY KEY (consumer_name, instance_id)
);
CREATE INDEX agent_streams_instance_id_idx ON agent_streams (instance_id);
