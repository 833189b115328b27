-- The fleet-wipe guard (docs/operations.md §3.5). Keep equivalent to
-- migrations/sqlite/0005_store_identity.sql.

-- The store identity: one random id created with the database (or with this migration, on a
-- database made before it). A recreated database, or another one, has another id; agents
-- compare it before deleting works the store no longer holds. A restored dump keeps its id.
CREATE TABLE store_identity (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    id            TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);
INSERT INTO store_identity (singleton, id, created_at_ms)
VALUES (1, md5(random()::text || clock_timestamp()::text)::uuid::text,
        (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT);

-- An operator's confirmation that the works an agent orphaned may be deleted (maestro-cli
-- consumer confirm-wipe), valid until until_ms (database clock, ms since the Unix epoch).
CREATE TABLE wipe_confirmations (
    consumer_name   TEXT   PRIMARY KEY,
    confirmed_at_ms BIGINT NOT NULL,
    until_ms        BIGINT NOT NULL
);
