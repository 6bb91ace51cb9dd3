-- Reads of registered tables whatever the query shape (issue 18): a read that
-- fails after reading rows, UPDATE/DELETE ... RETURNING, rows read (not rows
-- returned) for the row guard and the count, SECURITY DEFINER functions of
-- the extension's owner, column names with commas, and no query identifier
-- switched on by the module.
BEGIN;
SELECT plan(28);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET application_name = 'tap_read_log';
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name = 'tap_read_log';
CREATE ROLE crm_gdpr_t_reader NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_reader;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO crm_gdpr_t_reader;
-- The last read of a table, once the queue is written.
CREATE FUNCTION pg_temp.last_read(tbl regclass) RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = 'SELECT' AND tbl = $1 ORDER BY id DESC LIMIT 1$$;
CREATE FUNCTION pg_temp.reads(tbl regclass) RETURNS bigint LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT coalesce(sum(times), 0) FROM mine WHERE operation = 'SELECT' AND tbl = $1$$;
SELECT count(*) AS contacts, min(id) AS c1 FROM crm.contacts \gset

---------------------------------------------- 18.1: a read that fails midway
SELECT pg_temp.reads('crm.contacts') AS before \gset
SELECT throws_ok($$SELECT id, email, phone, 1/(ctid <> (SELECT max(ctid) FROM crm.contacts))::int FROM crm.contacts$$,
                 '22012', NULL, 'a read that fails after reading rows fails');
SELECT is(pg_temp.reads('crm.contacts') - :before, 2::bigint, 'it is logged all the same (the table, and its subquery)');
SELECT is((SELECT count(*) FROM mine WHERE tbl = 'crm.contacts'::regclass AND detail ->> 'failed' = 'true'
             AND columns = '{id,email,phone}' AND row_count >= :contacts - 1), 1::bigint,
          'with the rows it read before failing, marked failed');

---------------------------------------------- 18.2: RETURNING is a read
SAVEPOINT ret;
DELETE FROM crm.marketing_events WHERE contact_id IN (SELECT min(id) FROM crm.contacts) RETURNING contact_id, campaign, event;
SELECT is((pg_temp.last_read('crm.marketing_events')).columns, '{contact_id,campaign,event}'::name[],
          'DELETE ... RETURNING is logged as a read of the columns returned');
UPDATE crm.contacts SET city = city WHERE id = :c1 RETURNING id, email, phone;
SELECT is((pg_temp.last_read('crm.contacts')).columns, '{id,email,phone}'::name[], 'so is UPDATE ... RETURNING');
SELECT is((pg_temp.last_read('crm.contacts')).row_count, 1::bigint, 'with the rows returned');
SET crm_gdpr.max_rows_per_query = 10;
SET ROLE crm_gdpr_t_reader;
SELECT throws_ok($$DELETE FROM crm.marketing_events RETURNING contact_id, campaign, event$$, '42501', NULL,
                 'max_rows_per_query limits what RETURNING reads');
SELECT lives_ok($$DELETE FROM crm.marketing_events WHERE contact_id > 0$$, 'a DELETE that returns nothing is not limited');
RESET ROLE;
RESET crm_gdpr.max_rows_per_query;
ROLLBACK TO SAVEPOINT ret;

------------------------------ 18.5: the row guard counts the rows read
SELECT string_agg(email || ';' || phone, '|') IS NOT NULL AS agg FROM crm.contacts \gset
SELECT is((pg_temp.last_read('crm.contacts')).row_count, :contacts::bigint,
          'an aggregate is logged with the rows it read, not the one it returned');
CREATE TABLE loot AS SELECT * FROM crm.contacts WHERE false;
GRANT ALL ON loot TO crm_gdpr_t_reader;
SET crm_gdpr.max_rows_per_query = 10;
SET ROLE crm_gdpr_t_reader;
SELECT throws_ok($$SELECT string_agg(email || ';' || phone, '|') FROM crm.contacts$$, '42501', NULL,
                 'the row guard refuses an aggregate over the table');
SELECT throws_ok($$INSERT INTO loot SELECT * FROM crm.contacts$$, '42501', NULL,
                 'and INSERT ... SELECT of the table');
DECLARE c CURSOR FOR SELECT email FROM crm.contacts;
FETCH 6 FROM c;
SELECT throws_ok($$FETCH 6 FROM c$$, '42501', NULL, 'and a cursor fetched in several FETCHes');
RESET ROLE;
RESET crm_gdpr.max_rows_per_query;
SELECT is((SELECT count(*) FROM loot), 0::bigint, 'nothing was copied');
DECLARE d CURSOR FOR SELECT email FROM crm.contacts;
FETCH 7 FROM d;
FETCH 8 FROM d;
CLOSE d;
SELECT is((pg_temp.last_read('crm.contacts')).row_count, 15::bigint, 'a cursor is logged with every row it fetched');

------------------ 18.6: SECURITY DEFINER functions of the extension's owner
CREATE FUNCTION crm.f_definer(i bigint) RETURNS text LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$SELECT email || ' ' || phone FROM crm.contacts WHERE id = i$$;
SELECT pg_temp.reads('crm.contacts') AS before \gset
SET ROLE crm_gdpr_t_reader;
SELECT crm.f_definer(19) IS NOT NULL AS got \gset
RESET ROLE;
SELECT is(pg_temp.reads('crm.contacts') - :before, 1::bigint,
          'a read inside a SECURITY DEFINER function owned by the extension''s owner is logged');
SELECT ok((pg_temp.last_read('crm.contacts')).columns @> '{email,phone}'::name[], 'with its columns');

---------------------------------------- 18.10: column names with commas
CREATE TABLE crm.notes (id bigserial PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), "Note, email" text);
SET client_min_messages = warning;
SELECT gdpr.register_table('crm.notes') IS NOT NULL AS registered \gset
RESET client_min_messages;
SELECT "Note, email" FROM crm.notes;
SELECT is((pg_temp.last_read('crm.notes')).columns, ARRAY['Note, email']::name[], 'a column name with a comma is one name');

------------------------------- 18.3: partitions and inheritance children
CREATE TABLE crm.visits (id bigserial, contact_id bigint NOT NULL REFERENCES crm.contacts (id), at date NOT NULL, page text,
  PRIMARY KEY (id, at))
  PARTITION BY RANGE (at);
CREATE TABLE crm.visits_2025 PARTITION OF crm.visits FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SET client_min_messages = warning;
SELECT gdpr.register_table('crm.visits') IS NOT NULL AS registered \gset
RESET client_min_messages;
CREATE TABLE crm.visits_2026 PARTITION OF crm.visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO crm.visits (contact_id, at, page) SELECT id, d, 'home' FROM crm.contacts, (VALUES (date '2025-06-01'), (date '2026-06-01')) v(d)
  WHERE id < (SELECT min(id) + 12 FROM crm.contacts);
CREATE TABLE crm.old_notes (id bigserial PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text);
SET client_min_messages = warning;
SELECT gdpr.register_table('crm.old_notes') IS NOT NULL AS registered \gset
RESET client_min_messages;
CREATE TABLE crm.older_notes () INHERITS (crm.old_notes);
INSERT INTO crm.older_notes (contact_id, note) SELECT id, 'x' FROM crm.contacts LIMIT 12;
GRANT SELECT ON crm.visits, crm.visits_2025, crm.visits_2026, crm.old_notes, crm.older_notes TO crm_gdpr_t_reader;
SELECT page FROM crm.visits_2025;
SELECT is((pg_temp.last_read('crm.visits_2025')).row_count, 12::bigint, 'a partition present at registration is read as registered');
SELECT page FROM crm.visits;
SELECT is((pg_temp.last_read('crm.visits')).row_count, 24::bigint, 'a read of the parent counts the rows of its partitions');
SET crm_gdpr.max_rows_per_query = 10;
SET ROLE crm_gdpr_t_reader;
SELECT throws_ok($$SELECT page FROM crm.visits_2026$$, '42501', NULL, 'the row guard covers a partition created after registration');
SELECT throws_ok($$SELECT page FROM crm.visits$$, '42501', NULL, 'and the parent''s partitions');
SELECT throws_ok($$SELECT note FROM crm.older_notes$$, '42501', NULL, 'and an inheritance child');
RESET ROLE;
RESET crm_gdpr.max_rows_per_query;
-- Writes on a partition or child are logged, and restricted, as on the parent.
INSERT INTO crm.visits_2026 (contact_id, at, page) VALUES (:c1, '2026-02-01', 'direct');
UPDATE crm.older_notes SET note = 'y' WHERE contact_id = :c1;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT count(*) FROM mine WHERE (operation, tbl) IN (('INSERT', 'crm.visits_2026'::regclass),
                                                                  ('UPDATE', 'crm.older_notes'::regclass))
             AND subject_keys = ARRAY[gdpr._log_subject_key(:'c1')]), 2::bigint,
          'writes on a partition created after registration and on an inheritance child are logged with their subject');
CREATE TABLE crm.visits_2027 (LIKE crm.visits);
ALTER TABLE crm.visits ATTACH PARTITION crm.visits_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crm.visits_2027'::regclass AND tgname = ANY (gdpr._trigger_names())),
          cardinality(gdpr._trigger_names())::bigint, 'an attached partition gets the extension''s triggers');
SELECT gdpr.restrict_subject(:'c1', 'accuracy contested') IS NULL AS restricted \gset
GRANT UPDATE ON crm.visits_2025 TO crm_gdpr_t_reader;
SET ROLE crm_gdpr_t_reader;
SELECT throws_ok(format($$UPDATE crm.visits_2025 SET page = 'x' WHERE contact_id = %s$$, :c1), '42501',
                 format('processing of subject "%s" is restricted', :c1),
                 'a restricted subject''s rows cannot be updated through a partition');
RESET ROLE;
-- A trigger's name does not register a table.
CREATE TEMP TABLE fake (contact_id bigint, email text);
CREATE FUNCTION pg_temp.nothing() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER gdpr_log_insert AFTER INSERT ON fake FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.nothing();
SELECT email FROM fake;
SELECT is(pg_temp.reads('fake'), 0::bigint, 'a table with a trigger named gdpr_log_insert is not registered by it');

----------------------------------- 18.11: no query identifier switched on
CREATE FUNCTION pg_temp.explained() RETURNS SETOF text LANGUAGE plpgsql AS
  $$BEGIN RETURN QUERY EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) SELECT 1'; END$$;
SET compute_query_id = auto;
SELECT is((SELECT count(*) FROM pg_temp.explained() e WHERE e LIKE '%Query Identifier%'), 0::bigint,
          'EXPLAIN VERBOSE shows no query identifier because of the module');
SELECT is(current_setting('compute_query_id'), 'auto', 'compute_query_id is left as set');

SELECT * FROM finish();
ROLLBACK;
