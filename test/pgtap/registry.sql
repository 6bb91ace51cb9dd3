-- Registry rules that the pg_regress walk-through does not show: nesting,
-- idempotence, cycles, the Art. 30 register's contents, schema following.
BEGIN;
SELECT plan(23);

SELECT lives_ok($$SELECT gdpr.register_subject_table('crm.contacts', 'id')$$, 'register the subject table');
SELECT lives_ok($$SELECT gdpr.register_subject_table('crm.contacts', 'id')$$, 'registering it again is a no-op');
SELECT is((SELECT count(*) FROM gdpr.subject_tables), 1::bigint, 'one subject table');

-- A table registered under a registered table that is not a subject table.
CREATE TABLE crm.order_lines (id bigint PRIMARY KEY, order_id bigint REFERENCES crm.orders, product text);
SELECT throws_ok($$SELECT gdpr.register_table('crm.order_lines')$$, '42704', NULL,
                 'the parent must be registered first');
SELECT gdpr.register_table('crm.orders');
SELECT lives_ok($$SELECT gdpr.register_table('crm.order_lines')$$, 'a table under a registered table');
SELECT is((SELECT row(subject_table, subject_column, parent_table, parent_column)::text
             FROM gdpr.registered_tables WHERE tbl = 'crm.order_lines'::regclass),
          '(crm.contacts,order_id,crm.orders,id)', 'it reaches the subject through its parent');
SELECT throws_ok($$SELECT gdpr.unregister_table('crm.orders')$$, '2BP01', NULL,
                 'a parent cannot be unregistered before its children');

-- A column without a foreign key refers to the only subject table.
CREATE TABLE crm.call_notes (id bigint PRIMARY KEY, who bigint, note text);
SELECT lives_ok($$SELECT gdpr.register_table('crm.call_notes', 'who')$$, 'subject column without a foreign key');
SELECT is((SELECT parent_table::text || '.' || parent_column FROM gdpr.registered_tables
            WHERE tbl = 'crm.call_notes'::regclass), 'crm.contacts.id', 'it refers to the subject key');
CREATE TABLE crm.int_ref (id int PRIMARY KEY, contact int);
SELECT lives_ok($$SELECT gdpr.register_table('crm.int_ref', 'contact')$$, 'integer types of other widths match');

-- Cycles are refused.
CREATE TABLE crm.a (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts, b_id bigint);
CREATE TABLE crm.b (id bigint PRIMARY KEY, a_id bigint REFERENCES crm.a);
SELECT gdpr.register_table('crm.a', 'contact_id');
SELECT gdpr.register_table('crm.b');
ALTER TABLE crm.a ADD FOREIGN KEY (b_id) REFERENCES crm.b;
SELECT throws_ok($$SELECT gdpr.register_table('crm.a', 'b_id', 'crm.b')$$, '22023',
                 'registering crm.a under crm.b would make a cycle', 'a cycle is refused');

-- Notices and purposes.
SELECT is(gdpr.define_purpose('support', 'Support', 'contract', 'v1'), 1, 'first notice is version 1');
SELECT is(gdpr.define_purpose('support', 'Support desk', 'contract', 'v2'), 2, 'a new text is a new version');
SELECT is(gdpr.define_purpose('support', 'Support desk', 'contract', 'v1'), 3, 'an old text again is a new version');
SELECT is((SELECT description FROM gdpr.purposes WHERE code = 'support'), 'Support desk', 'the description may change');
SELECT is(gdpr.define_purpose('analytics', 'Analytics', 'legitimate_interest'), 0, 'no notice: version 0');

-- The Art. 30 register.
SELECT gdpr.classify('crm.contacts', 'email', 'contact', 'support', 'contract');
SELECT gdpr.classify('crm.order_lines', 'product', 'transactional', 'support', 'contract');
SELECT gdpr.add_recipient('Zendesk', 'US', 'support', 'scc');
SELECT gdpr.add_recipient('Freshdesk', 'IE', 'support');
SELECT gdpr.set_retention('crm.order_lines', NULL, '5 years', 'last_contact_at', 'delete');
SELECT is((SELECT row(data_categories, personal_data, recipients, transfers_outside_eea, retention)::text
             FROM gdpr.processing_register WHERE purpose = 'support'),
          row(ARRAY['contact', 'transactional'], ARRAY['crm.contacts.email', 'crm.order_lines.product'],
              ARRAY['Freshdesk (IE)', 'Zendesk (US)'], ARRAY['Zendesk (US): scc'],
              ARRAY['crm.order_lines (rows): 5 years after crm.contacts.last_contact_at, then delete'])::text,
          'the register lists categories, data, recipients, transfers and retention');
SELECT is((SELECT security_measures @> ARRAY['retention periods enforced by automatic purge']
             FROM gdpr.processing_register WHERE purpose = 'support'), true, 'the purge is a listed measure');
SELECT is((SELECT retention_from_table::text FROM gdpr.personal_data WHERE column_name = 'product'),
          'crm.contacts', 'a row policy may run from the subject''s column');

-- Renaming the subject's anchor column renames it in policies of other tables.
ALTER TABLE crm.contacts RENAME COLUMN last_contact_at TO last_touch;
SELECT is((SELECT after_column::text FROM gdpr.retention_policies WHERE tbl = 'crm.order_lines'::regclass),
          'last_touch', 'policies follow a renamed anchor column of the subject table');
-- Dropping the anchor column removes the policies counted from it.
ALTER TABLE crm.contacts DROP COLUMN last_touch;
SELECT is((SELECT count(*) FROM gdpr.retention_policies WHERE tbl = 'crm.order_lines'::regclass), 0::bigint,
          'a policy counted from a dropped column goes with it');
-- Renaming the parent's key renames parent_column of its children.
ALTER TABLE crm.orders RENAME COLUMN id TO order_no;
SELECT is((SELECT parent_column::text FROM gdpr.registered_tables WHERE tbl = 'crm.order_lines'::regclass),
          'order_no', 'children follow a renamed parent key');
SELECT is((SELECT count(*) FROM gdpr.registry_changes WHERE event = 'column renamed'), 2::bigint,
          'each rename is recorded');

SELECT * FROM finish();
ROLLBACK;
