#!/usr/bin/env bash
# ALTER EXTENSION crm_gdpr UPDATE from every released version (releases/,
# frozen) to the current one, on a filled database: afterwards it holds the
# same objects, definitions and privileges as a fresh install, its data is
# intact, and the access log and restrictions work.
source "$(dirname "$0")/lib.sh"
fill() {
  q -d "$1" -c 'SET client_min_messages = warning' -c "CREATE EXTENSION crm_gdpr${2:+ VERSION '$2'}" \
    -f test/fixtures/crm.sql -c 'SELECT crm.generate(300)' -f test/fixtures/registry.sql \
    -c "SELECT gdpr.grant_consent('5', 'newsletter', 'web', '{\"ip\": \"203.0.113.9\", \"user_agent\": \"UA\", \"form\": \"f1\", \"notice_version\": 1}')" \
    -c "SELECT gdpr.restrict_subject('3', 'accuracy contested')" >/dev/null
  [ -z "${3:-}" ] || q -d "$1" -c "SELECT gdpr.lift_restriction('3')" >/dev/null
}
# The same objects, definitions, privileges and triggers as a fresh install.
shape() {
  q -d "$1" <<'SQL'
SELECT 'member', pg_describe_object(classid, objid, objsubid) FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'crm_gdpr') AND deptype = 'e' ORDER BY 2;
SELECT 'function', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)),
       (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a) FROM pg_proc p
 WHERE p.pronamespace = 'gdpr'::regnamespace AND p.prokind <> 'a' ORDER BY p.oid::regprocedure::text;
SELECT 'relation', c.relname, c.relkind, c.reloptions, (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a) FROM pg_class c WHERE c.relnamespace = 'gdpr'::regnamespace ORDER BY 2;
SELECT 'view', c.relname, md5(pg_get_viewdef(c.oid)) FROM pg_class c
 WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind = 'v' ORDER BY 2;
SELECT 'trigger', t.tgrelid::regclass, t.tgname, t.tgenabled, t.tgnargs, encode(t.tgargs, 'escape') FROM pg_trigger t
 WHERE NOT t.tgisinternal AND t.tgname LIKE ANY (ARRAY['gdpr%', 'append_only%', 'mac', 'restrictions_changed', 'restrictions_policy', 'suppressions_changed'])
 ORDER BY t.tgrelid::regclass::text, t.tgname;
SELECT 'event trigger', evtname, evtevent, evttags FROM pg_event_trigger ORDER BY 2;
SELECT 'policy', p.polrelid::regclass, p.polname, p.polpermissive, p.polcmd, pg_get_expr(p.polqual, p.polrelid),
       c.relrowsecurity FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid ORDER BY 2, 3;
SQL
}
for from in $(ls releases | sed -n "s/^crm_gdpr--\([0-9.]*\)\.sql$/\1/p" | sort -V); do
  dropdb --if-exists upg_old; dropdb --if-exists upg_new
  createdb upg_old; createdb upg_new
  fill upg_old "$from"
  # A log trigger made to fire on a logical replica's apply too (doc/scale-out.md) stays so
  # (0.1 had no TRUNCATE trigger: set after the update there).
  always="ALTER TABLE crm.interactions ENABLE ALWAYS TRIGGER gdpr_log_truncate"
  [ "$from" = 0.1 ] || q -d upg_old -c "$always" >/dev/null
  [ "$(q -d upg_old -c "SELECT extversion FROM pg_extension WHERE extname = 'crm_gdpr'")" = "$from" ] || fail "$from not installed"
  before=$(q -d upg_old -c "SELECT count(*) FROM gdpr.personal_data" -c "SELECT count(*) FROM gdpr.consent_ledger" \
             -c "SELECT count(*) FROM gdpr.restrictions" -c "SELECT count(*) FROM crm.contacts")
  # Writes journaled by this library under the old SQL (the journal of 0.2, one statement a
  # row, no log writer in this database) are moved after the update, with the new layout's.
  [ "$from" = 0.1 ] || q -d upg_old -c "BEGIN" -c "UPDATE crm.contacts SET postcode = '54000' WHERE id = 8" \
    -c "UPDATE crm.contacts SET postcode = '54001' WHERE id = 9" -c "COMMIT" >/dev/null
  q -d upg_old -c 'ALTER EXTENSION crm_gdpr UPDATE' >/dev/null || fail "ALTER EXTENSION UPDATE from $from failed"
  [ "$from" != 0.1 ] || q -d upg_old -c "$always" >/dev/null
  updated_at=$(q -d upg_old -c 'SELECT clock_timestamp()')
  [ "$(q -d upg_old -c "SELECT extversion FROM pg_extension WHERE extname = 'crm_gdpr'")" = \
    "$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" crm_gdpr.control)" ] || fail "not at the current version"
  after=$(q -d upg_old -c "SELECT count(*) FROM gdpr.personal_data" -c "SELECT count(*) FROM gdpr.consent_ledger" \
            -c "SELECT count(*) FROM gdpr.restrictions" -c "SELECT count(*) FROM crm.contacts")
  [ "$before" = "$after" ] || fail "data changed by the update: $before / $after"

  fill upg_new
  q -d upg_new -c "$always" >/dev/null
  diff <(shape upg_old) <(shape upg_new) || fail "the extension updated from $from differs from a fresh install"

  # The access log works in the updated database; the restriction still holds.
  q -d upg_old -c "UPDATE crm.contacts SET city = 'Nancy' WHERE id = 9" -c "SELECT gdpr.flush_access_log()" >/dev/null
  [ "$(q -d upg_old -c "SELECT count(*) FROM gdpr.access_log WHERE operation = 'UPDATE' AND columns = '{city}'")" = 1 ] ||
    fail "writes are not logged after the update from $from"
  [ "$from" = 0.1 ] || [ "$(q -d upg_old -c "SELECT sum(times) || ' ' || sum(cardinality(subject_keys)) FROM gdpr.access_log
                                           WHERE operation = 'UPDATE' AND columns = '{postcode}'")" = "2 2" ] ||
    fail "writes journaled before the update from $from are not logged after it"
  # Issue 24.7: new rows name their subjects by keys (and verify: their MAC covers
  # them), rows of $from by references, and access_history finds a person in
  # either (the consent given by fill).  (Rows written here by $from's SQL have
  # no MAC: this library MACs only the rows of 0.3's writers; test/pgtap/access_log.sql
  # checks that a row without keys keeps the MAC form of 0.2.)
  q -d upg_old -c "UPDATE crm.contacts SET city = 'Metz' WHERE id = 5" -c "SELECT gdpr.flush_access_log()" >/dev/null
  [ "$(q -d upg_old -c "SELECT ok FROM gdpr.verify_access_log(since => '$updated_at')")" = t ] ||
    fail "the new rows do not verify after the update from $from: $(q -d upg_old -c "SELECT * FROM gdpr.verify_access_log(since => '$updated_at')")"
  found=$(q -d upg_old -c "SELECT count(*) FILTER (WHERE operation = 'UPDATE' AND subject_keys IS NOT NULL) > 0,
                                  count(*) FILTER (WHERE subject_refs IS NOT NULL) > 0
                             FROM gdpr.access_history('5') WHERE NOT may_include_you")
  [ "$found" = "t|$([ "$from" = 0.1 ] && echo f || echo t)" ] ||
    fail "access_history after the update from $from (a new row by its keys, an old one by its references): $found"
  psql -X -d upg_old -c "CREATE ROLE upg_app" -c "GRANT USAGE ON SCHEMA crm TO upg_app" \
    -c "GRANT UPDATE, SELECT ON crm.contacts TO upg_app" >/dev/null 2>&1
  err=$(psql -X -d upg_old -c 'SET ROLE upg_app' -c "UPDATE crm.contacts SET notes = 'x' WHERE id = 3" 2>&1) &&
    fail "the restriction is not enforced after the update"
  grep -q 'is restricted' <<<"$err" || fail "unexpected error: $err"
  # Tables registered before the update get the restriction's policy: reads hide him too.
  [ "$(psql -X -At -d upg_old -c 'SET ROLE upg_app' -c "SELECT count(*) FROM crm.contacts WHERE id = 3" | tail -1)" = 0 ] ||
    fail "a restricted subject's row is still read after the update from $from"
  q -d upg_old -c 'DROP OWNED BY upg_app' -c 'DROP ROLE upg_app' >/dev/null
  # A retention policy set under $from is the whole-table policy now, and still purges.
  [ "$(q -d upg_old -c "SELECT count(*) FROM gdpr.retention_status WHERE tbl = 'crm.contacts'::regclass
                          AND col IS NULL AND scope_column IS NULL AND NOT scope_exclude")" = 1 ] ||
    fail "the contacts' policy of $from is not the whole-table policy after the update"
  q -d upg_old -c "DELETE FROM crm.orders WHERE contact_id = 11" \
    -c "UPDATE crm.contacts SET last_contact_at = now() - interval '4 years' WHERE id = 11" -c "SELECT * FROM gdpr.purge()" >/dev/null
  [ "$(q -d upg_old -c "SELECT count(*) FROM crm.contacts WHERE id = 11")" = 0 ] ||
    fail "a retention policy of $from does not purge after the update"

  # Updated with nobody restricted, the policies are dormant (USING (true)),
  # as a fresh install's, and restricting arms them.
  dropdb upg_old; dropdb upg_new; createdb upg_old; createdb upg_new
  fill upg_old "$from" lifted
  q -d upg_old -c 'ALTER EXTENSION crm_gdpr UPDATE' >/dev/null || fail "ALTER EXTENSION UPDATE from $from failed (nobody restricted)"
  fill upg_new "" lifted
  diff <(shape upg_old) <(shape upg_new) || fail "updated from $from with nobody restricted, it differs from a fresh install"
  policies="SELECT string_agg(DISTINCT pg_get_expr(polqual, polrelid), ',') FROM pg_policy WHERE polname = 'gdpr_restriction'"
  [ "$(q -d upg_old -c "$policies")" = true ] || fail "updated from $from with nobody restricted: $(q -d upg_old -c "$policies")"
  q -d upg_old -c "SELECT gdpr.restrict_subject('4', 'x')" >/dev/null
  [ "$(q -d upg_old -c "$policies" | grep -c true)" = 0 ] || fail "updated from $from, a restriction does not arm the policies"
  dropdb upg_old; dropdb upg_new
done
echo "upgrade ok"
