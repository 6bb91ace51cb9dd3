-- Composite-key links (issue 20): a table whose rows refer to their parent
-- by two columns (invoice lines -> invoices (year, no)), linked with
-- gdpr.link_table, followed by export, erasure and the purge's anchor.
BEGIN;
SELECT plan(16);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
-- Invoices numbered per year, and their lines: a two-column foreign key.
CREATE TABLE crm.invoices (year int, no int, contact_id bigint NOT NULL REFERENCES crm.contacts ON DELETE CASCADE,
                           issued_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (year, no));
CREATE TABLE crm.invoice_lines (id bigserial PRIMARY KEY, inv_year int NOT NULL, inv_no int NOT NULL, label text,
                                FOREIGN KEY (inv_year, inv_no) REFERENCES crm.invoices);
-- Notes on an invoice, unlinked when it goes (a two-column ON DELETE SET NULL).
CREATE TABLE crm.invoice_notes (id bigserial PRIMARY KEY, inv_year int, inv_no int, body text,
                                FOREIGN KEY (inv_year, inv_no) REFERENCES crm.invoices ON DELETE SET NULL);
-- The same lines, without a foreign key (columns named by hand).
CREATE TABLE crm.credit_notes (id bigserial PRIMARY KEY, y int, n int, reason text);
RESET client_min_messages;
SET client_min_messages = warning;

SELECT min(id) AS a, min(id) + 1 AS b FROM crm.contacts \gset
-- Contact a has invoice 2024/1; contact b has 2024/2 and 2025/1: the same
-- year, and the same number, as a's.
INSERT INTO crm.invoices (year, no, contact_id) VALUES (2024, 1, :a), (2024, 2, :b), (2025, 1, :b);
INSERT INTO crm.invoice_lines (inv_year, inv_no, label) VALUES (2024, 1, 'a1'), (2024, 1, 'a2'), (2024, 2, 'b1'), (2025, 1, 'b2');
INSERT INTO crm.credit_notes (y, n, reason) VALUES (2024, 1, 'a: damaged'), (2025, 1, 'b: late');
INSERT INTO crm.invoice_notes (inv_year, inv_no, body) VALUES (2024, 1, 'a: paid late'), (2024, 2, 'b: paid');

SELECT gdpr.register_table('crm.invoices');
SELECT lives_ok($$SELECT gdpr.link_table('crm.invoice_lines', 'inv_year', 'crm.invoices')$$,
                'a table with a two-column foreign key is linked by its first column');
SELECT is((SELECT ARRAY[link_column] || extra_link_columns || parent_column || extra_parent_columns
             FROM gdpr.subject_links WHERE tbl = 'crm.invoice_lines'::regclass),
          ARRAY['inv_year', 'inv_no', 'year', 'no']::name[], 'the link holds every column of the foreign key, in order');
SELECT gdpr.link_table('crm.invoice_notes', 'inv_year', 'crm.invoices');
SELECT gdpr.classify('crm.invoice_notes', 'body', 'free_text', 'accounting', 'legal_obligation', 'payment follow-up');
SELECT lives_ok($$SELECT gdpr.link_table('crm.credit_notes', 'y', 'crm.invoices', 'year',
                                         extra_link_columns => '{n}', extra_parent_columns => '{no}')$$,
                'without a foreign key, the columns are named');
SELECT throws_ok($$SELECT gdpr.link_table('crm.credit_notes', 'y', 'crm.invoices', 'year',
                                          extra_link_columns => '{n,reason}', extra_parent_columns => '{no}')$$,
                 '22023', NULL, 'as many columns on both sides');
SELECT throws_ok($$SELECT gdpr.link_table('crm.credit_notes', 'y', 'crm.invoices', 'year',
                                          extra_link_columns => '{reason}', extra_parent_columns => '{no}')$$,
                 '42804', NULL, 'of matching types');
SELECT throws_ok($$SELECT gdpr.link_table('crm.credit_notes', 'y', 'crm.invoices', 'year',
                                          extra_link_columns => '{nosuch}', extra_parent_columns => '{no}')$$,
                 '42703', NULL, 'that exist');

-- Export: his lines and credit notes, not those of the same year or number.
SELECT is((SELECT array_agg(x ->> 'label' ORDER BY x ->> 'label')
             FROM jsonb_array_elements(gdpr.export_subject(:'a') #> '{data,crm.invoice_lines}') x),
          ARRAY['a1', 'a2'], 'the export of a holds his invoice lines only');
SELECT is((SELECT array_agg(x ->> 'reason') FROM jsonb_array_elements(gdpr.export_subject(:'b') #> '{data,crm.credit_notes}') x),
          ARRAY['b: late'], 'and b''s his credit note only');

-- The purge's anchor follows the composite link: lines are due when their
-- invoice's contact is (3 years after his last contact).
SELECT gdpr.set_retention('crm.invoice_lines', NULL, '3 years', 'last_contact_at', 'delete');
UPDATE crm.contacts SET last_contact_at = now() WHERE id IN (:a, :b);
UPDATE crm.contacts SET last_contact_at = now() - interval '4 years' WHERE id = :b;
SELECT is((SELECT rows_due FROM gdpr.retention_status WHERE tbl = 'crm.invoice_lines'::regclass),
          (SELECT count(*) FROM crm.invoice_lines l JOIN crm.invoices i ON (i.year, i.no) = (l.inv_year, l.inv_no)
            WHERE i.contact_id = :b),
          'the lines due are those of b''s invoices, found through both columns');
SELECT gdpr.place_hold(:'b', 'audit') AS hold_b \gset
SELECT is((SELECT rows_held FROM gdpr.retention_status WHERE tbl = 'crm.invoice_lines'::regclass), 2::bigint,
          'b held: his lines are held');
SELECT gdpr.release_hold(:hold_b);
SELECT gdpr.remove_retention('crm.invoice_lines', NULL);

-- A purge of invoices leaves those whose lines (a two-column foreign key,
-- no cascade) are kept: b's old invoice without lines goes, the one with lines stays.
INSERT INTO crm.invoices (year, no, contact_id, issued_at) VALUES (2023, 9, :b, now() - interval '2 years');
UPDATE crm.invoices SET issued_at = now() - interval '2 years' WHERE (year, no) = (2025, 1);
SELECT gdpr.set_retention('crm.invoices', NULL, '1 year', 'issued_at', 'delete');
CREATE TEMP TABLE result_i AS SELECT * FROM gdpr.purge();
SELECT is((SELECT array_agg(year || '/' || no ORDER BY year, no) FROM crm.invoices WHERE contact_id = :b), ARRAY['2024/2', '2025/1'],
          'the purge deletes the invoice no line refers to, and keeps the other (compared on both columns)');
SELECT gdpr.remove_retention('crm.invoices', NULL);

-- Erasure of a: his invoice, its lines and his credit note go; b's stay.
SELECT is(gdpr.erase_subject(:'a') ->> 'status', 'erased', 'a is erased');
SELECT is((SELECT array_agg(label ORDER BY label) FROM crm.invoice_lines), ARRAY['b1', 'b2'],
          'his invoice lines are gone, b''s of the same year and number stay');
SELECT is((SELECT array_agg(reason) FROM crm.credit_notes), ARRAY['b: late'], 'his credit note is gone, b''s stays');
SELECT is((SELECT array_agg(row(inv_year, inv_no, body LIKE 'a:%')::text ORDER BY id) FROM crm.invoice_notes),
          ARRAY['(,,f)', '(2024,2,f)'],
          'his invoice''s note (two-column ON DELETE SET NULL) is unlinked on both columns and anonymised, not deleted');

-- A renamed column stays in the link.
ALTER TABLE crm.credit_notes RENAME COLUMN n TO num;
SELECT is((SELECT extra_link_columns FROM gdpr.subject_links WHERE tbl = 'crm.credit_notes'::regclass), ARRAY['num']::name[],
          'a renamed column of a composite link is followed');

SELECT * FROM finish();
ROLLBACK;
