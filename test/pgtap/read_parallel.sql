-- Parallel workers do not read registered tables (issue 18.5): the read hook
-- counts, limits and names the rows its backend's scans read, and a
-- parallel worker's copy of the plan is nobody's.  With the leader kept out
-- (parallel_leader_participation = off) a parallel plan read the whole table
-- under any crm_gdpr.max_rows_per_query and was logged with 0 rows.  A query
-- that touches a registered table (directly, through a partition or child,
-- a view, a sublink, an inlined SQL function) is planned serial; the others
-- keep their parallel plans.
BEGIN;
SELECT plan(19);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET application_name = 'tap_read_parallel';
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name = 'tap_read_parallel';
CREATE FUNCTION pg_temp.last_read() RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = 'SELECT' AND tbl = 'crm.contacts'::regclass ORDER BY id DESC LIMIT 1$$;
CREATE FUNCTION pg_temp.plan_of(q text, how text DEFAULT 'COSTS OFF') RETURNS text LANGUAGE plpgsql AS
  $$DECLARE line text; whole text := ''; BEGIN
    FOR line IN EXECUTE format('EXPLAIN (%s) %s', how, q) LOOP whole := whole || line || E'\n'; END LOOP;
    RETURN whole; END$$;
CREATE ROLE crm_gdpr_t_parallel NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_parallel;
GRANT SELECT ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_parallel;
-- The same rows in a table nobody registered (not temporary: workers cannot read those).
CREATE TABLE public.crm_gdpr_t_copy AS SELECT * FROM crm.contacts;
GRANT SELECT ON public.crm_gdpr_t_copy TO crm_gdpr_t_parallel;
-- Set-returning SQL functions that the planner inlines into the query.
CREATE FUNCTION public.crm_gdpr_t_contacts() RETURNS SETOF crm.contacts LANGUAGE sql STABLE PARALLEL SAFE
  AS 'SELECT * FROM crm.contacts';
CREATE FUNCTION public.crm_gdpr_t_copies() RETURNS SETOF public.crm_gdpr_t_copy LANGUAGE sql STABLE PARALLEL SAFE
  AS 'SELECT * FROM public.crm_gdpr_t_copy';
-- PARALLEL SAFE functions that read a registered table, for a parallel query of another table.
CREATE FUNCTION public.crm_gdpr_t_peek(bigint) RETURNS text LANGUAGE plpgsql STABLE PARALLEL SAFE
  AS 'BEGIN RETURN (SELECT email FROM ONLY crm.contacts WHERE id = $1); END';
CREATE FUNCTION public.crm_gdpr_t_all(bigint) RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL SAFE
  AS 'BEGIN RETURN (SELECT count(email) FROM ONLY crm.contacts WHERE id >= $1); END';
GRANT EXECUTE ON FUNCTION public.crm_gdpr_t_peek(bigint), public.crm_gdpr_t_all(bigint) TO crm_gdpr_t_parallel;
CREATE VIEW public.crm_gdpr_t_emails AS SELECT email FROM crm.contacts;
-- An inheritance child of a registered table, given rows of its own.
SET client_min_messages = warning;
CREATE TABLE crm.contacts_archived () INHERITS (crm.contacts);
RESET client_min_messages;
INSERT INTO crm.contacts_archived SELECT * FROM public.crm_gdpr_t_copy;
ANALYZE public.crm_gdpr_t_copy, crm.contacts, crm.contacts_archived;
SELECT count(*) AS contacts FROM ONLY crm.contacts \gset

-- Every parallel plan as cheap as can be, and the leader out of the scans.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET crm_gdpr.log_subjects_max = 10000;

---------------------------------------------- the others keep their parallel plans
SELECT matches(pg_temp.plan_of('SELECT count(email) FROM public.crm_gdpr_t_copy', 'ANALYZE, COSTS OFF, TIMING OFF'),
               'Workers Launched: [1-9]', 'a table nobody registered is read by parallel workers (launched here)');
SELECT matches(pg_temp.plan_of('SELECT count(*) FROM public.crm_gdpr_t_copies()'), 'Gather',
               'and through an inlined SQL function');

---------------------------------------------- a registered table is read serially
SELECT doesnt_match(pg_temp.plan_of($$SELECT string_agg(email, ',') FROM crm.contacts$$), 'Gather',
                    'a read of a registered table has no parallel workers');
SELECT string_agg(email, ',') IS NOT NULL AS agg FROM ONLY crm.contacts \gset
SELECT is((pg_temp.last_read()).row_count, :contacts::bigint, 'every row it read is counted');
SELECT is(ARRAY[cardinality((pg_temp.last_read()).subject_keys)::text, (pg_temp.last_read()).detail::text],
          ARRAY[:contacts::text, NULL], 'and every subject named, none missing');
SET crm_gdpr.max_rows_per_query = 100;
SET ROLE crm_gdpr_t_parallel;
SELECT throws_ok($$SELECT count(email) FROM crm.contacts$$, '42501', NULL,
                 'the row guard refuses it (workers used to read it all unrefused)');
SELECT lives_ok($$SELECT count(email) FROM public.crm_gdpr_t_copy$$, 'a table nobody registered is not limited');
RESET ROLE;
RESET crm_gdpr.max_rows_per_query;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT row_count FROM mine WHERE tbl = 'crm.contacts'::regclass AND detail ? 'refused' ORDER BY id DESC LIMIT 1),
          101::bigint, 'the refusal is logged with the rows read');

---------------------------------------------- whatever the query's shape
SELECT doesnt_match(pg_temp.plan_of('SELECT count(email) FROM crm.contacts_archived'), 'Gather',
                    'an inheritance child (or partition) of a registered table');
SELECT doesnt_match(pg_temp.plan_of('SELECT count(*) FROM public.crm_gdpr_t_emails'), 'Gather', 'a view over one');
SELECT doesnt_match(pg_temp.plan_of('SELECT count(*) FROM public.crm_gdpr_t_copy WHERE id IN (SELECT id FROM crm.contacts)'),
                    'Gather', 'a sublink that reads one');
SELECT doesnt_match(pg_temp.plan_of('WITH c AS MATERIALIZED (SELECT email FROM crm.contacts) SELECT count(*) FROM c'),
                    'Gather', 'a CTE that reads one');
SELECT doesnt_match(pg_temp.plan_of('SELECT count(*) FROM public.crm_gdpr_t_contacts()'), 'Gather',
                    'a SQL function the planner inlines');
---------------------------------------------- what a function reads in a worker
-- A parallel query of a table nobody registered may call a PARALLEL SAFE
-- function that reads a registered one: its reads run in the workers, and
-- are logged (and limited) there, as their own statements.
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT coalesce(sum(times), 0) AS reads_before FROM mine WHERE tbl = 'crm.contacts'::regclass AND operation = 'SELECT' \gset
SELECT matches(pg_temp.plan_of('SELECT count(public.crm_gdpr_t_peek(id)) FROM public.crm_gdpr_t_copy',
                               'ANALYZE, COSTS OFF, TIMING OFF'),
               'Workers Launched: [1-9]', 'a function that reads a registered table, run by parallel workers');
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT sum(times) FROM mine WHERE tbl = 'crm.contacts'::regclass AND operation = 'SELECT') - :reads_before,
          :contacts::bigint, 'each of its reads is logged, from the workers');
SET crm_gdpr.max_rows_per_query = 100;
SET ROLE crm_gdpr_t_parallel;
SELECT throws_ok($$SELECT sum(public.crm_gdpr_t_all(id)) FROM public.crm_gdpr_t_copy$$, '42501', NULL,
                 'and the row guard refuses such a read in a worker');
RESET ROLE;
RESET crm_gdpr.max_rows_per_query;

SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', true) \gset
SELECT matches(pg_temp.plan_of('SELECT count(*) FROM public.crm_gdpr_t_copy WHERE id = 1'), 'Gather',
               'debug_parallel_query puts a table nobody registered in a worker');
SELECT doesnt_match(pg_temp.plan_of('SELECT email FROM crm.contacts WHERE id = 1'), 'Gather',
                    'not a registered one');
-- Named in a row of the next flush (the rows of one flush come in the order
-- their folds started, which the queue's interleaving of processes decides).
SELECT coalesce(max(id), 0) AS rows_before FROM mine \gset
SELECT email FROM crm.contacts WHERE id = (SELECT min(id) FROM public.crm_gdpr_t_copy) \g /dev/null
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT ok(EXISTS (SELECT FROM mine WHERE id > :rows_before AND tbl = 'crm.contacts'::regclass AND columns @> '{email}'
                    AND subject_keys @> (SELECT ARRAY[gdpr._log_subject_key(min(id)::text)] FROM crm.contacts)),
          'which its backend reads and names');

SELECT * FROM finish();
ROLLBACK;
