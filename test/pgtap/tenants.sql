-- Tenants in one database (issue 19.4): a template schema registered once,
-- 50 workspace schemas created after it are registered like it, with their
-- log triggers; drift from the template is shown.
BEGIN;
SELECT plan(12);

CREATE SCHEMA tpl;
CREATE TABLE tpl.person (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "nameFirstName" text, "emailsPrimaryEmail" text,
                         "updatedAt" timestamptz NOT NULL DEFAULT now());
CREATE TABLE tpl.note (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "personId" uuid REFERENCES tpl.person ON DELETE CASCADE,
                       body text, "createdAt" timestamptz NOT NULL DEFAULT now());
SET client_min_messages = warning;
SELECT gdpr.register_subject_table('tpl.person', 'id');
SELECT gdpr.register_table('tpl.note');
SELECT gdpr.define_purpose('crm_ws', 'Workspace CRM', 'contract');
SELECT gdpr.classify('tpl.person', 'emailsPrimaryEmail', 'contact', 'crm_ws', 'contract', 'contact the person');
SELECT gdpr.classify('tpl.note', 'body', 'free_text', 'crm_ws', 'contract', 'notes about the deal');
SELECT gdpr.set_retention('tpl.note', NULL, '3 years', 'createdAt', 'delete');

CREATE SCHEMA workspace_early;
CREATE TABLE workspace_early.person (LIKE tpl.person INCLUDING ALL);
SELECT is(gdpr.register_schema_template('^workspace_', 'tpl'), 1, 'the template applies at once to a schema already there');

-- 50 workspaces created afterwards, as Twenty does at run time.
DO $$
BEGIN
  FOR i IN 1..50 LOOP
    EXECUTE format('CREATE SCHEMA workspace_%s', i);
    EXECUTE format('CREATE TABLE workspace_%s.person (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "nameFirstName" text,
                      "emailsPrimaryEmail" text, "updatedAt" timestamptz NOT NULL DEFAULT now())', i);
    EXECUTE format('CREATE TABLE workspace_%1$s.note (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                      "personId" uuid REFERENCES workspace_%1$s.person ON DELETE CASCADE, body text,
                      "createdAt" timestamptz NOT NULL DEFAULT now())', i);
  END LOOP;
END $$;
RESET client_min_messages;
SELECT is((SELECT count(*) FROM gdpr.subject_tables WHERE tbl::text LIKE 'workspace\_%'), 51::bigint,
          'every workspace''s person table is a subject table');
SELECT is((SELECT count(*) FROM gdpr.registered_tables WHERE tbl::text LIKE 'workspace\_%.note'), 50::bigint,
          'every workspace''s note table is registered');
SELECT is((SELECT count(DISTINCT subject_table) FROM gdpr.registered_tables WHERE tbl::text LIKE 'workspace\_%.note'), 50::bigint,
          'each under its own workspace''s person table');
SELECT is((SELECT count(*) FROM gdpr.personal_columns WHERE tbl::text LIKE 'workspace\_%'), 101::bigint,
          'their columns are classified like the template''s');
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl::text LIKE 'workspace\_%'), 50::bigint,
          'with the template''s retention policies');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'workspace_37.person'::regclass AND tgname LIKE 'gdpr\_log\_%'), 4::bigint,
          'and the access log''s triggers');
INSERT INTO workspace_37.person ("nameFirstName", "emailsPrimaryEmail") VALUES ('Ana', 'ana@example.org');
SELECT lives_ok($$SELECT gdpr.export_subject((SELECT id::text FROM workspace_37.person), 'workspace_37.person')$$,
                'a workspace''s person can be exported');
SELECT is((SELECT count(*) FROM gdpr.schema_template_drift), 1::bigint, 'one drift: the early workspace has no note table');
SELECT is((SELECT drift FROM gdpr.schema_template_drift), 'table missing', 'said as such');
SELECT throws_ok($$SELECT gdpr.register_schema_template('^x_', 'no_such_schema')$$, '3F000', NULL, 'an unknown template schema');
SELECT throws_ok($$SELECT gdpr.register_schema_template('(', 'tpl')$$, '2201B', NULL, 'a bad pattern');

SELECT * FROM finish();
ROLLBACK;
