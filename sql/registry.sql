-- The personal-data registry: a readable walk through every function, then
-- the bad inputs, each shown with its SQLSTATE.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS crm_gdpr;
\set ECHO none
\i test/fixtures/crm.sql
\set ECHO all
SELECT count(*) > 0 AS generated FROM crm.generate(100);
RESET client_min_messages;

\set ECHO none
\i test/fixtures/try.sql
\set ECHO all

-- Declare the CRM.
SELECT gdpr.register_subject_table('crm.contacts', 'id');
SELECT gdpr.register_table('crm.interactions');
SELECT gdpr.register_table('crm.orders', 'contact_id');
SELECT gdpr.register_table('crm.marketing_events', subject_table => 'crm.contacts');
SELECT tbl, subject_table, subject_column, parent_table, parent_column
  FROM gdpr.registered_tables ORDER BY tbl::text;

SELECT gdpr.define_purpose('customer_management', 'Managing customers', 'contract', 'Notice v1');
SELECT gdpr.define_purpose('customer_management', 'Managing customers', 'contract', 'Notice v1');  -- same text, same version
SELECT gdpr.define_purpose('customer_management', 'Managing customers', 'contract', 'Notice v2');
SELECT gdpr.define_purpose('customer_management', 'Managing customers', 'contract');               -- no notice: current version
SELECT gdpr.define_purpose('newsletter', 'Newsletter', 'consent', 'Je souhaite recevoir la lettre d''information.');
SELECT purpose, version, notice, encode(digest, 'hex') = encode(sha256(convert_to(notice, 'UTF8')), 'hex') AS digest_ok
  FROM gdpr.purpose_notices ORDER BY purpose, version;

SELECT gdpr.classify('crm.contacts', 'email', 'contact', 'customer_management', 'contract', 'order follow-up');
SELECT gdpr.classify('crm.contacts', 'email', 'contact', 'newsletter', 'consent');
SELECT gdpr.classify('crm.contacts', 'birth_date', 'identification', 'customer_management', 'contract');
SELECT gdpr.classify('crm.contacts', 'notes', 'free_text', 'customer_management', 'legitimate_interest');
SELECT gdpr.classify('crm.orders', 'iban', 'financial', 'customer_management', 'contract', 'direct debit');
SELECT gdpr.classify('crm.interactions', 'summary', 'free_text', 'customer_management', 'legitimate_interest');
-- Classifying again updates (idempotent); a column keeps one category.
SELECT gdpr.classify('crm.contacts', 'email', 'identification', 'newsletter', 'consent', 'delivery');
SELECT column_name, purpose, category, legal_basis, justification
  FROM gdpr.personal_data WHERE table_name = 'contacts' ORDER BY 1, 2;

SELECT gdpr.set_retention('crm.contacts', NULL, '3 years', 'last_contact_at', 'delete');
SELECT gdpr.set_retention('crm.contacts', 'notes', '1 year', 'last_contact_at', 'nullify');
SELECT gdpr.set_retention('crm.interactions', NULL, '3 years', 'last_contact_at', 'delete');  -- subject's column
SELECT gdpr.set_retention('crm.orders', 'iban', '13 months', 'ordered_at', 'nullify');
SELECT gdpr.set_retention('crm.orders', 'iban', '14 months', 'ordered_at', 'nullify');         -- update
SELECT tbl, col, keep, after_table, after_column, action FROM gdpr.retention_policies ORDER BY id;

SELECT gdpr.add_recipient('Brevo', 'fr', 'newsletter') AS brevo;
SELECT gdpr.add_recipient('Mailchimp', 'US', 'newsletter', 'scc') AS mailchimp;
SELECT gdpr.add_recipient('Swiss Post', 'CH', 'customer_management') AS swiss_post;  -- adequacy decision
SELECT gdpr.add_recipient('Mailchimp', 'US', 'newsletter', 'bcr') AS mailchimp_again;
SELECT name, country, purpose, safeguard, outside_eea FROM gdpr.recipients ORDER BY id;

\x on
SELECT purpose, description, legal_basis, notice_version, notice_sha256, subject_categories, data_categories,
       personal_data, recipients, transfers_outside_eea, retention, security_measures
  FROM gdpr.processing_register WHERE purpose = 'newsletter';
\x off

-- Bad input: a clear error, and nothing changes.
CREATE TABLE public.nopk (id int, contact_id bigint);
CREATE TABLE public.wrongtype (id int PRIMARY KEY, contact_id text);
CREATE TABLE public.twofk (id int PRIMARY KEY, a bigint REFERENCES crm.contacts, b bigint REFERENCES crm.contacts);
CREATE TABLE public.lonely (id int PRIMARY KEY, x int);
CREATE VIEW public.v AS SELECT 1 AS id;
CREATE TEMP TABLE snap AS
  SELECT (SELECT count(*) FROM gdpr.registered_tables) AS t, (SELECT count(*) FROM gdpr.personal_columns) AS c,
         (SELECT count(*) FROM gdpr.retention_policies) AS p, (SELECT count(*) FROM gdpr.recipients) AS r,
         (SELECT count(*) FROM gdpr.purposes) AS pu, (SELECT count(*) FROM gdpr.purpose_notices) AS n;

SELECT pg_temp.try($$SELECT gdpr.register_table('crm.nosuch')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table(NULL)$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.nopk')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.v')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('gdpr.purposes')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.lonely')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.twofk')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.wrongtype', 'contact_id')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.wrongtype', 'nosuch')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('public.lonely', 'x', 'crm.companies')$$);
SELECT pg_temp.try($$SELECT gdpr.register_table('crm.contacts')$$);
SELECT pg_temp.try($$SELECT gdpr.register_subject_table('crm.contacts', 'email')$$);
-- Links: a cycle, a type mismatch, a type column without its value.
SELECT pg_temp.try($$SELECT gdpr.link_table('crm.contacts', 'id', 'crm.interactions', 'id')$$);
SELECT pg_temp.try($$SELECT gdpr.link_table('crm.interactions', 'kind', 'crm.contacts')$$);
SELECT pg_temp.try($$SELECT gdpr.link_table('crm.interactions', 'contact_id', 'crm.contacts', type_column => 'kind')$$);
SELECT pg_temp.try($$SELECT gdpr.register_subject_table('crm.contacts', NULL)$$);
SELECT pg_temp.try($$SELECT gdpr.unregister_table('crm.contacts')$$);
SELECT pg_temp.try($$SELECT gdpr.unregister_table('public.lonely')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('public.lonely', 'x', 'contact', 'newsletter', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('crm.contacts', 'nosuch', 'contact', 'newsletter', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('crm.contacts', 'phone', 'secret', 'newsletter', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('crm.contacts', 'phone', 'contact', 'newsletter', 'because')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('crm.contacts', 'phone', 'contact', 'nosuch', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('crm.contacts', 'phone', NULL, 'newsletter', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.classify('crm.contacts', 'notes', 'sensitive', 'customer_management', 'contract')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', 'phone', '1 year', 'last_contact_at', 'nullify')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', NULL, '-1 year', 'last_contact_at', 'delete')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', NULL, '0', 'last_contact_at', 'delete')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'email', 'delete')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'nosuch', 'delete')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'burn')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'nullify')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.contacts', 'email', '1 year', 'last_contact_at', 'delete')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('crm.orders', 'iban', NULL, 'ordered_at', 'nullify')$$);
SELECT pg_temp.try($$SELECT gdpr.set_retention('public.lonely', NULL, '1 year', 'x', 'delete')$$);
SELECT pg_temp.try($$SELECT gdpr.define_purpose('Bad Code', 'x', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.define_purpose('newsletter', 'Newsletter', 'legitimate_interest')$$);
SELECT pg_temp.try($$SELECT gdpr.define_purpose('empty', '  ', 'consent')$$);
SELECT pg_temp.try($$SELECT gdpr.define_purpose('empty', 'Empty notice', 'consent', '')$$);
SELECT pg_temp.try($$SELECT gdpr.add_recipient('Acme', 'CN', 'newsletter')$$);
SELECT pg_temp.try($$SELECT gdpr.add_recipient('Acme', 'XX', 'newsletter')$$);
SELECT pg_temp.try($$SELECT gdpr.add_recipient('Acme', 'CN', 'newsletter', 'pinky_promise')$$);
SELECT pg_temp.try($$SELECT gdpr.add_recipient('', 'FR', 'newsletter')$$);
SELECT pg_temp.try($$SELECT gdpr.add_recipient('Acme', 'FR', 'nosuch')$$);
SELECT (SELECT count(*) FROM gdpr.registered_tables) = t AND (SELECT count(*) FROM gdpr.personal_columns) = c
   AND (SELECT count(*) FROM gdpr.retention_policies) = p AND (SELECT count(*) FROM gdpr.recipients) = r
   AND (SELECT count(*) FROM gdpr.purposes) = pu AND (SELECT count(*) FROM gdpr.purpose_notices) = n
       AS nothing_changed
  FROM snap;

-- Hostile identifiers are names like any other.
CREATE SCHEMA "we""ird; schema";
CREATE TABLE "we""ird; schema"."Leads; DROP TABLE crm.contacts;--" (
  "Id" bigint PRIMARY KEY,
  "Contact Id" bigint REFERENCES crm.contacts,
  "e-mail'); DELETE FROM gdpr.purposes;--" text,
  "Seen At" timestamptz);
SELECT gdpr.register_table('"we""ird; schema"."Leads; DROP TABLE crm.contacts;--"');
SELECT gdpr.classify('"we""ird; schema"."Leads; DROP TABLE crm.contacts;--"',
                     'e-mail''); DELETE FROM gdpr.purposes;--', 'contact', 'newsletter', 'consent');
SELECT gdpr.set_retention('"we""ird; schema"."Leads; DROP TABLE crm.contacts;--"',
                          'e-mail''); DELETE FROM gdpr.purposes;--', '6 months', 'Seen At', 'nullify');
SELECT tbl, column_name, retention, retention_from_column FROM gdpr.personal_data WHERE schema_name <> 'crm';
SELECT count(*) AS purposes_still_there FROM gdpr.purposes;

-- The registry follows the schema.
ALTER TABLE crm.contacts RENAME COLUMN notes TO remarks;
ALTER TABLE crm.contacts RENAME COLUMN last_contact_at TO last_seen_at;
ALTER TABLE crm.orders RENAME TO purchases;
SELECT tbl, col, after_table, after_column, action FROM gdpr.retention_policies ORDER BY id;
SELECT tbl, column_name FROM gdpr.personal_data WHERE column_name IN ('remarks', 'iban') ORDER BY 1, 2;
ALTER TABLE crm.purchases DROP COLUMN iban;
DROP TABLE "we""ird; schema"."Leads; DROP TABLE crm.contacts;--";
SELECT event, object, detail FROM gdpr.registry_changes ORDER BY id;
SELECT count(*) AS iban_left FROM gdpr.personal_data WHERE column_name = 'iban';

-- Unregistering: children first.
SELECT gdpr.unregister_table('crm.marketing_events');
SELECT tbl FROM gdpr.registered_tables ORDER BY tbl::text;
-- Dropping the subject table's key takes the whole registration with it, loudly.
ALTER TABLE crm.interactions DROP CONSTRAINT interactions_contact_id_fkey;
ALTER TABLE crm.contacts DROP COLUMN id CASCADE;
SELECT tbl FROM gdpr.registered_tables ORDER BY tbl::text;

DROP SCHEMA "we""ird; schema" CASCADE;
DROP TABLE public.nopk, public.wrongtype, public.twofk, public.lonely;
DROP VIEW public.v;
DROP SCHEMA crm CASCADE;
DROP EXTENSION crm_gdpr;
