-- Demo: data subject rights — an access request answered by an export, a
-- restriction, and the clocks of requests and breaches.
\set QUIET on
\pset footer off
\set VERBOSITY default
\set SHOW_CONTEXT never
\echo
\echo '=== Rights of the data subject ==============================================='
SELECT (array_agg(id ORDER BY id))[10] AS c1, (array_agg(id ORDER BY id))[11] AS c2,
       (array_agg(id ORDER BY id))[12] AS c3, (array_agg(id ORDER BY id))[13] AS c4
  FROM crm.contacts \gset
\echo 'A contact asks for a copy of his data (Art. 15): the request starts a one-month clock.'
SELECT gdpr.open_request(:'c1', 'access', now() - interval '3 days') AS access_request \gset
SELECT id, kind, received_at::date, due_at::date, state FROM gdpr.requests_due WHERE id = :access_request;
\echo 'His identity is checked first (Art. 12(6)): without it, no export or erasure runs for the request.'
SELECT gdpr.verify_identity(:access_request, 'authenticated_account') \g /dev/null
\echo
\echo 'gdpr.export_subject answers it: his rows in every registered table, and what Art. 15 says he must be told.'
\pset format unaligned
\pset tuples_only on
-- Long arrays are shortened for the screen: the document holds every row.
SELECT jsonb_pretty(doc || jsonb_build_object('data', (SELECT jsonb_object_agg(k,
         CASE WHEN jsonb_array_length(v) > 1 THEN jsonb_build_array(v -> 0, format('... %s rows in all', jsonb_array_length(v)))
              ELSE v END) FROM jsonb_each(doc -> 'data') e(k, v)))
                        || jsonb_build_object('processing', (SELECT jsonb_agg(p - 'retention' - 'personal_data')
                                                               FROM jsonb_array_elements(doc -> 'processing') p)))
  FROM gdpr.export_subject(:'c1', request_id => :access_request) doc;
\pset format aligned
\pset tuples_only off
SELECT id, kind, outcome FROM gdpr.requests WHERE id = :access_request;

\echo
\echo 'Another contests the accuracy of his data: processing is restricted (Art. 18).'
SELECT gdpr.restrict_subject(:'c2', 'accuracy contested by the person') \g /dev/null
CREATE ROLE demo_app NOLOGIN;
GRANT USAGE ON SCHEMA crm TO demo_app;
GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO demo_app;
SET ROLE demo_app;
\echo 'The application (role demo_app) reads his row: while he is restricted, it is hidden from it'
\echo '(row-level security), and the attempt is on record for the auditor.'
SELECT count(*) AS rows_the_application_sees FROM crm.contacts WHERE id = :c2;
\echo 'It tries to update his row:'
\set ON_ERROR_STOP off
UPDATE crm.contacts SET phone = '+33 7 00 00 00 00' WHERE id = :c2;
\set ON_ERROR_STOP on
RESET ROLE;
SELECT gdpr.flush_access_log() >= 0 AS flushed \g /dev/null
SELECT role_name, table_name, rows_hidden, outcome FROM gdpr.restriction_violations
 WHERE role_name = 'demo_app' ORDER BY at;
SELECT gdpr.lift_restriction(:'c2', 'accuracy verified') \g /dev/null
DROP OWNED BY demo_app;
DROP ROLE demo_app;

\echo
\echo 'A customer asks to be forgotten (Art. 17). His invoices must be kept 10 years: they stay,'
\echo 'anonymised, with his anonymised contact row; everything else of his is deleted.'
SELECT id AS forgotten, email AS forgotten_email FROM crm.contacts c
 WHERE EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
   AND EXISTS (SELECT FROM crm.interactions i WHERE i.contact_id = c.id) ORDER BY id LIMIT 1 \gset
SELECT gdpr.open_request(:'forgotten', 'erasure') AS erasure_request \gset
SELECT gdpr.verify_identity(:erasure_request, 'identity_document') \g /dev/null
\pset format unaligned
\pset tuples_only on
SELECT jsonb_pretty(gdpr.erase_subject(:'forgotten', :erasure_request));
\pset format aligned
\pset tuples_only off
\echo 'What is left of him: the invoices, with a pseudonymised identity.'
SELECT c.id, c.first_name, c.last_name, c.email, c.birth_date, o.invoice_number, o.amount, o.iban
  FROM crm.contacts c JOIN crm.orders o ON o.contact_id = c.id WHERE c.id = :forgotten;
\echo 'The certificate (no personal data: a keyed pseudonym and a digest of the report):'
SELECT id, subject_ref, request_id, erased_at, encode(report_sha256, 'hex') AS report_sha256
  FROM gdpr.erasures WHERE request_id = :erasure_request;
\echo 'His e-mail is suppressed: an import or a mailing checks it.'
SELECT :'forgotten_email' AS email, gdpr.is_suppressed(:'forgotten_email') AS suppressed;
\echo 'A purchased file brings him back, his address in capitals: the database itself refuses the row.'
\set ON_ERROR_STOP off
INSERT INTO crm.contacts (first_name, last_name, email) VALUES ('Jean', 'Re-import', upper(:'forgotten_email'));
\set ON_ERROR_STOP on

\echo
\echo 'Requests late or due soon, with the recipients to tell (Art. 19):'
SELECT gdpr.open_request(:'c3', 'rectification', now() - interval '40 days') \g /dev/null
SELECT gdpr.open_request(:'c4', 'erasure', now() - interval '25 days') \g /dev/null
SELECT id, kind, subject_id, due_at::date, state, recipients_to_notify FROM gdpr.requests_due ORDER BY due_at;
\echo
\echo 'A breach must be notified to the authority within 72 hours (Art. 33):'
SELECT gdpr.report_breach('laptop with a CRM export stolen', now() - interval '30 hours', 1200) \g /dev/null
SELECT id, description, detected_at::timestamp(0), notify_by::timestamp(0), state, time_left FROM gdpr.breaches_due;
