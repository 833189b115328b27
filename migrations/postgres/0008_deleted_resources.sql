-- Deleted bundles remembered for a while (docs/protocol.md §5.6). Keep equivalent to
-- migrations/sqlite/0006_deleted_resources.sql.

-- When an agent confirms a deletion and the bundle's row goes, its id, consumer, last version
-- and creation time stay here until the retention prunes them (default 1 h, by
-- deleted_at_ms, the database clock in ms since the Unix epoch). The server tells a restarted
-- agent about them, so that late redeliveries of their specs are dropped, and deletes a work
-- an agent re-created from one.
CREATE TABLE deleted_resources (
    id            TEXT        NOT NULL PRIMARY KEY,
    consumer_name TEXT        NOT NULL,
    version       BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    deleted_at_ms BIGINT      NOT NULL
);
CREATE INDEX deleted_resources_consumer_idx ON deleted_resources (consumer_name, deleted_at_ms);
CREATE INDEX deleted_resources_deleted_at_idx ON deleted_resources (deleted_at_ms);
