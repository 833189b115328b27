-- The fleet-wipe guard (docs/operations.md §3.5). Keep equivalent to
-- migrations/postgres/0007_store_identity.sql.

-- The store identity: one random id created with the database (or with this migration, on a
-- database made before it). A recreated database, or another one, has another id; agents
-- compare it before deleting works the store no longer holds. A restored copy keeps its id.
CREATE TABLE store_identity (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    id            TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO store_identity (singleton, id, created_at_ms)
SELECT 1,
       substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' ||
       substr(h, 17, 4) || '-' || substr(h, 21),
       CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
FROM (SELECT lower(hex(randomblob(16))) AS h);

-- An operator's confirmation that the works an agent orphaned may be deleted (maestro-cli
-- consumer confirm-wipe), valid until until_ms (database clock, ms since the Unix epoch).
CREATE TABLE wipe_confirmations (
    consumer_name   TEXT    PRIMARY KEY,
    confirmed_at_ms INTEGER NOT NULL,
    until_ms        INTEGER NOT NULL
);
