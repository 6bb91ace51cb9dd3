-- Which columns an UPDATE is logged as writing (src/log_write.c): the
-- trigger compares old and new rows on the columns the statement sets
-- (tg_updatedcols) when it can trust them, on every column otherwise.
-- Cases where the statement's rows come from more than one node (WITH
-- clauses writing the table twice: one pair of transition tables, the last
-- node's columns only), MERGE, ON CONFLICT, views, and a column added with
-- a default after the row was written (its value is the "missing" one).
BEGIN;
SELECT plan(11);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SET application_name = 'tap_write_columns';
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
CREATE TEMP VIEW mine AS SELECT * FROM gdpr.access_log WHERE application_name = 'tap_write_columns';
CREATE FUNCTION pg_temp.last(op text) RETURNS mine LANGUAGE sql AS
  $$SELECT gdpr.flush_access_log(); SELECT * FROM mine WHERE operation = op ORDER BY id DESC LIMIT 1$$;
SELECT min(id) AS c1, min(id) + 1 AS c2 FROM crm.contacts \gset

-- Two UPDATEs of one table in one statement: one log row, both columns.
WITH u AS (UPDATE crm.contacts SET city = 'Brest' || random() WHERE id = :c1 RETURNING id)
UPDATE crm.contacts SET phone = '+33 6 00 ' || random() WHERE id = :c2;
SELECT ok((pg_temp.last('UPDATE')).columns @> ARRAY['city', 'phone']::name[],
          'two UPDATEs of a table in one statement (WITH): both columns are named');

-- ON CONFLICT DO UPDATE and an UPDATE in one statement share the UPDATE transition tables.
WITH u AS (UPDATE crm.contacts SET notes = 'n' || random() WHERE id = :c1 RETURNING id)
INSERT INTO crm.contacts (id, last_name) VALUES (:c2, 'x')
  ON CONFLICT (id) DO UPDATE SET postcode = left(md5(random()::text), 5);
SELECT ok((pg_temp.last('UPDATE')).columns @> ARRAY['notes', 'postcode']::name[],
          'an UPDATE and an ON CONFLICT DO UPDATE in one statement: both columns are named');

-- tg_updatedcols covers these.
MERGE INTO crm.contacts t USING (VALUES (:c1), (:c2)) s(id) ON t.id = s.id
  WHEN MATCHED AND t.id = :c1 THEN UPDATE SET city = 'm' || random()
  WHEN MATCHED THEN UPDATE SET phone = 'm' || random();
SELECT ok((pg_temp.last('UPDATE')).columns @> ARRAY['city', 'phone']::name[],
          'MERGE: the columns of every UPDATE action');
ALTER TABLE crm.contacts ADD COLUMN city_upper text GENERATED ALWAYS AS (upper(city)) STORED;
INSERT INTO crm.contacts (id, last_name) VALUES (:c1, 'x')
  ON CONFLICT (id) DO UPDATE SET city = 'oc' || random();
SELECT is((pg_temp.last('UPDATE')).columns, ARRAY['city', 'city_upper']::name[],
          'ON CONFLICT DO UPDATE: the generated column fed by its SET list');
CREATE VIEW pg_temp.v AS SELECT id, city AS town FROM crm.contacts;
UPDATE pg_temp.v SET town = 'v' || random() WHERE id = :c1;
SELECT is((pg_temp.last('UPDATE')).columns, ARRAY['city', 'city_upper']::name[],
          'an UPDATE through a view: the base column and its generated column');
DROP VIEW pg_temp.v;
ALTER TABLE crm.contacts DROP COLUMN city_upper;
-- A column added with a default after a row was written: the row's tuple lacks it and
-- reads as the default ("missing" value), not NULL: setting it to itself changes nothing.
ALTER TABLE crm.contacts ADD COLUMN tier int DEFAULT 5;
UPDATE crm.contacts SET tier = tier WHERE id = :c1;
SELECT is((pg_temp.last('UPDATE')).columns, NULL, 'SET tier = tier on a row older than the column changes nothing');
ALTER TABLE crm.contacts DROP COLUMN tier;

-- Partitions' and children's UPDATE and DELETE triggers have no argument
-- (only the INSERT trigger carries the subject column): they find it.
CREATE TABLE crm.contacts_archive () INHERITS (crm.contacts);
INSERT INTO crm.contacts_archive (id, last_name) VALUES (-7, 'archived');
UPDATE crm.contacts_archive SET city = 'a' || random() WHERE id = -7;
SELECT is((pg_temp.last('UPDATE')).subject_keys, ARRAY[gdpr._log_subject_key('-7')],
          'an UPDATE of an inheritance child names its subject');
UPDATE crm.contacts SET city = 'b' || random() WHERE id = -7;
SELECT is((pg_temp.last('UPDATE')).subject_keys, ARRAY[gdpr._log_subject_key('-7')],
          'through its parent too');
DELETE FROM crm.contacts_archive WHERE id = -7;
SELECT is((pg_temp.last('DELETE')).subject_keys, ARRAY[gdpr._log_subject_key('-7')],
          'a DELETE of an inheritance child names its subject');

-- An UPDATE names the old row's subject only when it is not the new row's:
-- a row moved from one subject to another names both.
SELECT min(id) AS i1 FROM crm.interactions WHERE contact_id = :c1 \gset
UPDATE crm.interactions SET contact_id = :c2 WHERE id = :i1;
SELECT is((SELECT array_agg(k ORDER BY k) FROM unnest((pg_temp.last('UPDATE')).subject_keys) k),
          (SELECT array_agg(k ORDER BY k) FROM unnest(ARRAY[gdpr._log_subject_key(:'c1'), gdpr._log_subject_key(:'c2')]) k),
          'an UPDATE moving a row from one subject to another names both');
UPDATE crm.interactions SET summary = 's' || random() WHERE id = :i1;
SELECT is((pg_temp.last('UPDATE')).subject_keys, ARRAY[gdpr._log_subject_key(:'c2')],
          'an UPDATE that keeps the subject names him once');

SELECT * FROM finish();
ROLLBACK;
