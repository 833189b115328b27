-- EXPLAIN (ANALYZE, BUFFERS) of the statements on the hot path and the list/search paths,
-- as the server sends them (crates/maestro-store/src/sql/mod.rs, postgres.rs), with literal
-- values in place of the bound ones. Run against a database the scale scenario kept:
--   MAESTRO_BENCH_KEEP_DB=1 target/release/maestro-bench --scale --postgres "$URL"
--   psql "<the kept database's URL>" -f docs/profiles/explain.sql > docs/profiles/explain.txt
-- Writes run inside a transaction that is rolled back.
\set QUIET on
\pset pager off
SELECT '{' || string_agg(id, ',') || '}' AS batch_ids FROM
  (SELECT id FROM resources ORDER BY created_at, id OFFSET 100000 LIMIT 32) s \gset
SELECT '{' || string_agg(seq::text, ',') || '}' AS batch_seqs FROM
  (SELECT seq FROM spec_events ORDER BY seq DESC LIMIT 32) s \gset
SELECT max(seq) - 500 AS cursor FROM status_events \gset
\echo '== create: the consumer check (KEY SHARE), one group of creations'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT name FROM consumers WHERE name = ANY('{scale-01000,scale-01001}') ORDER BY name FOR KEY SHARE;
\echo '== create: the resource insert (resource_totals triggers included)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
INSERT INTO resources (id, name, consumer_name, source, version, payload, created_at, updated_at)
SELECT gen_random_uuid()::text, 'explain-' || g, 'scale-01000', 'maestro-bench', 1, payload, now(), now()
FROM generate_series(1, 32) g, (SELECT payload FROM resources LIMIT 1) p
ON CONFLICT (id) DO NOTHING RETURNING id, version;
\echo '== create: the spec outbox insert, claimed by this instance'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at, claimed_by, claim_until_ms)
SELECT 'explain-' || g, 'scale-01000', 'Create', 1, now(), 'explain', 0 FROM generate_series(1, 32) g
RETURNING seq, resource_id;
ROLLBACK;
\echo '== dispatch: outbox rows marked done (asynchronous commit)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE spec_events SET done_at = now() WHERE done_at IS NULL AND seq = ANY(:'batch_seqs'::bigint[]);
ROLLBACK;
\echo '== dispatch: pending outbox rows'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM spec_events WHERE done_at IS NULL ORDER BY seq LIMIT 500;
\echo '== status: the group locks its rows'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT id, version, status_hash, sequence_id FROM resources WHERE id = ANY(:'batch_ids'::text[]) ORDER BY id FOR UPDATE;
\echo '== status: one UPDATE for the group'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE resources AS r SET status = u.status, status_hash = u.status_hash, sequence_id = u.sequence_id, updated_at = now()
FROM UNNEST(:'batch_ids'::text[], array_fill(NULL::json, ARRAY[32]), array_fill('h'::text, ARRAY[32]), array_fill('1'::text, ARRAY[32]))
  AS u(id, status, status_hash, sequence_id) WHERE r.id = u.id;
\echo '== status: the status events, payload copied from the resource rows'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
INSERT INTO status_events (resource_id, source, consumer_name, kind, payload, status, created_at)
SELECT r.id, r.source, r.consumer_name, u.kind, r.payload, u.status, now()
FROM UNNEST(:'batch_ids'::text[], array_fill('StatusUpdate'::text, ARRAY[32]), array_fill('{}'::json, ARRAY[32]))
  WITH ORDINALITY AS u(id, kind, status, ord)
JOIN resources r ON r.id = u.id ORDER BY u.ord RETURNING seq, resource_id;
ROLLBACK;
\echo '== status fan-out: events after a cursor'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT seq, resource_id, source, consumer_name, kind, payload::text AS payload, status::text AS status, created_at
FROM status_events WHERE seq > :cursor ORDER BY seq LIMIT 500;
\echo '== resync: one consumer''s bundles'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT * FROM resources WHERE consumer_name = 'scale-01000' ORDER BY created_at, id;
\echo '== REST: one consumer''s page of 100 (grpcsource search), count and deferred join'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT COUNT(*) FROM resources WHERE (source = 'maestro-bench' AND consumer_name = 'scale-01000');
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT t.* FROM resources AS t JOIN (SELECT id AS page_id FROM resources
  WHERE (source = 'maestro-bench' AND consumer_name = 'scale-01000') ORDER BY created_at, id LIMIT 100 OFFSET 0) AS w
  ON t.id = w.page_id ORDER BY created_at, id;
\echo '== REST: unfiltered list, a deep page of ids (the streamed list reads ids first)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT total FROM resource_totals;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT id FROM resources ORDER BY created_at, id LIMIT 50000 OFFSET 150000;
\echo '== REST: a streamed list batch by id'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM resources WHERE id = ANY(:'batch_ids'::text[]);
\echo '== REST: work-label search (count; the page is the deferred join on the same filter)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT COUNT(*) FROM resources WHERE ((CASE WHEN payload->>'metadata' ~ '^\s*\{' THEN (payload->>'metadata')::jsonb END->'labels') @> '{"app":"app-7"}'::jsonb);
