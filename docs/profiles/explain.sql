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
\echo '== create: one statement for a group of 32 (resources whose consumer exists, their outbox rows claimed; resource_totals triggers included)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH ins AS (INSERT INTO resources (id, name, consumer_name, source, version, payload, created_at, updated_at)
  SELECT v.id, v.name, v.consumer_name, v.source, 1, v.payload, now(), now()
  FROM UNNEST(
    ARRAY(SELECT gen_random_uuid()::text FROM generate_series(1, 32)),
    ARRAY(SELECT 'explain-' || g FROM generate_series(1, 32) g),
    array_fill('scale-01000'::text, ARRAY[32]), array_fill('maestro-bench'::text, ARRAY[32]),
    ARRAY(SELECT payload::text FROM resources LIMIT 32)::json[])
  WITH ORDINALITY AS v(id, name, consumer_name, source, payload, ord)
  WHERE EXISTS (SELECT 1 FROM consumers c WHERE c.name = v.consumer_name) ORDER BY v.ord
  ON CONFLICT (id) DO NOTHING
  RETURNING id, name, consumer_name, source, version, status, status_hash, sequence_id, deleted_at, created_at, updated_at),
ev AS (INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at, claimed_by, claim_until_ms)
  SELECT id, consumer_name, 'Create', version, created_at, 'explain',
    (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT + 60000 FROM ins
  RETURNING seq, resource_id)
SELECT ins.*, ev.seq FROM ins JOIN ev ON ev.resource_id = ins.id;
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
\echo '== status: one statement for the group (update, sequence lock, event rows with the payload copied from the resource rows; each status text bound once)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH t AS MATERIALIZED (SELECT * FROM UNNEST(array_fill('{}'::text, ARRAY[32])::json[]) WITH ORDINALITY AS t(status, w)),
updated AS (UPDATE resources AS r SET status = t.status, status_hash = u.status_hash, sequence_id = u.sequence_id, updated_at = now()
  FROM UNNEST(:'batch_ids'::text[], ARRAY(SELECT g::bigint FROM generate_series(1, 32) g),
    array_fill('h'::text, ARRAY[32]), array_fill('1'::text, ARRAY[32]))
  AS u(id, w, status_hash, sequence_id) JOIN t ON t.w = u.w WHERE r.id = u.id RETURNING 1),
locked AS (SELECT pg_advisory_xact_lock(7886775334370239857) FROM (SELECT count(*) FROM updated) AS done)
INSERT INTO status_events (resource_id, source, consumer_name, kind, payload, status, created_at)
SELECT r.id, r.source, r.consumer_name, e.kind, r.payload, t.status, now()
FROM UNNEST(:'batch_ids'::text[], array_fill('StatusUpdate'::text, ARRAY[32]), ARRAY(SELECT g::bigint FROM generate_series(1, 32) g))
  WITH ORDINALITY AS e(id, kind, w, ord)
JOIN t ON t.w = e.w JOIN resources r ON r.id = e.id CROSS JOIN locked ORDER BY e.ord
RETURNING seq, resource_id, '';
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
