-- Demo: the access log — who read or changed a person's data, when and why,
-- the intern's mass export stopped, and the log's tamper evidence.
\set QUIET on
\pset footer off
\set VERBOSITY default
\set SHOW_CONTEXT never
\echo
\echo '=== Access log ==============================================================='
SELECT (array_agg(id ORDER BY id))[20] AS c FROM crm.contacts \gset
\echo 'The application declares its purpose, reads a customer and changes his phone number:'
SET crm_gdpr.purpose = 'customer_management';
SET application_name = 'crm-web';
SELECT first_name, last_name, phone FROM crm.contacts WHERE id = :c;
UPDATE crm.contacts SET phone = '+33 6 12 34 56 78' WHERE id = :c;
RESET application_name;
SELECT gdpr.flush_access_log() AS written \gset
\echo
\echo 'The DPO asks who read or changed his data (columns, never values; he is named by a keyed pseudonym):'
SELECT at::time(0) AS at, operation, role_name, application_name, purpose, table_name, columns
  FROM gdpr.access_history(:'c');
\echo
\echo 'An intern with a read-only account tries to export the whole customer base:'
CREATE ROLE demo_intern;
GRANT USAGE ON SCHEMA crm TO demo_intern;
GRANT SELECT ON crm.contacts TO demo_intern;
SET crm_gdpr.max_rows_per_query = 100;
SET ROLE demo_intern;
\set ON_ERROR_STOP off
SELECT email FROM crm.contacts;
\set ON_ERROR_STOP on
RESET ROLE;
RESET crm_gdpr.max_rows_per_query;
SELECT gdpr.flush_access_log() AS written \gset
SELECT role_name, table_name, columns, refused FROM gdpr.access_violations;
DROP OWNED BY demo_intern;
DROP ROLE demo_intern;
\echo
\echo 'Every row carries a keyed MAC; sealed blocks are hash-chained. Verify:'
SELECT pg_sleep(1.1) \gset
SELECT gdpr.seal_access_log() AS sealed \gset
SELECT * FROM gdpr.verify_access_log();
\echo 'Someone with superuser rights edits a row behind the extension''s back...'
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log SET role_name = 'nobody' WHERE id = (SELECT min(id) FROM gdpr.access_log);
SELECT * FROM gdpr.verify_access_log();
ROLLBACK;
\echo '...and the append-only log refuses everyone else, its owner included:'
\set ON_ERROR_STOP off
DELETE FROM gdpr.access_log;
\set ON_ERROR_STOP on
