-- The write path of the access log (issue 24.1, 24.5): a transaction folds
-- its identical write statements as they come, per subtransaction, and
-- stores its subjects' ids (the log writer pseudonymises them).  Counts and
-- subjects of the folded rows, and savepoints rolled back removing exactly
-- their statements.
BEGIN;
SELECT plan(38);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name LIKE 'tap_fold%' AND operation <> 'SELECT';
CREATE TEMP VIEW journal AS SELECT * FROM gdpr.access_log_journal WHERE application_name LIKE 'tap_fold%';
SELECT min(id) AS c1, min(id) + 1 AS c2, min(id) + 2 AS c3 FROM crm.contacts \gset
SET tap.c1 = :c1;
CREATE FUNCTION pg_temp.ref(id bigint) RETURNS bigint LANGUAGE sql AS $$SELECT gdpr._log_subject_key(id::text)$$;
CREATE FUNCTION pg_temp.refs(app text) RETURNS bigint[] LANGUAGE sql AS
  $$SELECT array_agg(DISTINCT r ORDER BY r) FROM mine, unnest(subject_keys) r WHERE application_name = app$$;

------------------------------------------- 250 statements in one transaction
SET application_name = 'tap_fold_loop';
DO $$
BEGIN
  FOR i IN 1..250 LOOP
    INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at)
      VALUES (current_setting('tap.c1')::bigint + i % 10, 'call', 'fold', now());
  END LOOP;
END $$;
SELECT is((SELECT count(*) FROM journal WHERE application_name = 'tap_fold_loop'), 2::bigint,
          '250 identical INSERTs: two full records (100 statements each) already in the journal, the rest in memory');
SELECT is((SELECT sum(times) FROM journal WHERE application_name = 'tap_fold_loop'), 200::bigint,
          'the journal rows count their statements');
SELECT is((SELECT subject_refs FROM journal WHERE application_name = 'tap_fold_loop' LIMIT 1) LIKE chr(30) || '%', true,
          'the journal holds the subjects'' ids as they are (marked), not their pseudonyms');
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(times ORDER BY times DESC) FROM mine WHERE application_name = 'tap_fold_loop'),
          ARRAY[100, 100, 50], 'in the log: 100 statements a row at most, every one counted');
SELECT is((SELECT sum(row_count) FROM mine WHERE application_name = 'tap_fold_loop'), 250::numeric, 'every row counted');
SELECT is(pg_temp.refs('tap_fold_loop'),
          (SELECT array_agg(pg_temp.ref(c) ORDER BY pg_temp.ref(c)) FROM generate_series(:c1::bigint, :c1 + 9) c),
          'the subjects are the ten contacts written, pseudonymised by the log writer');
SELECT is((SELECT bool_and(cardinality(subject_keys) = 10 AND subjects = 10) FROM mine WHERE application_name = 'tap_fold_loop'),
          true, 'each folded row names its distinct subjects');

--------------------------------------------------------------- savepoints
SET application_name = 'tap_fold_sp';
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c1, 'call', 'fold', now());
SAVEPOINT a;
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c2, 'call', 'fold', now());
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c2, 'call', 'fold', now());
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c3, 'call', 'fold', now());
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c3, 'call', 'fold', now());
RELEASE SAVEPOINT b;
SELECT is((SELECT times FROM journal WHERE application_name = 'tap_fold_sp'), 2,
          'a released savepoint writes its folded record to the journal (as part of it)');
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT sum(times) FROM mine WHERE application_name = 'tap_fold_sp'), 3::bigint,
          'the statements of a rolled back savepoint are not counted, those of a released one are');
SELECT is((SELECT sum(row_count) FROM mine WHERE application_name = 'tap_fold_sp'), 3::numeric, 'rows likewise');
SELECT is(pg_temp.refs('tap_fold_sp'), (SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY[pg_temp.ref(:c1), pg_temp.ref(:c3)]) r),
          'subjects: those of the kept statements only');

SET application_name = 'tap_fold_nested';
SAVEPOINT a;
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c1, 'call', 'fold', now());
SAVEPOINT b;
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c2, 'call', 'fold', now());
RELEASE SAVEPOINT b;
ROLLBACK TO SAVEPOINT a;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT count(*) FROM mine WHERE application_name = 'tap_fold_nested'), 0::bigint,
          'a released savepoint inside one rolled back: nothing logged');

-- An import that skips bad rows: a subtransaction per row, a third rolled back.
SET application_name = 'tap_fold_block';
DO $$
BEGIN
  FOR i IN 1..120 LOOP
    BEGIN
      INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at)
        VALUES (current_setting('tap.c1')::bigint + i % 3, 'call', 'fold', now());
      IF i % 3 = 0 THEN
        RAISE EXCEPTION 'bad row';
      END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
  END LOOP;
END $$;
SELECT cmp_ok((SELECT count(*) FROM pg_backend_memory_contexts WHERE name = 'CurTransactionContext'), '<', 10::bigint,
              'the 80 released subtransactions that wrote a registered table keep no memory (8 kB each before)');
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT sum(times) FROM mine WHERE application_name = 'tap_fold_block'), 80::bigint,
          '120 subtransactions, 40 rolled back: 80 statements logged');
SELECT is((SELECT max(times) FROM mine WHERE application_name = 'tap_fold_block'), 80,
          'folded by the log writer into one row');
SELECT is(pg_temp.refs('tap_fold_block'), (SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY[pg_temp.ref(:c2), pg_temp.ref(:c3)]) r),
          'the rolled back rows'' subject is not named');

------------------------------------------------------ what is folded together
SET application_name = 'tap_fold_cols';
UPDATE crm.contacts SET phone = '+33 1 00 00 00 01' WHERE id = :c1;
UPDATE crm.contacts SET phone = '+33 1 00 00 00 02' WHERE id = :c2;
UPDATE crm.contacts SET email = 'fold@example.org' WHERE id = :c3;
SET crm_gdpr.purpose = 'customer_management';
UPDATE crm.contacts SET phone = '+33 1 00 00 00 03' WHERE id = :c3;
RESET crm_gdpr.purpose;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT times FROM mine WHERE application_name = 'tap_fold_cols' AND columns = ARRAY['phone']::name[] AND purpose IS NULL), 2,
          'UPDATEs of the same columns fold');
SELECT is((SELECT times FROM mine WHERE application_name = 'tap_fold_cols' AND columns = ARRAY['email']::name[]), 1,
          'another column set is another row');
SELECT is((SELECT times FROM mine WHERE application_name = 'tap_fold_cols' AND purpose = 'customer_management'), 1,
          'another purpose is another row');
SELECT is((SELECT last_at >= at FROM mine WHERE application_name = 'tap_fold_cols' AND columns = ARRAY['phone']::name[] AND purpose IS NULL), true,
          'a folded row has its first and last time');

------------------------------- the records written at once: one journal row
SET application_name = 'tap_fold_pack';
SELECT count(*) AS packed_before FROM gdpr.access_log_journal_1 j WHERE backend_pid = pg_backend_pid() \gset
SELECT count(*) + :packed_before AS packed_before FROM gdpr.access_log_journal_2 j WHERE backend_pid = pg_backend_pid() \gset
SAVEPOINT p;
UPDATE crm.contacts SET phone = '+33 1 00 00 00 05' WHERE id = :c1;
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:c2, 'call', 'pack', now());
UPDATE crm.contacts SET phone = '+33 1 00 00 00 06' WHERE id = :c3;
RELEASE SAVEPOINT p;
CREATE TEMP TABLE packed AS
  SELECT * FROM gdpr.access_log_journal_1 WHERE backend_pid = pg_backend_pid()
  UNION ALL SELECT * FROM gdpr.access_log_journal_2 WHERE backend_pid = pg_backend_pid();
SELECT is((SELECT count(*) FROM packed) - :packed_before, 1::bigint,
          'a released savepoint''s records (two statements folded, one more) are ONE row of the journal');
SELECT is((SELECT count(*) FROM packed WHERE records IS NOT NULL AND role_name IS NULL AND operation IS NULL AND at IS NOT NULL),
          (SELECT count(*) FROM packed), 'a packed row: its time, its backend and its records, the rest NULL');
SELECT is((SELECT array_agg(operation || ' ' || times || ' ' || replace(subject_refs, chr(31), ',') ORDER BY operation)
             FROM journal WHERE application_name = 'tap_fold_pack'),
          ARRAY['INSERT 1 ' || chr(30) || :c2, 'UPDATE 2 ' || chr(30) || :c1 || ',' || :c3],
          'the view unpacks it: one row per record, with its count and its subjects'' ids');
SELECT throws_ok($$SELECT * FROM gdpr._journal_records('\x03'::bytea, 1)$$, 'XX001', NULL,
                 'bytes of another format are refused as damaged');
SELECT throws_ok($$SELECT * FROM gdpr._journal_records((SELECT substring(records FROM 1 FOR length(records) - 3) FROM packed
                     WHERE records IS NOT NULL LIMIT 1), 1)$$, 'XX001', NULL, 'a record cut short is refused as damaged');
SELECT is((SELECT count(*) FROM gdpr._journal_records('\x01'::bytea, 1)), 0::bigint, 'no record: no row');
SELECT is((SELECT count(*) FROM gdpr._journal_records('\x02'::bytea, 1)), 0::bigint, 'no record of version 2: no row');
-- Version 2 (0.3's compact rows): a head of a few bytes a record, and the
-- strings a record shares with the one before it (role, session role,
-- application, client, purpose) written once.  The bound is that of the
-- format: 30 bytes of head a record at most, each record's own strings and
-- subjects, the shared strings once.  The 0.2 layout (a 56-byte head and
-- every string of every record) is far over it.
SELECT cmp_ok((SELECT max(length(records)) FROM packed WHERE position('tap_fold_pack'::bytea IN records) > 0),
              '<=', (SELECT 1 + sum(30 + octet_length(operation) + 1 + octet_length(table_name) + 1
                                    + coalesce(octet_length(columns), 0) + 1 + coalesce(octet_length(subject_refs), 0))
                            + max(coalesce(octet_length(role_name), 0) + 1 + coalesce(octet_length(session_user_name), 0) + 1
                                  + coalesce(octet_length(application_name), 0) + 1 + coalesce(octet_length(client_addr), 0) + 1
                                  + coalesce(octet_length(purpose), 0) + 1)
                       FROM journal WHERE application_name = 'tap_fold_pack')::int,
              'a packed row holds short heads, and the strings its records share once');
SELECT is((SELECT (length(e) - length(replace(e, 'tap_fold_pack', ''))) / length('tap_fold_pack')
             FROM (SELECT encode(records, 'escape') AS e FROM packed WHERE position('tap_fold_pack'::bytea IN records) > 0) r), 1,
          'the application''s name is written once for two records');
-- Strings that change from a record to the next, a session role that is not the role.
CREATE ROLE crm_gdpr_t_packer NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_packer;
GRANT SELECT, UPDATE ON crm.contacts TO crm_gdpr_t_packer;
SET application_name = 'tap_fold_mixed';
SAVEPOINT m;
SET crm_gdpr.purpose = 'tap_a';
UPDATE crm.contacts SET phone = '+33 1 00 00 00 07' WHERE id = :c1;
SET ROLE crm_gdpr_t_packer;
UPDATE crm.contacts SET phone = '+33 1 00 00 00 08' WHERE id = :c2;
RESET ROLE;
SET crm_gdpr.purpose = 'tap_b';
UPDATE crm.contacts SET phone = '+33 1 00 00 00 09' WHERE id = :c3;
RESET crm_gdpr.purpose;
RELEASE SAVEPOINT m;
SELECT is((SELECT array_agg(concat_ws('/', role_name, session_user_name, purpose, replace(subject_refs, chr(30), ''))
                            ORDER BY at, subject_refs)
             FROM journal WHERE application_name = 'tap_fold_mixed'),
          ARRAY[concat_ws('/', current_user, session_user, 'tap_a', :c1), concat_ws('/', 'crm_gdpr_t_packer', session_user, 'tap_a', :c2),
                concat_ws('/', current_user, session_user, 'tap_b', :c3)],
          'three records of one row: each with its own role, session role, purpose and subject (the repeated ones read back)');
-- A row in the layout of 0.2-0.3 builds before the compact one (version 1: a
-- 56-byte head copied as a struct), as a journal may hold after a restart on
-- a new build: still read.
CREATE FUNCTION pg_temp.le(v bigint, n int) RETURNS bytea LANGUAGE sql AS
  $$SELECT string_agg(decode(lpad(to_hex((v >> (8 * i)) & 255), 2, '0'), 'hex'), ''::bytea ORDER BY i) FROM generate_series(0, n - 1) i$$;
SELECT decode('clerk\000\000app1\000\000UPDATE\000crm.contacts\000phone\000\000', 'escape') AS v1_strings \gset
SELECT '\x01'::bytea || pg_temp.le(56 + length(:'v1_strings'::bytea) + 3, 4) || pg_temp.le(1, 4) || pg_temp.le(0, 8) || pg_temp.le(0, 8)
       || pg_temp.le(1, 8) || pg_temp.le(0, 8) || pg_temp.le('crm.contacts'::regclass::oid::bigint, 4) || pg_temp.le(1, 4)
       || pg_temp.le(length(:'v1_strings'::bytea), 4) || '\x03000000'::bytea || :'v1_strings'::bytea || decode('42\000', 'escape')
       AS v1_row \gset
SELECT is((SELECT concat_ws('|', role_name, coalesce(session_user_name, '-'), application_name, operation, table_name, columns,
                            replace(subject_refs, chr(30), ''), subjects, row_count, times, at AT TIME ZONE 'UTC', tbl::regclass)
             FROM gdpr._journal_records(:'v1_row'::bytea, 7)),
          'clerk|-|app1|UPDATE|crm.contacts|phone|42|1|1|1|2000-01-01 00:00:00|crm.contacts',
          'a row of version 1 is still read');
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT array_agg(operation || ' ' || times || ' ' || cardinality(subject_keys) ORDER BY operation)
             FROM mine WHERE application_name = 'tap_fold_pack'),
          ARRAY['INSERT 1 1', 'UPDATE 2 2'], 'the log writer moves the packed records as it moved rows');

------------------------------- a large packed row (stored out of line, compressed)
SET application_name = 'tap_fold_big';
SAVEPOINT big;
UPDATE crm.contacts SET notes = 'big ' || id WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET city = 'Big ' || id WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET postcode = lpad(id::text, 5, '0') WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET address = id || ' big street' WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET birth_date = date '1970-01-01' + id::int WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET last_contact_at = now() WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET first_name = 'Big' || id WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
UPDATE crm.contacts SET last_name = 'Pack' || id WHERE id BETWEEN :c1 + 100 AND :c1 + 299;
RELEASE SAVEPOINT big;
SELECT cmp_ok((SELECT max(length(records)) FROM (SELECT records FROM gdpr.access_log_journal_1 WHERE backend_pid = pg_backend_pid()
                 UNION ALL SELECT records FROM gdpr.access_log_journal_2 WHERE backend_pid = pg_backend_pid()) j), '>', 2000,
              'eight statements of 200 rows: one packed row of more than 2 kB (stored out of line)');
SELECT is((SELECT count(*) || ' ' || sum(row_count) || ' ' || bool_and(subjects IS NULL AND length(subject_refs) > 100)
             FROM journal WHERE application_name = 'tap_fold_big'),
          '8 1600 true', 'the view unpacks its eight records, rows counted, subjects past the bound marked as such');
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT count(*) || ' ' || sum(row_count) || ' ' || min(cardinality(subject_keys)) FROM mine WHERE application_name = 'tap_fold_big'),
          '8 1600 100', 'the log writer moves them: a row each, their rows, the first 100 subjects named');

-------------------------------------------------------------- who reads it
SELECT ok(NOT has_table_privilege('gdpr_auditor', 'gdpr.access_log_journal', 'SELECT')
          AND NOT has_table_privilege('gdpr_admin', 'gdpr.access_log_journal', 'SELECT')
          AND NOT has_table_privilege('gdpr_app', 'gdpr.access_log_journal', 'SELECT'),
          'nobody but the extension''s owner reads the journal (it holds subject ids)');
SELECT is((SELECT count(*) FROM journal), 0::bigint, 'everything moved');
SELECT is((SELECT key_problem FROM gdpr.access_log_status), NULL, 'the key can be read: the log writer does not wait');

SELECT * FROM finish();
ROLLBACK;
