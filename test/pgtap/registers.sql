-- The DPO's registers: Art. 30 complete (controller, DPO, processors, subject
-- categories, measures in force), breaches (Art. 33, 34), requests with the
-- identity check and reminders, DPIA, data quality, the compliance report.
BEGIN;
SELECT plan(113);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
CREATE ROLE crm_gdpr_t_auditor NOLOGIN IN ROLE gdpr_auditor;
CREATE ROLE crm_gdpr_t_admin NOLOGIN IN ROLE gdpr_admin;

-------------------------------------------------------------- Art. 30
SELECT is((SELECT controller FROM gdpr.processing_register WHERE purpose = 'newsletter'), NULL, 'no controller yet');
SELECT throws_ok($$SELECT gdpr.set_controller(' ', 'Claire Martin', 'dpo@example.fr')$$, '22004', NULL,
                 'the controller needs a name');
SELECT throws_ok($$SELECT gdpr.set_controller('Exemple SAS', NULL, 'dpo@example.fr')$$, '22004', NULL,
                 'the DPO needs a name');
SELECT throws_ok($$SELECT gdpr.set_controller('Exemple SAS', 'Claire Martin', 'ask at the desk')$$, '22023', NULL,
                 'the DPO''s contact must be an e-mail address or a phone number');
SELECT lives_ok($$SELECT gdpr.set_controller('Exemple SAS', 'Claire Martin', 'dpo@example.fr',
                                             '1 rue de la Paix, 75002 Paris', 'contact@example.fr')$$, 'set the controller');
SELECT lives_ok($$SELECT gdpr.set_controller('Exemple SAS', 'Claire Martin', '+33 1 23 45 67 89')$$,
                'setting it again replaces it (a phone is a contact too)');
SELECT is((SELECT count(*) FROM gdpr.controller), 1::bigint, 'one controller');
SELECT is((SELECT controller || ' / ' || dpo FROM gdpr.processing_register WHERE purpose = 'newsletter'),
          'Exemple SAS / Claire Martin, +33 1 23 45 67 89', 'the register names the controller and the DPO');

SELECT throws_ok($$SELECT gdpr.set_processor('Brevo', 'processor', NULL)$$, '22004', NULL,
                 'a processor needs its DPA reference');
SELECT throws_ok($$SELECT gdpr.set_processor('Nobody', 'processor', 'DPA-1')$$, '42704', NULL, 'an unknown recipient');
SELECT throws_ok($$SELECT gdpr.set_processor('Brevo', 'vendor', 'DPA-1')$$, '22023', NULL, 'an unknown role');
SELECT throws_ok($$SELECT gdpr.set_processor('Mailchimp (Intuit)', 'sub_processor', 'DPA-2', 'Brevo')$$, '42704', NULL,
                 'a sub-processor''s processor must be a processor');
SELECT is(gdpr.set_processor('Brevo', 'processor', 'DPA-2024-017', dpa_signed_on => '2024-03-01'), 1, 'Brevo is a processor');
SELECT is(gdpr.set_processor('Mailchimp (Intuit)', 'sub_processor', 'DPA-2023-004', 'Brevo'), 1,
          'Mailchimp is its sub-processor');
SELECT throws_ok($$SELECT gdpr.set_processor('Brevo', 'processor', 'DPA-3', 'Brevo')$$, '22023', NULL,
                 'only a sub-processor has a processor');
SELECT is((SELECT processors FROM gdpr.processing_register WHERE purpose = 'newsletter'),
          ARRAY['Brevo', 'Mailchimp (Intuit)'], 'the register lists the processors');
SELECT ok((SELECT recipients_detail FROM gdpr.processing_register WHERE purpose = 'newsletter')
          @> ARRAY['Mailchimp (Intuit) (US), sub-processor, engaged by Brevo, DPA DPA-2023-004, transfer under scc'],
          'with the contract, the processor and the transfer safeguard');

SELECT is((SELECT subject_categories FROM gdpr.processing_register WHERE purpose = 'newsletter'), ARRAY['crm.contacts'],
          'without a label, the subject table''s name');
SELECT throws_ok($$SELECT gdpr.set_subject_category('crm.orders', 'Buyers')$$, '42704', NULL, 'not a subject table');
SELECT throws_ok($$SELECT gdpr.set_subject_category('crm.contacts', ' ')$$, '22004', NULL, 'a blank label');
SELECT gdpr.set_subject_category('crm.contacts', 'Customers and prospects');
SELECT is((SELECT subject_categories FROM gdpr.processing_register WHERE purpose = 'newsletter'),
          ARRAY['Customers and prospects'], 'the label replaces the table''s name');

-- Measures are read from what is in force, not declared.
SELECT ok(NOT EXISTS (SELECT FROM unnest(gdpr.security_measures('customer_management')) m WHERE m LIKE 'authenticated encryption%'),
          'no encryption before a column holds ciphertexts');
CREATE TABLE crm.vault (id int PRIMARY KEY, contact_id bigint REFERENCES crm.contacts, secret bytea);
SELECT gdpr.register_table('crm.vault');
SELECT gdpr.classify('crm.vault', 'secret', 'sensitive', 'customer_management', 'contract', 'Art. 9(2)(a): explicit consent');
INSERT INTO crm.vault VALUES (1, 20, gdpr.encrypt('a secret', 'crm.vault.secret'));
SELECT ok(gdpr.security_measures('customer_management')
          @> ARRAY['authenticated encryption (XChaCha20-Poly1305) of crm.vault.secret'], 'an encrypted column is seen');
SELECT ok(EXISTS (SELECT FROM unnest(gdpr.security_measures('customer_management')) m
                   WHERE m LIKE 'tamper-evident access log of writes on 4 of 4 table(s)%'), 'the access log on its tables');
SELECT throws_ok($$ALTER TABLE crm.vault DISABLE TRIGGER gdpr_log_update$$, '42501', NULL,
                 'the log triggers cannot be disabled behind the register''s back');
SELECT ok(EXISTS (SELECT FROM unnest(gdpr.security_measures('newsletter')) m WHERE m = 'append-only consent ledger with proof'),
          'consent purposes keep a ledger');
SELECT ok(NOT EXISTS (SELECT FROM unnest(gdpr.security_measures('accounting')) m WHERE m LIKE '%consent ledger%'),
          'other purposes do not claim it');
SELECT ok(EXISTS (SELECT FROM unnest(gdpr.security_measures('newsletter')) m WHERE m LIKE 'master key outside the database, file last changed % days ago'),
          'the key file''s age');
SELECT throws_ok($$SELECT gdpr.security_measures('nothing')$$, '42704', NULL, 'an unknown purpose');

-------------------------------------------------------------- DPIA
SELECT is((SELECT criteria FROM gdpr.dpia_register WHERE purpose = 'customer_management'),
          ARRAY['sensitive_data', 'systematic_monitoring'], 'sensitive and behavioural data are criteria');
SELECT is((SELECT status || '/' || lacking FROM gdpr.dpia_register WHERE purpose = 'customer_management'), 'missing/true',
          'two criteria: a DPIA is required and missing');
SELECT is((SELECT dpia_required::text || '/' || dpia_status FROM gdpr.processing_register WHERE purpose = 'customer_management'),
          'true/missing', 'the Art. 30 view says so');
SELECT is((SELECT required FROM gdpr.dpia_register WHERE purpose = 'prospecting'), false, 'prospecting needs none');
ANALYZE crm.contacts;
SELECT gdpr.set_dpia_threshold(1000);
SELECT ok((SELECT criteria FROM gdpr.dpia_register WHERE purpose = 'prospecting') @> ARRAY['large_scale'],
          'large scale from the subject table''s size');
SELECT throws_ok($$SELECT gdpr.set_dpia_threshold(0)$$, '22023', NULL, 'a threshold must be positive');
SELECT throws_ok($$SELECT gdpr.record_dpia('customer_management', 'finished')$$, '22023', NULL, 'an unknown status');
SELECT throws_ok($$SELECT gdpr.record_dpia('customer_management', 'done')$$, '22004', NULL, 'done needs a conclusion');
SELECT throws_ok($$SELECT gdpr.record_dpia('customer_management', 'planned', criteria => ARRAY['astrology'])$$, '22023', NULL,
                 'an unknown criterion');
SELECT throws_ok($$SELECT gdpr.record_dpia('nothing', 'planned')$$, '42704', NULL, 'an unknown purpose');
SELECT gdpr.record_dpia('customer_management', 'done', 'Risks acceptable with encryption of the vault', 'low',
                        next_review => current_date + 365);
SELECT is((SELECT status || '/' || lacking || '/' || assessed_on FROM gdpr.dpia_register WHERE purpose = 'customer_management'),
          'done/false/' || current_date, 'a DPIA done is no longer lacking');
SELECT gdpr.record_dpia('newsletter', 'planned', criteria => ARRAY['evaluation_or_scoring']);
SELECT is((SELECT required::text || '/' || status FROM gdpr.dpia_register WHERE purpose = 'newsletter'), 'true/planned',
          'a declared criterion adds to the computed ones');

-------------------------------------------------------------- breaches
SELECT gdpr.report_breach('Laptop with a CRM export stolen', now() - interval '80 hours') AS b1 \gset
SELECT throws_ok(format('SELECT gdpr.close_breach(%s, %L, %L)', :b1, 'not notifiable', 'minor'), '55000', NULL,
                 'a breach must be assessed before it is closed');
SELECT throws_ok(format('SELECT gdpr.link_breach_subjects(%s, %L, time_column => %L, from_at => now())', :b1, 'crm.orders',
                        'amount'), '42804', NULL, 'a time column must be a date or timestamp');
SELECT throws_ok(format('SELECT gdpr.link_breach_subjects(%s, %L, from_at => now())', :b1, 'crm.orders'), '22023', NULL,
                 'a time range needs its column');
SELECT throws_ok(format('SELECT gdpr.link_breach_subjects(%s, %L)', :b1, 'crm.companies'), '42704', NULL,
                 'an unregistered table');
SELECT throws_ok('SELECT gdpr.link_breach_subjects(424242, ''crm.orders'')', '42704', NULL, 'an unknown breach');
SELECT is(gdpr.link_breach_subjects(:b1, 'crm.orders', 'iban', 'ordered_at', now() - interval '60 days', now()),
          (SELECT count(DISTINCT contact_id) FROM crm.orders WHERE iban IS NOT NULL AND ordered_at >= now() - interval '60 days'),
          'subjects linked from a table, column and time range');
SELECT count(*) AS linked FROM gdpr.breach_affected WHERE breach_id = :b1 \gset
SELECT throws_ok(format('SELECT gdpr.link_breach_subject_ids(%s, ARRAY[%L])', :b1, '999999'), 'P0002', NULL,
                 'explicit ids must exist');
SELECT is(gdpr.link_breach_subject_ids(:b1, ARRAY['1', '2', '1']), (2 - (SELECT count(*) FROM gdpr.breach_affected
                                                                       WHERE breach_id = :b1 AND subject_id IN ('1', '2')))::bigint,
          'and by id, each once');
SELECT is((SELECT count(*) FROM gdpr.breach_subjects(:b1)), :linked + 2 - (SELECT count(*) FROM (VALUES ('1'), ('2')) v(i)
            WHERE i IN (SELECT contact_id::text FROM crm.orders WHERE iban IS NOT NULL AND ordered_at >= now() - interval '60 days')),
          'the Art. 34 list');
SELECT is((SELECT contact ->> 'email' FROM gdpr.breach_subjects(:b1) WHERE subject_id = '1'),
          (SELECT email FROM crm.contacts WHERE id = 1), 'with each person''s contact data');
SELECT throws_ok(format('SELECT gdpr.assess_breach(%s, %L, ARRAY[%L], ARRAY[%L], %L, %L)', :b1, 'severe', 'confidentiality',
                        'contact', 'phishing', 'wiped'), '22023', NULL, 'an unknown risk level');
SELECT throws_ok(format('SELECT gdpr.assess_breach(%s, %L, ARRAY[%L], ARRAY[%L], %L, %L)', :b1, 'high', 'theft',
                        'contact', 'phishing', 'wiped'), '22023', NULL, 'an unknown nature');
SELECT throws_ok(format('SELECT gdpr.assess_breach(%s, %L, ARRAY[%L], ARRAY[%L], %L, %L)', :b1, 'high', 'confidentiality',
                        'contact', ' ', 'wiped'), '22004', NULL, 'the likely consequences are required');
SELECT throws_ok(format('SELECT gdpr.assess_breach(%s, %L, ARRAY[%L], ARRAY[%L], %L, %L, occurred_at => now())', :b1, 'high',
                        'confidentiality', 'contact', 'phishing', 'wiped'), '22023', NULL, 'it cannot occur after awareness');
SELECT lives_ok(format('SELECT gdpr.assess_breach(%s, %L, ARRAY[%L], ARRAY[%L, %L], %L, %L, approx_records => 900,
                                                  occurred_at => now() - interval ''4 days'')',
                       :b1, 'high', 'confidentiality', 'contact', 'financial', 'Phishing and fraudulent direct debits',
                       'Laptop wiped remotely'), 'assess it (Art. 33(3))');
SELECT is((SELECT approx_subjects FROM gdpr.breach_register WHERE id = :b1), (SELECT count(*) FROM gdpr.breach_affected WHERE breach_id = :b1),
          'the number of subjects defaults to those linked');
SELECT is((SELECT state || '/' || inform_subjects FROM gdpr.breach_register WHERE id = :b1), 'overdue/true',
          'past 72 hours and high risk: overdue, the people must be told');
SELECT ok(gdpr.breach_notification(:b1) LIKE '%Nature de la violation : atteinte à la confidentialité%Motifs du retard%',
          'the French draft for the authority, with the reasons for the delay to give');
SELECT ok(gdpr.breach_notification(:b1, 'en') LIKE E'%Data protection officer: Claire Martin, +33 1 23 45 67 89%\n3. Likely consequences: Phishing%',
          'the English draft');
SELECT ok(gdpr.breach_notification(:b1, 'fr', 'subjects') LIKE 'Objet : violation de vos données personnelles%',
          'the draft for the people affected');
SELECT throws_ok(format('SELECT gdpr.breach_notification(%s, %L)', :b1, 'de'), '22023', NULL, 'an unknown language');
SELECT throws_ok(format('SELECT gdpr.close_breach(%s, %L, NULL, now() - interval ''1 hour'', %L)', :b1, 'notified', 'CNIL-1'),
                 '22023', NULL, 'a notification after 72 hours is not "notified"');
SELECT throws_ok(format('SELECT gdpr.close_breach(%s, %L, NULL, now() - interval ''1 hour'', %L)', :b1, 'notified late', 'CNIL-1'),
                 '22004', NULL, 'a late notification needs its reasons');
SELECT throws_ok(format('SELECT gdpr.close_breach(%s, %L, %L)', :b1, 'not notifiable', 'minor'), '22023', NULL,
                 'a high-risk breach is notifiable');
SELECT lives_ok(format('SELECT gdpr.close_breach(%s, %L, %L, now() - interval ''1 hour'', %L)', :b1, 'notified late',
                       'extent known only after forensic analysis', 'CNIL-2026-1234'), 'notified late, with the reasons');
SELECT is((SELECT state || '/' || reference FROM gdpr.breach_register WHERE id = :b1), 'notified late/CNIL-2026-1234',
          'the register keeps the outcome');
SELECT throws_ok(format('SELECT gdpr.assess_breach(%s, %L, ARRAY[%L], ARRAY[%L], %L, %L)', :b1, 'high', 'integrity',
                        'contact', 'x', 'y'), '55000', NULL, 'a closed breach is not changed');
SELECT is(gdpr.mark_breach_subjects_informed(:b1), (SELECT count(*) FROM gdpr.breach_affected WHERE breach_id = :b1),
          'the people are informed (Art. 34)');
SELECT is((SELECT informed_subjects = linked_subjects FROM gdpr.breach_register WHERE id = :b1), true, 'and the register shows it');

SELECT gdpr.report_breach('E-mail sent to the wrong customer, attachment encrypted', now() - interval '100 hours') AS b2 \gset
SELECT gdpr.assess_breach(:b2, 'unlikely', ARRAY['confidentiality'], ARRAY['contact'], 'None: the attachment is encrypted',
                          'The recipient deleted the e-mail');
SELECT throws_ok(format('SELECT gdpr.close_breach(%s, %L)', :b2, 'not notifiable'), '22004', NULL,
                 'not notifiable needs the reason');
SELECT gdpr.close_breach(:b2, 'not notifiable', 'Attachment encrypted, key not disclosed');
SELECT is((SELECT state FROM gdpr.breach_register WHERE id = :b2), 'not notifiable',
          'a minor incident is closed, not overdue forever');
SELECT is((SELECT state || '/' || late FROM gdpr.breaches_due WHERE id = :b2), 'not notifiable/false',
          'and breaches_due no longer calls it overdue');

-------------------------------------------------------------- requests
SELECT gdpr.open_request('40', 'access', now() - interval '25 days') AS r40 \gset
SELECT is((SELECT reminded_at IS NOT NULL FROM gdpr.requests WHERE id = :r40), true,
          'a request opened within 7 days of its deadline is announced at once');
SELECT is((SELECT state || '/' || identity_verified FROM gdpr.requests_due_soon WHERE id = :r40), 'due soon/false',
          'the reminder view');
SELECT throws_ok(format('SELECT gdpr.export_subject(%L, request_id => %s)', '40', :r40), '55000', NULL,
                 'no export for an unverified requester');
SELECT is((SELECT closed_at FROM gdpr.requests WHERE id = :r40), NULL, 'the request stays open');
SELECT throws_ok(format('SELECT gdpr.verify_identity(%s, %L)', :r40, 'gut_feeling'), '22023', NULL, 'an unknown method');
SELECT throws_ok(format('SELECT gdpr.verify_identity(%s, %L, now() - interval ''30 days'')', :r40, 'identity_document'),
                 '22023', NULL, 'verified before it was received');
SELECT throws_ok(format('SELECT gdpr.set_requester_contact(%s, %L)', :r40, 'by pigeon'), '22023', NULL, 'a malformed contact');
SELECT gdpr.set_requester_contact(:r40, 'requester@example.org');
SELECT gdpr.verify_identity(:r40, 'identity_document');
SELECT ok(gdpr.export_subject('40', request_id => :r40) ? 'data', 'once verified, the export runs');
SELECT is((SELECT outcome || '/' || verification_method FROM gdpr.requests WHERE id = :r40), 'fulfilled/identity_document',
          'and answers the request');
SELECT gdpr.open_request('41', 'erasure') AS r41 \gset
SELECT throws_ok(format('SELECT gdpr.erase_subject(%L, %s)', '41', :r41), '55000', NULL, 'no erasure for an unverified requester');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 41), 1::bigint, 'nothing is erased');

-- Per-person recipients: those of the purposes his data serves, and exports.
SELECT ok(NOT EXISTS (SELECT FROM gdpr.subject_recipients('40') WHERE purpose = 'newsletter'),
          'no newsletter recipient for someone who never consented');
SELECT gdpr.grant_consent('40', 'newsletter', 'web', '{"ip": "203.0.113.9", "user_agent": "UA", "form": "f1", "notice_version": 1}');
SELECT is((SELECT array_agg(recipient ORDER BY recipient) FROM gdpr.subject_recipients('40') WHERE purpose = 'newsletter'),
          ARRAY['Brevo', 'Mailchimp (Intuit)'], 'after his consent, the newsletter''s recipients');
SELECT gdpr.flush_access_log();
SELECT is((SELECT count(*) FROM gdpr.subject_recipients('40') WHERE source = 'access log'), 1::bigint,
          'his export, from the access log');
SELECT is((SELECT count(*) FROM gdpr.request_recipients(:r40)), (SELECT count(*) FROM gdpr.subject_recipients('40')),
          'a request''s recipients are its subject''s');

-- After an erasure, the registers no longer name him.
SELECT gdpr.link_breach_subject_ids(gdpr.report_breach('test'), ARRAY['41']);
SELECT gdpr.set_requester_contact(:r41, 'someone@example.org');
SELECT gdpr.verify_identity(:r41, 'postal_letter');
SELECT gdpr.erase_subject('41', :r41);
SELECT is((SELECT count(*) FROM gdpr.breach_affected WHERE subject_id = '41'), 0::bigint, 'his breach links are gone');
SELECT is((SELECT requester_contact FROM gdpr.requests WHERE id = :r41), NULL, 'his contact is cleared');

-------------------------------------------------------------- data quality
SELECT problem_rows AS bad_emails FROM gdpr.data_quality() WHERE col = 'email' AND check_name = 'invalid email' \gset
UPDATE crm.contacts SET email = 'not-an-email' WHERE id = 50;
UPDATE crm.contacts SET postcode = '7500' WHERE id = 51;
UPDATE crm.contacts SET email = upper(email) || ' ' WHERE id = 53;
UPDATE crm.contacts SET email = (SELECT lower(btrim(email)) FROM crm.contacts WHERE id = 53) WHERE id = 52;
UPDATE crm.contacts SET phone = '+33 6 12' WHERE id = 54;
SELECT is((SELECT problem_rows FROM gdpr.data_quality() WHERE col = 'email' AND check_name = 'invalid email'),
          :bad_emails + 2::bigint, 'a malformed e-mail (and one with a trailing blank) is counted');
SELECT is((SELECT problem_rows FROM gdpr.data_quality() WHERE col = 'postcode'), 1::bigint, 'a French postcode of 4 digits');
SELECT is((SELECT problem_rows FROM gdpr.data_quality() WHERE col = 'phone' AND check_name = 'invalid phone'), 1::bigint,
          'an impossible phone number');
SELECT is((SELECT problem_rows FROM gdpr.data_quality() WHERE col = 'email' AND check_name = 'duplicate email'), 2::bigint,
          'a duplicate by normalised e-mail');
SELECT is((SELECT problem_rows FROM gdpr.data_quality() WHERE check_name = 'inactive beyond 3 years'),
          (SELECT count(*) FROM crm.contacts WHERE last_contact_at < now() - interval '3 years'), 'idle records');
SELECT is((SELECT sample_values FROM gdpr.data_quality(true) WHERE col = 'postcode'), ARRAY['7500'],
          'gdpr_admin sees samples');
SET ROLE crm_gdpr_t_auditor;
SELECT is((SELECT count(*) FROM gdpr.data_quality() WHERE sample_values IS NOT NULL), 0::bigint, 'the auditor sees counts only');
SELECT throws_ok('SELECT * FROM gdpr.data_quality(true)', '42501', NULL, 'and may not ask for samples');
RESET ROLE;
SELECT ok(gdpr.valid_phone('+33 6 12 34 56 78') AND gdpr.valid_phone('06.12.34.56.78') AND NOT gdpr.valid_phone('06 12 34')
          AND gdpr.valid_postcode('1000', 'BE') AND NOT gdpr.valid_postcode('1000', 'FR') AND gdpr.valid_email('a.b@example.fr')
          AND NOT gdpr.valid_email('a..b@example.fr'), 'the validators');

SELECT throws_ok($$SELECT gdpr.set_validation('crm.contacts', 'email', 'email', 'ignore')$$, '22023', NULL, 'an unknown mode');
SELECT throws_ok($$SELECT gdpr.set_validation('crm.contacts', 'notes', 'email')$$, '42704', NULL,
                 'only classified contact columns');
SELECT gdpr.set_validation('crm.contacts', 'email', 'email');
SELECT throws_ok($$INSERT INTO crm.contacts (first_name, email) VALUES ('X', 'not-an-email')$$, '23514', NULL,
                 'refuse: a malformed e-mail is not written');
SELECT lives_ok($$INSERT INTO crm.contacts (first_name, email) VALUES ('X', 'x@example.fr')$$, 'a good one is');
SELECT gdpr.set_validation('crm.contacts', 'postcode', 'postcode', 'flag');
SET client_min_messages = error;
SELECT lives_ok($$UPDATE crm.contacts SET postcode = '123' WHERE id = 60$$, 'flag: written with a warning');
RESET client_min_messages;
SELECT gdpr.set_validation('crm.contacts', 'email', NULL, 'off');
SELECT lives_ok($$UPDATE crm.contacts SET email = 'still-not-an-email' WHERE id = 61$$, 'off: the check is gone');

-------------------------------------------------------------- report
SET ROLE crm_gdpr_t_auditor;
SELECT gdpr.compliance_report() AS html \gset
SELECT gdpr.compliance_report('markdown') AS md \gset
RESET ROLE;
SELECT ok(:'html' LIKE '<!DOCTYPE html>%<svg %</html>' || E'\n', 'the auditor gets an HTML document with SVG charts');
SELECT ok(:'html' NOT LIKE '%<script%' AND :'html' NOT LIKE '%src=%' AND :'html' NOT LIKE '%href=%',
          'self-contained: no script, no external asset');
SELECT is((SELECT count(*) FROM regexp_matches(:'html', '<section id="(summary|register|processors|consent|retention|requests|breaches|dpia|access-log|quality)">', 'g')),
          10::bigint, 'every section');
SELECT ok(gdpr.verify_report(:'html') AND gdpr.verify_report(:'md'), 'the digests match');
SELECT ok(NOT gdpr.verify_report(replace(:'html', 'Exemple SAS', 'Example Ltd')), 'a changed report fails its digest');
SELECT ok(:'md' LIKE E'# GDPR compliance report\n%## Personal data breaches (Art. 33, 34)%notified late%', 'the Markdown variant');
SELECT throws_ok($$SELECT gdpr.compliance_report('pdf')$$, '22023', NULL, 'an unknown format');
SELECT ok(position((SELECT email FROM crm.contacts WHERE id = 1) IN :'html') = 0, 'no personal data in the report');

SELECT * FROM finish();
ROLLBACK;
