-- Tenants in one database (issue 19.4): a template schema registered once,
-- 50 workspace schemas created after it are registered like it, with their
-- log triggers; drift from the template is shown.
BEGIN;
SELECT plan(41);

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

-- Purposes, notices and the register per tenant (issue 19.4): two
-- workspaces declare a purpose of the same name with their own notice and
-- legal basis; consents follow each workspace's purpose.
SELECT lives_ok($$SELECT gdpr.define_tenant('workspace_1'), gdpr.define_tenant('workspace_2')$$, 'two tenants, one schema each');
SELECT is(gdpr.tenant_of('workspace_1.person'), 'workspace_1', 'a table belongs to the tenant of its schema');
SELECT is(gdpr.tenant_of('tpl.person'), NULL, 'a schema of no tenant has none');
SELECT throws_ok($$SELECT gdpr.define_tenant('all_ws', '^workspace_')$$, '22023', NULL,
                 'a tenant cannot take another tenant''s schemas');
SELECT is(gdpr.define_purpose('workspace_1:newsletter', 'Workspace 1 letter', 'consent', 'Workspace 1 notice v1'), 1,
          'workspace 1 declares newsletter, on consent');
SELECT is(gdpr.define_purpose('workspace_2:newsletter', 'Workspace 2 letter', 'legitimate_interest', 'Workspace 2 notice v1'), 1,
          'workspace 2 declares newsletter too, on legitimate interest, with its own notice');
SELECT throws_ok($$SELECT gdpr.define_purpose('nobody:newsletter', 'x', 'consent')$$, '42704', NULL,
                 'a purpose of an unknown tenant is refused');
SELECT throws_ok($$SELECT gdpr.define_purpose('workspace_1:newsletter', 'Workspace 1 letter', 'contract')$$, '55000', NULL,
                 'a tenant''s purpose keeps its legal basis like any other');
SELECT lives_ok($$SELECT gdpr.set_purpose_options('workspace_1:newsletter', renewal_required => true)$$,
                'options of a tenant''s purpose by its qualified code');

INSERT INTO workspace_1.person (id, "emailsPrimaryEmail") VALUES ('11111111-1111-1111-1111-111111111111', 'a@ws1.example');
INSERT INTO workspace_2.person (id, "emailsPrimaryEmail") VALUES ('22222222-2222-2222-2222-222222222222', 'b@ws2.example');
SELECT lives_ok($$SELECT gdpr.grant_consent('11111111-1111-1111-1111-111111111111', 'newsletter', 'api',
                                            '{"client": "ws1-signup"}', 'workspace_1.person')$$,
                'a consent in workspace 1 under the unqualified code');
SELECT is((SELECT purpose FROM gdpr.consent_state WHERE subject_table = 'workspace_1.person'::regclass),
          'workspace_1:newsletter', 'is a consent to workspace 1''s purpose');
SELECT lives_ok($$SELECT gdpr.record_information('22222222-2222-2222-2222-222222222222', 'newsletter', 'api',
                                                 '{"client": "ws2-crm"}', 'workspace_2.person')$$,
                'workspace 2 informs its subject (legitimate interest)');
SELECT ok(gdpr.has_consent('11111111-1111-1111-1111-111111111111', 'newsletter', 'workspace_1.person')
          AND gdpr.may_process('22222222-2222-2222-2222-222222222222', 'newsletter', 'workspace_2.person'),
          'each subject may be processed under his workspace''s purpose');
SELECT ok(NOT gdpr.has_consent('22222222-2222-2222-2222-222222222222', 'newsletter', 'workspace_2.person'),
          'workspace 1''s consent says nothing of workspace 2''s subject');
SELECT throws_ok($$SELECT gdpr.grant_consent('11111111-1111-1111-1111-111111111111', 'workspace_2:newsletter', 'api',
                                             '{"client": "x"}', 'workspace_1.person')$$, '22023', NULL,
                 'another tenant''s purpose is refused for a subject of workspace 1');
SELECT ok(gdpr.may_process('11111111-1111-1111-1111-111111111111', 'crm_ws', 'workspace_1.person'),
          'a global purpose still serves every tenant');
SELECT is(gdpr.define_purpose('workspace_2:newsletter', 'Workspace 2 letter', 'legitimate_interest', 'Workspace 2 notice v2'), 2,
          'workspace 2 publishes a new notice');
SELECT ok(gdpr.has_consent('11111111-1111-1111-1111-111111111111', 'newsletter', 'workspace_1.person')
          AND NOT (SELECT stale FROM gdpr.consent_status WHERE subject_table = 'workspace_1.person'::regclass),
          'workspace 1''s consent stays in force and is not stale (renewal required)');
SELECT is(gdpr.define_purpose('workspace_1:newsletter', 'Workspace 1 letter', 'consent', 'Workspace 1 notice v2'), 2,
          'workspace 1 publishes a new notice');
SELECT ok(NOT gdpr.has_consent('11111111-1111-1111-1111-111111111111', 'newsletter', 'workspace_1.person'),
          'only then must its subject consent again');
SELECT lives_ok($$SELECT gdpr.classify('workspace_1.person', 'nameFirstName', 'identification', 'newsletter', 'consent', 'greeting')$$,
                'a column of workspace 1 classified under the unqualified code');
SELECT is((SELECT purpose FROM gdpr.personal_columns WHERE tbl = 'workspace_1.person'::regclass AND col = 'nameFirstName'),
          'workspace_1:newsletter', 'is classified under workspace 1''s purpose');
SELECT is((SELECT string_agg(concat_ws(' ', purpose, legal_basis, notice_version, personal_data), '; ')
             FROM gdpr.processing_register WHERE tenant = 'workspace_1'),
          'workspace_1:newsletter consent 2 {"workspace_1.person.\"nameFirstName\""}',
          'the register per tenant: workspace 1''s purpose, basis, notice and data');
SELECT is((SELECT string_agg(concat_ws(' ', purpose, legal_basis, notice_version), '; ')
             FROM gdpr.processing_register WHERE tenant = 'workspace_2'),
          'workspace_2:newsletter legitimate_interest 2', 'workspace 2''s');
SELECT ok(gdpr.compliance_report('markdown', 'workspace_1') ~ 'workspace_1:newsletter'
          AND gdpr.compliance_report('markdown', 'workspace_1') !~ 'workspace_2:newsletter'
          AND gdpr.compliance_report('markdown', 'workspace_1') ~ 'crm_ws',
          'the DPO report of a tenant: its purposes and the global ones, not another tenant''s');
SELECT throws_ok($$SELECT gdpr.compliance_report('markdown', 'nobody')$$, '42704', NULL, 'the report of an unknown tenant');

-- A workspace created later by the template, whose tenant has its own
-- purpose of the template's name: its columns are classified under it.
SET client_min_messages = warning;
SELECT gdpr.define_tenant('workspace_60');
SELECT gdpr.define_purpose('workspace_60:crm_ws', 'Workspace 60 CRM', 'legitimate_interest');
CREATE SCHEMA workspace_60;
CREATE TABLE workspace_60.person (LIKE tpl.person INCLUDING ALL);
RESET client_min_messages;
SELECT is((SELECT string_agg(purpose || ' ' || legal_basis, '; ') FROM gdpr.personal_columns
            WHERE tbl = 'workspace_60.person'::regclass),
          'workspace_60:crm_ws legitimate_interest',
                  'a template''s classification takes the tenant''s purpose of that name and its legal basis');
SELECT is((SELECT count(*) FROM gdpr.schema_template_drift WHERE schema_name = 'workspace_60' AND drift = 'column not classified'),
          0::bigint, 'and is no drift');
SELECT throws_ok($$SELECT gdpr.drop_tenant('workspace_60')$$, '2BP01', NULL, 'a tenant with purposes stays');

SELECT * FROM finish();
ROLLBACK;
