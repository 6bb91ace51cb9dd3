-- The rules kept for real (issue 23): erased and deleted subjects answered
-- with "no", consent proof checked and retired with the person, the
-- justification of each column, subjects left without a legal basis, the
-- suppression list enforced where data enters.
BEGIN;
SELECT plan(57);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
-- The hint of the error a statement raises.
CREATE FUNCTION pg_temp.hint_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
  EXECUTE q;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
  RETURN h;
END $$;
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

-------------------------------------------------------------- 3. objectors and erased people do not come back
SELECT id AS e3, email AS e3_email, phone AS e3_phone FROM crm.contacts c
 WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) AND email IS NOT NULL AND phone IS NOT NULL
 ORDER BY id OFFSET 10 LIMIT 1 \gset
SELECT gdpr.open_request(:'e3', 'erasure') AS req3 \gset
SELECT gdpr.verify_identity(:req3, 'identity_document') \g /dev/null
SELECT gdpr.erase_subject(:'e3', :req3) \g /dev/null
SELECT throws_ok(format($$INSERT INTO crm.contacts (first_name, email) VALUES ('Again', %L)$$, '  ' || upper(:'e3_email')),
                 '23514', 'crm.contacts.email is on the suppression list', 'an erased e-mail cannot be inserted again');
SELECT throws_like(format($$INSERT INTO crm.contacts (first_name, email) VALUES ('Again', %L)$$, :'e3_email'),
                   '%suppression%', 'the error names the suppression list');
SELECT is((SELECT pg_temp.hint_of(format($$INSERT INTO crm.contacts (first_name, email) VALUES ('Again', %L)$$, :'e3_email'))),
          format('The person was erased on %s under request %s: do not import him again.', current_date, :req3),
          'the hint says when and under which request he was erased');
SELECT throws_ok(format($$UPDATE crm.contacts SET phone = %L WHERE id = (SELECT min(id) FROM crm.contacts)$$,
                        regexp_replace(:'e3_phone', '[^0-9+]', '', 'g')),
                 '23514', NULL, 'nor his phone, written another way, put on another contact');
SELECT lives_ok($$UPDATE crm.contacts SET city = 'Metz' WHERE id = (SELECT min(id) FROM crm.contacts)$$,
                'other updates go through');
SELECT lives_ok($$INSERT INTO crm.contacts (first_name, email) VALUES ('New', 'someone.new@example.org')$$,
                'and new people come in');
SELECT current_setting('crm_gdpr.suppression_mode', true) IS NOT NULL AS has_mode \gset
\if :has_mode
SET LOCAL crm_gdpr.suppression_mode = 'flag';
SELECT lives_ok(format($$INSERT INTO crm.contacts (first_name, email) VALUES ('Flagged', %L)$$, :'e3_email'),
                'suppression_mode = flag lets the row in');
SELECT is((SELECT count(*) FROM gdpr.suppression_flags WHERE col = 'email'), 1::bigint, 'and flags it');
SET LOCAL crm_gdpr.suppression_mode = 'off';
SELECT lives_ok(format($$INSERT INTO crm.contacts (first_name, email) VALUES ('Off', %L)$$, :'e3_email'),
                'suppression_mode = off does nothing');
RESET crm_gdpr.suppression_mode;
\else
SELECT skip('crm_gdpr.suppression_mode is not registered yet (src/guc.c): flag and off untested', 3);
\endif
-- A purged objector goes on the list.
SELECT id AS o3, email AS o3_email FROM crm.contacts c
 WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) AND email IS NOT NULL
 ORDER BY id OFFSET 11 LIMIT 1 \gset
SELECT gdpr.object(:'o3', 'prospecting', 'email', '{}') \g /dev/null
SELECT is(gdpr.is_suppressed(:'o3_email'), false, 'an objector is not suppressed while his row is there');
DELETE FROM crm.contacts WHERE id = :o3;   -- the purge
SELECT is(gdpr.is_suppressed(:'o3_email'), true, 'once purged, his e-mail is on the suppression list');
SELECT is((SELECT reason FROM gdpr.suppressions WHERE kind = 'email' AND objected_at IS NOT NULL), 'objection',
          'as an objection');
SELECT throws_like(format($$INSERT INTO crm.contacts (first_name, email) VALUES ('Back', %L)$$, :'o3_email'),
                   '%suppression list%', 'and he cannot be imported again');
-- Duplicates: found and reported, erased when the request says so.
SELECT id AS d3, email AS d3_email FROM crm.contacts c
 WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) AND email IS NOT NULL
 ORDER BY id OFFSET 12 LIMIT 1 \gset
INSERT INTO crm.contacts (first_name, email) VALUES ('Dup', upper(:'d3_email')) RETURNING id AS d3dup \gset
INSERT INTO crm.contacts (first_name, email) VALUES ('Dup2', initcap(:'d3_email')) RETURNING id AS d3dup2 \gset
SELECT is(ARRAY(SELECT duplicate_id || ':' || array_to_string(matched, ',') FROM gdpr.find_duplicates(:'d3') ORDER BY 1),
          ARRAY[:'d3dup' || ':email', :'d3dup2' || ':email'], 'find_duplicates finds them by normalised e-mail');
SELECT id AS p3, phone AS p3_phone FROM crm.contacts c WHERE phone IS NOT NULL ORDER BY id DESC LIMIT 1 \gset
INSERT INTO crm.contacts (first_name, phone) VALUES ('DupPhone', '0' || substr(regexp_replace(:'p3_phone', '[^0-9]', '', 'g'), 3))
  RETURNING id AS p3dup \gset
SELECT ok(:'p3dup' = ANY (ARRAY(SELECT duplicate_id FROM gdpr.find_duplicates(:'p3') WHERE matched = '{phone}')),
          'and by the digits of a phone written another way');
-- Any way of writing it (the search first matches its digits in order by
-- LIKE, then normalises): separators of every kind are found; the same
-- digits with one more, or one less, are not.
SELECT regexp_replace(:'p3_phone', '[^0-9]', '', 'g') AS p3_digits \gset
INSERT INTO crm.contacts (first_name, phone)
  VALUES ('DupOdd', format('(+%s) %s-%s.%s/%s', substr(:'p3_digits', 1, 2), substr(:'p3_digits', 3, 1), substr(:'p3_digits', 4, 2),
                           substr(:'p3_digits', 6, 3), substr(:'p3_digits', 9))) RETURNING id AS p3odd \gset
INSERT INTO crm.contacts (first_name, phone) VALUES ('NotDup', :'p3_phone' || '9') RETURNING id AS p3longer \gset
INSERT INTO crm.contacts (first_name, phone) VALUES ('NotDup2', left(:'p3_phone', -1)) RETURNING id AS p3shorter \gset
SELECT ok(:'p3odd' = ANY (ARRAY(SELECT duplicate_id FROM gdpr.find_duplicates(:'p3') WHERE matched = '{phone}')),
          'a phone written with brackets, dashes, dots and slashes is his');
SELECT is(ARRAY(SELECT duplicate_id FROM gdpr.find_duplicates(:'p3') WHERE duplicate_id IN (:'p3longer', :'p3shorter')),
          '{}'::text[], 'a number with one digit more or less is not');
DELETE FROM crm.contacts WHERE id IN (:p3odd, :p3longer, :p3shorter);
SELECT gdpr.erase_subject(:'d3') AS rep3 \gset
SELECT is(jsonb_array_length((:'rep3')::jsonb -> 'duplicates'), 2, 'the erasure report lists his duplicates');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id IN (:d3dup, :d3dup2)), 2::bigint, 'and leaves them by default');
SELECT gdpr.erase_subject(:'d3dup', include_duplicates => true) AS rep3b \gset
SELECT is((SELECT count(*) FROM crm.contacts WHERE id IN (:d3dup, :d3dup2)), 0::bigint,
          'include_duplicates => true erases them too');

-------------------------------------------------------------- 2. consent proofs follow the person
-- Everyone erased or deleted above (:gone, :purged, :e3, :o3, :d3...) had consent events with proof.
SELECT is((SELECT count(*) FROM gdpr.consent_ledger l
            WHERE NOT EXISTS (SELECT FROM crm.contacts c WHERE c.id::text = l.subject_id)), 0::bigint,
          'no consent event is left of a subject whose row is gone');
SELECT is((SELECT count(*) FROM gdpr.consent_state s
            WHERE NOT EXISTS (SELECT FROM crm.contacts c WHERE c.id::text = s.subject_id)), 0::bigint,
          'nor any consent state');
SELECT is((SELECT count(*) FROM gdpr.consent_ledger WHERE subject_id = :'kept'), 0::bigint,
          'nor of an erased subject whose row is kept for his invoices');
SELECT ok((SELECT count(*) FROM gdpr.consent_proof_archive
            WHERE subject_ref IN (gdpr._subject_ref('crm.contacts', :'purged'), gdpr._subject_ref('crm.contacts', :'gone'))) = 2,
          'their events are kept reduced: a keyed pseudonym and the dates');
SELECT ok(NOT EXISTS (SELECT FROM gdpr.consent_proof_archive a WHERE to_jsonb(a)::text ~ '203\.0\.113|Mozilla'),
          'no IP address or user agent of a deleted person remains');
SELECT is((SELECT keep_until::date FROM gdpr.consent_proof_archive
            WHERE subject_ref = gdpr._subject_ref('crm.contacts', :'purged')),
          (now() + interval '5 years')::date, 'kept 5 years after his consent ended (crm_gdpr.consent_proof_keep)');
SELECT is((SELECT jsonb_agg(e - 'at' - 'recorded_at' - 'keep_until') FROM jsonb_array_elements(gdpr.consent_proof(:'purged') -> 'events') e),
          jsonb_build_array(jsonb_build_object('event', 'grant', 'channel', 'web', 'purpose', 'newsletter', 'notice_version', 1,
            'notice_sha256', (SELECT encode(digest, 'hex') FROM gdpr.purpose_notices WHERE purpose = 'newsletter' AND version = 1))),
          'consent_proof of a deleted subject gives what is kept, no proof document');
-- A customer past his period whose invoices are kept: the purge anonymises his row, and his proof goes.
SELECT id AS a2 FROM crm.contacts c WHERE EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
   AND email LIKE '%@%' AND last_contact_at > now() - interval '2 years' ORDER BY id DESC LIMIT 1 \gset
SELECT gdpr.grant_consent(:'a2', 'newsletter', 'web', :'web') \g /dev/null
UPDATE crm.contacts SET last_contact_at = now() - interval '4 years' WHERE id = :a2;
UPDATE gdpr.consent_proof_archive SET keep_until = now() - interval '1 day'
 WHERE subject_ref = gdpr._subject_ref('crm.contacts', :'purged');
SELECT gdpr.purge() \g /dev/null
SELECT is((SELECT count(*) FROM gdpr.consent_proof_archive WHERE keep_until < now()), 0::bigint,
          'the purge removes them when their time is up');
SELECT is((SELECT count(*) FROM gdpr.consent_ledger WHERE subject_id = :'a2'), 0::bigint,
          'a customer the purge anonymised (his invoices kept) keeps no consent proof either');
SELECT is((SELECT count(*) FROM gdpr.consent_proof_archive WHERE subject_ref = gdpr._subject_ref('crm.contacts', :'a2')),
          1::bigint, 'only its reduced form');

SELECT * FROM finish();
ROLLBACK;
