-- Data subject rights: requests and their clocks, restriction, export, breaches.
BEGIN;
SELECT plan(62);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
CREATE ROLE crm_gdpr_t_app NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_app;
CREATE ROLE crm_gdpr_t_admin NOLOGIN IN ROLE gdpr_admin;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_admin;
GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_admin;

-------------------------------------------------------------- requests
SELECT ok(gdpr.open_request('7', 'access') > 0, 'open an access request');
-- A calendar month (received 1 December, due 1 January: 31 days), not 30 days.
SELECT is((SELECT due_at FROM gdpr.requests WHERE subject_id = '7'),
          (SELECT received_at + interval '1 month' FROM gdpr.requests WHERE subject_id = '7'),
          'due one month after receipt');
SELECT is((SELECT subject_found FROM gdpr.requests WHERE subject_id = '7'), true, 'the subject is known');
SELECT gdpr.open_request('999999', 'access') AS r_unknown \gset
SELECT is((SELECT subject_found FROM gdpr.requests WHERE id = :r_unknown), false,
          'a request of an unknown person is recorded, flagged as not found');
SELECT throws_ok($$SELECT gdpr.open_request('7', 'complaint')$$, '22023', 'unknown request kind "complaint"',
                 'unknown kind');
SELECT throws_ok($$SELECT gdpr.open_request('7', 'access', now() + interval '1 day')$$, '22023', NULL,
                 'received in the future');
SELECT throws_ok($$SELECT gdpr.open_request('seven', 'access')$$, '22P02', NULL, 'a subject id of the wrong type');
SELECT throws_ok($$SELECT gdpr.open_request(NULL, 'access')$$, '22004', NULL, 'a NULL subject id');

SELECT gdpr.open_request('8', 'erasure', now() - interval '10 days') AS r8 \gset
SELECT is(gdpr.extend_request(:r8, 2, 'many systems to search'),
          (SELECT received_at + interval '3 months' FROM gdpr.requests WHERE id = :r8), 'extended by two months');
SELECT throws_ok(format('SELECT gdpr.extend_request(%s, 1, %L)', :r8, 'more'), '22023', NULL,
                 'three months at most in all');
SELECT gdpr.open_request('9', 'rectification', now() - interval '40 days') AS r9 \gset
SELECT throws_ok(format('SELECT gdpr.extend_request(%s, 1, %L)', :r9, 'late'), '55000', NULL,
                 'no extension after the first month');
SELECT throws_ok(format('SELECT gdpr.extend_request(%s, 1, %L)', :r9, ''), '22004', NULL, 'an extension needs a reason');
SELECT is((SELECT state FROM gdpr.requests_due WHERE id = :r9), 'overdue', 'a request past its date is overdue');
SELECT is((SELECT state FROM gdpr.requests_due WHERE id = :r8), 'open', 'an extended request is open');
SELECT is((SELECT recipients_to_notify FROM gdpr.requests_due WHERE id = :r9),
          ARRAY['Brevo (FR)', 'Cabinet comptable Durand (FR)', 'Mailchimp (Intuit) (US)', 'Swiss Post Solutions (CH)'],
          'Art. 19: the recipients to tell of a rectification');
SELECT lives_ok(format('SELECT gdpr.close_request(%s, %L)', :r9, 'fulfilled'), 'close a request');
SELECT is((SELECT count(*) FROM gdpr.requests_due WHERE id = :r9), 0::bigint, 'a closed request is not due');
SELECT throws_ok(format('SELECT gdpr.close_request(%s, %L)', :r9, 'fulfilled'), '55000', NULL, 'closing twice');
SELECT throws_ok(format('SELECT gdpr.close_request(%s, %L)', :r8, 'done'), '22023', NULL, 'unknown outcome');
SELECT throws_ok('SELECT gdpr.close_request(424242, ''fulfilled'')', '42704', NULL, 'unknown request');

-------------------------------------------------------------- restriction
INSERT INTO crm.marketing_events (contact_id, campaign, event, at) VALUES (12, 'test', 'sent', now());
INSERT INTO crm.interactions (contact_id, kind, occurred_at) VALUES (12, 'call', now()), (11, 'call', now());
SELECT lives_ok($$SELECT gdpr.restrict_subject('12', 'accuracy contested')$$, 'restrict a subject');
SELECT ok(gdpr.is_restricted('12'), 'he is restricted');
SELECT throws_ok($$SELECT gdpr.restrict_subject('12', 'again')$$, '42710', NULL, 'restricting twice');
SELECT throws_ok($$SELECT gdpr.restrict_subject('999999', 'x')$$, 'P0002', NULL, 'restricting an unknown subject');
SELECT throws_ok($$SELECT gdpr.restrict_subject('13', ' ')$$, '22004', NULL, 'a restriction needs a reason');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT throws_ok($$UPDATE crm.contacts SET notes = 'x' WHERE id = 12$$, '42501',
                 'processing of subject "12" is restricted', 'the application cannot update his row');
SELECT throws_ok($$DELETE FROM crm.marketing_events WHERE contact_id = 12$$, '42501', NULL,
                 'nor delete his rows in a child table');
SELECT throws_ok($$UPDATE crm.interactions SET summary = 'x' WHERE contact_id IN (11, 12)$$, '42501', NULL,
                 'a statement touching him among others fails whole');
SELECT lives_ok($$UPDATE crm.contacts SET notes = 'x' WHERE id = 11$$, 'others are not affected');
SELECT lives_ok($$SELECT count(*) FROM crm.contacts WHERE id = 12$$, 'his rows may still be read (stored)');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_admin;
SELECT lives_ok($$UPDATE crm.contacts SET notes = 'corrected' WHERE id = 12$$, 'a gdpr_admin may change them');
RESET ROLE;
SELECT lives_ok($$SELECT gdpr.lift_restriction('12', 'accuracy verified')$$, 'lift the restriction');
SELECT throws_ok($$SELECT gdpr.lift_restriction('12')$$, '42704', NULL, 'lifting twice');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT lives_ok($$UPDATE crm.contacts SET notes = 'x' WHERE id = 12$$, 'after lifting, the application may write');
RESET ROLE;

-------------------------------------------------------------- export
CREATE TABLE crm.vault (id int PRIMARY KEY, contact_id bigint REFERENCES crm.contacts, secret bytea, note bytea,
                        other bytea);
SELECT gdpr.register_table('crm.vault');
INSERT INTO crm.vault VALUES (1, 20, gdpr.encrypt_for_subject('his diary', '20'),
                              gdpr.encrypt('a note', 'crm.vault.note'), gdpr.encrypt('elsewhere', 'another context'));
SELECT gdpr.open_request('20', 'access') AS r20 \gset
SELECT gdpr.verify_identity(:r20, 'authenticated_account');
SELECT gdpr.export_subject('20', request_id => :r20) AS doc \gset
SELECT is((:'doc'::jsonb) -> 'subject', '{"table": "crm.contacts", "id": "20"}', 'the export names the subject');
SELECT is(jsonb_array_length((:'doc'::jsonb) #> '{data,crm.contacts}'), 1, 'his row');
SELECT is(jsonb_array_length((:'doc'::jsonb) #> '{data,crm.interactions}')::bigint,
          (SELECT count(*) FROM crm.interactions WHERE contact_id = 20), 'all his interactions');
SELECT is(jsonb_array_length((:'doc'::jsonb) #> '{data,crm.orders}')::bigint,
          (SELECT count(*) FROM crm.orders WHERE contact_id = 20), 'all his orders');
SELECT is((:'doc'::jsonb) #>> '{data,crm.contacts,0,email}', (SELECT email FROM crm.contacts WHERE id = 20),
          'with the values');
SELECT is((SELECT array_agg(p ->> 'purpose' ORDER BY p ->> 'purpose') FROM jsonb_array_elements((:'doc'::jsonb) -> 'processing') p),
          ARRAY['accounting', 'customer_management', 'newsletter', 'prospecting'], 'Art. 15(1): every purpose');
SELECT is((SELECT outcome FROM gdpr.requests WHERE id = :r20), 'fulfilled', 'the export answers the request');
SELECT is((:'doc'::jsonb) #>> '{data,crm.vault,0,secret}', 'his diary', 'values under his own key are decrypted');
SELECT is((:'doc'::jsonb) #>> '{data,crm.vault,0,note}', 'a note', 'values with the column as context are decrypted');
SELECT is((:'doc'::jsonb) #>> '{data,crm.vault,0,other,encrypted}', 'true', 'others are marked as encrypted');
SELECT is(gdpr.export_subject('20', portability => true) #> '{data,crm.contacts,0}' ? 'notes', false,
          'portability leaves out what he did not provide on consent or contract');
SELECT throws_ok($$SELECT gdpr.export_subject('999999')$$, 'P0002', NULL, 'export of an unknown subject');
SELECT gdpr.open_request('21', 'access') AS r21 \gset
SELECT throws_ok(format('SELECT gdpr.export_subject(%L, request_id => %s)', '20', :r21), '22023', NULL,
                 'a request of another subject');
SELECT throws_ok(format('SELECT gdpr.export_subject(%L, request_id => %s)', '20', :r8), '22023', NULL,
                 'a request of another kind');

-- The export's statements keep their plans for the session (src/owner_plans.c):
-- the subject is a parameter, and what changes under a kept plan is seen.
SELECT is(gdpr.export_subject('21') #>> '{data,crm.contacts,0,id}', '21', 'a second subject, same session: his own row');
SELECT is(jsonb_array_length(gdpr.export_subject('21') #> '{data,crm.interactions}')::bigint,
          (SELECT count(*) FROM crm.interactions WHERE contact_id = 21), 'and his own interactions');
ALTER TABLE crm.interactions ADD COLUMN kept_plan_probe text DEFAULT 'seen';
SELECT is(gdpr.export_subject('20') #>> '{data,crm.interactions,0,kept_plan_probe}', 'seen',
          'a column added after the plan was kept is exported');
ALTER TABLE crm.interactions DROP COLUMN kept_plan_probe;
SELECT is(gdpr.export_subject('20') #> '{data,crm.interactions,0}' ? 'kept_plan_probe', false,
          'a dropped one no longer is');
-- The owner's own policy, forced on him, applies to the extension's reads as
-- him: a kept plan made before the owner or the policy changed is planned again.
SELECT min(contact_id) AS buyer FROM crm.orders \gset
SELECT is(jsonb_array_length(gdpr.export_subject(:'buyer') #> '{data,crm.orders}')::bigint,
          (SELECT count(*) FROM crm.orders WHERE contact_id = :buyer), 'a buyer''s orders');
CREATE ROLE crm_gdpr_t_orders_owner NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_orders_owner;
GRANT SELECT ON crm.contacts TO crm_gdpr_t_orders_owner;
ALTER TABLE crm.orders OWNER TO crm_gdpr_t_orders_owner;
ALTER TABLE crm.orders FORCE ROW LEVEL SECURITY;
CREATE POLICY kept_plan_probe ON crm.orders AS RESTRICTIVE USING (amount < 0);
SELECT is(jsonb_array_length(gdpr.export_subject(:'buyer') #> '{data,crm.orders}'), 0,
          'a new owner''s forced policy, added after the plan was kept, applies');
DROP POLICY kept_plan_probe ON crm.orders;
SELECT is(jsonb_array_length(gdpr.export_subject(:'buyer') #> '{data,crm.orders}')::bigint,
          (SELECT count(*) FROM crm.orders WHERE contact_id = :buyer), 'and no longer once dropped');
ALTER TABLE crm.orders NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.orders OWNER TO CURRENT_USER;
SELECT throws_ok($$SELECT gdpr.export_subject('twenty')$$, '22P02', NULL, 'a subject id of the wrong type, as a parameter');
-- More statements than plans kept (256): the kept ones are dropped and the
-- table filled again; none is dropped while a kept plan runs (a statement
-- it runs that needs a place is run unkept).
SELECT is((SELECT count(*) FROM generate_series(1, 300) i
            WHERE gdpr._owner_query_kept('crm.contacts', format('SELECT to_jsonb(%s)', i)) = to_jsonb(i)), 300::bigint,
          'more statements than kept plans: each answers its own');
SELECT is(gdpr._owner_query_kept('crm.contacts',
            $q$SELECT to_jsonb(count(*)) FROM generate_series(301, 600) i
                WHERE gdpr._owner_query_kept('crm.contacts'::regclass, format('SELECT to_jsonb(%s)', i)) = to_jsonb(i)$q$),
          '300', 'kept statements run by a kept statement while the table fills: none of the running ones dropped');
SELECT is(gdpr.export_subject('20') #>> '{data,crm.contacts,0,id}', '20', 'the export after both');

-------------------------------------------------------------- breaches
SELECT gdpr.report_breach('stolen laptop', now() - interval '80 hours', 1200) AS b1 \gset
SELECT is((SELECT state FROM gdpr.breaches_due WHERE id = :b1), 'overdue', '72 hours passed: overdue');
SELECT lives_ok(format('SELECT gdpr.notify_breach(%s, now(), %L)', :b1, 'CNIL-2026-0042'), 'notify it');
SELECT is((SELECT state || '/' || late FROM gdpr.breaches_due WHERE id = :b1), 'notified late/true',
          'it was notified late');

SELECT * FROM finish();
ROLLBACK;
