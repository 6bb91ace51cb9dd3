-- The access log's fold engine (src/log_fold.c) at its bounds: reads fold up
-- to 1000 a row and 200 subjects a row, the reads of two roles never fold
-- together; a writing transaction keeps each subject's id once per record
-- and starts another record past its bound of ids, which the log writer
-- folds again.
BEGIN;
SELECT plan(15);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET compute_query_id = on;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name LIKE 'tap_log_fold%';
CREATE TEMP VIEW journal AS SELECT * FROM gdpr.access_log_journal WHERE application_name LIKE 'tap_log_fold%';
GRANT SELECT ON mine TO PUBLIC;
CREATE ROLE crm_gdpr_t_folder NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_folder;
GRANT SELECT ON crm.contacts TO crm_gdpr_t_folder;
SELECT min(id) AS c1 FROM crm.contacts \gset
SET tap.c1 = :c1;

--------------------------------------------------------------------- reads
-- 2,500 reads by key of ten people: 1000 reads a row at most.
SET application_name = 'tap_log_fold_times';
DO $$
BEGIN
  FOR i IN 1..2500 LOOP
    PERFORM email FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 10;
  END LOOP;
END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
-- The backend adds each read to its last record in the queue (log_queue.c),
-- a few dozen a record; reads that each named one person and returned one
-- row are cut between two reads to complete a row (log_queue_take.c).
SELECT is((SELECT array_agg(times ORDER BY at, id) FROM mine WHERE application_name = 'tap_log_fold_times'),
          ARRAY[1000, 1000, 500], 'identical reads: 1000 a row at most, in the order they came');
SELECT is((SELECT array_agg(DISTINCT cardinality(subject_keys)) FROM mine WHERE application_name = 'tap_log_fold_times'),
          ARRAY[10], 'each row names its ten people once');

-- 450 reads by key of 450 people, one statement: added to the backend's
-- records dozens at a time, cut to fill rows of 200 people.
SET application_name = 'tap_log_fold_people';
DO $$
BEGIN
  FOR i IN 1..450 LOOP
    PERFORM email FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i;
  END LOOP;
END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(times || ':' || cardinality(subject_keys) || ':' || row_count ORDER BY at, id)
             FROM mine WHERE application_name = 'tap_log_fold_people'),
          ARRAY['200:200:200', '200:200:200', '50:50:50'], 'reads by key of one person each: rows of 200 people, as when each read was a record');

-- 80 reads of three people each, 240 in all: a row names 200 at most.
SET application_name = 'tap_log_fold_subjects';
DO $$
BEGIN
  FOR i IN 0..79 LOOP
    PERFORM email FROM crm.contacts WHERE id BETWEEN current_setting('tap.c1')::bigint + 3 * i
                                             AND current_setting('tap.c1')::bigint + 3 * i + 2;
  END LOOP;
END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
-- Reads naming three people each are not cut: a row closes when the next
-- record would take it past 200 people, a little before.
SELECT is((SELECT count(*) || ' rows, ' || sum(times) || ' reads, first ' || ((array_agg(times ORDER BY at, id))[1] > 40)
             FROM mine WHERE application_name = 'tap_log_fold_subjects'),
          '2 rows, 80 reads, first true', 'a read that would take a row past 200 subjects starts the next row');
SELECT is((SELECT sum(cardinality(subject_keys)) || ', ' || bool_and(cardinality(subject_keys) <= 200 AND cardinality(subject_keys) % 3 = 0)
             FROM mine WHERE application_name = 'tap_log_fold_subjects'),
          '240, true', 'every person read is named, in one row or the other, 200 a row at most');
SELECT is((SELECT count(DISTINCT r) FROM mine, unnest(subject_keys) r WHERE application_name = 'tap_log_fold_subjects'),
          240::bigint, 'no person is named twice');

-- Two statements read in turn, 250 times each, the first naming another
-- person each time: each folds on its own, the first 200 people a row;
-- then six statements in turn, 100 times each (more than the last
-- identities the log writer remembers, log_queue_take.c): six rows.  (Few
-- reads a take: a backend may queue half of its database's share, 16,384
-- slots shared by the databases with the extension, between two takes.)
SET application_name = 'tap_log_fold_turns';
DO $$
BEGIN
  FOR i IN 0..249 LOOP
    PERFORM email FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i;
    PERFORM phone FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 5;
  END LOOP;
END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(columns::text || ':' || times || ':' || cardinality(subject_keys) ORDER BY columns::text, at, id)
             FROM mine WHERE application_name = 'tap_log_fold_turns'),
          ARRAY['{id,email}:200:200', '{id,email}:50:50', '{id,phone}:250:5'],
          'two statements in turn: each its own rows, a full one followed by the next, in the order they came');
SET application_name = 'tap_log_fold_six';
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    PERFORM email FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 3;
    PERFORM phone FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 3;
    PERFORM first_name FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 3;
    PERFORM last_name FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 3;
    PERFORM email, phone FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 3;
    PERFORM first_name, last_name FROM crm.contacts WHERE id = current_setting('tap.c1')::bigint + i % 3;
  END LOOP;
END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(columns::text || ':' || times || ':' || cardinality(subject_keys) ORDER BY columns::text)
             FROM mine WHERE application_name = 'tap_log_fold_six'),
          ARRAY['{id,email,phone}:100:3', '{id,email}:100:3', '{id,first_name,last_name}:100:3', '{id,first_name}:100:3',
                '{id,last_name}:100:3', '{id,phone}:100:3'],
          'six statements in turn: one row each, every read counted');

-- The same read by two roles of one session: two rows.
SET application_name = 'tap_log_fold_roles';
SELECT format('SELECT email FROM crm.contacts WHERE id = %s', :c1) AS read_one \gset
:read_one \g /dev/null
:read_one \g /dev/null
SET ROLE crm_gdpr_t_folder;
:read_one \g /dev/null
:read_one \g /dev/null
:read_one \g /dev/null
RESET ROLE;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(role_name::text || ':' || times ORDER BY role_name) FROM mine WHERE application_name = 'tap_log_fold_roles'),
          ARRAY['crm_gdpr_t_folder:3', 'postgres:2'], 'identical reads of two roles are not folded together');

-------------------------------------------------------------------- writes
-- Five writes of one person: the record keeps his id once.
SET application_name = 'tap_log_fold_same';
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1, 'call', 'fold', now();
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1, 'call', 'fold', now();
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1, 'call', 'fold', now();
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1, 'call', 'fold', now();
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1, 'call', 'fold', now();
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT ARRAY[times, row_count, subjects, cardinality(subject_keys)] FROM mine WHERE application_name = 'tap_log_fold_same'),
          ARRAY[5, 5, 1, 1]::bigint[], 'five writes of one person: one row naming him once');

-- Statements of 40 people each: a record holds 100 ids at most (the larger
-- of 100 and crm_gdpr.log_subjects_max), the third statement starts another.
SET application_name = 'tap_log_fold_ids';
SET crm_gdpr.log_subjects_max = 50;
SELECT format('INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at)
                 SELECT c, ''call'', ''fold'', now() FROM generate_series(%s::bigint, %s) c',
              :c1 + 40 * k, :c1 + 40 * k + 39)
  FROM generate_series(0, 2) k \gexec
RESET crm_gdpr.log_subjects_max;
SELECT is((SELECT ARRAY[times, subjects] FROM journal WHERE application_name = 'tap_log_fold_ids'),
          ARRAY[2, 80]::bigint[], 'past its bound of ids, a record goes to the journal and another starts');
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT ARRAY[times, row_count, subjects, cardinality(subject_keys)] FROM mine WHERE application_name = 'tap_log_fold_ids'),
          ARRAY[3, 120, 120, 120]::bigint[], 'the log writer folds the journal rows again: one row, every person named');

-- 250 subtransactions, each an INSERT and an UPDATE: 500 records in the
-- journal, which the log writer folds by statement, 100 a row, in turn (it
-- remembers the last statements' folds, log_journal.c).  The first three
-- UPDATEs change the city, the others nothing: a statement of its own.
SET application_name = 'tap_log_fold_journal_turns';
DO $$
BEGIN
  FOR i IN 1..250 LOOP
    BEGIN
      INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at)
        VALUES (current_setting('tap.c1')::bigint + i % 4, 'call', 'fold', now());
      UPDATE crm.contacts SET city = 'fold' WHERE id = current_setting('tap.c1')::bigint + i % 3;
    EXCEPTION WHEN others THEN RAISE;
    END;
  END LOOP;
END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(operation || ':' || times || ':' || cardinality(subject_keys) ORDER BY at, id)
             FROM mine WHERE application_name = 'tap_log_fold_journal_turns'),
          ARRAY['INSERT:100:4', 'UPDATE:3:3', 'UPDATE:100:3', 'INSERT:100:4', 'UPDATE:100:3', 'INSERT:50:4', 'UPDATE:47:3'],
          'two statements in turn through the journal: 100 a row each, in the order they came');

-- A savepoint's record is its own: the same statement in and out of it.
SET application_name = 'tap_log_fold_levels';
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1 + 0, 'call', 'fold', now();
SAVEPOINT s;
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1 + 1, 'call', 'fold', now();
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1 + 1, 'call', 'fold', now();
RELEASE SAVEPOINT s;
SELECT is((SELECT ARRAY[times, subjects] FROM journal WHERE application_name = 'tap_log_fold_levels'),
          ARRAY[2, 1]::bigint[], 'a released savepoint writes its own record, its statements only');
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) SELECT :c1 + 2, 'call', 'fold', now();
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT ARRAY[times, subjects] FROM mine WHERE application_name = 'tap_log_fold_levels'),
          ARRAY[4, 3]::bigint[], 'the log writer folds the records of the levels into one row');

SELECT * FROM finish();
ROLLBACK;
