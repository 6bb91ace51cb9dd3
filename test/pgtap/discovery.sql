-- Discovery: what names and values look personal, gdpr.discover() on the
-- sample CRM, the auditor's view, the DDL warning and who may call what.
BEGIN;
SELECT plan(30);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql

-------------------------------------------------------------- values
SELECT is(gdpr.looks_like('FR76 3000 6000 0112 3456 7890 189'), 'iban', 'an IBAN with spaces and a valid checksum');
SELECT is(gdpr.looks_like('FR76 3000 6000 0112 3456 7890 188'), NULL, 'an IBAN with a wrong checksum is not one');
SELECT is((SELECT count(*) FROM crm.orders WHERE iban IS NOT NULL AND gdpr.looks_like(iban) IS DISTINCT FROM 'iban'),
          0::bigint, 'every IBAN of the sample CRM is recognised');
SELECT is(gdpr.looks_like('1 85 05 78 006 084 91'), 'nir', 'a French NIR with its key');
SELECT is(gdpr.looks_like('1 85 05 78 006 084 36'), NULL, 'a NIR with a wrong key is not one');
SELECT is(gdpr.looks_like('2 69 05 2A 006 084 ' || lpad((97 - 2690519006084 % 97)::text, 2, '0')), 'nir',
          'a Corsican NIR (2A counts as 19)');
SELECT is(gdpr.looks_like('Emma.Perso@Gmail.example'), 'email', 'an e-mail address');
SELECT is(gdpr.looks_like('["a@b.example", "c@d.example"]'), 'email', 'a jsonb array of addresses');
SELECT is(gdpr.looks_like('+33 6 12 34 56 78'), 'phone', 'an international phone number');
SELECT is(gdpr.looks_like('06.12.34.56.78'), 'phone', 'a French phone number with dots');
SELECT is(gdpr.looks_like('123456789'), NULL, 'nine digits without a leading 0 or + (a SIREN) are not a phone');
SELECT is(gdpr.looks_like('Relance facture'), NULL, 'plain text looks like nothing');

-------------------------------------------------------------- names
SELECT is(array_agg((gdpr.personal_name_hint(c)).kind ORDER BY o),
          ARRAY['email', 'email', 'phone', 'phone', 'name', 'name', 'birth', 'address', 'bank', 'bank', 'national_id',
                'ip', 'health', 'notes'],
          'English, French and camelCase names')
  FROM unnest(ARRAY['emailsPrimaryEmail', 'courriel', 'portable', 'phone_sanitized', 'prénom', 'nameLastName',
                    'date_naissance', 'adresse', 'sanitized_acc_number', 'acc_holder_name', 'numero_nir', 'ip',
                    'santé', 'bodyV2']::name[]) WITH ORDINALITY AS x(c, o);
SELECT is(array_agg((gdpr.personal_name_hint(c)).kind), ARRAY[NULL, NULL, NULL, NULL, NULL]::text[],
          'flags, derived states, keys and neutral words are not hints')
  FROM unnest(ARRAY['email_state', 'is_company', 'partner_id', 'amount', 'searchVector']::name[]) c;

-------------------------------------------------------------- discover
SELECT is((SELECT suggestion FROM gdpr.discover('crm') WHERE table_name = 'companies' AND column_name IS NULL),
          'SELECT gdpr.register_subject_table(''crm.companies'', ''id'');',
          'an unregistered table without a foreign key to a registered one: a subject table');
SELECT ok(NOT EXISTS (SELECT FROM gdpr.discover('crm') WHERE table_name = 'contacts' AND column_name = 'email'),
          'classified columns are not listed');
ALTER TABLE crm.contacts ADD COLUMN ref text, ADD COLUMN "mobilePerso" text;
UPDATE crm.contacts SET ref = '1 85 05 78 006 084 91', "mobilePerso" = '07 00 00 00 ' || lpad((id % 100)::text, 2, '0');
SELECT is((SELECT found_by FROM gdpr.discover('crm') WHERE table_name = 'contacts' AND column_name = 'ref'),
          'values (nir)', 'a NIR found by its values under a neutral name');
SELECT is((SELECT found_by || ' ' || category FROM gdpr.discover('crm') WHERE column_name = 'mobilePerso'),
          'name and values (phone) contact', 'a phone found by its name and by its values');
SELECT is((SELECT suggestion FROM gdpr.discover('crm') WHERE column_name = 'mobilePerso'),
          'SELECT gdpr.classify(''crm.contacts'', ''mobilePerso'', ''contact'', ''customer_management'', ''contract'');',
          'the suggestion uses the purpose most used in the schema');
SELECT is((SELECT count(*) FROM gdpr.discover('nothing\_like\_this%')), 0::bigint, 'a pattern matching no schema');
CREATE TABLE crm.wide AS SELECT i AS id FROM generate_series(1, 3) i;
ALTER TABLE crm.wide ADD PRIMARY KEY (id), ADD COLUMN "searchVector" tsvector GENERATED ALWAYS AS (to_tsvector('simple', id::text)) STORED;
SELECT ok(NOT EXISTS (SELECT FROM gdpr.discover('crm') WHERE table_name = 'wide'), 'a table with nothing personal is not listed');

-------------------------------------------------------------- the DDL warning
SELECT is((SELECT count(*) FROM gdpr.registry_changes WHERE event = 'personal-looking column' AND object = 'crm.contacts."mobilePerso"'),
          1::bigint, 'a personal-looking column added to a registered table is recorded');
SELECT is((SELECT count(*) FROM gdpr.registry_changes WHERE event = 'personal-looking column' AND object = 'crm.contacts.ref'),
          0::bigint, '... not a column whose name says nothing');
ALTER TABLE crm.contacts RENAME COLUMN city TO ville;
SELECT is((SELECT count(*) FROM gdpr.registry_changes WHERE event = 'personal-looking column' AND object LIKE 'crm.contacts.%'),
          1::bigint, 'renaming a classified column warns of nothing');
CREATE SCHEMA crm_gdpr_t_other;
CREATE TABLE crm_gdpr_t_other.people (id int PRIMARY KEY, email text, phone text);
SELECT is((SELECT count(*) FROM gdpr.registry_changes WHERE object LIKE 'crm_gdpr_t_other.%'), 0::bigint,
          'a schema without registered tables is not watched');
CREATE TABLE crm.leads (id int PRIMARY KEY, email text, phone text, ip inet, amount numeric);
SELECT is((SELECT array_agg(object ORDER BY id) FROM gdpr.registry_changes WHERE object LIKE 'crm.leads.%'),
          ARRAY['crm.leads.email', 'crm.leads.phone', 'crm.leads.ip'], 'a new table in a registered schema: each personal column');

-------------------------------------------------------------- the auditor's view and privileges
CREATE ROLE crm_gdpr_t_auditor NOLOGIN IN ROLE gdpr_auditor;
CREATE ROLE crm_gdpr_t_admin NOLOGIN IN ROLE gdpr_admin;
SET LOCAL ROLE crm_gdpr_t_auditor;
SELECT is((SELECT suggested_category FROM gdpr.unclassified_columns WHERE schema_name = 'crm' AND table_name = 'contacts'
            AND column_name = 'mobilePerso'), 'contact', 'the auditor sees the unclassified columns');
SELECT throws_ok($$SELECT * FROM gdpr.discover()$$, '42501', NULL, 'the auditor cannot run discover()');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_admin;
SELECT is((SELECT found_by FROM gdpr.discover('crm') WHERE column_name = 'mobilePerso'), 'name',
          'discover() samples only what the caller may read');
RESET ROLE;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_admin;
GRANT SELECT ON crm.contacts TO crm_gdpr_t_admin;
SET LOCAL ROLE crm_gdpr_t_admin;
SELECT is((SELECT found_by FROM gdpr.discover('crm') WHERE column_name = 'mobilePerso'), 'name and values (phone)',
          '... and samples a column it may read');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
