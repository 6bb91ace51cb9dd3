-- The rules kept for real (issue 23): erased and deleted subjects answered
-- with "no", consent proof checked and retired with the person, the
-- justification of each column, subjects left without a legal basis, the
-- suppression list enforced where data enters.
BEGIN;
SELECT plan(8);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
\set web '{"ip": "203.0.113.77", "user_agent": "Mozilla/5.0", "form": "footer-v3", "notice_version": 1}'
-- A prospect without orders (his row goes when erased or purged), and a
-- customer with orders (his row is kept, anonymised, when erased).
SELECT id AS gone FROM crm.contacts c WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
 ORDER BY id LIMIT 1 \gset
SELECT id AS purged FROM crm.contacts c WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
 ORDER BY id OFFSET 1 LIMIT 1 \gset
SELECT id AS kept FROM crm.contacts c WHERE EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
 ORDER BY id LIMIT 1 \gset

-------------------------------------------------------------- 8. erased and purged subjects: "no", not an error
SELECT gdpr.grant_consent(x, 'newsletter', 'web', :'web') FROM unnest(ARRAY[:'gone', :'purged', :'kept']) x;
SELECT gdpr.erase_subject(:'gone'), gdpr.erase_subject(:'kept');
DELETE FROM crm.contacts WHERE id = :purged;   -- as the purge does
SELECT is(gdpr.has_consent(:'gone', 'newsletter'), false, 'an erased subject has no consent (no error)');
SELECT is(gdpr.may_process(:'gone', 'newsletter'), false, 'and may not be processed');
SELECT is(gdpr.has_consent(:'purged', 'newsletter'), false, 'a purged subject has no consent (no error)');
SELECT is(gdpr.may_process(:'purged', 'customer_management'), false, 'and may not be processed, whatever the basis');
SELECT is(gdpr.may_process(:'kept', 'customer_management'), false,
          'an erased subject whose row is kept for his invoices may not be processed either');
SELECT ok(NOT (:'purged' = ANY (ARRAY(SELECT gdpr.contactable('newsletter')))), 'contactable never lists a purged subject');
SELECT ok(NOT (:'kept' = ANY (ARRAY(SELECT gdpr.contactable('customer_management')))),
          'nor an erased one whose row is kept');
SELECT throws_ok($$SELECT gdpr.has_consent('999999', 'newsletter')$$, 'P0002',
                 'subject "999999" does not exist in crm.contacts, and no erasure or deletion of him is recorded',
                 'a subject who never existed is an error, which says so');

SELECT * FROM finish();
ROLLBACK;
