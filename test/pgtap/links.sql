-- Subject links (issue 20): polymorphic references, content through a
-- junction, several links per table, a subject table linked to another;
-- foreign key actions in erasure; the trash; subject profiles.
BEGIN;
SELECT plan(23);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
-- Notes on any record (kind, ref) without a foreign key, as Odoo's chatter.
CREATE TABLE crm.notes (id bigserial PRIMARY KEY, kind text NOT NULL, ref bigint NOT NULL, body text);
-- Tags reached through a junction, as Twenty's note <- "noteTarget" -> person.
CREATE TABLE crm.tags (id bigserial PRIMARY KEY, label text, mobile_perso text);
CREATE TABLE crm.tag_links (id bigserial PRIMARY KEY, tag_id bigint NOT NULL REFERENCES crm.tags ON DELETE CASCADE,
                            contact_id bigint REFERENCES crm.contacts ON DELETE CASCADE);
-- An opportunity whose contact is ON DELETE SET NULL.
CREATE TABLE crm.deals (id bigserial PRIMARY KEY, contact_id bigint REFERENCES crm.contacts ON DELETE SET NULL,
                        title text, contact_email text);
RESET client_min_messages;

-- Contact a, and an order of another contact with the same id as a.
SELECT o.id AS a FROM crm.orders o WHERE o.contact_id <> o.id AND EXISTS (SELECT FROM crm.contacts c WHERE c.id = o.id)
 ORDER BY o.id LIMIT 1 \gset
SELECT max(id) AS b FROM crm.contacts \gset
INSERT INTO crm.notes (kind, ref, body) VALUES ('contact', :a, 'called about his divorce'),
  ('order', :a, 'order of the same id'), ('contact', :b, 'someone else');
INSERT INTO crm.tags (label, mobile_perso) VALUES ('vip', '06 11 22 33 44'), ('late payer', NULL);
INSERT INTO crm.tag_links (tag_id, contact_id) SELECT id, :a FROM crm.tags;
INSERT INTO crm.deals (contact_id, title, contact_email)
  SELECT :a, 'Renewal ' || last_name, email FROM crm.contacts WHERE id = :a;

SELECT lives_ok($$SELECT gdpr.link_table('crm.notes', 'ref', 'crm.contacts', type_column => 'kind', type_value => 'contact')$$,
                'a polymorphic reference is linked');
SELECT lives_ok($$SELECT gdpr.link_table('crm.notes', 'ref', 'crm.orders', type_column => 'kind', type_value => 'order')$$,
                'a second link, to another registered table');
SELECT is((SELECT count(*) FROM gdpr.subject_links WHERE tbl = 'crm.notes'::regclass), 2::bigint, 'two links');
SELECT lives_ok($$SELECT gdpr.register_table('crm.tag_links', 'contact_id')$$, 'the junction is registered');
SELECT lives_ok($$SELECT gdpr.link_table('crm.tags', 'id', 'crm.tag_links', 'tag_id')$$, 'the tags are linked through it');
SELECT lives_ok($$SELECT gdpr.register_table('crm.deals')$$, 'the deals follow their foreign key');
SELECT throws_ok($$SELECT gdpr.link_table('crm.contacts', 'id', 'crm.notes', 'id')$$, '22023', NULL, 'a cycle is refused');

SELECT gdpr.export_subject(:'a') -> 'data' AS data \gset
SELECT is((SELECT array_agg(x ->> 'body' ORDER BY x ->> 'body') FROM jsonb_array_elements((:'data'::jsonb) -> 'crm.notes') x),
          ARRAY['called about his divorce'],
          'his notes are exported, not the note of the order with his id');
SELECT is(jsonb_array_length((:'data'::jsonb) -> 'crm.tags'), 2, 'his tags, through the junction');
SELECT is((SELECT count(*) FROM gdpr._subject_tree('crm.contacts') WHERE tbl = 'crm.tags'::regclass AND depth = 2), 1::bigint,
          'the tags are below the junction in his tree');
SELECT ok(gdpr._subject_ids_sql('crm.notes', 'crm.notes') LIKE '%UNION%', 'write subjects follow both links');
SELECT is((SELECT array_agg(x::bigint) FROM gdpr._owner_query('crm.notes',
             format('SELECT jsonb_agg(id) FROM (%s) ids(id)', gdpr._subject_ids_sql('crm.notes', 'crm.notes'))) j,
             jsonb_array_elements_text(j) x WHERE x::bigint IN (:a, :b)),
          ARRAY[:a, :b]::bigint[], 'the subjects of the notes include both contacts noted');

SELECT gdpr.erase_subject(:'a') AS report \gset
SELECT is((SELECT body FROM crm.notes WHERE kind = 'order' AND ref = :a), 'order of the same id',
          'the erasure leaves the note of the order with his id');
SELECT is((SELECT count(*) FROM crm.notes WHERE kind = 'contact' AND ref = :a), 0::bigint, 'his notes are gone');
SELECT is((SELECT count(*) FROM crm.tags), 0::bigint, 'his tags are gone');
SELECT is((SELECT count(*) FROM crm.deals WHERE contact_id IS NULL AND title NOT LIKE 'Renewal%'), 0::bigint,
          'the deal is kept');
SELECT ok((SELECT contact_id IS NULL AND contact_email IS NULL FROM crm.deals), 'the deal is unlinked, its personal-looking column cleared');
SELECT ok(EXISTS (SELECT FROM jsonb_array_elements((:'report'::jsonb) -> 'tables') x
                   WHERE x ->> 'table' = 'crm.deals' AND (x ->> 'unlinked')::int = 1 AND x -> 'unclassified_cleared' ? 'contact_email'),
          'the report says the deal was unlinked and which unclassified column was cleared');

-- The trash and the profile.
ALTER TABLE crm.contacts ADD COLUMN deleted_at timestamptz;
SELECT lives_ok($$SELECT gdpr.set_soft_delete('crm.contacts', 'deleted_at')$$, 'the trash is declared');
SELECT gdpr.grant_consent(:'b', 'newsletter', 'web', '{"ip": "203.0.113.9", "user_agent": "UA", "form": "f1", "notice_version": 1}') \g /dev/null
UPDATE crm.contacts SET deleted_at = now() WHERE id = :b;
SELECT ok(NOT :'b' IN (SELECT gdpr.contactable('newsletter')) AND NOT gdpr.may_process(:'b', 'newsletter'),
          'a trashed contact is not contactable, even with his consent');
SELECT throws_ok($$SELECT gdpr.set_subject_profile('crm.contacts', 'segment', 'city')$$, '22023', NULL,
                 'a column that cannot say customer or prospect is refused');

-- Dropping a column a link or the trash uses forgets them; the rest works.
SET client_min_messages = error;
ALTER TABLE crm.notes DROP COLUMN kind;
ALTER TABLE crm.contacts DROP COLUMN deleted_at;
RESET client_min_messages;
SELECT is((SELECT count(*) FROM gdpr.subject_links WHERE tbl = 'crm.notes'::regclass), 0::bigint,
          'the links through a dropped type column are removed');
SELECT lives_ok(format('SELECT gdpr.export_subject(%L)', :'b'), 'export works after the drops');

SELECT * FROM finish();
ROLLBACK;
