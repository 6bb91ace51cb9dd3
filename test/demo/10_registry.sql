-- Demo, part 1: declaring the CRM's personal data and reading the Art. 30 register.
\set QUIET on
\pset footer off
\echo
\echo '=== 1. Install the extension ================================================'
\echo 'CREATE EXTENSION crm_gdpr;   -- schema gdpr, roles gdpr_admin and gdpr_auditor'
CREATE EXTENSION crm_gdpr;
SELECT gdpr.preloaded() AS "loaded at server start";

\echo
\echo '=== 2. Declare where personal data lives ===================================='
\echo 'The data subjects are the rows of crm.contacts; three tables refer to them.'
\echo 'register_table follows the foreign key when no column is given.'
\echo
\echo 'The DBA declares, per column: category, purpose, legal basis (Art. 6) and why.'
\echo 'Then retention: prospects 3 years after the last contact, invoices 10 years...'
\echo 'Recipients: a transfer outside the EU/EEA needs a safeguard (SCC, adequacy...).'
\o /dev/null
\i test/fixtures/registry.sql
\o
\echo '(test/fixtures/registry.sql: 4 tables, 4 purposes, 20 classified columns, 6 policies)'
\echo
\echo 'A recipient in China without a safeguard is refused:'
\set ON_ERROR_STOP off
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT gdpr.add_recipient('Cheap SMS Ltd', 'CN', 'newsletter');
\set ON_ERROR_STOP on

\echo
\echo '=== 3. What personal data is kept, why, and for how long (gdpr.personal_data) ==='
SELECT tbl, column_name, category, purpose, legal_basis,
       retention || ' after ' || retention_from_column || ', then ' || retention_action AS retention
  FROM gdpr.personal_data ORDER BY tbl::text, column_name, purpose;

\echo
\echo '=== 4. The record of processing activities (Art. 30), one row per purpose ======'
\x on
SELECT purpose, description, legal_basis, notice_version, subject_categories, data_categories,
       recipients, transfers_outside_eea, retention, security_measures
  FROM gdpr.processing_register ORDER BY purpose;
\x off

\echo
\echo '=== 5. The registry follows the schema ======================================='
\echo 'ALTER TABLE crm.contacts RENAME COLUMN notes TO remarks;'
ALTER TABLE crm.contacts RENAME COLUMN notes TO remarks;
SELECT tbl, column_name, retention_action FROM gdpr.personal_data WHERE column_name = 'remarks';
\echo 'ALTER TABLE crm.contacts RENAME COLUMN remarks TO notes;  -- and back'
ALTER TABLE crm.contacts RENAME COLUMN remarks TO notes;
SELECT event, object, detail FROM gdpr.registry_changes ORDER BY id;
