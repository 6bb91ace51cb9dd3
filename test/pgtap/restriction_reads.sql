-- Restriction stops reads (issue 23.4, Art. 18): while a subject is
-- restricted, his rows (subject table and every table linked to it) are
-- hidden from every role but gdpr_admin and the table's owner, the attempt
-- is logged, and the policy that does it cannot be dropped or switched off;
-- nor can the subject tables' suppression and departure triggers (issue 23.3).
BEGIN;
SELECT plan(70);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
-- A table reached through orders (a chain of foreign keys), and a partitioned one.
CREATE TABLE crm.order_notes (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES crm.orders (id), note text);
INSERT INTO crm.order_notes (order_id, note) SELECT o.id, 'note' FROM crm.orders o;
SELECT gdpr.register_table('crm.order_notes');
CREATE TABLE crm.visits (id bigint GENERATED ALWAYS AS IDENTITY, contact_id bigint NOT NULL REFERENCES crm.contacts (id),
                         at date NOT NULL, page text, PRIMARY KEY (id, at))
  PARTITION BY RANGE (at);
CREATE TABLE crm.visits_2026 PARTITION OF crm.visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT gdpr.register_table('crm.visits');
INSERT INTO crm.visits (contact_id, at, page) SELECT c.id, '2026-03-01', 'home' FROM crm.contacts c WHERE c.id BETWEEN 10 AND 14;
-- A table that had row-level security with a policy of its own.
CREATE TABLE crm.private_notes (id bigserial PRIMARY KEY, contact_id bigint NOT NULL REFERENCES crm.contacts (id),
                                author name NOT NULL DEFAULT current_user, note text);
ALTER TABLE crm.private_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON crm.private_notes USING (author = current_user);
SELECT gdpr.register_table('crm.private_notes');
RESET client_min_messages;

CREATE ROLE crm_gdpr_t_app NOLOGIN IN ROLE gdpr_app;
CREATE ROLE crm_gdpr_t_reader NOLOGIN;
CREATE ROLE crm_gdpr_t_admin NOLOGIN IN ROLE gdpr_admin;
CREATE ROLE crm_gdpr_t_owner NOLOGIN;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_app, crm_gdpr_t_reader, crm_gdpr_t_admin, crm_gdpr_t_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_app, crm_gdpr_t_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA crm TO crm_gdpr_t_reader;
ALTER TABLE crm.contacts OWNER TO crm_gdpr_t_owner;
INSERT INTO crm.private_notes (contact_id, author, note) VALUES (12, 'crm_gdpr_t_app', 'his'), (11, 'crm_gdpr_t_app', 'other');

-- The plan of a query, as lines.
CREATE FUNCTION pg_temp.plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF, VERBOSE) ' || q;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.plan(text) TO PUBLIC;
-- What a role sees of contact 12 and of contact 11, in every table.
CREATE FUNCTION pg_temp.seen(id bigint) RETURNS bigint LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM crm.contacts c WHERE c.id = $1)
       + (SELECT count(*) FROM crm.interactions i WHERE i.contact_id = $1)
       + (SELECT count(*) FROM crm.orders o WHERE o.contact_id = $1)
       + (SELECT count(*) FROM crm.marketing_events m WHERE m.contact_id = $1)
       + (SELECT count(*) FROM crm.order_notes n JOIN crm.orders o ON o.id = n.order_id WHERE o.contact_id = $1)
       + (SELECT count(*) FROM crm.visits v WHERE v.contact_id = $1)
$$;
GRANT EXECUTE ON FUNCTION pg_temp.seen(bigint) TO PUBLIC;
INSERT INTO crm.orders (contact_id, ordered_at, amount) VALUES (12, now(), 10), (11, now(), 10);
INSERT INTO crm.marketing_events (contact_id, campaign, event, at) VALUES (12, 'test', 'sent', now()), (11, 'test', 'sent', now());
INSERT INTO crm.order_notes (order_id, note) SELECT o.id, 'n' FROM crm.orders o WHERE o.contact_id IN (11, 12);
SELECT pg_temp.seen(12) AS all_12, pg_temp.seen(11) AS all_11 \gset

-------------------------------------------------------------- the policy
SELECT is((SELECT count(*) FROM pg_policy p JOIN gdpr.registered_tables r ON r.tbl = p.polrelid
            WHERE p.polname = 'gdpr_restriction' AND NOT p.polpermissive AND p.polcmd = 'r'),
          (SELECT count(*) FROM gdpr.registered_tables), 'every registered table has the restrictive policy');
SELECT ok((SELECT bool_and(c.relrowsecurity AND NOT c.relforcerowsecurity) FROM gdpr.registered_tables r JOIN pg_class c ON c.oid = r.tbl),
          'with row-level security on (not forced on the owner)');
SELECT ok(EXISTS (SELECT FROM pg_policy WHERE polrelid = 'crm.visits_2026'::regclass AND polname = 'gdpr_restriction'),
          'a partition has it too');
SELECT is((SELECT count(*) FROM pg_policy WHERE polrelid = 'crm.contacts'::regclass AND polname = 'gdpr_restriction_open'
             AND polpermissive AND pg_get_expr(polqual, polrelid) = 'true'), 1::bigint,
          'a table that had row-level security off gets a permissive policy showing every row');
SELECT is((SELECT array_agg(polname::text ORDER BY polname) FROM pg_policy WHERE polrelid = 'crm.private_notes'::regclass),
          ARRAY['gdpr_restriction', 'own_notes'], 'a table with policies of its own only gets the restrictive one');
-- Dormant while nobody is restricted: USING (true), folded away by the planner.
CREATE FUNCTION pg_temp.policies(qual text) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM pg_policy p
   WHERE p.polname = 'gdpr_restriction' AND p.polrelid IN (SELECT gdpr._registered_relations())
     AND (pg_get_expr(p.polqual, p.polrelid) = $1) = ($1 = 'true')
$$;
SELECT count(*) AS all_policies FROM pg_policy p
 WHERE p.polname = 'gdpr_restriction' AND p.polrelid IN (SELECT gdpr._registered_relations()) \gset
SELECT is(pg_temp.policies('true'), :all_policies::bigint,
          'nobody restricted: every policy (partitions included) is dormant, USING (true)');
SELECT ok(:all_policies >= 8, 'there are policies to count');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT ok((SELECT string_agg(x, ' ') FROM (SELECT * FROM pg_temp.plan('SELECT * FROM crm.contacts WHERE id = 12')) p(x))
            NOT LIKE '%restriction_visible%', 'the application''s plan evaluates nothing per row');
SELECT throws_ok($$SELECT gdpr._restriction_policy_armed()$$, '42501', NULL, 'the application cannot take the flips'' lock');
SELECT throws_ok($$INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES ('crm.contacts', '12', 'x')$$,
                 '42501', NULL, 'nor arm the policies by writing gdpr.restrictions');
SELECT throws_ok($$ALTER POLICY gdpr_restriction ON crm.contacts USING (gdpr.restriction_visible(tableoid, ctid, id))$$,
                 '42501', NULL, 'nor by ALTER POLICY');
SELECT is(pg_temp.seen(12), :all_12::bigint, 'nobody restricted: the application sees everything');
SELECT is((SELECT count(*) FROM crm.private_notes), 2::bigint, 'and the table''s own policies still apply');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_reader;
SELECT is((SELECT count(*) FROM crm.private_notes), 0::bigint, 'to every role');
RESET ROLE;

-------------------------------------------------------------- restricted
SELECT gdpr.restrict_subject('12', 'accuracy contested') IS NULL AS restricted \gset
SELECT is(pg_temp.policies('armed'), :all_policies::bigint, 'restricted: every policy is armed, partitions included');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT ok((SELECT string_agg(x, ' ') FROM (SELECT * FROM pg_temp.plan('SELECT * FROM crm.contacts WHERE id = 12')) p(x))
            LIKE '%restriction_visible%', 'the application''s plan filters each row');
RESET ROLE;
SET client_min_messages = warning;
CREATE TABLE crm.visits_2027 PARTITION OF crm.visits FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
RESET client_min_messages;
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'crm.visits_2027'::regclass
             AND polname = 'gdpr_restriction'), 'gdpr.restriction_visible(tableoid, ctid, contact_id)',
          'a partition created while armed gets the armed policy');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is(pg_temp.seen(12), 0::bigint, 'restricted: the application sees none of his rows, in any table');
SELECT is(pg_temp.seen(11), :all_11::bigint, 'others are not affected');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id BETWEEN 11 AND 13), 2::bigint, 'a range skips him');
SELECT is((SELECT count(*) FROM crm.visits_2026 WHERE contact_id = 12), 0::bigint, 'nor through a partition');
SELECT is((SELECT count(*) FROM crm.private_notes), 1::bigint, 'nor in a table with policies of its own');
SELECT throws_ok($$UPDATE crm.contacts SET notes = 'x' WHERE id = 12$$, '42501',
                 'processing of subject "12" is restricted', 'a write naming his rows fails, as before');
SELECT throws_ok($$SELECT gdpr.restriction_visible('gdpr.restrictions'::regclass, '(0,1)')$$, '42501', NULL,
                 'the policy''s function tells nothing of a table the role cannot read');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_reader;
SELECT is(pg_temp.seen(12), 0::bigint, 'a plain reader sees none of them');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_admin;
SELECT is(pg_temp.seen(12), :all_12::bigint, 'a gdpr_admin sees them');
RESET ROLE;
SELECT is(pg_temp.seen(12), :all_12::bigint, 'so does a superuser');
SET LOCAL ROLE crm_gdpr_t_owner;
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 12), 1::bigint,
          'the table''s owner is not filtered (row-level security not forced: doc/rights.md)');
RESET ROLE;
SELECT is((SELECT jsonb_agg(x) FROM gdpr.export_subject('12') x) IS NOT NULL, true, 'his export still works');

-------------------------------------------------------------- logged
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
SELECT ok((SELECT count(*) FROM gdpr.restriction_violations
            WHERE role_name = 'crm_gdpr_t_app' AND outcome = 'filtered' AND rows_hidden > 0
              AND subject_keys = ARRAY[gdpr._log_subject_key('12')]) >= 6,
          'each hidden read is logged as a violation, naming the role and his key');
SELECT is((SELECT array_agg(DISTINCT table_name ORDER BY table_name) FROM gdpr.restriction_violations
            WHERE role_name = 'crm_gdpr_t_app' AND outcome = 'filtered'),
          ARRAY['crm.contacts', 'crm.interactions', 'crm.marketing_events', 'crm.order_notes', 'crm.orders',
                'crm.private_notes', 'crm.visits'], 'in every table read, a partition under its registered table');
SELECT ok(EXISTS (SELECT FROM gdpr.restriction_violations WHERE role_name = 'crm_gdpr_t_reader'), 'the plain reader''s too');
SELECT ok(EXISTS (SELECT FROM gdpr.restriction_violations WHERE role_name = 'crm_gdpr_t_app' AND outcome = 'refused'),
          'the refused write too');
SELECT is((SELECT count(*) FROM gdpr.restriction_violations WHERE role_name IN ('crm_gdpr_t_admin', 'crm_gdpr_t_owner')),
          0::bigint, 'the admin''s and the owner''s reads are no violation');
SELECT ok(EXISTS (SELECT FROM gdpr.access_history('12') WHERE operation = 'RESTRICTED'), 'his access history shows them');

-------------------------------------------------------------- who switches it
SET LOCAL ROLE crm_gdpr_t_app;
SELECT throws_ok($$SET crm_gdpr.restriction_reads = off$$, '42501', NULL, 'the application cannot switch the filter off');
RESET ROLE;
SET LOCAL crm_gdpr.restriction_reads = off;
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is(pg_temp.seen(12), :all_12::bigint, 'crm_gdpr.restriction_reads = off: nothing hidden');
RESET ROLE;
SET LOCAL crm_gdpr.restriction_reads = filter;

-------------------------------------------------------------- the DDL guard
SET LOCAL ROLE crm_gdpr_t_owner;
SELECT throws_ok($$DROP POLICY gdpr_restriction ON crm.contacts$$, '42501', NULL, 'the owner cannot drop the policy');
SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE ROW LEVEL SECURITY$$, '42501', NULL, 'nor switch row-level security off');
SELECT throws_ok($$ALTER POLICY gdpr_restriction ON crm.contacts USING (true)$$, '42501', NULL, 'nor change the policy');
SELECT throws_ok($$ALTER POLICY gdpr_restriction ON crm.contacts TO crm_gdpr_t_owner$$, '42501', NULL, 'nor its roles');
SELECT throws_ok($$ALTER POLICY gdpr_restriction ON crm.contacts RENAME TO x$$, '42501', NULL, 'nor rename it');
SELECT throws_ok($$DROP TRIGGER gdpr_log_update ON crm.contacts$$, '42501', NULL, 'nor drop the trigger that checks updates against the suppression list');
SELECT throws_ok($$ALTER TABLE crm.contacts DISABLE TRIGGER gdpr_subject_departed$$, '42501', NULL, 'nor disable the departure trigger');
SELECT throws_ok($$ALTER TRIGGER gdpr_subject_departed ON crm.contacts RENAME TO x$$, '42501', NULL, 'nor rename it');
SELECT throws_ok($$DROP TRIGGER gdpr_subject_departed ON crm.contacts$$, '42501', NULL, 'nor the departure trigger');
RESET ROLE;
SELECT ok(gdpr._restriction_policy_whole('crm.contacts'::regclass), 'the policy is intact');

-------------------------------------------------------------- the policy follows the links
-- A table linked to him by a second column: the policy's expression goes
-- from his key column to the registry's way, and still hides his rows.
SET client_min_messages = warning;
CREATE TABLE crm.shared_notes (id bigserial PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id),
                               other_contact_id bigint REFERENCES crm.contacts (id), note text);
INSERT INTO crm.shared_notes (contact_id, other_contact_id, note) VALUES (11, 12, 'both'), (11, 13, 'not him');
GRANT SELECT ON crm.shared_notes TO crm_gdpr_t_app;
SELECT gdpr.register_table('crm.shared_notes', 'contact_id') IS NULL AS registered \gset
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'crm.shared_notes'::regclass
             AND polname = 'gdpr_restriction'), 'gdpr.restriction_visible(tableoid, ctid, contact_id)',
          'a table holding its subject''s key passes it to the policy');
SELECT gdpr.link_table('crm.shared_notes', 'other_contact_id', 'crm.contacts', 'id') IS NULL AS linked \gset
RESET client_min_messages;
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'crm.shared_notes'::regclass
             AND polname = 'gdpr_restriction'), 'gdpr.restriction_visible(tableoid, ctid)',
          'with a second link, the policy finds his rows through the registry');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is((SELECT array_agg(note) FROM crm.shared_notes), ARRAY['not him'], 'and hides the row linked to him by the second link');
RESET ROLE;
SELECT throws_ok($$DROP POLICY gdpr_restriction ON crm.shared_notes$$, '42501', NULL,
                 'the guard holds the new expression (a superuser is refused too)');

-------------------------------------------------------------- per table
SELECT count(*) AS his_interactions FROM crm.interactions WHERE contact_id = 12 \gset
SET LOCAL ROLE crm_gdpr_t_app;
SELECT throws_ok($$SELECT gdpr.set_restriction_reads('crm.interactions', 'off')$$, '42501', NULL,
                 'the application cannot switch a table''s filter off');
RESET ROLE;
SET LOCAL ROLE crm_gdpr_t_admin;
SELECT throws_ok($$SELECT gdpr.set_restriction_reads('crm.interactions', 'off')$$, '42501', NULL,
                 'nor a gdpr_admin without the table owner''s rights');
RESET ROLE;
SELECT lives_ok($$SELECT gdpr.set_restriction_reads('crm.interactions', 'off')$$, 'with them, it is switched off');
SELECT ok(NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = 'crm.interactions'::regclass)
          AND EXISTS (SELECT FROM gdpr.registry_changes WHERE event = 'restriction reads' AND object = 'crm.interactions'
                        AND detail LIKE 'off by %'), 'the table loses its policies, and the change is recorded');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is((SELECT count(*) FROM crm.interactions WHERE contact_id = 12), :his_interactions::bigint,
          'that table shows his rows again; the others still hide them');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 12), 0::bigint, 'the others still hide them');
RESET ROLE;
SELECT lives_ok($$SELECT gdpr.set_restriction_reads('crm.interactions', 'filter')$$, 'and back on');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is((SELECT count(*) FROM crm.interactions WHERE contact_id = 12), 0::bigint, 'his rows are hidden again');
RESET ROLE;

-------------------------------------------------------------- lifted, unregistered
SELECT gdpr.restrict_subject('13', 'objection pending') IS NULL AS restricted \gset
SELECT gdpr.lift_restriction('12', 'checked') IS NULL AS lifted \gset
SELECT count(*) AS all_policies FROM pg_policy p
 WHERE p.polname = 'gdpr_restriction' AND p.polrelid IN (SELECT gdpr._registered_relations()) \gset
SELECT is(pg_temp.policies('armed'), :all_policies::bigint, 'one of two lifted: every policy stays armed');
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is(pg_temp.seen(12), :all_12::bigint, 'lifted: the application sees his rows again');
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 13), 0::bigint, 'the other is still hidden');
RESET ROLE;
SELECT gdpr.lift_restriction('13', 'settled') IS NULL AS lifted \gset
SELECT is(pg_temp.policies('true'), :all_policies::bigint, 'the last one lifted: every policy is dormant again');
SET client_min_messages = warning;
CREATE TABLE crm.visits_2028 PARTITION OF crm.visits FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
RESET client_min_messages;
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'crm.visits_2028'::regclass
             AND polname = 'gdpr_restriction'), 'true', 'a partition created while dormant gets the dormant policy');
SET LOCAL ROLE crm_gdpr_t_owner;
SELECT throws_ok($$ALTER POLICY gdpr_restriction ON crm.contacts USING (true)$$, '42501', NULL,
                 'the owner cannot ALTER the dormant policy either, even to what it says');
RESET ROLE;
SELECT throws_ok($$ALTER POLICY gdpr_restriction ON crm.contacts USING (true)$$, '42501', NULL, 'nor can a superuser');
SELECT ok(gdpr._restriction_policy_whole('crm.contacts'::regclass), 'the dormant policy is whole');
SELECT gdpr.restrict_subject('13', 'again') IS NULL AS restricted \gset
SET LOCAL ROLE crm_gdpr_t_app;
SELECT is((SELECT count(*) FROM crm.contacts WHERE id = 13), 0::bigint, 'restricted again: armed again, hidden');
RESET ROLE;
SELECT gdpr.lift_restriction('13', 'settled') IS NULL AS lifted \gset
SELECT gdpr.unregister_table('crm.marketing_events') IS NULL AS unregistered \gset
SELECT ok(NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = 'crm.marketing_events'::regclass)
          AND NOT (SELECT relrowsecurity FROM pg_class WHERE oid = 'crm.marketing_events'::regclass),
          'unregistering removes the policies and switches row-level security off again');
SELECT gdpr.unregister_table('crm.private_notes') IS NULL AS unregistered \gset
SELECT ok((SELECT array_agg(polname::text) FROM pg_policy WHERE polrelid = 'crm.private_notes'::regclass) = ARRAY['own_notes']
          AND (SELECT relrowsecurity FROM pg_class WHERE oid = 'crm.private_notes'::regclass),
          'a table with policies of its own keeps them, and row-level security');

SELECT * FROM finish();
ROLLBACK;
