-- Consent, objection and the prospecting rules (doc/consent.md).
BEGIN;
SELECT plan(50);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SELECT gdpr.set_subject_profile('crm.contacts', 'segment', 'status');
SELECT gdpr.set_purpose_options('newsletter', '3 years', requires_double_opt_in => true);
SELECT gdpr.set_purpose_options('prospecting', electronic_marketing => true);
-- Four known people: a B2C prospect, a B2C customer, a B2B prospect, another B2C prospect.
UPDATE crm.contacts SET segment = 'b2c', status = 'prospect' WHERE id = 1;
UPDATE crm.contacts SET segment = 'b2c', status = 'customer' WHERE id = 2;
UPDATE crm.contacts SET segment = 'b2b', status = 'prospect' WHERE id = 3;
UPDATE crm.contacts SET segment = 'b2c', status = 'prospect' WHERE id = 4;
\set web '{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "form": "newsletter-footer-v3", "notice_version": 1}'

-------------------------------------------------------------- consent purposes
SELECT ok(gdpr.grant_consent('1', 'newsletter', 'web', :'web') > 0, 'a web grant with its proof');
SELECT is(gdpr.has_consent('1', 'newsletter'), false, 'not yet: the purpose requires double opt-in');
SELECT is(gdpr.may_process('1', 'newsletter'), false, 'so he may not be mailed');
SELECT is((SELECT state FROM gdpr.consent_status WHERE subject_id = '1' AND purpose = 'newsletter'), 'unconfirmed',
          'the status says unconfirmed');
SELECT ok(gdpr.confirm_consent('1', 'newsletter', 'email', '{"message_id": "<c1@example.fr>"}') > 0, 'confirmation');
SELECT is(gdpr.has_consent('1', 'newsletter'), true, 'now he has consented');
SELECT is(gdpr.may_process('1', 'newsletter'), true, 'and may be mailed');
SELECT is(ARRAY(SELECT gdpr.contactable('newsletter')), ARRAY['1'], 'he is the only contactable one');
SELECT is((SELECT expires_at::date FROM gdpr.consent_status WHERE subject_id = '1' AND purpose = 'newsletter'),
          (now() + interval '3 years')::date, 'his consent expires in 3 years');
SELECT throws_ok($$SELECT gdpr.confirm_consent('2', 'newsletter', 'email', '{"message_id": "x"}')$$, '55000', NULL,
                 'no confirmation without a grant');
SELECT ok(gdpr.withdraw_consent('1', 'newsletter', 'email', '{}') > 0, 'withdrawal needs no proof keys');
SELECT is(gdpr.may_process('1', 'newsletter'), false, 'withdrawn: no more mail');
SELECT is(ARRAY(SELECT gdpr.contactable('newsletter')), '{}'::text[], 'and nobody is contactable');
SELECT lives_ok($$SELECT gdpr.withdraw_consent('4', 'newsletter', 'web', '{}')$$,
                'a withdrawal without a prior grant is recorded');
SELECT is((SELECT count(*) FROM gdpr.consent_log WHERE subject_id = '4' AND event = 'withdraw'), 1::bigint, 'it is in the log');

-- Expiry and renewal.
SELECT gdpr.grant_consent('3', 'newsletter', 'web', (:'web')::jsonb || jsonb_build_object('at', now() - interval '30 months'));
SELECT gdpr.confirm_consent('3', 'newsletter', 'email',
                            jsonb_build_object('message_id', 'x', 'at', now() - interval '30 months' + interval '5 minutes'));
SELECT is(gdpr.may_process('3', 'newsletter'), true, 'a consent given 30 months ago, for 3 years...');
SELECT gdpr.set_purpose_options('newsletter', '2 years', requires_double_opt_in => true);
SELECT is(gdpr.may_process('3', 'newsletter'), false, '...has expired once the purpose keeps consents 2 years');
SELECT is((SELECT state FROM gdpr.consent_status WHERE subject_id = '3' AND purpose = 'newsletter'), 'expired', 'expired');
SELECT gdpr.set_purpose_options('newsletter', NULL, requires_double_opt_in => true);
SELECT gdpr.define_purpose('newsletter', 'Monthly newsletter by e-mail', 'consent', 'New notice: weekly now.');
SELECT is((SELECT stale FROM gdpr.consent_status WHERE subject_id = '3' AND purpose = 'newsletter'), true,
          'a consent under an older notice is stale');
SELECT is(gdpr.may_process('3', 'newsletter'), true, 'stale consents stay valid by default');
SELECT gdpr.set_purpose_options('newsletter', NULL, requires_double_opt_in => true, renewal_required => true);
SELECT is(gdpr.may_process('3', 'newsletter'), false, 'unless the purpose requires renewal');
SELECT is(ARRAY(SELECT gdpr.contactable('newsletter')), '{}'::text[], 'then he is not contactable');
SELECT gdpr.grant_consent('3', 'newsletter', 'web', (:'web')::jsonb || '{"notice_version": 2}');
SELECT gdpr.confirm_consent('3', 'newsletter', 'email', '{"message_id": "y"}');
SELECT is(gdpr.may_process('3', 'newsletter'), true, 'renewed under the new notice');
SELECT is((SELECT notice_version FROM gdpr.consent_log WHERE subject_id = '3' AND event = 'grant' ORDER BY id DESC LIMIT 1),
          2, 'the ledger records the notice version shown');

-------------------------------------------------------------- prospecting rules
SELECT gdpr.record_information(id::text, 'prospecting', 'paper', '{"document": "general terms v2024"}')
  FROM crm.contacts WHERE id IN (1, 2, 3, 4);
SELECT is(gdpr.may_process('1', 'prospecting'), false, 'B2C prospect: informed is not enough, consent is needed');
SELECT is(gdpr.may_process('2', 'prospecting'), true, 'B2C customer informed at purchase: soft opt-in');
SELECT is(gdpr.may_process('3', 'prospecting'), true, 'B2B contact informed at collection');
SELECT gdpr.grant_consent('4', 'prospecting', 'web', :'web');
SELECT is(gdpr.may_process('4', 'prospecting'), true, 'B2C prospect who consented');
SELECT is(ARRAY(SELECT x FROM gdpr.contactable('prospecting') x ORDER BY x), ARRAY['2', '3', '4'],
          'contactable applies the same rules');
SELECT ok(gdpr.object('2', 'prospecting', 'email', '{}') > 0, 'the customer objects (Art. 21)');
SELECT is(gdpr.may_process('2', 'prospecting'), false, 'an objection stops it');
SELECT gdpr.withdraw_consent('3', 'prospecting', 'email', '{}');
SELECT is(gdpr.may_process('3', 'prospecting'), false, 'an unsubscription counts as an objection');
SELECT is(ARRAY(SELECT x FROM gdpr.contactable('prospecting') x ORDER BY x), ARRAY['4'], 'contactable agrees');
SELECT is(gdpr.may_process('5', 'prospecting'), false, 'never informed: no prospecting');

-------------------------------------------------------------- other bases, restriction
SELECT is(gdpr.may_process('5', 'customer_management'), true, 'contract: yes');
SELECT gdpr.restrict_subject('5', 'contested');
SELECT is(gdpr.may_process('5', 'customer_management'), false, 'restricted: not for a contract purpose');
SELECT is(gdpr.may_process('5', 'accounting'), true, 'but still for a legal obligation');
SELECT ok(NOT ('5' = ANY (ARRAY(SELECT gdpr.contactable('customer_management')))), 'contactable leaves him out');

-------------------------------------------------------------- bad input changes nothing
SELECT count(*) AS before FROM gdpr.consent_ledger \gset
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'nosuch', 'web', '{}')$$, '42704', NULL, 'unknown purpose');
SELECT throws_ok($$SELECT gdpr.grant_consent('999999', 'newsletter', 'web', '{}')$$, 'P0002', NULL, 'unknown subject');
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'newsletter', 'fax', '{}')$$, '22023', NULL, 'unknown channel');
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'newsletter', 'web', '[1, 2]')$$, '22023',
                 'proof must be a JSON object, not array', 'proof that is not an object');
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'newsletter', 'web', '{"ip": "203.0.113.7"}')$$, '22023',
                 'proof of a web event lacks user_agent, form, notice_version', 'missing proof keys, named');
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'newsletter', 'web', '{"ip": "not an ip", "user_agent": "x", "form": "f"}')$$,
                 '22023', NULL, 'an IP that is not an inet');
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'newsletter', 'phone', '{"agent": "Marc", "recording": "r1", "at": "2099-01-01"}')$$,
                 '22023', NULL, 'a time in the future');
SELECT throws_ok($$SELECT gdpr.grant_consent('1', 'accounting', 'paper', '{"document": "d"}')$$, '22023', NULL,
                 'no consent for a legal-obligation purpose');
SELECT throws_ok($$SELECT gdpr.object('1', 'newsletter', 'web', '{}')$$, '22023', NULL,
                 'no objection to a consent purpose: withdraw');
SELECT is((SELECT count(*) FROM gdpr.consent_ledger), :before::bigint, 'the ledger is unchanged');
SELECT throws_ok($$UPDATE gdpr.consent_ledger SET channel = 'web'$$, '42501', NULL, 'the ledger cannot be updated');
SELECT throws_ok($$DELETE FROM gdpr.consent_ledger$$, '42501', NULL, 'nor deleted from, by its owner either');

SELECT * FROM finish();
ROLLBACK;
