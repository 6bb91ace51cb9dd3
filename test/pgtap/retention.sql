-- Retention: every action, holds, dry run, children first, bad input.
BEGIN;
SELECT plan(49);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SELECT gdpr.classify('crm.contacts', 'created_at', 'behavioural', 'customer_management', 'contract');
SELECT gdpr.set_retention('crm.contacts', 'city', '2 years', 'last_contact_at', 'pseudonymise');
SELECT gdpr.set_retention('crm.contacts', 'postcode', '2 years', 'last_contact_at', 'generalise');
SELECT gdpr.set_retention('crm.contacts', 'created_at', '2 years', 'last_contact_at', 'generalise');
UPDATE crm.contacts SET last_contact_at = now() - interval '5 years' WHERE id IN (1, 2, 3);
DELETE FROM crm.orders WHERE contact_id IN (1, 3);
UPDATE crm.contacts SET last_contact_at = now() - interval '18 months' WHERE id = 4;
UPDATE crm.contacts SET last_contact_at = now() WHERE id = 5;
INSERT INTO crm.orders (contact_id, ordered_at, amount, iban) VALUES (2, now() - interval '4 years', 10, 'FR7630006000011234567890189');
SELECT city AS city3, postcode AS postcode3 FROM crm.contacts WHERE id = 3 \gset
SELECT gdpr.place_hold('3', 'litigation 2026-17') AS hold3 \gset
-- Contact 6: past due, no invoice, but restricted (Art. 18: only stored).
UPDATE crm.contacts SET last_contact_at = now() - interval '5 years' WHERE id = 6;
DELETE FROM crm.orders WHERE contact_id = 6;
SELECT gdpr.restrict_subject('6', 'he contests the accuracy of his data');
SELECT rows_restricted AS restricted_before, rows_referenced AS referenced_before, rows_held AS held_before
  FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL \gset

CREATE TEMP TABLE doomed AS SELECT id FROM crm.contacts c WHERE last_contact_at < now() - interval '3 years'
   AND id NOT IN (3, 6) AND NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id);
SELECT count(*) AS due_contacts FROM doomed \gset
-- The contacts kept for their invoices, as they were: the purge anonymises them in one statement.
CREATE TEMP TABLE kept_identified AS SELECT id, email, last_name FROM crm.contacts c
 WHERE last_contact_at < now() - interval '3 years' AND id NOT IN (3, 6)
   AND EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) AND email IS NOT NULL AND last_name IS NOT NULL;
SELECT is((SELECT rows FROM gdpr.purge(true) WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), :due_contacts::bigint,
          'dry run: the contacts that would go (held and invoiced ones excluded)');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id IN (1, 2, 3)), 3::bigint, 'a dry run changes nothing');
SELECT is((SELECT dry_run FROM gdpr.purge_history ORDER BY run_id DESC LIMIT 1), true, 'and is recorded as such');

SELECT count(*) AS n_interactions_due FROM crm.interactions WHERE occurred_at < now() - interval '3 years' \gset
-- Rows that go with the deleted contacts by ON DELETE CASCADE: their interactions and events
-- that their own policies keep.
SELECT (SELECT count(*) FROM crm.interactions i WHERE i.occurred_at >= now() - interval '3 years' AND i.contact_id IN (SELECT id FROM doomed))
     + (SELECT count(*) FROM crm.marketing_events e WHERE e.at >= now() - interval '13 months' AND e.contact_id IN (SELECT id FROM doomed))
       AS expected_cascade
  FROM (SELECT 1) x, LATERAL (SELECT NULL) y \gset
CREATE TEMP TABLE result AS SELECT * FROM gdpr.purge();
SELECT is((SELECT rows FROM result WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), :due_contacts::bigint,
          'delete: expired contacts are deleted');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 1), 0::bigint, 'contact 1 (5 years) is gone');
SELECT is((SELECT cascaded FROM gdpr.purge_history WHERE NOT dry_run AND tbl = 'crm.contacts'::regclass AND col IS NULL
            ORDER BY run_id DESC LIMIT 1), :expected_cascade::bigint, 'rows removed by ON DELETE CASCADE are counted');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 2), 1::bigint, 'contact 2 stays: his invoice is kept 10 years');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 3), 1::bigint, 'contact 3 stays: he is held');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 6), 1::bigint, 'contact 6 stays: he is restricted');
SELECT ok(:restricted_before >= 1 AND :held_before >= 1,
          'retention_status counted the restricted and the held contacts as kept, not due');
-- Contact 2 stays for his invoice, but loses his identity (issue 23.1).
SELECT ok((SELECT email ~ '^[A-Za-z0-9_-]{22}$' AND last_name ~ '^[A-Za-z0-9_-]{22}$' AND birth_date IS NULL
             FROM crm.contacts WHERE id = 2),
          'kept for his invoice, contact 2 is anonymised: e-mail and name pseudonymised, birth date cleared');
SELECT ok(:referenced_before >= 1, 'before the purge, retention_status showed him past due and still identified');
-- Each row gets the pseudonyms of its own values: they are computed for all the rows and columns
-- at once, outside the owner's statement, and written back by ctid.
SELECT ok((SELECT count(*) FROM kept_identified) >= 2
          AND NOT EXISTS (SELECT FROM kept_identified k JOIN crm.contacts c USING (id)
                           WHERE c.email IS DISTINCT FROM gdpr._pseudonym(k.email, 'erasure')
                              OR c.last_name IS DISTINCT FROM gdpr._pseudonym(k.last_name, 'erasure')),
          'every contact the purge anonymised holds the pseudonyms of his own e-mail and name');
SELECT ok((SELECT anonymised FROM gdpr.purge_history WHERE NOT dry_run AND tbl = 'crm.contacts'::regclass AND col IS NULL
            ORDER BY run_id DESC LIMIT 1) >= 1, 'the purge counts him as kept, anonymised');
SELECT is((SELECT rows_referenced FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL),
          0::bigint, 'after it, no row past due is still identified');
SELECT is((SELECT row(city, postcode)::text FROM crm.contacts WHERE id = 3), row(:'city3', :'postcode3')::text,
          'and nothing of his is changed');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 4 AND notes IS NULL), 1::bigint,
          'nullify: notes of contact 4 (18 months, 1-year policy) are cleared');
SELECT ok((SELECT city ~ '^[A-Za-z0-9_-]{22}$' FROM crm.contacts WHERE id = 2), 'pseudonymise: his city is a pseudonym');
SELECT ok((SELECT length(postcode) <= 3 FROM crm.contacts WHERE id = 2), 'generalise: his postcode is a department');
SELECT is((SELECT created_at FROM crm.contacts WHERE id = 2), (SELECT date_trunc('year', created_at) FROM crm.contacts WHERE id = 2),
          'generalise: a timestamp is rounded to the year');
SELECT is((SELECT count(*) FROM crm.interactions WHERE occurred_at < now() - interval '3 years' AND contact_id NOT IN (3, 6)), 0::bigint,
          'delete: old interactions are gone (but the held and the restricted contacts'' ones)');
SELECT is((SELECT count(*) FROM crm.orders WHERE contact_id = 2 AND iban IS NULL), 1::bigint, 'nullify: the old IBAN is gone');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 5), 1::bigint, 'a recent contact is untouched');
SELECT is((SELECT sum(rows) FROM gdpr.purge()), 0::numeric, 'a second purge has nothing left to do (idempotent)');
SELECT is((SELECT count(*) FROM gdpr.retention_status WHERE rows_due > 0), 0::bigint, 'retention_status: nothing due');
SELECT is((SELECT array_agg(DISTINCT status) FROM gdpr.purge_runs), ARRAY['done'], 'every run is done');
SELECT ok((SELECT bool_and(r.tbl::text LIKE 'crm.%') FROM gdpr.purge_history r), 'the history holds table names, not data');

-- No anchor date: never due, and said so, until a fallback anchor counts.
UPDATE crm.contacts SET last_contact_at = NULL, created_at = now() - interval '6 years' WHERE id = 7;
DELETE FROM crm.orders WHERE contact_id = 7;
SELECT ok((SELECT rows_no_anchor FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL) >= 1,
          'retention_status lists the rows with no anchor date');
SELECT lives_ok($$SELECT gdpr.set_retention_fallback('crm.contacts', NULL, 'created_at')$$, 'a fallback anchor for the rows policy');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 7 AND last_contact_at IS NULL AND created_at < now() - interval '3 years'),
          1::bigint, 'contact 7 never contacted, created six years ago');
CREATE TEMP TABLE result_f AS SELECT * FROM gdpr.purge();
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 7), 0::bigint, 'with the fallback, he is purged');
SELECT throws_ok($$SELECT gdpr.set_retention_fallback('crm.contacts', NULL, 'email')$$, '42804', NULL,
                 'a fallback anchor must be a date');
SELECT throws_ok($$SELECT gdpr.set_retention_fallback('crm.contacts', 'phone', 'created_at')$$, '42704', NULL,
                 'a fallback needs the policy');

-- Releasing the hold lets the purge take him.
SELECT gdpr.release_hold(:hold3);
SELECT ok((SELECT rows FROM gdpr.purge() WHERE tbl = 'crm.contacts'::regclass AND col IS NULL) = 1, 'released, he is purged');

-- A manual purge in many batches: all of a policy's batches in one
-- subtransaction, and one PURGE row for them in the access log.
SAVEPOINT batches;
SET LOCAL crm_gdpr.purge_batch_size = 2;
UPDATE crm.interactions SET occurred_at = now() - interval '4 years'
 WHERE id IN (SELECT id FROM crm.interactions ORDER BY id LIMIT 5);
CREATE TEMP TABLE result_b AS SELECT * FROM gdpr.purge();
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT is((SELECT array_agg(row_count || ' rows in ' || (detail->>'batches') || ' batches') FROM gdpr.access_log
            WHERE operation = 'PURGE' AND table_name = 'crm.interactions'
              AND (detail->>'run_id')::bigint = (SELECT max(id) FROM gdpr.purge_runs)),
          ARRAY['5 rows in 3 batches'], 'a manual purge logs one PURGE row per policy, with its batches (a short one is the last)');
ROLLBACK TO SAVEPOINT batches;

-- A broken policy fails alone.
SELECT gdpr.set_retention('crm.marketing_events', NULL, '1 day', 'at', 'delete');
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no deleting today'; END $$;
CREATE TRIGGER refuse BEFORE DELETE ON crm.marketing_events FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
CREATE TEMP TABLE result2 AS SELECT * FROM gdpr.purge();
SELECT is((SELECT error FROM gdpr.purge_history WHERE tbl = 'crm.marketing_events'::regclass ORDER BY run_id DESC LIMIT 1),
          'P0001: no deleting today', 'the failing policy records its error');
SELECT is((SELECT status FROM gdpr.purge_runs ORDER BY id DESC LIMIT 1), 'failed', 'the run is marked failed');

-- The settings the purge reads are real settings.
SELECT is(current_setting('crm_gdpr.purge_lock_timeout'), '1s', 'crm_gdpr.purge_lock_timeout defaults to 1s');
SET LOCAL crm_gdpr.purge_history_keep = '1 day';
UPDATE gdpr.purge_runs SET started_at = now() - interval '2 days' WHERE id = (SELECT min(id) FROM gdpr.purge_runs);
SELECT count(*) AS runs_before FROM gdpr.purge_runs \gset
CREATE TEMP TABLE result3 AS SELECT * FROM gdpr.purge();
SELECT is((SELECT count(*) FROM gdpr.purge_runs), :runs_before::bigint, 'the history drops runs older than purge_history_keep');

-- The due condition compares each row with a moment computed once (now() -
-- keep per row was 6 % of a purge), the same moment whatever the session's
-- DateStyle, and in its TimeZone (which counts months and years).
SELECT ok((SELECT bool_and(gdpr._past_due_cond(p) !~* 'now\(') FROM gdpr.retention_policies p),
          'no policy''s due condition computes now() - keep for every row');
CREATE FUNCTION pg_temp.moment(lit text) RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE t timestamptz; BEGIN EXECUTE 'SELECT ' || lit INTO t; RETURN t; END $$;
SET LOCAL datestyle = 'SQL, DMY';
SET LOCAL timezone = 'Asia/Kolkata';
SELECT is(pg_temp.moment(gdpr._due_before('3 years 2 months 5 days')), now() - interval '3 years 2 months 5 days',
          'the moment reads back as now() - keep under DateStyle SQL, DMY and a half-hour time zone');
SET LOCAL timezone = 'America/New_York';
SELECT is(pg_temp.moment(gdpr._due_before('13 months')), now() - interval '13 months',
          'and counts months in the session''s time zone');
RESET datestyle;
RESET timezone;

-- Bad input.
SELECT throws_ok($$SELECT gdpr.place_hold('999999', 'x')$$, 'P0002', NULL, 'a hold on an unknown subject');
SELECT throws_ok($$SELECT gdpr.release_hold(424242)$$, '42704', NULL, 'releasing an unknown hold');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.contacts', 'nosuch', '1 year', 'last_contact_at', 'nullify')$$,
                 '42703', NULL, 'a policy on an unknown column');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.contacts', 'birth_date', '1 year', 'last_contact_at', 'pseudonymise')$$,
                 '42804', NULL, 'pseudonymise a date column');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.orders', 'amount', '1 year', 'ordered_at', 'generalise')$$,
                 '42804', NULL, 'generalise an amount');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.interactions', 'occurred_at', '1 year', 'occurred_at', 'nullify')$$,
                 '22023', NULL, 'nullify a NOT NULL column');
SELECT throws_ok($$SELECT gdpr.place_hold('4', 'x', now() - interval '1 day')$$, '22023', NULL, 'a hold already over');

SELECT * FROM finish();
ROLLBACK;
