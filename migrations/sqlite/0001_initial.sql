-- Maestro schema, SQLite dialect. Keep equivalent to migrations/postgres/0001_initial.sql.
-- Timestamps are RFC 3339 UTC text with fixed-width microseconds
-- ("2024-01-02T03:04:05.123456Z"), so text order equals time order.
-- JSON columns hold JSON text.

CREATE TABLE consumers (
    id         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    labels     TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX consumers_created_at_id_idx ON consumers (created_at, id);

CREATE TABLE resources (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    consumer_name TEXT    NOT NULL
        REFERENCES consumers (name) ON DELETE RESTRICT ON UPDATE RESTRICT,
    source        TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    payload       TEXT    NOT NULL,
    status        TEXT,
    status_hash   TEXT,
    sequence_id   TEXT,
    deleted_at    TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX resources_consumer_name_idx ON resources (consumer_name);
CREATE INDEX resources_source_idx ON resources (source);
CREATE INDEX resources_created_at_id_idx ON resources (created_at, id);

-- Spec outbox. AUTOINCREMENT: a seq is never reused.
CREATE TABLE spec_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id   TEXT    NOT NULL,
    consumer_name TEXT    NOT NULL,
    action        TEXT    NOT NULL CHECK (action IN ('Create', 'Update', 'Delete')),
    version       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    done_at       TEXT
);
-- "pending rows, oldest first"
CREATE INDEX spec_events_pending_idx ON spec_events (seq) WHERE done_at IS NULL;
CREATE INDEX spec_events_resource_id_idx ON spec_events (resource_id);

-- Status events streamed to sources. AUTOINCREMENT: a seq is never reused (cursors).
CREATE TABLE status_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id   TEXT NOT NULL,
    source        TEXT NOT NULL,
    consumer_name TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('StatusUpdate', 'StatusDelete')),
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Server instances (heartbeats), for HA later.
CREATE TABLE server_instances (
    id             TEXT    NOT NULL PRIMARY KEY,
    last_heartbeat TEXT,
    ready          INTEGER NOT NULL DEFAULT 0
);
