-- Maestro schema, PostgreSQL dialect. Keep equivalent to migrations/sqlite/0001_initial.sql.

CREATE TABLE consumers (
    id         TEXT        NOT NULL PRIMARY KEY,
    name       TEXT        NOT NULL UNIQUE,
    labels     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX consumers_created_at_id_idx ON consumers (created_at, id);

CREATE TABLE resources (
    id            TEXT        NOT NULL PRIMARY KEY,
    name          TEXT        NOT NULL,
    consumer_name TEXT        NOT NULL
        REFERENCES consumers (name) ON DELETE RESTRICT ON UPDATE RESTRICT,
    source        TEXT        NOT NULL,
    version       BIGINT      NOT NULL,
    payload       JSONB       NOT NULL,
    status        JSONB,
    status_hash   TEXT,
    sequence_id   TEXT,
    deleted_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX resources_consumer_name_idx ON resources (consumer_name);
CREATE INDEX resources_source_idx ON resources (source);
CREATE INDEX resources_created_at_id_idx ON resources (created_at, id);

-- Spec outbox.
CREATE TABLE spec_events (
    seq           BIGSERIAL   PRIMARY KEY,
    resource_id   TEXT        NOT NULL,
    consumer_name TEXT        NOT NULL,
    action        TEXT        NOT NULL CHECK (action IN ('Create', 'Update', 'Delete')),
    version       BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    done_at       TIMESTAMPTZ
);
-- "pending rows, oldest first"
CREATE INDEX spec_events_pending_idx ON spec_events (seq) WHERE done_at IS NULL;
CREATE INDEX spec_events_resource_id_idx ON spec_events (resource_id);

-- Status events streamed to sources.
CREATE TABLE status_events (
    seq           BIGSERIAL   PRIMARY KEY,
    resource_id   TEXT        NOT NULL,
    source        TEXT        NOT NULL,
    consumer_name TEXT        NOT NULL,
    kind          TEXT        NOT NULL CHECK (kind IN ('StatusUpdate', 'StatusDelete')),
    payload       JSONB       NOT NULL,
    status        JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

-- Server instances (heartbeats), for HA later.
CREATE TABLE server_instances (
    id             TEXT        NOT NULL PRIMARY KEY,
    last_heartbeat TIMESTAMPTZ,
    ready          BOOLEAN     NOT NULL DEFAULT FALSE
);
