-- The rules kept for real (issue 23): erased and deleted subjects answered
-- with "no", consent proof checked and retired with the person, the
-- justification of each column, subjects left without a legal basis, the
-- suppression list enforced where data enters.
BEGIN;
SELECT plan(27);

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

-------------------------------------------------------------- 6. pre-ticked boxes, the notice shown
SELECT id AS p6 FROM crm.contacts ORDER BY id DESC LIMIT 1 \gset
SELECT throws_ok(format($$SELECT gdpr.grant_consent(%L, 'newsletter', 'web', %L)$$, :'p6',
                        (:'web')::jsonb || '{"prechecked": true}'),
                 '22023', 'a pre-ticked box is not consent', 'a pre-ticked box is refused');
SELECT throws_ok(format($$SELECT gdpr.grant_consent(%L, 'newsletter', 'web', %L)$$, :'p6',
                        (:'web')::jsonb - 'notice_version'),
                 '22023', 'proof of a web event lacks notice_version', 'a web grant must name the notice shown');
SELECT throws_ok(format($$SELECT gdpr.grant_consent(%L, 'newsletter', 'web', %L)$$, :'p6',
                        (:'web')::jsonb || '{"notice_version": 7}'),
                 '22023', 'purpose "newsletter" has no notice version 7', 'and a version the purpose had');
SELECT is((SELECT count(*) FROM gdpr.consent_ledger WHERE subject_id = :'p6'), 0::bigint, 'nothing was recorded');
SELECT gdpr.define_purpose('newsletter', 'Monthly newsletter by e-mail', 'consent', 'Weekly now.') \g /dev/null
SELECT gdpr.grant_consent(:'p6', 'newsletter', 'web', (:'web')::jsonb || '{"prechecked": false}');
SELECT is((SELECT notice_version FROM gdpr.consent_log WHERE subject_id = :'p6'), 1,
          'the ledger records the version the form showed, not the latest');
SELECT is((SELECT stale FROM gdpr.consent_status WHERE subject_id = :'p6'), true, 'so the consent is stale');

-------------------------------------------------------------- 7. justification per field
-- The fixture classifies crm.interactions.occurred_at without a justification.
SELECT gdpr.classify('crm.contacts', 'city', 'contact', 'prospecting', 'legitimate_interest', '   ');
SELECT is((SELECT justification FROM gdpr.personal_columns WHERE tbl = 'crm.contacts'::regclass AND col = 'city'
             AND purpose = 'prospecting'), NULL, 'a blank justification is no justification');
SELECT is((SELECT array_agg(format('%s.%s/%s', table_name, column_name, purpose) ORDER BY table_name, column_name, purpose)
             FROM gdpr.personal_data WHERE NOT justified),
          ARRAY['contacts.city/prospecting', 'interactions.occurred_at/customer_management'],
          'personal_data shows which columns are not justified');
SELECT ok((SELECT bool_and(justified) FROM gdpr.personal_data WHERE justification IS NOT NULL), 'the others are');
SELECT is((SELECT unjustified_data FROM gdpr.processing_register WHERE purpose = 'customer_management'),
          ARRAY['crm.interactions.occurred_at'], 'the Art. 30 register lists them per purpose');
SELECT is((SELECT unjustified_data FROM gdpr.processing_register WHERE purpose = 'accounting'), '{}'::text[],
          'and an empty list where every column is justified');

-------------------------------------------------------------- 5. withdrawn consent with nothing else to stand on
-- Three recent prospects without orders: the usual 3-year policy never makes them due.
SELECT array_agg(id ORDER BY id) AS nb FROM (SELECT id FROM crm.contacts c
  WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) ORDER BY id DESC OFFSET 1 LIMIT 3) x \gset
UPDATE crm.contacts SET last_contact_at = now() WHERE id = ANY (:'nb'::bigint[]);
SELECT gdpr.grant_consent(x::text, 'newsletter', 'web', (:'web')::jsonb || jsonb_build_object('at', now() - interval '1 year'))
  FROM unnest(:'nb'::bigint[]) x;
SELECT gdpr.withdraw_consent((:'nb'::bigint[])[1]::text, 'newsletter', 'email', jsonb_build_object('at', now() - interval '2 months'));
SELECT gdpr.withdraw_consent((:'nb'::bigint[])[2]::text, 'newsletter', 'email', '{}');
-- The third withdrew too, but was informed of prospecting (legitimate interest) and did not object.
SELECT gdpr.withdraw_consent((:'nb'::bigint[])[3]::text, 'newsletter', 'email', jsonb_build_object('at', now() - interval '2 months'));
SELECT gdpr.record_information((:'nb'::bigint[])[3]::text, 'prospecting', 'paper', '{"document": "terms"}');
SELECT is((SELECT array_agg(subject_id::bigint ORDER BY subject_id::bigint) FROM gdpr.no_legal_basis
            WHERE subject_id::bigint = ANY (:'nb'::bigint[])),
          (:'nb'::bigint[])[1:2], 'no_legal_basis lists those whose every purpose is a withdrawn consent');
SELECT is((SELECT withdrawn_at::date FROM gdpr.no_legal_basis WHERE subject_id = (:'nb'::bigint[])[1]::text),
          (now() - interval '2 months')::date, 'with the date of the withdrawal');
SELECT is((SELECT purposes FROM gdpr.no_legal_basis WHERE subject_id = (:'nb'::bigint[])[1]::text),
          ARRAY['newsletter'], 'and the purposes he left');
SELECT throws_ok($$SELECT gdpr.set_no_basis_retention('crm.orders', '1 month')$$, '42704', NULL,
                 'a no-basis period is set on a subject table');
SELECT rows_due AS due_before FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL \gset
SELECT lives_ok($$SELECT gdpr.set_no_basis_retention('crm.contacts', '1 month')$$,
                'his rows are due a month after he lost his last legal basis');
SELECT is((SELECT rows_due FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass AND col IS NULL),
          :due_before + 1::bigint, 'retention_status counts him as due');
SELECT gdpr.purge() \g /dev/null
SELECT is((SELECT array_agg(id ORDER BY id) FROM crm.contacts WHERE id = ANY (:'nb'::bigint[])),
          (:'nb'::bigint[])[2:3], 'the purge deleted him; the one who withdrew today and the one informed of prospecting stay');
SELECT gdpr.set_no_basis_retention('crm.contacts', NULL);
SELECT is((SELECT count(*) FROM gdpr.no_basis_retention), 0::bigint, 'NULL removes the period');

SELECT * FROM finish();
ROLLBACK;
