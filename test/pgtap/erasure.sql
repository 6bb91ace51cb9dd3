-- Erasure (Art. 17): all or nothing, per-field actions, kept invoices,
-- certificate, suppression list, idempotence, ledger replay.
BEGIN;
SELECT plan(35);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;

-- A customer with orders (kept 10 years) and a prospect without.
SELECT id AS customer FROM crm.contacts c WHERE EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
   AND EXISTS (SELECT FROM crm.interactions i WHERE i.contact_id = c.id) ORDER BY id LIMIT 1 \gset
SELECT id AS prospect FROM crm.contacts c WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
   AND EXISTS (SELECT FROM crm.interactions i WHERE i.contact_id = c.id) ORDER BY id LIMIT 1 \gset
SELECT email AS prospect_email, phone AS prospect_phone FROM crm.contacts WHERE id = :prospect \gset
SELECT count(*) AS orders_before FROM crm.orders WHERE contact_id = :customer \gset
SELECT first_name AS customer_first_name FROM crm.contacts WHERE id = :customer \gset

SELECT gdpr.open_request(:'prospect', 'erasure') AS req \gset
SELECT gdpr.verify_identity(:req, 'identity_document');
SELECT gdpr.erase_subject(:'prospect', :req) AS report \gset
SELECT is((:'report'::jsonb) ->> 'status', 'erased', 'the prospect is erased');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = :prospect), 0::bigint, 'his row is deleted');
SELECT is((SELECT count(*) FROM crm.interactions WHERE contact_id = :prospect), 0::bigint, 'and his interactions');
SELECT is((SELECT count(*) FROM crm.marketing_events WHERE contact_id = :prospect), 0::bigint, 'and his marketing events');
SELECT is((SELECT outcome FROM gdpr.requests WHERE id = :req), 'fulfilled', 'the request is closed');
SELECT ok(position(:'prospect_email' IN :'report') = 0, 'the report holds no personal data');
SELECT is((SELECT count(*) FROM gdpr.erasures WHERE request_id = :req), 1::bigint, 'a certificate is recorded');
SELECT is((SELECT encode(report_sha256, 'hex') FROM gdpr.erasures WHERE request_id = :req),
          encode(sha256(convert_to((SELECT report::text FROM gdpr.erasures WHERE request_id = :req), 'UTF8')), 'hex'),
          'with the digest of its report');
SELECT ok(gdpr.is_suppressed(:'prospect_email'), 'his e-mail is on the suppression list');
SELECT ok(gdpr.is_suppressed(upper(:'prospect_email')), 'whatever its case');
SELECT ok(NOT gdpr.is_suppressed('nobody@example.fr'), 'others are not');
SELECT is((SELECT count(*) FROM gdpr.suppressions WHERE kind = 'phone'), 1::bigint, 'his phone too');
SELECT ok((SELECT bool_and(ref ~ '^[A-Za-z0-9_-]{22}$') FROM gdpr.suppressions),
          'the suppression list holds pseudonyms only');
SELECT is(gdpr.erase_subject(:'prospect') ->> 'status', 'already erased', 'erasing twice says so');
SELECT is((SELECT count(*) FROM gdpr.erasures), 1::bigint, 'and changes nothing');

-- The customer's invoices are kept (legal obligation), his identity is not.
SELECT gdpr.erase_subject(:'customer') AS report2 \gset
SELECT is((SELECT count(*) FROM crm.orders WHERE contact_id = :customer), :orders_before::bigint,
          'his orders are kept (10 years, legal obligation)');
SELECT is((SELECT count(*) FROM crm.orders WHERE contact_id = :customer AND iban IS NOT NULL), 0::bigint,
          'their IBAN is nullified (its own policy)');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = :customer), 1::bigint,
          'his contact row stays: the kept invoices refer to it');
SELECT ok((SELECT first_name <> :'customer_first_name' AND email NOT LIKE '%@%' AND birth_date IS NULL AND notes IS NULL
             FROM crm.contacts WHERE id = :customer), 'but his identity in it is pseudonymised or cleared');
SELECT is((SELECT count(*) FROM crm.interactions WHERE contact_id = :customer), 0::bigint, 'his interactions are deleted');
SELECT is(gdpr.erase_subject(:'customer') ->> 'status', 'already erased',
          'erasing again a subject whose anonymised row is kept says so');
SELECT is((:'report2'::jsonb) #>> '{tables,0,table}', 'crm.interactions', 'the report lists children first');

-- Bad input changes nothing.
SELECT count(*) AS n_erasures FROM gdpr.erasures \gset
SELECT throws_ok($$SELECT gdpr.erase_subject('999999')$$, 'P0002', NULL, 'unknown subject');
SELECT throws_ok($$SELECT gdpr.erase_subject('x')$$, '22P02', NULL, 'a subject id of the wrong type');
SELECT gdpr.restrict_subject('30', 'contested');
SELECT throws_ok($$SELECT gdpr.erase_subject('30')$$, '55000', NULL, 'a restricted subject');
SELECT gdpr.open_request('31', 'access') AS req31 \gset
SELECT throws_ok(format('SELECT gdpr.erase_subject(%L, %s)', '31', :req31), '22023', NULL, 'a request of another kind');
SELECT gdpr.open_request('32', 'erasure') AS req32 \gset
SELECT throws_ok(format('SELECT gdpr.erase_subject(%L, %s)', '31', :req32), '22023', NULL, 'a request of another subject');
CREATE TABLE crm.tickets (id int PRIMARY KEY, contact_id bigint REFERENCES crm.contacts);
SELECT min(id) AS victim FROM crm.contacts c WHERE id > :prospect
   AND NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
   AND EXISTS (SELECT FROM crm.interactions i WHERE i.contact_id = c.id) \gset
INSERT INTO crm.tickets VALUES (1, :victim);
SELECT count(*) AS c33 FROM crm.interactions WHERE contact_id = :victim \gset
SELECT throws_ok(format('SELECT gdpr.erase_subject(%L)', :'victim'), '23503', NULL,
                 'an unregistered table referring to him stops the erasure');
SELECT is((SELECT count(*) FROM gdpr.erasures), :n_erasures::bigint, 'no certificate for a failed erasure');
SELECT is((SELECT count(*) FROM crm.interactions WHERE contact_id = :victim), :c33::bigint,
          'all or nothing: his interactions are still there');

-- A held subject cannot be erased.
SELECT min(id) AS held FROM crm.contacts WHERE id > :victim AND id NOT IN (:customer, :prospect) \gset
SELECT gdpr.place_hold(:'held', 'tax audit 2026') AS hold \gset
SELECT throws_ok(format('SELECT gdpr.erase_subject(%L)', :'held'), '55000', NULL, 'a subject under a legal hold');
SELECT gdpr.release_hold(:hold);

-- A subject with no child rows exports and erases.
INSERT INTO crm.contacts (id, first_name, email, segment, status) VALUES (900001, 'Solo', 'solo@example.fr', 'b2c', 'prospect');
SELECT is(jsonb_array_length(gdpr.export_subject('900001') #> '{data,crm.interactions}'), 0,
          'export of a subject without child rows');
SELECT is(gdpr.erase_subject('900001') ->> 'status', 'erased', 'and his erasure');

-- Hostile names in the registry are names like any other.
CREATE SCHEMA "crm ""odd"";";
CREATE TABLE "crm ""odd"";"."Notes; DROP TABLE crm.contacts;--" (
  "Id" int PRIMARY KEY, "Contact'Id" bigint REFERENCES crm.contacts, "Text; --" text);
SELECT gdpr.register_table('"crm ""odd"";"."Notes; DROP TABLE crm.contacts;--"');
SELECT gdpr.classify('"crm ""odd"";"."Notes; DROP TABLE crm.contacts;--"', 'Text; --', 'free_text',
                     'customer_management', 'legitimate_interest');
INSERT INTO crm.contacts (id, first_name, email) VALUES (900002, 'Odd', 'odd@example.fr');
INSERT INTO "crm ""odd"";"."Notes; DROP TABLE crm.contacts;--" VALUES (1, 900002, 'a note');
-- Export keys are the documented "schema.table", never quoted identifiers.
SELECT is(gdpr.export_subject('900002') #>> ARRAY['data', 'crm "odd";.Notes; DROP TABLE crm.contacts;--', '0', 'Text; --'],
          'a note', 'export through hostile identifiers');
SELECT is((gdpr.erase_subject('900002') -> 'tables' -> 0 ->> 'deleted')::int, 1, 'erasure through hostile identifiers');

SELECT * FROM finish();
ROLLBACK;
