-- The access log: writes, reads, events, append-only, tamper evidence, views.
-- Reads are queued in shared memory; gdpr.flush_access_log() writes them here
-- (the log writer only serves crm_gdpr.database).
BEGIN;
SELECT plan(120);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET application_name = 'tap_access_log';
-- The module does not switch query identifiers on (issue 18.11): the log records them when on.
SET compute_query_id = on;
-- Reads queued by other suites in this database are written too: keep to ours.
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name = 'tap_access_log';
GRANT SELECT ON mine TO PUBLIC;
CREATE ROLE crm_gdpr_t_clerk NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_clerk;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_clerk;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO crm_gdpr_t_clerk;
CREATE ROLE crm_gdpr_t_auditor NOLOGIN IN ROLE gdpr_auditor;
SELECT min(id) AS c1, min(id) + 1 AS c2, min(id) + 2 AS c3, min(id) + 3 AS c4 FROM crm.contacts \gset
-- Writes reach the log through the journal: flush first.
CREATE FUNCTION pg_temp.last(op text) RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = op ORDER BY id DESC LIMIT 1$$;

----------------------------------------------------------------- triggers
SELECT set_eq($$SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'crm.interactions'::regclass AND tgname LIKE 'gdpr_log_%'$$,
              ARRAY['gdpr_log_insert', 'gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate'],
              'registering a table attaches the four log triggers');
SELECT is((SELECT tgargs FROM pg_trigger WHERE tgrelid = 'crm.interactions'::regclass AND tgname = 'gdpr_log_insert'),
          '\x636f6e746163745f696400'::bytea, 'their argument is the subject key column (contact_id)');
SELECT is((SELECT array_agg(tgname::text ORDER BY tgname) FROM pg_trigger
            WHERE tgrelid = 'crm.interactions'::regclass AND tgname LIKE 'gdpr_log_%' AND tgnargs > 0),
          ARRAY['gdpr_log_insert'], 'only the INSERT trigger has it: PostgreSQL copies every argument at every write');

------------------------------------------------------------------- writes
SET crm_gdpr.purpose = 'customer_management';
INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at)
  VALUES (:c1, 'call', 'first call', now()), (:c2, 'email', NULL, now());
SELECT is((pg_temp.last('INSERT')).table_name, 'crm.interactions', 'INSERT: one row for the statement');
SELECT is((pg_temp.last('INSERT')).row_count, 2::bigint, 'INSERT: rows counted');
SELECT ok((pg_temp.last('INSERT')).columns @> ARRAY['contact_id', 'kind', 'summary']::name[]
          AND NOT (pg_temp.last('INSERT')).columns @> ARRAY['agent']::name[],
          'INSERT: the columns given a value, not the others');
SELECT set_eq($$SELECT unnest((pg_temp.last('INSERT')).subject_keys)$$,
              format($$VALUES (gdpr._log_subject_key('%s')), (gdpr._log_subject_key('%s'))$$, :c1, :c2),
              'INSERT: the subjects touched, as keys (keyed hashes)');
SELECT is((pg_temp.last('INSERT')).subjects, 2::bigint, 'INSERT: how many subjects');
SELECT is((pg_temp.last('INSERT')).purpose, 'customer_management', 'the declared purpose is recorded');
SELECT is((pg_temp.last('INSERT')).role_name, 'postgres'::name, 'the role is recorded');
SELECT ok((pg_temp.last('INSERT')).query_id IS NOT NULL AND (pg_temp.last('INSERT')).backend_pid = pg_backend_pid(),
          'query id and backend pid are recorded');
SELECT ok(NOT EXISTS (SELECT FROM mine m, unnest(m.subject_keys) r WHERE r::text IN (:'c1', :'c2'))
          AND NOT EXISTS (SELECT FROM mine m WHERE m.subject_refs IS NOT NULL),
          'identifiers never appear in the log in clear');

-- The trigger remembers its table's name between statements: a rename is seen.
ALTER TABLE crm.interactions RENAME TO interactions_renamed;
INSERT INTO crm.interactions_renamed (contact_id, kind, summary, occurred_at) VALUES (:c1, 'call', 'renamed', now());
SELECT is((pg_temp.last('INSERT')).table_name, 'crm.interactions_renamed', 'a renamed table is logged under its new name');
ALTER TABLE crm.interactions_renamed RENAME TO interactions;

SET ROLE crm_gdpr_t_clerk;
UPDATE crm.contacts SET city = 'Lyon', phone = phone WHERE id IN (:c1, :c2, :c3);
RESET ROLE;
SELECT is((pg_temp.last('UPDATE')).columns, ARRAY['city']::name[], 'UPDATE: only the columns whose value changed');
SELECT is((pg_temp.last('UPDATE')).row_count, 3::bigint, 'UPDATE: one row for three changed rows');
SELECT is((pg_temp.last('UPDATE')).role_name, 'crm_gdpr_t_clerk'::name, 'UPDATE: the role that wrote');
SELECT is((pg_temp.last('UPDATE')).session_user_name, 'postgres'::name, 'UPDATE: the session user');
UPDATE crm.contacts SET city = city WHERE id = :c1;
SELECT is((pg_temp.last('UPDATE')).columns, NULL, 'an UPDATE that changes nothing names no column');
-- Only the columns an UPDATE sets are compared, unless something else may change others:
-- a generated column PostgreSQL recomputes, or a BEFORE ROW trigger of the table.
ALTER TABLE crm.contacts ADD COLUMN city_upper text GENERATED ALWAYS AS (upper(city)) STORED;
UPDATE crm.contacts SET city = 'Lille' WHERE id = :c1;
SELECT is((pg_temp.last('UPDATE')).columns, ARRAY['city', 'city_upper']::name[],
          'UPDATE: a generated column recomputed from a column set is written too');
ALTER TABLE crm.contacts DROP COLUMN city_upper;
CREATE FUNCTION pg_temp.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.notes := 'touched'; RETURN NEW; END$$;
CREATE TRIGGER t_touch BEFORE UPDATE ON crm.contacts FOR EACH ROW EXECUTE FUNCTION pg_temp.touch();
UPDATE crm.contacts SET city = 'Lyon' WHERE id = :c1;
SELECT is((pg_temp.last('UPDATE')).columns, ARRAY['city', 'notes']::name[],
          'UPDATE: a column a BEFORE ROW trigger changed is written too');
DROP TRIGGER t_touch ON crm.contacts;
UPDATE crm.contacts SET city = 'Nowhere' WHERE id = -1;
SELECT is((SELECT count(*) FROM mine WHERE operation = 'UPDATE'), 4::bigint, 'a statement that touches no row is not logged');
-- Three identical statements on the same two people: one row, each person once.
DO $$ BEGIN FOR i IN 1..3 LOOP UPDATE crm.contacts SET phone = phone || i WHERE id IN (11, 12); END LOOP; END $$;
SELECT is((SELECT ARRAY[times, row_count, subjects, cardinality(subject_keys)] FROM pg_temp.last('UPDATE')),
          ARRAY[3, 6, 2, 2]::bigint[], 'identical writes fold into one row that names each person once');
SELECT is((pg_temp.last('UPDATE')).subject_keys,
          (SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY[gdpr._log_subject_key('11'), gdpr._log_subject_key('12')]) r),
          'their keys, sorted');
-- A key is the first 8 bytes of the subject's pseudonym (the token's hash), big-endian.
SELECT is(gdpr._log_subject_key('11'),
          ('x' || encode(substr(decode(translate(gdpr._pseudonym('11', 'access-log'), '-_', '+/') || '==', 'base64'), 1, 8), 'hex'))::bit(64)::bigint,
          'a subject''s key is the first 64 bits of his keyed pseudonym');
-- A journal row of 0.2 (waiting at the update) holds references: moved, they become keys.
INSERT INTO gdpr.access_log_journal_1 (at, role_name, session_user_name, application_name, operation, tbl, table_name,
                                       columns, subject_refs, subjects, row_count)
  VALUES (now(), 'postgres', 'postgres', 'tap_access_log', 'UPDATE', 'crm.contacts'::regclass, 'crm.contacts', 'notes',
          gdpr._pseudonym('7', 'access-log') || chr(31) || gdpr._pseudonym('8', 'access-log'), 2, 2);
SELECT is((SELECT subject_keys FROM pg_temp.last('UPDATE') WHERE columns = '{notes}'),
          (SELECT array_agg(k ORDER BY k) FROM unnest(ARRAY[gdpr._log_subject_key('7'), gdpr._log_subject_key('8')]) k),
          'the references of a journal row of 0.2 are moved as their keys');

DELETE FROM crm.interactions WHERE contact_id = :c2 AND summary IS NULL;
SELECT ok((pg_temp.last('DELETE')).columns @> ARRAY['id', 'contact_id', 'kind', 'summary', 'agent']::name[],
          'DELETE: every column');
SELECT is((pg_temp.last('DELETE')).subject_keys, ARRAY[gdpr._log_subject_key(:'c2')], 'DELETE: the subject');

SAVEPOINT t;
TRUNCATE crm.marketing_events;
SELECT is((pg_temp.last('TRUNCATE')).table_name, 'crm.marketing_events', 'TRUNCATE is logged');
SELECT is((pg_temp.last('TRUNCATE')).row_count, NULL, 'TRUNCATE: rows unknown');
ROLLBACK TO SAVEPOINT t;

CREATE TABLE public.t_unregistered (id int, email text);
INSERT INTO public.t_unregistered VALUES (1, 'a@b.c');
SELECT * FROM public.t_unregistered;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT count(*) FROM mine WHERE table_name = 'public.t_unregistered'), 0::bigint,
          'an unregistered table is not logged');

-------------------------------------------------------------------- reads
SET crm_gdpr.purpose = 'prospecting';
SELECT id, email FROM crm.contacts WHERE id = :c4 \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((pg_temp.last('SELECT')).columns, ARRAY['id', 'email']::name[], 'SELECT: the columns read');
SELECT is((pg_temp.last('SELECT')).row_count, 1::bigint, 'SELECT: the rows returned');
SELECT is((pg_temp.last('SELECT')).subject_keys, ARRAY[gdpr._log_subject_key(:'c4')],
          'SELECT: the subject whose key it returned');
SELECT is((pg_temp.last('SELECT')).purpose, 'prospecting', 'SELECT: the purpose');
-- A queued record keeps 63 bytes of a purpose, cut between two characters.
SELECT set_config('crm_gdpr.purpose', repeat('é', 40), false) IS NOT NULL AS set \gset
SELECT id FROM crm.contacts WHERE id = :c4 \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((pg_temp.last('SELECT')).purpose, repeat('é', 31), 'SELECT: a long purpose is cut to 63 bytes, whole characters');
SET crm_gdpr.purpose = 'prospecting';

SELECT phone FROM crm.contacts WHERE id = :c2 \g /dev/null
PREPARE by_key(bigint) AS SELECT address FROM crm.contacts WHERE id = $1;
EXECUTE by_key(:c3) \g /dev/null
SELECT summary FROM crm.interactions WHERE contact_id = ANY (ARRAY[:c1, :c2]::bigint[]) \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT subject_keys FROM mine WHERE columns = ARRAY['id', 'phone']::name[]),
          ARRAY[gdpr._log_subject_key(:'c2')], 'SELECT: the subject named in its condition');
SELECT is((SELECT subject_keys FROM mine WHERE columns = ARRAY['id', 'address']::name[]),
          ARRAY[gdpr._log_subject_key(:'c3')], 'SELECT: the subject given as a parameter');
SELECT set_eq($$SELECT unnest(subject_keys) FROM mine WHERE columns = ARRAY['contact_id', 'summary']::name[]$$,
              format($$VALUES (gdpr._log_subject_key('%s')), (gdpr._log_subject_key('%s'))$$, :c1, :c2),
              'SELECT: the subjects of "= ANY" on a child table');

SAVEPOINT t;
SELECT birth_date FROM crm.contacts WHERE id = :c3 \g /dev/null
ROLLBACK TO SAVEPOINT t;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT ok(EXISTS (SELECT FROM mine WHERE operation = 'SELECT' AND columns @> ARRAY['birth_date']::name[]),
          'a read in a rolled back subtransaction is logged');

CREATE FUNCTION pg_temp.reads_inside() RETURNS bigint LANGUAGE plpgsql AS
  $$BEGIN RETURN (SELECT count(notes) FROM crm.contacts); END$$;
SELECT pg_temp.reads_inside() \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT ok(EXISTS (SELECT FROM mine WHERE operation = 'SELECT' AND columns = ARRAY['notes']::name[]),
          'a read inside a function is logged');

COPY crm.contacts (id, phone) TO '/dev/null';
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((pg_temp.last('COPY')).columns, ARRAY['id', 'phone']::name[], 'COPY TO: the columns');
SELECT is((pg_temp.last('COPY')).row_count, (SELECT count(*) FROM crm.contacts), 'COPY TO: the rows');

SELECT count(*) FROM crm.contacts WHERE segment = 'b2b' \g /dev/null
SELECT count(*) FROM crm.contacts WHERE segment = 'b2b' \g /dev/null
SELECT count(*) FROM crm.contacts WHERE segment = 'b2b' \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT times FROM mine WHERE operation = 'SELECT' AND columns = ARRAY['segment']::name[]), 3,
          'identical reads are folded into one row with their number');
SELECT ok((SELECT last_at > at FROM mine WHERE operation = 'SELECT' AND columns = ARRAY['segment']::name[]),
          'the folded row keeps the first and the last time');

-- Two hundred reads by key of every column (as many people as a read row
-- names at most): one folded row naming the two hundred people, some 3 kB
-- with the columns' names, kept in its page rather than in TOAST, which
-- takes rows over 2 kB by default (80_access_log.sql says why).  After five runs PL/pgSQL switches to a generic plan: the subjects
-- are those of the rows read all the same.  A log writer's round would take
-- part of the reads into a row of their own: its lock is held until the end.
-- TOAST is counted in live chunks, before and after: rows another test wrote
-- and rolled back leave pages there, not chunks.
CREATE FUNCTION pg_temp.toast_chunks() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE t regclass; n bigint := 0; m bigint;
BEGIN
  FOR t IN SELECT c.reltoastrelid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'gdpr.access_log'::regclass AND c.reltoastrelid <> 0 LOOP
    EXECUTE format('SELECT count(*) FROM %s', t) INTO m;
    n := n + m;
  END LOOP;
  RETURN n;
END $$;
SELECT pg_temp.toast_chunks() AS chunks_before \gset
LOCK TABLE gdpr.access_log_seals IN SHARE UPDATE EXCLUSIVE MODE;
CREATE TEMP TABLE two_hundred AS SELECT id FROM crm.contacts ORDER BY id LIMIT 200;
DO $$ DECLARE i bigint; BEGIN FOR i IN SELECT id FROM two_hundred ORDER BY id LOOP PERFORM * FROM crm.contacts WHERE id = i; END LOOP; END $$;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT id AS fold_id FROM gdpr.access_log
 WHERE operation = 'SELECT' AND tbl = 'crm.contacts'::regclass AND columns @> ARRAY['id', 'email', 'phone', 'notes']::name[]
 ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT ARRAY[times, cardinality(subject_keys), subjects] FROM gdpr.access_log WHERE id = :fold_id),
          ARRAY[200, 200, 200]::bigint[], 'two hundred reads by key fold into one row that names the two hundred people');
SELECT is(pg_temp.toast_chunks(), :chunks_before::bigint,
          'a folded row of two hundred people is stored in its page, none of it in TOAST');
-- The same ten people read twice each: twenty reads, each person named once.
SELECT format('DO $$ BEGIN FOR r IN 1..2 LOOP FOR i IN %s..%s LOOP PERFORM phone FROM crm.contacts WHERE id = i; END LOOP; END LOOP; END $$', :c1, :c1 + 9) \gexec
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT ARRAY[times, cardinality(subject_keys), subjects] FROM gdpr.access_log
            WHERE operation = 'SELECT' AND columns = ARRAY['id', 'phone']::name[] ORDER BY id DESC LIMIT 1),
          ARRAY[20, 10, 10]::bigint[], 'a folded row names each person once, however often read');

SET crm_gdpr.log_reads = off;
SELECT postcode FROM crm.contacts WHERE id = :c1 \g /dev/null
RESET crm_gdpr.log_reads;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT ok(NOT EXISTS (SELECT FROM mine WHERE columns = ARRAY['id', 'postcode']::name[]),
          'crm_gdpr.log_reads = off stops logging reads');

------------------------------------------------------------------- events
SELECT gdpr.grant_consent(:'c3', 'newsletter', 'web', '{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "form": "f", "notice_version": 1}') \g /dev/null
SELECT is((pg_temp.last('CONSENT')).detail ->> 'event', 'grant', 'CONSENT: the event');
SELECT is((pg_temp.last('CONSENT')).subject_keys, ARRAY[gdpr._log_subject_key(:'c3')], 'CONSENT: the subject');
SELECT gdpr.export_subject(:'c3') \g /dev/null
SELECT is((pg_temp.last('EXPORT')).table_name, 'crm.contacts', 'EXPORT is logged');
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT count(*) FROM mine WHERE operation = 'SELECT' AND at >= (pg_temp.last('EXPORT')).at), 0::bigint,
          'the export''s own queries are not logged as reads');
SELECT gdpr.restrict_subject(:'c3', 'accuracy contested') \g /dev/null
SELECT gdpr.lift_restriction(:'c3', 'checked') \g /dev/null
SELECT ok((pg_temp.last('RESTRICT')).id IS NOT NULL AND (pg_temp.last('LIFT RESTRICTION')).id IS NOT NULL,
          'RESTRICT and LIFT RESTRICTION are logged');
SELECT gdpr.decrypt(gdpr.encrypt('secret ' || i)) FROM generate_series(1, 4) i \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((pg_temp.last('DECRYPT')).row_count, 4::bigint, 'DECRYPT: one row per statement with the values decrypted');
SELECT gdpr.encrypt_for_subject('his diary', :'c2') \g /dev/null
SELECT gdpr.shred_subject(:'c2') \g /dev/null
SELECT is((pg_temp.last('SHRED')).subject_keys, ARRAY[gdpr._log_subject_key(:'c2')], 'SHRED is logged');
SAVEPOINT p;
UPDATE crm.marketing_events SET at = now() - interval '5 years' WHERE id IN (SELECT id FROM crm.marketing_events ORDER BY id LIMIT 3);
SELECT count(*) FROM gdpr.purge() \g /dev/null
SELECT ok((pg_temp.last('PURGE')).id IS NOT NULL AND
          (SELECT sum(row_count) >= 3 AND bool_and(detail ? 'run_id') FROM mine WHERE operation = 'PURGE'
            AND table_name = 'crm.marketing_events'), 'PURGE is logged, with its run and rows');
ROLLBACK TO SAVEPOINT p;
SELECT gdpr.erase_subject(:'c4') \g /dev/null
SELECT is((pg_temp.last('ERASE')).detail ->> 'erasure_id', (SELECT max(id)::text FROM gdpr.erasures), 'ERASE is logged');
SELECT ok((SELECT count(*) FROM mine WHERE operation = 'DELETE' AND subject_keys @> ARRAY[gdpr._log_subject_key(:'c4')]) > 0,
          'the erasure''s deletions are logged under the pseudonym, which outlives him');

------------------------------------------------------------------ history
SELECT set_eq($$SELECT operation FROM gdpr.access_history('$$ || :'c4' || $$') WHERE application_name = 'tap_access_log' AND NOT may_include_you$$,
              ARRAY['SELECT', 'ERASE', 'DELETE'], 'access_history: who read and changed his data');
SELECT ok(NOT EXISTS (SELECT FROM gdpr.access_history(:'c4') h
                       WHERE NOT h.may_include_you AND NOT h.subject_keys @> ARRAY[gdpr._log_subject_key(:'c4')]),
          'access_history: only rows naming him, besides those that may include him');
SELECT throws_ok($$SELECT * FROM gdpr.access_history(NULL)$$, '22004', NULL, 'access_history: NULL subject');

------------------------------------------------------------- append-only
SELECT throws_ok($$UPDATE gdpr.access_log SET row_count = 0$$, '42501', NULL, 'UPDATE of the log is refused, even to its owner');
SELECT throws_ok($$DELETE FROM gdpr.access_log$$, '42501', NULL, 'DELETE is refused');
SELECT throws_ok($$TRUNCATE gdpr.access_log$$, '42501', NULL, 'TRUNCATE is refused');
SELECT throws_ok($$ALTER TABLE gdpr.access_log DISABLE TRIGGER append_only$$, '42501', NULL, 'DISABLE TRIGGER is refused');
SELECT throws_ok(format('DROP TABLE gdpr.%I', gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC'))),
                 '42501', NULL, 'DROP TABLE of a month is refused');
SELECT throws_ok(format('ALTER TABLE gdpr.access_log DETACH PARTITION gdpr.%I',
                        gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC'))),
                 '42501', NULL, 'DETACH PARTITION is refused');
SELECT throws_ok($$ALTER TABLE gdpr.access_log_seals RENAME TO old_seals$$, '42501', NULL, 'RENAME is refused');
SELECT throws_ok($$DROP TABLE gdpr.access_log_seals$$, '42501', NULL, 'DROP TABLE of the seals is refused');

------------------------------------------------------------ tamper evidence
SELECT is((SELECT count(*) FROM mine WHERE mac IS NULL OR length(mac) <> 40), 0::bigint, 'every row has a keyed MAC');
-- The MAC is over a canonical form doc/access-log.md describes: rebuilt here
-- in SQL (every value as its type's output writes it, timestamps as
-- microseconds since 2000), it must give the same MAC, whatever the subjects.
-- A row with subject_keys (0.3) adds them at the end; one without has the form of 0.2.
CREATE FUNCTION pg_temp.canonical(r gdpr.access_log) RETURNS bytea LANGUAGE sql AS $$
  SELECT convert_to(string_agg(f.name || '=' || CASE WHEN f.v IS NULL THEN 'N;' ELSE 'V' || octet_length(f.v) || ':' || f.v || ';' END,
                               '' ORDER BY f.o) FILTER (WHERE f.o < 19 OR f.v IS NOT NULL), getdatabaseencoding())
    FROM (VALUES (1, 'id', r.id::text),
                 (2, 'at', ((extract(epoch FROM r.at) - 946684800) * 1000000)::bigint::text),
                 (3, 'last_at', ((extract(epoch FROM r.last_at) - 946684800) * 1000000)::bigint::text),
                 (4, 'role_name', r.role_name::text), (5, 'session_user_name', r.session_user_name::text),
                 (6, 'application_name', r.application_name), (7, 'client_addr', CASE WHEN r.client_addr IS NOT NULL THEN format('%s', r.client_addr) END),
                 (8, 'backend_pid', r.backend_pid::text), (9, 'operation', r.operation),
                 (10, 'table_name', r.table_name), (11, 'columns', r.columns::text),
                 (12, 'subject_refs', r.subject_refs::text), (13, 'subjects', r.subjects::text),
                 (14, 'row_count', r.row_count::text), (15, 'times', r.times::text),
                 (16, 'query_id', r.query_id::text), (17, 'purpose', r.purpose),
                 (18, 'detail', r.detail::text), (19, 'subject_keys', r.subject_keys::text)) f(o, name, v)
$$;
SELECT is((SELECT count(*) FROM gdpr.access_log l
            WHERE l.application_name = 'tap_access_log' AND l.mac IS DISTINCT FROM gdpr._log_keyed_hash(pg_temp.canonical(l))),
          0::bigint, 'each MAC is the keyed hash of the row''s canonical form');
SAVEPOINT t;
SELECT gdpr._log_mac_door(true) \g /dev/null
INSERT INTO gdpr.access_log (operation, subject_refs)
  VALUES ('SELECT', '{}'), ('SELECT', '{a,b-c_d,h:x}'), ('SELECT', '{"a b"}'), ('SELECT', '{"x,y"}'),
         ('SELECT', '{"q\"uote","back\\slash"}'), ('SELECT', '{"{brace}"}'), ('SELECT', '{""}'), ('SELECT', '{"NULL"}'),
         ('SELECT', '{"nULl"}'), ('SELECT', '{a,NULL}'), ('SELECT', '[0:1]={a,b}'), ('SELECT', '{{a,b},{c,d}}'),
         ('SELECT', ARRAY['tab' || chr(9)]), ('SELECT', '{été,日本}'), ('SELECT', NULL);
INSERT INTO gdpr.access_log (operation, subject_keys)
  VALUES ('SELECT', '{}'), ('SELECT', '{1,-9223372036854775808,9223372036854775807}'), ('SELECT', '{1,NULL}'),
         ('SELECT', '[0:1]={1,2}'), ('SELECT', '{{1,2},{3,4}}');
SELECT is((SELECT count(*) FROM gdpr.access_log l WHERE l.application_name = 'tap_access_log' AND l.operation = 'SELECT'
             AND l.table_name IS NULL AND l.mac = gdpr._log_keyed_hash(pg_temp.canonical(l))),
          20::bigint, 'subjects that need quoting, keys, NULLs, bounds, dimensions, none: the MAC still covers their text');
ROLLBACK TO SAVEPOINT t;
SELECT gdpr._log_mac_door(false) \g /dev/null
SELECT pg_sleep(1.1);
SELECT ok(gdpr.seal_access_log() > 0, 'settled rows are sealed');
SELECT throws_ok($$UPDATE gdpr.access_log_seals SET row_count = 0$$, '42501', NULL, 'the seals are append-only');
SELECT throws_ok($$DELETE FROM gdpr.access_log_seals$$, '42501', NULL, 'seals are never deleted');
SELECT is((SELECT ok FROM gdpr.verify_access_log()), true, 'verify: the untouched log is intact');
SELECT (SELECT min(id) FROM mine WHERE operation = 'UPDATE') AS upd_id,
       (SELECT min(id) FROM mine WHERE operation = 'INSERT') AS ins_id \gset
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log SET row_count = 1 WHERE id = :upd_id;
SELECT is((SELECT first_bad_id FROM gdpr.verify_access_log()), :'upd_id'::bigint, 'verify finds a modified row');
ROLLBACK TO SAVEPOINT t;
-- The keys are covered: one changed, or all removed (the row would then have the form of 0.2).
SELECT min(id) AS keys_id FROM mine WHERE operation = 'SELECT' AND cardinality(subject_keys) > 1 \gset
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log SET subject_keys[1] = subject_keys[1] + 1 WHERE id = :keys_id;
SELECT is((SELECT first_bad_id FROM gdpr.verify_access_log()), :'keys_id'::bigint, 'verify finds a subject''s key changed');
ROLLBACK TO SAVEPOINT t;
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log SET subject_keys = NULL WHERE id = :keys_id;
SELECT is((SELECT first_bad_id FROM gdpr.verify_access_log()), :'keys_id'::bigint, 'verify finds the keys removed');
ROLLBACK TO SAVEPOINT t;
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
DELETE FROM gdpr.access_log WHERE id = :ins_id;
SELECT is((SELECT (first_bad_id, detail ~ 'missing') FROM gdpr.verify_access_log()), (:'ins_id'::bigint, true),
          'verify finds a deleted row');
ROLLBACK TO SAVEPOINT t;
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
INSERT INTO gdpr.access_log (id, at, operation, role_name, mac)
  SELECT 9000000001, at, 'SELECT', 'nobody', mac FROM gdpr.access_log WHERE id = :ins_id;
SELECT is((SELECT first_bad_id FROM gdpr.verify_access_log()), 9000000001::bigint, 'verify finds an inserted row');
ROLLBACK TO SAVEPOINT t;
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log_seals SET row_count = row_count - 1 WHERE seal_id = (SELECT max(seal_id) FROM gdpr.access_log_seals);
SELECT is((SELECT ok FROM gdpr.verify_access_log()), false, 'verify finds an altered seal');
ROLLBACK TO SAVEPOINT t;
SELECT is((SELECT ok FROM gdpr.verify_access_log()), true, 'intact again once the tampering is undone');
-- Issue 18.8: a superuser's forgeries.
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
DELETE FROM gdpr.access_log WHERE id = :ins_id;
SET LOCAL session_replication_role = origin;
INSERT INTO gdpr.access_log_retention (dropped_before, what, row_count) VALUES ('infinity', 'nothing to see', 0);
SELECT is((SELECT (ok, detail ~ 'retention record') FROM gdpr.verify_access_log()), (false, true),
          'a retention record inserted by hand does not hide a deleted row: verify reports it');
ROLLBACK TO SAVEPOINT t;
SAVEPOINT t;
INSERT INTO gdpr.access_log (operation, role_name, table_name, subject_keys)
  VALUES ('SELECT', 'innocent_intern', 'crm.contacts', gdpr._log_subject_keys('1')) RETURNING id AS fake_id \gset
SELECT is((SELECT mac FROM gdpr.access_log WHERE id = :fake_id), NULL, 'a row inserted by hand gets no MAC');
SELECT is((SELECT (ok, first_bad_id, detail ~ 'no MAC') FROM gdpr.verify_access_log()), (false, :'fake_id'::bigint, true),
          'and verify reports it as forged');
ROLLBACK TO SAVEPOINT t;
SELECT is((SELECT count(*) FROM gdpr.access_log_retention WHERE hash IS NULL), 0::bigint,
          'every record of the log''s retention is MACed');

-- Issue 24.3: reads taken by a round that fails are lost: not counted as
-- written, but recorded with their cause.
SELECT written AS written_before FROM gdpr.access_log_queue() \gset
SAVEPOINT t;
SELECT email FROM crm.contacts WHERE id = 3 \g /dev/null
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
ROLLBACK TO SAVEPOINT t;
SELECT is((SELECT written FROM gdpr.access_log_queue()), :'written_before'::bigint,
          'reads taken by a round that failed are not counted as written');
SELECT ok(gdpr._log_note_losses() >= 1, 'they are recorded as lost');
SELECT ok((SELECT (losses_by_cause ->> 'flush failed')::bigint >= 1 AND lost_since_install >= 1 FROM gdpr.access_log_status),
          'access_log_status shows every loss since install with its cause');
SELECT is((SELECT count(*) FROM gdpr._chain_check('gdpr.access_log_losses') WHERE state <> 'ok'), 0::bigint,
          'the record of losses is MACed and chained');

------------------------------------------------------------- alarms, guard
SET crm_gdpr.mass_read_rows = 500;
SET ROLE crm_gdpr_t_clerk;
SELECT email FROM crm.contacts \g /dev/null
RESET ROLE;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT rows_read >= (SELECT count(*) FROM crm.contacts) FROM gdpr.mass_read_alarms
            WHERE role_name = 'crm_gdpr_t_clerk'), true, 'a mass read raises the alarm');
SET crm_gdpr.mass_read_rows = 100000000;
SELECT is((SELECT count(*) FROM gdpr.mass_read_alarms WHERE role_name = 'crm_gdpr_t_clerk'), 0::bigint,
          'no alarm under the threshold');
SELECT ok((SELECT rows_read FROM gdpr.read_volume WHERE role_name = 'crm_gdpr_t_clerk' ORDER BY hour DESC LIMIT 1) > 0,
          'read_volume: rows read per role and hour');

SET crm_gdpr.max_rows_per_query = 10;
SET ROLE crm_gdpr_t_clerk;
SELECT throws_ok($$SELECT email FROM crm.contacts$$, '42501', 'query reads more than 10 rows of personal data',
                 'max_rows_per_query stops a mass read by a role that is not gdpr_admin');
SELECT lives_ok($$SELECT email FROM crm.contacts LIMIT 10$$, 'ten rows are allowed');
SELECT throws_ok($$COPY crm.contacts TO '/dev/null'$$, '42501', NULL, 'and so is a COPY TO of the table');
RESET ROLE;
SELECT lives_ok($$SELECT email FROM crm.contacts$$, 'an administrator is not limited');
RESET crm_gdpr.max_rows_per_query;
SELECT gdpr.flush_access_log() > 0 AS flushed \gset
SELECT is((SELECT refused FROM gdpr.access_violations WHERE application_name = 'tap_access_log' AND operation = 'SELECT'),
          'crm_gdpr.max_rows_per_query = 10', 'the refused read is in access_violations');

--------------------------------------------------------------- retention
SELECT is((SELECT boot_val FROM pg_settings WHERE name = 'crm_gdpr.access_log_keep'), '1 year',
          'the log is kept 1 year by default (the CNIL recommends 6 months to 1 year)');
INSERT INTO gdpr.access_log (at, operation, application_name) VALUES (now() - interval '7 years', 'SELECT', 'tap_access_log');
SET crm_gdpr.access_log_keep = '5 years';
SELECT is(gdpr._log_maintain(), 1::bigint, 'the log''s retention removes what is older than crm_gdpr.access_log_keep');
SELECT is((SELECT count(*) FROM mine WHERE at < now() - interval '5 years'), 0::bigint, 'the old row is gone');
SELECT ok(EXISTS (SELECT FROM gdpr.access_log_retention WHERE row_count = 1), 'and the removal is recorded');
SELECT ok((SELECT count(*) FROM pg_inherits WHERE inhparent = 'gdpr.access_log'::regclass) >= 4,
          'month partitions exist ahead, with the default one');
SELECT is((SELECT array_agg(DISTINCT a.attstattarget) FROM pg_inherits i
             JOIN pg_attribute a ON a.attrelid = i.inhrelid AND a.attname IN ('subject_refs', 'subject_keys')
            WHERE i.inhparent = 'gdpr.access_log'::regclass)::int[], ARRAY[0],
          'no partition spends ANALYZE on the statistics of subject keys or references');
SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - interval '3 months' AS old_month \gset
SELECT format('CREATE TABLE gdpr.%I PARTITION OF gdpr.access_log FOR VALUES FROM (%L) TO (%L)',
              gdpr._log_month_name(:'old_month'), :'old_month'::timestamp AT TIME ZONE 'UTC',
              (:'old_month'::timestamp + interval '1 month') AT TIME ZONE 'UTC') \gexec
SELECT gdpr._log_maintain() \g /dev/null
SELECT is((SELECT array_agg(p::text) FROM gdpr._log_months_to_index() p), ARRAY['gdpr.' || gdpr._log_month_name(:'old_month')],
          'a month that is over waits for its subject indexes; the log writer''s maintenance does not build them');
SELECT is(gdpr._log_index_months(), 1, 'the log maintenance worker''s function builds them');
SELECT is((SELECT count(*) FROM pg_indexes WHERE schemaname = 'gdpr'
              AND indexname IN (gdpr._log_month_name(:'old_month') || '_subjects', gdpr._log_month_name(:'old_month') || '_subject_keys')
              AND indexdef ~ 'WHERE \(subject_(keys|refs) IS NOT NULL\)'),
          2::bigint, 'a month that is over gets its subject indexes: keys, and references of rows of 0.2');
SELECT is((SELECT count(*) FROM gdpr._log_months_to_index()), 0::bigint, 'and waits no more');
-- A month past the log's retention (5 years here): dropped by the log
-- maintenance worker's function, not by the log writer's maintenance.
SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - interval '6 years' AS gone_month \gset
SELECT format('CREATE TABLE gdpr.%I PARTITION OF gdpr.access_log FOR VALUES FROM (%L) TO (%L)',
              gdpr._log_month_name(:'gone_month'), :'gone_month'::timestamp AT TIME ZONE 'UTC',
              (:'gone_month'::timestamp + interval '1 month') AT TIME ZONE 'UTC') \gexec
INSERT INTO gdpr.access_log (at, operation, application_name)
  SELECT (:'gone_month'::timestamp + interval '2 days') AT TIME ZONE 'UTC', 'SELECT', 'tap_access_log' FROM generate_series(1, 2);
SELECT gdpr._log_maintain() \g /dev/null
SELECT is((SELECT array_agg(p::text) FROM gdpr._log_months_to_drop() p), ARRAY['gdpr.' || gdpr._log_month_name(:'gone_month')],
          'a month past retention waits for its removal; the log writer''s maintenance does not drop it');
SELECT is(gdpr._log_drop_months(), 2::bigint, 'the log maintenance worker''s function drops it, with its rows');
SELECT ok(to_regclass('gdpr.' || gdpr._log_month_name(:'gone_month')) IS NULL
          AND EXISTS (SELECT FROM gdpr.access_log_retention
                       WHERE what = 'partition ' || gdpr._log_month_name(:'gone_month') || ' dropped' AND row_count = 2),
          'the month is gone and its removal recorded with its rows');
SELECT ok(NOT EXISTS (SELECT FROM pg_indexes WHERE schemaname = 'gdpr'
                   AND indexname = gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC')) || '_subjects'),
          'the current month has none (it is scanned)');

---------------------------------------------------------------- privileges
SET ROLE crm_gdpr_t_auditor;
SELECT lives_ok($$SELECT count(*) FROM gdpr.access_log$$, 'an auditor reads the log');
SELECT lives_ok($$SELECT * FROM gdpr.verify_access_log()$$, 'an auditor verifies it');
SELECT lives_ok($$SELECT * FROM gdpr.access_log_status$$, 'an auditor sees its status');
SELECT throws_ok($$SELECT gdpr.flush_access_log()$$, '42501', NULL, 'an auditor does not write it');
RESET ROLE;
SET ROLE crm_gdpr_t_clerk;
SELECT throws_ok($$SELECT count(*) FROM gdpr.access_log$$, '42501', NULL, 'an application role cannot read the log');
SELECT throws_ok($$INSERT INTO gdpr.access_log (operation) VALUES ('SELECT')$$, '42501', NULL, 'nor write to it');
RESET ROLE;

SELECT gdpr.unregister_table('crm.marketing_events');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crm.marketing_events'::regclass AND tgname LIKE 'gdpr_log_%'),
          0::bigint, 'unregistering removes the log triggers');

SELECT * FROM finish();
ROLLBACK;
