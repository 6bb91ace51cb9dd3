-- Several retention policies per table (issue 20.6): row scopes, each with
-- its own anchor; a row is due under the earliest policy that matches; per
-- policy holds, references, fallbacks and retention_status.  The anchor of a
-- table with several links follows every link (20, item 2).
BEGIN;
SELECT plan(42);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET client_min_messages = warning;

-- The old call still sets (and replaces) the whole-table policy.
SELECT gdpr.set_retention('crm.contacts', NULL, '10 years', 'last_contact_at', 'delete');
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), 1::bigint,
          'set_retention without a scope replaces the whole-table policy');
SELECT is((SELECT keep FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), '10 years'::interval,
          '... with the new period');

-- Prospects 3 years after the last contact, customers 5 years; the trash
-- (a deleted_at column) 30 days after it was trashed.
ALTER TABLE crm.contacts ADD COLUMN deleted_at timestamptz;
SELECT gdpr.set_retention('crm.contacts', NULL, '3 years', 'last_contact_at', 'delete', 'status', '{prospect}');
SELECT gdpr.set_retention('crm.contacts', NULL, '5 years', 'last_contact_at', 'delete', 'status', '{prospect}', true);
SELECT gdpr.set_retention('crm.contacts', NULL, '30 days', 'deleted_at', 'delete', 'deleted_at');
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), 4::bigint,
          'four whole-row policies on contacts: whole table, prospects, customers, trash');
SELECT gdpr.set_retention('crm.contacts', NULL, '3 years', 'last_contact_at', 'delete', 'status', '{prospect,prospect}');
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), 4::bigint,
          'setting a scope''s policy again replaces it');
SELECT is((SELECT id FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND scope_column = 'status' AND NOT scope_exclude),
          (SELECT policy_id FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND scope_values = '{prospect}' AND NOT scope_exclude),
          'retention_status shows the prospects'' policy with its scope');
SELECT is((SELECT count(*) FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), 4::bigint,
          'retention_status: one row per policy');

-- The data: no orders, nothing due but what is set here.
DELETE FROM crm.orders;
UPDATE crm.contacts SET last_contact_at = now() - interval '1 month', deleted_at = NULL;
UPDATE crm.interactions SET occurred_at = now();
UPDATE crm.marketing_events SET at = now();
UPDATE crm.contacts SET status = 'prospect', last_contact_at = now() - interval '4 years' WHERE id IN (1, 2, 3);
UPDATE crm.contacts SET status = 'customer', last_contact_at = now() - interval '4 years' WHERE id IN (4, 5, 6);
UPDATE crm.contacts SET status = 'customer', last_contact_at = now() - interval '6 years' WHERE id IN (7, 8);
UPDATE crm.contacts SET status = 'customer', deleted_at = now() - interval '40 days' WHERE id = 9;
UPDATE crm.contacts SET status = 'prospect', deleted_at = now() - interval '10 days' WHERE id = 10;
UPDATE crm.contacts SET status = 'customer', last_contact_at = NULL, created_at = now() - interval '7 years' WHERE id = 11;
-- Prospect 3 is held; customer 8 has an invoice kept 10 years.
SELECT gdpr.place_hold('3', 'litigation 2026-40') AS hold3 \gset
INSERT INTO crm.orders (contact_id, ordered_at, amount) VALUES (8, now() - interval '6 years', 10);

CREATE TEMP TABLE st AS SELECT * FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL;
SELECT is((SELECT rows_due FROM st WHERE scope_values = '{prospect}' AND NOT scope_exclude),
          (SELECT count(*) FROM crm.contacts WHERE status = 'prospect' AND last_contact_at < now() - interval '3 years' AND id <> 3),
          'prospects'' policy: its due rows are the prospects past 3 years, the held one left out');
SELECT is((SELECT rows_held FROM st WHERE scope_values = '{prospect}' AND NOT scope_exclude), 1::bigint,
          'prospects'' policy: the held prospect is counted as held');
SELECT is((SELECT rows_due FROM st WHERE scope_exclude),
          (SELECT count(*) FROM crm.contacts WHERE status <> 'prospect' AND last_contact_at < now() - interval '5 years' AND id <> 8),
          'customers'' policy: only the customers past 5 years are due (the invoiced one left out)');
SELECT is((SELECT rows_referenced FROM st WHERE scope_exclude), 1::bigint,
          'customers'' policy: the invoiced customer is past due and still identified');
SELECT is((SELECT rows_due FROM st WHERE scope_column = 'deleted_at'), 1::bigint, 'trash policy: one row trashed 40 days ago is due');
SELECT is((SELECT rows_no_anchor FROM st WHERE scope_column = 'deleted_at'), 0::bigint,
          'trash policy: the rows outside the trash are not "no anchor"');
SELECT is((SELECT rows_no_anchor FROM st WHERE scope_exclude), 1::bigint,
          'customers'' policy: the customer never contacted has no anchor');
SELECT is((SELECT rows_due FROM st WHERE scope_column IS NULL), 0::bigint, 'the whole-table 10 years policy: nothing due');

SELECT is((SELECT array[problem_rows, checked_rows] FROM gdpr.data_quality()
            WHERE check_name = 'inactive beyond 3 years where status IN (''prospect'')'),
          (SELECT array[count(*) FILTER (WHERE last_contact_at < now() - interval '3 years'), count(*)]
             FROM crm.contacts WHERE status = 'prospect'),
          'data_quality counts the inactive rows of a policy''s scope, among the rows of its scope');
SELECT ok(gdpr.compliance_report('markdown') LIKE '%crm.contacts (rows) where status NOT IN (''prospect'')%',
          'the compliance report names the scope of each policy');
CREATE TEMP TABLE result AS SELECT * FROM gdpr.purge();
SELECT is((SELECT array_agg(id ORDER BY id) FROM crm.contacts WHERE id <= 11),
          ARRAY[3, 4, 5, 6, 8, 10, 11]::bigint[],
          'purged: prospects past 3 years (not the held one), customers past 5, the old trash; the rest stays');
SELECT ok((SELECT last_name ~ '^[A-Za-z0-9_-]{22}$' FROM crm.contacts WHERE id = 8),
          'the invoiced customer past his period is kept, anonymised');
SELECT is((SELECT anonymised FROM gdpr.purge_history h JOIN gdpr.retention_policies p ON p.id = h.policy_id
            WHERE p.scope_exclude AND NOT h.dry_run ORDER BY run_id DESC LIMIT 1), 1::bigint,
          'and counted as kept, anonymised, under the customers'' policy');
SELECT is((SELECT sum(rows) FROM result WHERE tbl = 'crm.contacts'::regclass AND col IS NULL), 4::numeric,
          'purge() returns one row per policy: 4 contacts deleted in all');
SELECT is((SELECT count(*) FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL AND rows_due > 0), 0::bigint,
          'after it, nothing is due under any policy');

-- A row is due under the earliest policy that matches: a whole-table
-- policy of 2 years takes a customer of 4 years.
SELECT gdpr.set_retention('crm.contacts', NULL, '2 years', 'last_contact_at', 'delete');
SELECT is((SELECT rows_due FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL AND scope_column IS NULL),
          (SELECT count(*) FROM crm.contacts WHERE last_contact_at < now() - interval '2 years' AND id NOT IN (3, 8)),
          'the earliest policy that matches wins: customers of 4 years are due under the 2-year whole-table policy');
SELECT ok((SELECT rows_due FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND scope_exclude) = 0
          AND (SELECT count(*) FROM crm.contacts WHERE last_contact_at < now() - interval '2 years' AND id NOT IN (3, 8)) >= 3,
          '... while none is due under the customers'' own');
SELECT gdpr.set_retention('crm.contacts', NULL, '10 years', 'last_contact_at', 'delete');

-- The fallback anchor, per policy.
SELECT lives_ok($$SELECT gdpr.set_retention_fallback('crm.contacts', NULL, 'created_at', 'status', '{prospect}', true)$$,
                'a fallback anchor for the customers'' policy');
SELECT is((SELECT fallback_column FROM gdpr.retention_policies WHERE scope_exclude), 'created_at'::name,
          'set on that policy');
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND fallback_column IS NOT NULL), 1::bigint,
          'and on that policy only');
CREATE TEMP TABLE result_f AS SELECT * FROM gdpr.purge();
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 11), 0::bigint, 'with it, the customer never contacted goes');
SELECT throws_ok($$SELECT gdpr.set_retention_fallback('crm.contacts', NULL, 'created_at', 'status', '{customer}')$$, '42704',
                 'no retention policy on crm.contacts (rows) for the rows where status IN (''customer'')',
                 'a fallback needs the policy of that scope');

-- A column policy with a scope: prospects' notes go after a year, customers' stay.
UPDATE crm.contacts SET notes = 'called', last_contact_at = now() - interval '18 months' WHERE id IN (4, 10);
UPDATE crm.contacts SET status = 'prospect' WHERE id = 10;
SELECT gdpr.remove_retention('crm.contacts', 'notes');
SELECT gdpr.set_retention('crm.contacts', 'notes', '1 year', 'last_contact_at', 'nullify', 'status', '{prospect}');
CREATE TEMP TABLE result_n AS SELECT * FROM gdpr.purge();
SELECT is((SELECT array_agg(notes IS NULL ORDER BY id) FROM crm.contacts WHERE id IN (4, 10)), ARRAY[false, true],
          'a scoped column policy: the prospect''s notes are cleared, the customer''s kept');

-- Removing a policy.
SELECT lives_ok($$SELECT gdpr.remove_retention('crm.contacts', NULL, 'deleted_at')$$, 'remove_retention removes the trash policy');
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl = 'crm.contacts'::regclass AND scope_column = 'deleted_at'), 0::bigint,
          '... it is gone');
SELECT throws_ok($$SELECT gdpr.remove_retention('crm.contacts', NULL, 'deleted_at')$$, '42704', NULL, 'removing it twice');

-- A dropped scope column takes its policies with it.
ALTER TABLE crm.contacts DROP COLUMN deleted_at;
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE scope_column = 'deleted_at'), 0::bigint,
          'no policy is left on a dropped scope column');

-- Bad input: nothing but column names and values, checked.
SELECT throws_ok($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'delete', 'nosuch', '{x}')$$,
                 '42703', NULL, 'a scope on an unknown column');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'delete', 'created_at', '{soon}')$$,
                 '22023', NULL, 'a scope value that is not of the column''s type');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'delete', NULL, '{x}')$$,
                 '22023', NULL, 'scope values without their column');
SELECT throws_ok($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'delete', 'status', '{}')$$,
                 '22023', NULL, 'an empty scope');
SELECT lives_ok($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'delete', 'status',
                                           '{"x'');DROP TABLE crm.orders;--"}')$$, 'a scope value is stored as a value');
CREATE TEMP TABLE result_i AS SELECT * FROM gdpr.purge(true);
SELECT ok(to_regclass('crm.orders') IS NOT NULL AND (SELECT count(*) FROM gdpr.retention_status WHERE scope_values[1] LIKE 'x%') = 1,
          '... and only ever quoted as a literal');
SELECT gdpr.remove_retention('crm.contacts', NULL, 'status', '{"x'');DROP TABLE crm.orders;--"}');

-- Item 2: a table with two links to contacts (a referral: who referred whom),
-- anchored on the contacts' last contact: due once both are past due.
CREATE TABLE crm.referrals (id serial PRIMARY KEY, referrer_id bigint, referee_id bigint, note text);
SELECT gdpr.register_table('crm.referrals', 'referrer_id', 'crm.contacts');
SELECT gdpr.link_table('crm.referrals', 'referee_id', 'crm.contacts');
SELECT gdpr.set_retention('crm.referrals', NULL, '3 years', 'last_contact_at', 'delete');
UPDATE crm.contacts SET last_contact_at = now() - interval '4 years', status = 'customer' WHERE id IN (20, 21, 22);
UPDATE crm.contacts SET last_contact_at = now() WHERE id = 23;
INSERT INTO crm.referrals (id, referrer_id, referee_id) VALUES (1, 20, 21), (2, 20, 23), (3, 23, 21), (4, 20, 22);
SELECT gdpr.place_hold('22', 'audit') AS hold22 \gset
SELECT is((SELECT rows_due FROM gdpr.retention_status WHERE tbl = 'crm.referrals'::regclass), 1::bigint,
          'a referral is due when every contact it links is past due (the held one''s left out)');
SELECT is((SELECT rows_held FROM gdpr.retention_status WHERE tbl = 'crm.referrals'::regclass), 1::bigint,
          '... a referral of a held contact, through its second link, is held');
CREATE TEMP TABLE result_r AS SELECT * FROM gdpr.purge();
SELECT is((SELECT array_agg(id ORDER BY id) FROM crm.referrals), ARRAY[2, 3, 4],
          'the purge deletes the referral whose contacts are both past due, not the others');

SELECT * FROM finish();
ROLLBACK;
