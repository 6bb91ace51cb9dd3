-- The access log cannot be switched off by DDL (issue 18.4): the triggers the
-- extension keeps on registered tables cannot be dropped, renamed or disabled
-- by anyone but the extension, and DDL that can make code run on a registered
-- table's rows is recorded.  ALTER TABLE on other tables is untouched.
BEGIN;
SELECT plan(20);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
CREATE ROLE crm_gdpr_t_owner NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA crm TO crm_gdpr_t_owner;
ALTER TABLE crm.contacts OWNER TO crm_gdpr_t_owner;
ALTER TABLE crm.companies OWNER TO crm_gdpr_t_owner;
CREATE FUNCTION crm.lower_email(text) RETURNS text LANGUAGE sql IMMUTABLE RETURN lower($1);
ALTER FUNCTION crm.lower_email(text) OWNER TO crm_gdpr_t_owner;

SET LOCAL ROLE crm_gdpr_t_owner;
SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE TRIGGER gdpr_log_update$$, '42501', NULL,
                 'the table owner cannot disable a log trigger');
SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE TRIGGER ALL$$, '42501', NULL, 'nor all triggers at once (the system''s refuse too)');
SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE TRIGGER USER$$, '42501', NULL, 'nor the user triggers');
SELECT throws_ok($$ALTER TABLE crm.contacts ENABLE REPLICA TRIGGER gdpr_log_insert$$, '42501', NULL,
                 'nor make one fire on replicas only');
SELECT throws_ok($$ALTER TRIGGER gdpr_log_insert ON crm.contacts RENAME TO x$$, '42501', NULL, 'nor rename one');
SELECT throws_ok($$DROP TRIGGER gdpr_log_delete ON crm.contacts$$, '42501', NULL, 'nor drop one');
SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE TRIGGER gdpr_log_update$$, '42501', NULL,
                 'nor disable the trigger that logs updates and refuses those of restricted rows');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crm.contacts'::regclass AND tgname LIKE 'gdpr\_%'
            AND tgname <> 'gdpr_subject_departed'
            AND tgenabled = 'O'), 4::bigint, 'the four triggers are all there and enabled');

-- The UPDATE, DELETE and TRUNCATE triggers read the subject column in the
-- INSERT trigger's argument: one of the owner's own under that name would
-- steer what they log.
CREATE FUNCTION crm.nothing() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
SELECT throws_ok($$CREATE OR REPLACE TRIGGER gdpr_log_insert AFTER INSERT ON crm.contacts
                    FOR EACH STATEMENT EXECUTE FUNCTION crm.nothing('email')$$, '42501', NULL,
                 'nor replace one with a trigger of his own under its name');
-- An inheritance child of a registered table carries the triggers too, guarded as the table's.
CREATE TABLE crm.contacts_archive () INHERITS (crm.contacts);
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crm.contacts_archive'::regclass AND tgname LIKE 'gdpr\_log\_%'),
          4::bigint, 'a child table he makes gets the log triggers');
SELECT throws_ok($$DROP TRIGGER gdpr_log_insert ON crm.contacts_archive$$, '42501', NULL,
                 'nor drop those of an inheritance child');
SELECT throws_ok($$ALTER TABLE crm.contacts_archive DISABLE TRIGGER gdpr_log_update$$, '42501', NULL,
                 'nor disable them');
SELECT lives_ok($$ALTER TABLE crm.companies DISABLE TRIGGER USER; ALTER TABLE crm.companies ENABLE TRIGGER USER$$,
                'an unregistered table is none of the extension''s business');
SELECT lives_ok($$CREATE INDEX contacts_lower_email ON crm.contacts (crm.lower_email(email))$$,
                'the owner may index his table with an expression');
RESET ROLE;
SELECT is((SELECT detail FROM gdpr.registry_changes WHERE event = 'ddl on a registered table' AND object = 'crm.contacts'
            ORDER BY id DESC LIMIT 1), 'CREATE INDEX by crm_gdpr_t_owner', 'and it is recorded, naming him');
SELECT is((SELECT count(*) FROM gdpr.registry_changes WHERE event = 'ddl on a registered table' AND object = 'crm.companies'),
          0::bigint, 'DDL on unregistered tables is not recorded');

SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE TRIGGER gdpr_log_update$$, '42501', NULL,
                 'a superuser is refused too (he must unregister the table)');
SELECT lives_ok($$SELECT gdpr.unregister_table('crm.marketing_events')$$, 'the extension drops its own triggers');
SELECT lives_ok($$SELECT gdpr.register_table('crm.marketing_events')$$, 'and creates them again');
SELECT lives_ok($$ALTER TABLE crm.contacts ADD COLUMN nickname text; ALTER TABLE crm.contacts DROP COLUMN nickname$$,
                'other ALTER TABLE on a registered table works');

SELECT * FROM finish();
ROLLBACK;
