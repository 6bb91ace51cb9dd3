-- Demo: the DPO's registers (Art. 30 complete, breaches, requests with the
-- identity check, DPIA, data quality) and the compliance report to print.
\set QUIET on
\pset footer off
\set VERBOSITY default
\set SHOW_CONTEXT never
\echo
\echo '=== The DPO''s registers and the compliance report ============================'
\echo 'The DPO sets the controller, the processors'' contracts (Art. 28), the categories of'
\echo 'subjects, the DPIAs; records requests and breaches (test/fixtures/registers.sql).'
\o /dev/null
SET client_min_messages = error;
\i test/fixtures/registers.sql
RESET client_min_messages;
\o
\echo
\echo 'The Art. 30 register now names the controller, the DPO, the processors, and the'
\echo 'security measures really in force (read from the configuration):'
SELECT purpose, controller, dpo, processors, dpia_required, dpia_status FROM gdpr.processing_register ORDER BY purpose;
SELECT unnest(security_measures) AS "measures in force for the newsletter" FROM gdpr.processing_register
 WHERE purpose = 'newsletter';
\echo
\echo 'Impact assessments: criteria computed from the registry, plus those declared:'
SELECT purpose, criteria, required, status, lacking FROM gdpr.dpia_register ORDER BY purpose;
\echo
\echo 'An export for a requester whose identity was not checked is refused (Art. 12(6)):'
SELECT gdpr.open_request(:'s4', 'access') AS unverified \gset
\set ON_ERROR_STOP off
SELECT gdpr.export_subject(:'s4', request_id => :unverified);
\set ON_ERROR_STOP on
SELECT gdpr.verify_identity(:unverified, 'email_confirmation') \g /dev/null
SELECT gdpr.export_subject(:'s4', request_id => :unverified) ? 'data' AS "exported once verified";
\echo 'Requests due within 7 days (also sent as NOTIFY gdpr_requests for a mailer):'
SELECT id, kind, due_at::date, state, identity_verified, has_contact FROM gdpr.requests_due_soon ORDER BY due_at;
\echo 'Who received this person''s data (Art. 19), from the registry and the access log:'
SELECT recipient, role, purpose, source FROM gdpr.subject_recipients(:'s1');
\echo
\echo 'The breach register (Art. 33, 34): content, 72-hour clock, outcome with its reason:'
SELECT id, aware_at::timestamp(0), risk_level, approx_subjects, state, outcome_reason, informed_subjects
  FROM gdpr.breach_register ORDER BY id;
\echo 'The draft notification to the CNIL, generated from the register:'
\pset format unaligned
\pset tuples_only on
SELECT gdpr.breach_notification(min(id), 'fr') FROM gdpr.breach_register WHERE risk_level = 'high';
\pset format aligned
\pset tuples_only off
\echo
\echo 'Data quality: malformed e-mails and postcodes, duplicates, records idle too long:'
SELECT tbl, col, check_name, problem_rows, checked_rows FROM gdpr.data_quality() ORDER BY tbl::text, col;
\echo 'A malformed e-mail is now refused on write (gdpr.set_validation):'
\set ON_ERROR_STOP off
UPDATE crm.contacts SET email = 'jean.dupont@' WHERE id = :s1;
\set ON_ERROR_STOP on
\echo
\echo 'The report an auditor prints, signs and files: one HTML file, charts inline, dated, with'
\echo 'the SHA-256 of its content. Produced here by a member of gdpr_auditor:'
CREATE ROLE demo_auditor NOLOGIN IN ROLE gdpr_auditor;
SET ROLE demo_auditor;
SELECT format('/tmp/crm_gdpr_compliance_report_%s.html',
              to_char(now(), 'YYYYMMDD_HH24MISS')) AS report_file \gset
\pset format unaligned
\pset tuples_only on
\o :report_file
SELECT gdpr.compliance_report();
\o
\pset format aligned
\pset tuples_only off
RESET ROLE;
DROP ROLE demo_auditor;
\echo 'The compliance report is in' :report_file
