-- Who may do what in schema gdpr: PUBLIC nothing, the auditor reads, the admin manages.
BEGIN;
SELECT plan(25);

CREATE ROLE crm_gdpr_t_app NOLOGIN;
CREATE ROLE crm_gdpr_t_auditor NOLOGIN IN ROLE gdpr_auditor;
CREATE ROLE crm_gdpr_t_admin NOLOGIN IN ROLE gdpr_admin;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_app, crm_gdpr_t_admin, crm_gdpr_t_auditor;

SELECT ok(NOT has_schema_privilege('crm_gdpr_t_app', 'gdpr', 'USAGE'), 'PUBLIC cannot use schema gdpr');
-- But the gdpr_restriction policy's function: PostgreSQL checks EXECUTE on a
-- policy's functions for whoever reads the table (restriction_reads.c).
SELECT is((SELECT array_agg(DISTINCT proname::text) FROM pg_proc WHERE pronamespace = 'gdpr'::regnamespace
            AND has_function_privilege('crm_gdpr_t_app', oid, 'EXECUTE')), ARRAY['restriction_visible'],
          'PUBLIC can execute no function of gdpr but the restriction policy''s');
SELECT is((SELECT count(*) FROM pg_class WHERE relnamespace = 'gdpr'::regnamespace AND relkind IN ('r', 'v', 'p', 'S')
            AND (has_table_privilege('crm_gdpr_t_app', oid, 'SELECT')
                 OR has_table_privilege('crm_gdpr_t_app', oid, 'INSERT'))), 0::bigint,
          'PUBLIC can read or write no table or view of gdpr');
SELECT is((SELECT count(*) FROM pg_class WHERE relnamespace = 'gdpr'::regnamespace AND relkind IN ('r', 'p')
            AND (has_table_privilege('crm_gdpr_t_auditor', oid, 'INSERT')
                 OR has_table_privilege('crm_gdpr_t_auditor', oid, 'UPDATE')
                 OR has_table_privilege('crm_gdpr_t_auditor', oid, 'DELETE')
                 OR has_table_privilege('crm_gdpr_t_auditor', oid, 'TRUNCATE'))), 0::bigint,
          'the auditor can write no table of gdpr');
SELECT ok(has_table_privilege('crm_gdpr_t_auditor', 'gdpr.personal_data', 'SELECT')
          AND has_table_privilege('crm_gdpr_t_auditor', 'gdpr.processing_register', 'SELECT')
          AND has_table_privilege('crm_gdpr_t_auditor', 'gdpr.registry_changes', 'SELECT'),
          'the auditor reads the registry views');
SELECT is((SELECT count(*) FROM pg_proc WHERE pronamespace = 'gdpr'::regnamespace AND prosecdef AND provolatile = 'v'
            AND has_function_privilege('crm_gdpr_t_auditor', oid, 'EXECUTE')
            AND prorettype <> 'event_trigger'::regtype AND proname NOT LIKE 'verify%'
            AND proname NOT IN ('access_history')), 0::bigint,
          'the auditor can call no SECURITY DEFINER function that writes');
SELECT is((SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc
            WHERE pronamespace = 'gdpr'::regnamespace AND prosecdef
              AND NOT EXISTS (SELECT FROM unnest(proconfig) c WHERE c LIKE 'search_path=%')),
          NULL, 'every SECURITY DEFINER function sets search_path');
SELECT is((SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc
            WHERE pronamespace = 'gdpr'::regnamespace AND prosecdef
              AND NOT EXISTS (SELECT FROM unnest(proconfig) c WHERE c = 'search_path=pg_catalog, pg_temp')),
          NULL, 'the search_path of SECURITY DEFINER functions is pg_catalog, pg_temp');

-- What each role may do, exactly (doc/applications.md, doc/auditors.md).
CREATE ROLE crm_gdpr_t_app_only NOLOGIN IN ROLE gdpr_app;
SELECT is((SELECT array_agg(DISTINCT proname::text ORDER BY proname::text) FROM pg_proc
            WHERE pronamespace = 'gdpr'::regnamespace AND has_function_privilege('crm_gdpr_t_app_only', oid, 'EXECUTE')),
          ARRAY['confirm_consent', 'consent_channels', 'consent_events', 'contactable', 'grant_consent', 'has_consent',
                'may_process', 'object', 'proof_keys', 'record_information', 'restriction_visible', 'withdraw_consent'],
          'gdpr_app executes the consent functions and nothing else');
SELECT is((SELECT array_agg(relname::text ORDER BY relname::text) FROM pg_class
            WHERE relnamespace = 'gdpr'::regnamespace AND has_table_privilege('crm_gdpr_t_auditor', oid, 'SELECT')),
          ARRAY['access_log', 'access_log_checkpoints', 'access_log_losses', 'access_log_retention', 'access_log_seals', 'access_log_status',
                'access_violations', 'breach_register', 'breaches', 'breaches_due', 'consent_log',
                'consent_proof_archive', 'consent_status', 'controller', 'departed_subjects',
                'dpia_register', 'dpias', 'erasures', 'holds', 'holds_in_force', 'log_queue_alarms', 'mass_read_alarms',
                'no_basis_retention', 'no_legal_basis', 'out_of_scope_tables', 'personal_columns',
                'personal_data', 'processing_register', 'purge_history', 'purpose_notices', 'purposes',
                'read_volume', 'recipients', 'registered_tables', 'registry_changes', 'requests',
                'requests_due', 'requests_due_soon', 'restriction_read_optouts', 'restriction_violations', 'restrictions', 'retention_policies',
                'retention_status', 'schema_template_drift', 'schema_templates', 'subject_categories',
                'subject_links', 'subject_tables', 'suppression_flags', 'suppressions', 'tenants',
                'unclassified_columns', 'validations'],
          'gdpr_auditor reads the registry, the ledgers, the access log and the views, and nothing else (no keys, no journal)');

SET LOCAL ROLE crm_gdpr_t_app;
SELECT throws_ok($$SELECT gdpr.register_subject_table('crm.contacts', 'id')$$, '42501', NULL,
                 'an application role cannot register tables');
SELECT throws_ok($$SELECT * FROM gdpr.personal_data$$, '42501', NULL,
                 'an application role cannot read the registry');
RESET ROLE;

SET LOCAL ROLE crm_gdpr_t_auditor;
SELECT throws_ok($$SELECT gdpr.define_purpose('x', 'x', 'consent')$$, '42501', NULL,
                 'the auditor cannot define purposes');
SELECT throws_ok($$INSERT INTO gdpr.purposes VALUES ('x', 'x', 'consent')$$, '42501', NULL,
                 'the auditor cannot write the registry tables');
SELECT lives_ok($$SELECT * FROM gdpr.processing_register$$, 'the auditor reads the Art. 30 register');
SELECT throws_ok($$SELECT gdpr.decrypt(gdpr.encrypt('secret'))$$, '42501', NULL, 'the auditor cannot decrypt');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_app;
SELECT throws_ok($$SELECT gdpr.decrypt('\x00'::bytea)$$, '42501', NULL, 'an application role cannot decrypt');
RESET ROLE;

CREATE ROLE crm_gdpr_t_appuser NOLOGIN IN ROLE gdpr_app;
SELECT gdpr.register_subject_table('crm.contacts', 'id');
SELECT gdpr.define_purpose('letters', 'Letters', 'consent', 'I want the letters.');
SET LOCAL ROLE crm_gdpr_t_appuser;
SELECT throws_ok($$SELECT gdpr.may_process('3', 'letters')$$, '42501', NULL,
                 'gdpr_app without SELECT on the subject table cannot even ask whether he exists');
RESET ROLE;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_appuser;
GRANT SELECT ON crm.contacts TO crm_gdpr_t_appuser;
SET LOCAL ROLE crm_gdpr_t_appuser;
SELECT lives_ok($$SELECT gdpr.grant_consent('3', 'letters', 'api', '{"client": "crm"}'); SELECT gdpr.may_process('3', 'letters')$$,
                'gdpr_app records consent and asks may_process');
SELECT throws_ok($$SELECT gdpr.erase_subject('3')$$, '42501', NULL, 'gdpr_app cannot erase');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_auditor;
SELECT throws_ok($$SELECT gdpr.grant_consent('3', 'letters', 'api', '{"client": "crm"}')$$, '42501', NULL,
                 'the auditor cannot record consent');
RESET ROLE;

SET LOCAL ROLE crm_gdpr_t_admin;
SELECT throws_ok($$SELECT gdpr.register_subject_table('crm.contacts', 'id')$$, '42501', NULL,
                 'the admin cannot register a table it does not own');
RESET ROLE;
CREATE ROLE crm_gdpr_t_owner NOLOGIN;
ALTER TABLE crm.contacts OWNER TO crm_gdpr_t_owner;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_owner;
GRANT crm_gdpr_t_owner TO crm_gdpr_t_admin;
SET LOCAL ROLE crm_gdpr_t_admin;
SELECT lives_ok($$SELECT gdpr.register_subject_table('crm.contacts', 'id');
                  SELECT gdpr.define_purpose('support', 'Customer support', 'contract');
                  SELECT gdpr.classify('crm.contacts', 'email', 'contact', 'support', 'contract')$$,
                'the admin registers and classifies a table whose owner''s rights it has');
SELECT throws_ok($$INSERT INTO gdpr.purposes VALUES ('y', 'y', 'consent')$$, '42501', NULL,
                 'the admin writes the registry only through its functions');
RESET ROLE;
SELECT is((SELECT registered_by FROM gdpr.subject_tables WHERE tbl = 'crm.contacts'::regclass),
          session_user::name, 'the registry records the session user');

SELECT * FROM finish();
ROLLBACK;
