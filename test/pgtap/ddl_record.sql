-- ALTER TABLE that makes code run on a registered table's rows is recorded
-- (issue 18.4): a column's new type with USING, a default, a column added
-- with a default or a generated expression, a CHECK constraint — by name of
-- the role, in registry_changes and as a DDL row of the access log.  Other
-- ALTER TABLE (a plain column, a comment) and unregistered tables are not.
BEGIN;
SELECT plan(10);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE ROLE crm_gdpr_t_owner2 NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA crm TO crm_gdpr_t_owner2;
ALTER TABLE crm.contacts OWNER TO crm_gdpr_t_owner2;
ALTER TABLE crm.companies OWNER TO crm_gdpr_t_owner2;
CREATE FUNCTION crm.leak(text) RETURNS text LANGUAGE sql IMMUTABLE RETURN $1;
ALTER FUNCTION crm.leak(text) OWNER TO crm_gdpr_t_owner2;
CREATE FUNCTION pg_temp.recorded() RETURNS text LANGUAGE sql AS
  $$SELECT detail FROM gdpr.registry_changes WHERE event = 'ddl on a registered table' AND object = 'crm.contacts'
      ORDER BY id DESC LIMIT 1$$;
CREATE FUNCTION pg_temp.changes() RETURNS bigint LANGUAGE sql AS
  $$SELECT count(*) FROM gdpr.registry_changes WHERE event = 'ddl on a registered table'$$;

SET LOCAL ROLE crm_gdpr_t_owner2;
ALTER TABLE crm.contacts ALTER COLUMN email TYPE text USING crm.leak(email);
RESET ROLE;
SELECT is(pg_temp.recorded(), 'ALTER TABLE (ALTER COLUMN TYPE) by crm_gdpr_t_owner2',
          'a column''s new type with USING is recorded, naming the table owner');
SET LOCAL ROLE crm_gdpr_t_owner2;
ALTER TABLE crm.contacts ALTER COLUMN phone SET DEFAULT crm.leak('x');
RESET ROLE;
SELECT is(pg_temp.recorded(), 'ALTER TABLE (ALTER COLUMN SET DEFAULT) by crm_gdpr_t_owner2', 'a default is recorded');
SET LOCAL ROLE crm_gdpr_t_owner2;
ALTER TABLE crm.contacts ADD COLUMN email_copy text GENERATED ALWAYS AS (crm.leak(email)) STORED;
RESET ROLE;
SELECT is(pg_temp.recorded(), 'ALTER TABLE (ADD COLUMN with an expression) by crm_gdpr_t_owner2',
          'a generated column is recorded');
SET LOCAL ROLE crm_gdpr_t_owner2;
ALTER TABLE crm.contacts ADD CONSTRAINT leak_check CHECK (crm.leak(email) IS NOT NULL OR true);
RESET ROLE;
SELECT is(pg_temp.recorded(), 'ALTER TABLE (ADD CONSTRAINT CHECK) by crm_gdpr_t_owner2', 'a CHECK constraint is recorded');
SELECT is((SELECT detail -> 'subcommands' FROM gdpr.access_log
            WHERE operation = 'DDL' AND tbl = 'crm.contacts'::regclass ORDER BY id DESC LIMIT 1),
          '["ADD CONSTRAINT CHECK"]'::jsonb, 'and logged as a DDL row of the access log');

SELECT pg_temp.changes() AS before \gset
SET LOCAL ROLE crm_gdpr_t_owner2;
ALTER TABLE crm.contacts ADD COLUMN nickname text;
ALTER TABLE crm.contacts DROP COLUMN nickname;
ALTER TABLE crm.contacts ALTER COLUMN phone DROP DEFAULT;
ALTER TABLE crm.companies ALTER COLUMN name TYPE text USING crm.leak(name);
RESET ROLE;
SELECT is(pg_temp.changes(), :before::bigint,
          'a plain column, a dropped default and an unregistered table are not recorded');
SELECT lives_ok($$SELECT gdpr.unregister_table('crm.marketing_events')$$, 'the extension''s own DDL works');
SELECT lives_ok($$SELECT gdpr.register_table('crm.marketing_events')$$, 'both ways');
SELECT is(pg_temp.changes(), :before::bigint, 'and is not recorded');
SELECT ok(NOT has_function_privilege('gdpr_app', 'gdpr._alter_table_code(pg_ddl_command)', 'EXECUTE')
          AND NOT has_function_privilege('gdpr_admin', 'gdpr._alter_table_code(pg_ddl_command)', 'EXECUTE'),
          'the reader of collected commands is the extension''s alone');

SELECT * FROM finish();
ROLLBACK;
