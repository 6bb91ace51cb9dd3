-- The subjects of a read are those of the rows it read, whatever its WHERE
-- looks like (issue 18.7), up to crm_gdpr.log_subjects_max (then
-- "subjects_truncated", and access_history's "may include you" rows), with a
-- backend's memory that does not grow with the rows read (issue 24.2).
BEGIN;
SELECT plan(60);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET application_name = 'tap_read_subjects';
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name = 'tap_read_subjects';
-- The last read of crm.contacts, once the queue is written.
CREATE FUNCTION pg_temp.last_read() RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = 'SELECT' AND tbl = 'crm.contacts'::regclass ORDER BY id DESC LIMIT 1$$;
-- The keys of ids first..last.
CREATE FUNCTION pg_temp.refs(first bigint, last bigint) RETURNS bigint[] LANGUAGE sql AS
  $$SELECT array_agg(r ORDER BY r) FROM generate_series(first, last) i, gdpr._log_subject_key(i::text) r$$;
CREATE FUNCTION pg_temp.sorted(a bigint[]) RETURNS bigint[] LANGUAGE sql AS
  $$SELECT array_agg(x ORDER BY x) FROM unnest(a) x$$;
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS
  $$DECLARE line text; whole text := ''; BEGIN FOR line IN EXECUTE 'EXPLAIN ' || q LOOP whole := whole || line || E'\n'; END LOOP; RETURN whole; END$$;
SELECT min(id) AS c1 FROM crm.contacts \gset
SELECT :c1 + 19 AS c20 \gset
SET crm_gdpr.log_subjects_max = 100;

---------------------------------------------- whatever the WHERE looks like
SELECT email FROM crm.contacts WHERE id + 0 = :c20 \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20),
          'WHERE id + 0 = 20 names subject 20');
SELECT email FROM crm.contacts WHERE id = (SELECT :c20) \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20),
          'WHERE id = (SELECT 20) names subject 20');
SELECT email FROM crm.contacts WHERE id::text = :'c20' \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20),
          'WHERE id::text = ''20'' names subject 20');
\o /dev/null
SELECT format('SELECT email FROM crm.contacts WHERE id = ANY(%L)', (SELECT array_agg(i) FROM generate_series(:c1 + 20, :c1 + 28) i)) \gexec
\o
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c1 + 20, :c1 + 28),
          'WHERE id = ANY(nine values) names the nine');
SELECT email FROM crm.contacts WHERE lower(email) = (SELECT lower(email) FROM crm.contacts WHERE id = :c20) \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20),
          'a condition on another column names the rows it found');
SELECT is((pg_temp.last_read()).detail, NULL, 'and no truncation');
SELECT email FROM crm.contacts WHERE id = :c1 + 1999999 \g /dev/null
SELECT is((pg_temp.last_read()).subject_keys, NULL, 'a read that finds nobody names nobody');

-- An index-only scan: the key is read from the index.
SET enable_seqscan = off;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT ok(pg_temp.plan_of('SELECT count(*) FROM crm.contacts WHERE id = ' || :c20) LIKE '%Index Only Scan%',
          'the read is an index-only scan');
SELECT count(*) FROM crm.contacts WHERE id = :c20 \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20),
          'an index-only scan names its subject');

---------------------------------------------- more than log_subjects_max
SET enable_indexscan = on;
\o /dev/null
SELECT format('SELECT email FROM crm.contacts WHERE id BETWEEN %s AND %s ORDER BY id', :c1, :c1 + 149) \gexec
\o
RESET enable_seqscan;
RESET enable_indexscan;
RESET enable_bitmapscan;
SELECT (pg_temp.last_read()).id AS bulk_id \gset
SELECT is((SELECT ARRAY[row_count, cardinality(subject_keys)] FROM mine WHERE id = :bulk_id), ARRAY[150, 100]::bigint[],
          '150 people read with log_subjects_max = 100: 100 named');
SELECT is((SELECT detail FROM mine WHERE id = :bulk_id), '{"subjects_truncated": true}'::jsonb,
          'and the row says subjects_truncated');
SELECT is((SELECT may_include_you FROM gdpr.access_history((:c1 + 139)::text) WHERE id = :bulk_id), true,
          'access_history of subject 140 lists that read as "may include you"');
SELECT is((SELECT may_include_you FROM gdpr.access_history((:c1 + 9)::text) WHERE id = :bulk_id), false,
          'and of subject 10, named in it, as his');
SELECT is((SELECT count(*) FROM generate_series(:c1, :c1 + 149) i, gdpr.access_history(i::text) h WHERE h.id = :bulk_id),
          150::bigint, 'every one of the 150 finds that read in his history');
SELECT ok(NOT EXISTS (SELECT FROM gdpr.access_history((:c1 + 139)::text) h
                       WHERE h.may_include_you AND h.tbl NOT IN (SELECT t.tbl FROM gdpr._subject_tree('crm.contacts') t)),
          '"may include you" rows are reads of his tables only');
-- A thousand people named: their record spans several slots of the queue.
SET crm_gdpr.log_subjects_max = 1000;
SELECT count(email) FROM crm.contacts WHERE id BETWEEN :c1 AND :c1 + 999 \g /dev/null
SELECT is((SELECT ARRAY[row_count, cardinality(subject_keys), subjects, (detail IS NULL)::int] FROM pg_temp.last_read()),
          ARRAY[1000, 1000, 1000, 1]::bigint[], 'with log_subjects_max = 1000, a read of 1000 people names them all');
SELECT is((SELECT count(*) FROM (SELECT unnest(subject_keys) FROM pg_temp.last_read()
                                 INTERSECT SELECT unnest(pg_temp.refs(:c1, :c1 + 999))) x),
          1000::bigint, 'each of them');
SET crm_gdpr.log_subjects_max = 100;
-- The same for a write: the first hundred named, subjects NULL, and the
-- others find it as "may include you".
UPDATE crm.contacts SET city = city || ' ' WHERE id BETWEEN :c1 AND :c1 + 149;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT id AS bulk_write FROM mine WHERE operation = 'UPDATE' AND tbl = 'crm.contacts'::regclass ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT ARRAY[count(*), count(*) FILTER (WHERE h.may_include_you)]
             FROM generate_series(:c1, :c1 + 149) i, gdpr.access_history(i::text) h WHERE h.id = :bulk_write),
          ARRAY[150, 50]::bigint[], 'a write of 150 people: 100 named, the 50 others find it as "may include you"');
-- UPDATE ... RETURNING is a read of the rows returned, key returned or not.
UPDATE crm.contacts SET city = city WHERE id + 0 = :c20 RETURNING email \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20),
          'UPDATE ... RETURNING names the subject of the rows returned');
SET crm_gdpr.log_subjects_max = 0;
SELECT email FROM crm.contacts WHERE id = :c20 \g /dev/null
SELECT is((pg_temp.last_read()).detail, '{"subjects_truncated": true}'::jsonb,
          'log_subjects_max = 0 names nobody, and says so');
SET crm_gdpr.log_subjects_max = 100;

---------------------------------------------- parallel plans
-- A read of a registered table gets no parallel workers (read_planner.c;
-- test/pgtap/read_parallel.sql): its backend reads, and names, every row.
SET crm_gdpr.log_subjects_max = 10000;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT ok(pg_temp.plan_of('SELECT count(email) FROM crm.contacts') NOT LIKE '%Gather%', 'no parallel plan');
SELECT count(email) FROM crm.contacts \g /dev/null
SELECT is(ARRAY[cardinality((pg_temp.last_read()).subject_keys)::text, (pg_temp.last_read()).detail::text],
          ARRAY[(SELECT count(*) FROM crm.contacts)::text, NULL], 'a read under parallel settings names all its subjects');
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
SET crm_gdpr.log_subjects_max = 100;

---------------------------------------------- linked tables (issue 20)
-- Notes on any record (kind, ref), as Odoo's chatter; pairs of contacts, a
-- junction with two links.
SET client_min_messages = warning;
CREATE TABLE crm.notes (id bigserial PRIMARY KEY, kind text NOT NULL, ref bigint NOT NULL, body text);
INSERT INTO crm.notes (kind, ref, body) VALUES ('contact', :c20, 'called'), ('order', :c20, 'order of the same id'),
  ('contact', :c1 + 21, 'someone else');
SELECT gdpr.link_table('crm.notes', 'ref', 'crm.contacts', type_column => 'kind', type_value => 'contact') \g /dev/null
SELECT gdpr.link_table('crm.notes', 'ref', 'crm.orders', type_column => 'kind', type_value => 'order') \g /dev/null
CREATE TABLE crm.pairs (id bigserial PRIMARY KEY, a_id bigint NOT NULL, b_id bigint NOT NULL, why text);
INSERT INTO crm.pairs (a_id, b_id, why) VALUES (:c1 + 30, :c1 + 31, 'siblings');
SELECT gdpr.link_table('crm.pairs', 'a_id', 'crm.contacts') \g /dev/null
SELECT gdpr.link_table('crm.pairs', 'b_id', 'crm.contacts') \g /dev/null
RESET client_min_messages;
CREATE FUNCTION pg_temp.last_of(t regclass) RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = 'SELECT' AND tbl = t ORDER BY id DESC LIMIT 1$$;
SELECT body FROM crm.notes WHERE kind = 'contact' AND ref = :c20 \g /dev/null
SELECT is(ARRAY[pg_temp.sorted((pg_temp.last_of('crm.notes')).subject_keys)::text, (pg_temp.last_of('crm.notes')).detail::text],
          ARRAY[pg_temp.refs(:c20, :c20)::text, NULL],
          'a polymorphic row names its subject when its type is the subject table''s');
SELECT body FROM crm.notes WHERE ref = :c20 \g /dev/null
SELECT is(ARRAY[pg_temp.sorted((pg_temp.last_of('crm.notes')).subject_keys)::text, (pg_temp.last_of('crm.notes')).detail::text],
          ARRAY[pg_temp.refs(:c20, :c20)::text, '{"subjects_truncated": true}'],
          'a row of another type does not name the contact of the same id, and makes the subjects incomplete');
SELECT why FROM crm.pairs \g /dev/null
SELECT is(pg_temp.sorted((pg_temp.last_of('crm.pairs')).subject_keys), pg_temp.refs(:c1 + 30, :c1 + 31),
          'a junction row with two links names both');

---------------------------------------------- keys of every type
-- A key is put out as text once per distinct subject: integers by hand, other
-- types by their output function (known per backend); the set starts small
-- and grows.  A read by key names its one subject, a read of six names six.
SET client_min_messages = warning;
CREATE TABLE crm.k_int4 (k integer PRIMARY KEY, v text);
CREATE TABLE crm.k_text (k text PRIMARY KEY, v text);
CREATE TABLE crm.k_uuid (k uuid PRIMARY KEY, v text);
INSERT INTO crm.k_int4 SELECT i, 'x' FROM generate_series(-3, 2) i;
INSERT INTO crm.k_text SELECT 'member ' || i, 'x' FROM generate_series(1, 6) i;
INSERT INTO crm.k_uuid SELECT ('00000000-0000-0000-0000-00000000000' || i)::uuid, 'x' FROM generate_series(1, 6) i;
SELECT gdpr.register_subject_table(t, 'k') FROM unnest('{crm.k_int4,crm.k_text,crm.k_uuid}'::regclass[]) t \g /dev/null
RESET client_min_messages;
CREATE FUNCTION pg_temp.named(t regclass) RETURNS bigint[] LANGUAGE sql AS
  $$SELECT pg_temp.sorted((pg_temp.last_of(t)).subject_keys)$$;
CREATE FUNCTION pg_temp.refs_of(VARIADIC ids text[]) RETURNS bigint[] LANGUAGE sql AS
  $$SELECT pg_temp.sorted(array_agg(gdpr._log_subject_key(i))) FROM unnest(ids) i$$;
SELECT v FROM crm.k_int4 WHERE k = -3 \g /dev/null
SELECT is(pg_temp.named('crm.k_int4'), pg_temp.refs_of('-3'), 'an integer key names its subject');
SELECT v FROM crm.k_int4 \g /dev/null
SELECT is(pg_temp.named('crm.k_int4'), pg_temp.refs_of('-3', '-2', '-1', '0', '1', '2'), 'and six integer keys six');
SELECT v FROM crm.k_text WHERE k = 'member 4' \g /dev/null
SELECT is(pg_temp.named('crm.k_text'), pg_temp.refs_of('member 4'), 'a text key names its subject');
SELECT v FROM crm.k_text \g /dev/null
SELECT is(pg_temp.named('crm.k_text'), (SELECT pg_temp.refs_of(VARIADIC array_agg('member ' || i)) FROM generate_series(1, 6) i),
          'and six text keys six');
SELECT v FROM crm.k_uuid WHERE k = '00000000-0000-0000-0000-000000000005' \g /dev/null
SELECT is(pg_temp.named('crm.k_uuid'), pg_temp.refs_of('00000000-0000-0000-0000-000000000005'), 'a uuid key names its subject');
SELECT v FROM crm.k_uuid \g /dev/null
SELECT is(pg_temp.named('crm.k_uuid'),
          (SELECT pg_temp.refs_of(VARIADIC array_agg('00000000-0000-0000-0000-00000000000' || i)) FROM generate_series(1, 6) i),
          'and six uuid keys six');
-- Three scans in one query (more counted nodes than the few kept in its
-- QueryReads itself): each counts its rows and names its subjects.
SET application_name = 'tap_read_subjects_3';
SELECT v FROM crm.k_int4 UNION ALL SELECT v FROM crm.k_int4 WHERE k > 0 UNION ALL SELECT v FROM crm.k_int4 WHERE k < 0 \g /dev/null
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT ARRAY[sum(times), sum(row_count), sum(cardinality(subject_keys))] FROM gdpr.access_log
            WHERE application_name = 'tap_read_subjects_3' AND operation = 'SELECT'),
          ARRAY[3, 11, 11]::numeric[], 'three scans of one table in a query: 6 + 2 + 3 rows, each named');
SET application_name = 'tap_read_subjects';

---------------------------------------------- a read that fails names the row it failed on
-- An error raised while a scan examines a row can carry the row's values
-- ("invalid input syntax for type integer: \"<e-mail> <phone>\""); the row
-- is never passed on.  The failed read counts it and names its subject.
SELECT throws_ok(format($$SELECT 1 FROM crm.contacts WHERE id = %s AND (email || ' ' || phone)::int > 0$$, :c20),
                 '22P02', NULL, 'a condition that fails on a row''s values fails');
SELECT is(ARRAY[(pg_temp.last_read()).detail ->> 'failed', (pg_temp.last_read()).row_count::text],
          ARRAY['true', '1'], 'the failed read counts the row it failed on');
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20), 'and names its subject');
SELECT throws_ok(format($$SELECT (email || ' ' || phone)::int FROM crm.contacts WHERE id = %s$$, :c20),
                 '22P02', NULL, 'the same in the select list');
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c20, :c20), 'names the subject too');
-- Four rows passed on, the fifth fails: five read, five named.
SELECT throws_ok(format($$SELECT id FROM crm.contacts WHERE id BETWEEN %s AND %s
                            AND (CASE WHEN id = %s THEN email ELSE '1' END)::int > 0 ORDER BY id$$, :c1, :c1 + 9, :c1 + 4),
                 '22P02', NULL, 'a read failing at its fifth row fails');
SELECT is(ARRAY[(pg_temp.last_read()).row_count], ARRAY[5::bigint], 'it read five rows, the failing one included');
SELECT is(pg_temp.sorted((pg_temp.last_read()).subject_keys), pg_temp.refs(:c1, :c1 + 4), 'and names the five');
-- A uuid key, put out while the failed query's memory is freed.
SELECT throws_ok($$SELECT (k::text || v)::int FROM crm.k_uuid WHERE k = '00000000-0000-0000-0000-000000000003'$$,
                 '22P02', NULL, 'a read of a uuid-keyed table that fails');
SELECT is(pg_temp.named('crm.k_uuid'), pg_temp.refs_of('00000000-0000-0000-0000-000000000003'),
          'names the uuid of the row it failed on');
-- A failed UPDATE or DELETE: its trigger never fires, its failed record
-- names the row it failed on (its condition's, or the one being written).
CREATE FUNCTION pg_temp.last_failed_write() RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation IN ('UPDATE', 'DELETE') AND tbl = 'crm.contacts'::regclass
        AND detail ->> 'failed' = 'true' ORDER BY id DESC LIMIT 1$$;
SELECT throws_ok(format($$DELETE FROM crm.contacts WHERE id = %s AND (email || ' ' || phone)::int > 0$$, :c20),
                 '22P02', NULL, 'a DELETE whose condition fails on a row''s values fails');
SELECT is(ARRAY[(pg_temp.last_failed_write()).operation, (pg_temp.last_failed_write()).row_count::text],
          ARRAY['DELETE', '1'], 'the failed DELETE counts the row it failed on');
SELECT is(pg_temp.sorted((pg_temp.last_failed_write()).subject_keys), pg_temp.refs(:c20, :c20), 'and names its subject');
SELECT throws_ok(format($$UPDATE crm.contacts SET city = (email || phone)::int::text WHERE id BETWEEN %s AND %s$$, :c1 + 2, :c1 + 2),
                 '22P02', NULL, 'an UPDATE whose SET fails on the row''s values fails');
SELECT is(pg_temp.sorted((pg_temp.last_failed_write()).subject_keys), pg_temp.refs(:c1 + 2, :c1 + 2),
          'the failed UPDATE names the row being written');
-- An upsert: its existing row is held by no scan; an error of its SET names it.
SELECT throws_ok(format($$INSERT INTO crm.contacts (id) VALUES (%s)
                          ON CONFLICT (id) DO UPDATE SET phone = (crm.contacts.email || crm.contacts.phone)::int::text$$, :c1 + 3),
                 '22P02', NULL, 'an upsert whose SET fails on the existing row''s values fails');
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT ARRAY[operation, row_count::text] FROM mine WHERE tbl = 'crm.contacts'::regclass AND detail ->> 'failed' = 'true'
            ORDER BY id DESC LIMIT 1), ARRAY['INSERT', '1'], 'the failed upsert counts the existing row');
SELECT is((SELECT pg_temp.sorted(subject_keys) FROM mine WHERE tbl = 'crm.contacts'::regclass AND detail ->> 'failed' = 'true'
            ORDER BY id DESC LIMIT 1), pg_temp.refs(:c1 + 3, :c1 + 3), 'and names its subject');
-- A partitioned table: the failing row's key is read where its partition
-- has it (here a partition whose columns are in another order).
SET client_min_messages = warning;
CREATE TABLE crm.k_part (k integer PRIMARY KEY, v text) PARTITION BY RANGE (k);
CREATE TABLE crm.k_part_1 PARTITION OF crm.k_part FOR VALUES FROM (0) TO (10);
CREATE TABLE crm.k_part_2 (v text, k integer NOT NULL);
ALTER TABLE crm.k_part ATTACH PARTITION crm.k_part_2 FOR VALUES FROM (10) TO (20);
INSERT INTO crm.k_part SELECT i, 'x' FROM generate_series(0, 19) i;
SELECT gdpr.register_subject_table('crm.k_part', 'k') \g /dev/null
RESET client_min_messages;
CREATE FUNCTION pg_temp.last_failed_part() RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = 'UPDATE' AND tbl::text LIKE 'crm.k_part%'
        AND detail ->> 'failed' = 'true' ORDER BY id DESC LIMIT 1$$;
SELECT throws_ok($$UPDATE crm.k_part SET v = (CASE WHEN k = 15 THEN v || k ELSE '1' END)::int::text$$,
                 '22P02', NULL, 'an UPDATE of a partitioned table failing on a row of its second partition');
SELECT is(pg_temp.sorted((pg_temp.last_failed_part()).subject_keys), pg_temp.refs_of('15'),
          'names the row it failed on, from a partition whose columns lie elsewhere');
-- An upsert into the partitioned table: its existing row is in the
-- partition's ON CONFLICT state, in the partition's column order.
SELECT throws_ok($$INSERT INTO crm.k_part (k, v) VALUES (16, 'y')
                   ON CONFLICT (k) DO UPDATE SET v = (crm.k_part.v || crm.k_part.k)::int::text$$,
                 '22P02', NULL, 'an upsert into a partitioned table failing on the existing row of its second partition');
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT ARRAY[operation, row_count::text] FROM mine WHERE tbl::text LIKE 'crm.k_part%' AND detail ->> 'failed' = 'true'
            ORDER BY id DESC LIMIT 1), ARRAY['INSERT', '1'], 'the failed upsert counts the partition''s existing row');
SELECT is((SELECT pg_temp.sorted(subject_keys) FROM mine WHERE tbl::text LIKE 'crm.k_part%' AND detail ->> 'failed' = 'true'
            ORDER BY id DESC LIMIT 1), pg_temp.refs_of('16'), 'and names its subject, from the partition''s key column');
SELECT throws_ok($$INSERT INTO crm.k_part (k, v) VALUES (3, 'y')
                   ON CONFLICT (k) DO UPDATE SET v = (crm.k_part.v || crm.k_part.k)::int::text$$,
                 '22P02', NULL, 'and into its first partition');
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT pg_temp.sorted(subject_keys) FROM mine WHERE tbl::text LIKE 'crm.k_part%' AND detail ->> 'failed' = 'true'
            ORDER BY id DESC LIMIT 1), pg_temp.refs_of('3'), 'names that partition''s row');
-- A message that is not an error ends no query: its rows are counted once.
CREATE FUNCTION pg_temp.say(t text) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'row'; RETURN t; END$$;
SET client_min_messages = notice;
SELECT pg_temp.say(email) FROM crm.contacts WHERE id BETWEEN :c1 AND :c1 + 2 \g /dev/null
SELECT is(ARRAY[(pg_temp.last_read()).row_count], ARRAY[3::bigint], 'a NOTICE at each of three rows: three rows read');
SELECT email FROM crm.contacts WHERE id BETWEEN :c1 AND :c1 + 2 AND pg_temp.say(email) IS NULL \g /dev/null
SELECT is(ARRAY[(pg_temp.last_read()).row_count], ARRAY[3::bigint], 'and in a condition rejecting them: three, not six');
RESET client_min_messages;

---------------------------------------------- memory bounded (issue 24.2)
-- Two million rows returned that name five people: the executor's memory
-- must not grow with the rows (a text per row took 486 MB for 20 M; 46 MB
-- here).
SET work_mem = '4MB';
SET max_parallel_workers_per_gather = 0;
SELECT sum(used_bytes) AS mem_before FROM pg_backend_memory_contexts \gset
DECLARE big NO SCROLL CURSOR FOR
  SELECT c.id FROM crm.contacts c CROSS JOIN generate_series(1, 400000) g WHERE c.id < :c1 + 5;
MOVE FORWARD ALL IN big;
SELECT sum(used_bytes) AS mem_after FROM pg_backend_memory_contexts \gset
CLOSE big;
SELECT cmp_ok((:mem_after - :mem_before)::numeric, '<', 16 * 1024 * 1024::numeric,
              format('reading 2 M rows naming 5 people keeps the backend''s memory bounded (grew %s kB)',
                     (:mem_after - :mem_before) / 1024));

SELECT * FROM finish();
ROLLBACK;
