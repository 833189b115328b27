-- The exact number of resource rows, kept by triggers in the same transactions that insert and
-- delete them, so an unfiltered REST list answers its `total` with one row read instead of a
-- COUNT(*) over every row: at 200,000 bundles the count was 13–17 ms of a 15–20 ms page
-- (docs/benchmarks.md, "REST pages over 200,000 bundles"). Filtered lists still count.
-- Statement-level triggers: a group commit's multi-row insert updates the row once. Writers
-- that insert or delete resources lock this row until they commit; no such writer waits for
-- another lock after taking it (the insert and the delete are the last writes of theirs that
-- touch resources), so it cannot take part in a deadlock.
-- The migration runs in one transaction: the lock keeps other servers (a rolling upgrade) from
-- inserting or deleting resources between the count and the triggers, and lasts until commit.
LOCK TABLE resources IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE resource_totals (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    total    BIGINT  NOT NULL
);
INSERT INTO resource_totals (total) SELECT COUNT(*) FROM resources;

CREATE FUNCTION resource_totals_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE resource_totals SET total = total + (SELECT COUNT(*) FROM inserted_rows);
    RETURN NULL;
END
$$;

CREATE FUNCTION resource_totals_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE resource_totals SET total = total - (SELECT COUNT(*) FROM deleted_rows);
    RETURN NULL;
END
$$;

CREATE FUNCTION resource_totals_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE resource_totals SET total = 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER resources_totals_insert AFTER INSERT ON resources
    REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT EXECUTE FUNCTION resource_totals_inserted();
CREATE TRIGGER resources_totals_delete AFTER DELETE ON resources
    REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION resource_totals_deleted();
CREATE TRIGGER resources_totals_truncate AFTER TRUNCATE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION resource_totals_truncated();
