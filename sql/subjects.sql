-- Resolving data subjects: (subject_table, subject_id), with subject_table
-- optional when only one subject table is registered.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS crm_gdpr;
RESET client_min_messages;
\set ECHO none
\i test/fixtures/try.sql
\set ECHO all
CREATE TABLE people (id bigint PRIMARY KEY, name text);
CREATE TABLE "Odd ""Firms""" ("Key" uuid PRIMARY KEY, name text);
INSERT INTO people VALUES (1, 'Ada'), (2, 'Émile');
INSERT INTO "Odd ""Firms""" VALUES ('6f1c1a52-54b5-4f3a-9d59-6c2b1f0b0c11', 'ACME');

SELECT pg_temp.try($$SELECT gdpr._subject_table(NULL)$$);
SELECT gdpr.register_subject_table('people', 'id');
SELECT gdpr._subject_table(NULL);
SELECT gdpr._require_subject(NULL, '2');
SELECT gdpr._subject_exists('people', '3');
SELECT pg_temp.try($$SELECT gdpr._require_subject(NULL, '3')$$);
SELECT pg_temp.try($$SELECT gdpr._require_subject(NULL, 'abc')$$);
SELECT pg_temp.try($$SELECT gdpr._require_subject(NULL, NULL)$$);
SELECT pg_temp.try($$SELECT gdpr._subject_table('"Odd ""Firms"""')$$);
SELECT gdpr.register_subject_table('"Odd ""Firms"""', 'Key');
SELECT pg_temp.try($$SELECT gdpr._subject_table(NULL)$$);
SELECT gdpr._require_subject('"Odd ""Firms"""', '6f1c1a52-54b5-4f3a-9d59-6c2b1f0b0c11');
SELECT pg_temp.try($$SELECT gdpr._require_subject('"Odd ""Firms"""', '1; DROP TABLE people')$$);
SELECT gdpr._subject_key_literal('people', $$1'); DROP TABLE people; --$$);
SELECT count(*) AS people_still_there FROM people;
DROP TABLE people, "Odd ""Firms""";
DROP EXTENSION crm_gdpr;
