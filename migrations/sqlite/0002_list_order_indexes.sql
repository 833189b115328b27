-- Indexes for sorted and filtered REST pages (docs/rest.md, "Ordering"): a page of 100 sorted
-- by name, or of one consumer's bundles in creation order, is read from an index instead of
-- sorting every matching row. Keep equivalent to migrations/postgres/0003_list_order_indexes.sql.
-- Columns every status write changes (updated_at) are left unindexed on purpose: an index on
-- them would make every status update maintain every index of the row.
DROP INDEX resources_consumer_name_idx;
CREATE INDEX resources_consumer_name_created_at_id_idx ON resources (consumer_name, created_at, id);
CREATE INDEX resources_name_id_idx ON resources (name, id);
