#!/usr/bin/env bash
# The gdpr_restriction policy is dormant while nobody is restricted and armed
# while someone is (src/restriction_dormant.c): two sessions that restrict and
# lift at the same time, in both orders and with a REPEATABLE READ lifter
# whose snapshot predates the other's restriction, always end armed with the
# restricted subject hidden; a restriction that cannot arm a busy table fails
# whole (55P03), a lift that cannot disarm one leaves the policies armed, and
# the purge worker's reconcile brings them back to the restrictions' state.
source "$(dirname "$0")/lib.sh"
db=dormant
fresh_db $db 200
q -d $db -f test/fixtures/registry.sql >/dev/null
q -d $db >/dev/null <<'SQL'
DROP ROLE IF EXISTS crm_gdpr_dormant_app;
CREATE ROLE crm_gdpr_dormant_app IN ROLE gdpr_app;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_dormant_app;
GRANT SELECT ON ALL TABLES IN SCHEMA crm TO crm_gdpr_dormant_app;
SQL
cleanup() { dropdb --if-exists $db; q -c 'DROP ROLE IF EXISTS crm_gdpr_dormant_app' >/dev/null; }

# How many registered relations' policies are armed, and how many exist.
state() {
  q -d $db -c "SELECT count(*) FILTER (WHERE pg_get_expr(p.polqual, p.polrelid) <> 'true') || '/' || count(*)
                 FROM pg_policy p WHERE p.polname = 'gdpr_restriction' AND p.polrelid IN (SELECT gdpr._registered_relations())"
}
all=$(state); all=${all#*/}
[ "$all" -ge 4 ] || fail "too few policies: $(state)"
[ "$(state)" = "0/$all" ] || fail "nobody restricted, yet armed: $(state)"
hidden() {
  [ "$(psql -X -At -d $db -c 'SET ROLE crm_gdpr_dormant_app' -c "SELECT count(*) FROM crm.contacts WHERE id = $1" | tail -1)" = 0 ]
}
expect_armed_with() {
  [ "$(state)" = "$all/$all" ] || fail "$1: the policies are not all armed: $(state)"
  hidden "$2" || fail "$1: the restricted subject $2 is read"
  [ "$(q -d $db -c "SELECT gdpr.is_restricted('$2')")" = t ] || fail "$1: subject $2 not restricted"
}
reset() {
  q -d $db -c "UPDATE gdpr.restrictions SET lifted_at = now(), lifted_by = current_user WHERE lifted_at IS NULL" >/dev/null
  [ "$(state)" = "0/$all" ] || fail "everything lifted, yet armed: $(state)"
}

# race LABEL SUBJECT OTHER_SQL PSQL_ARGS...: with subject 6 restricted, one
# session runs PSQL_ARGS (holding its transaction), another runs OTHER_SQL
# meanwhile; then the policies must be armed and SUBJECT hidden.
race() {
  local label=$1 subject=$2 other=$3 bg; shift 3
  q -d $db -c "SELECT gdpr.restrict_subject('6', 'before')" >/dev/null
  [ "$(state)" = "$all/$all" ] || fail "restricted, yet dormant: $(state)"
  q -d $db "$@" >/dev/null &
  bg=$!
  sleep 0.5
  q -d $db -c "$other" >/dev/null
  wait $bg
  expect_armed_with "$label" "$subject"
  reset
}
# 1. A restricts 5 and holds its transaction; B lifts 6 (the only other); A commits first.
race "A restricts, B lifts, A commits first" 5 "SELECT gdpr.lift_restriction('6')" \
  -c "BEGIN" -c "SELECT gdpr.restrict_subject('5', 'A')" -c "SELECT pg_sleep(1.5)" -c "COMMIT"
# 2. B lifts 6 (the last one) and holds its transaction; A restricts 5 meanwhile; B commits first.
race "B lifts, A restricts, B commits first" 5 "SELECT gdpr.restrict_subject('5', 'A')" \
  -c "BEGIN" -c "SELECT gdpr.lift_restriction('6')" -c "SELECT pg_sleep(1.5)" -c "COMMIT"
# 3. B, in REPEATABLE READ, took its snapshot before A restricted 5 and
#    committed; B then lifts 6: the state is read afresh, not with B's snapshot.
race "a REPEATABLE READ lifter with an older snapshot" 5 "SELECT gdpr.restrict_subject('5', 'A')" \
  -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT count(*) FROM gdpr.restrictions" -c "SELECT pg_sleep(1.5)" \
  -c "SELECT gdpr.lift_restriction('6')" -c "COMMIT"
#    The same for a SERIALIZABLE DELETE of the rows by hand (another path than the functions).
race "a SERIALIZABLE DELETE with an older snapshot" 7 "SELECT gdpr.restrict_subject('7', 'A')" \
  -c "BEGIN ISOLATION LEVEL SERIALIZABLE" -c "SELECT count(*) FROM gdpr.restrictions" -c "SELECT pg_sleep(1.5)" \
  -c "DELETE FROM gdpr.restrictions WHERE subject_id = '6'" -c "COMMIT"

# 4. A long reader of crm.orders: restricting must not wait for ever, and
#    fails whole; the policies stay dormant and nobody is restricted.
q -d $db -c "BEGIN" -c "SELECT count(*) FROM crm.orders" -c "SELECT pg_sleep(7)" -c "COMMIT" >/dev/null &
r=$!
sleep 0.5
start=$(date +%s)
out=$(psql -X -d $db -v VERBOSITY=verbose -c "SELECT gdpr.restrict_subject('8', 'busy')" 2>&1) && fail "restricted behind a long reader: $out"
took=$(($(date +%s) - start))
grep -q '55P03' <<<"$out" && grep -q 'could not arm the restriction policy of crm.orders' <<<"$out" \
  || fail "unexpected error: $out"
[ "$took" -le 6 ] || fail "the restriction waited ${took}s"
[ "$(q -d $db -c "SELECT gdpr.is_restricted('8')")" = f ] || fail "a restriction was recorded with the policies dormant"
[ "$(state)" = "0/$all" ] || fail "a failed restriction left policies armed: $(state)"
wait $r

# 5. Lifting behind a long reader leaves the policies armed (harmless) and
#    succeeds; the next change disarms them.
q -d $db -c "SELECT gdpr.restrict_subject('8', 'free')" >/dev/null
q -d $db -c "BEGIN" -c "SELECT count(*) FROM crm.orders" -c "SELECT pg_sleep(7)" -c "COMMIT" >/dev/null &
r=$!
sleep 0.5
out=$(psql -X -d $db -c "SELECT gdpr.lift_restriction('8')" 2>&1) || fail "the lift failed behind a long reader: $out"
grep -q 'stay armed' <<<"$out" || fail "the lift does not say the policies stay armed: $out"
[ "$(q -d $db -c "SELECT gdpr.is_restricted('8')")" = f ] || fail "not lifted"
[ "$(state)" = "$all/$all" ] || fail "a lift that timed out left policies partly disarmed: $(state)"
wait $r
q -d $db -c "SELECT gdpr.restrict_subject('9', 'x')" -c "SELECT gdpr.lift_restriction('9')" >/dev/null
[ "$(state)" = "0/$all" ] || fail "the next change did not disarm: $(state)"

# 6. The purge worker's round (gdpr._restriction_policy_reconcile()) disarms
#    what a lift behind a long reader left armed, without waiting for another
#    change of gdpr.restrictions; while the reader still runs it gives up
#    with a WARNING, and fails nothing.
q -d $db -c "SELECT gdpr.restrict_subject('8', 'again')" >/dev/null
q -d $db -c "BEGIN" -c "SELECT count(*) FROM crm.orders" -c "SELECT pg_sleep(13)" -c "COMMIT" >/dev/null &
r=$!
sleep 0.5
q -d $db -c "SELECT gdpr.lift_restriction('8')" >/dev/null 2>&1
[ "$(state)" = "$all/$all" ] || fail "the lift behind a long reader disarmed: $(state)"
out=$(psql -X -At -d $db -c "SELECT gdpr._restriction_policy_reconcile()" 2>&1) || fail "reconcile failed on a busy table: $out"
grep -q 'WARNING:.*could not be disarmed: crm.orders is in use' <<<"$out" || fail "no warning from a reconcile on a busy table: $out"
[ "$(tail -1 <<<"$out")" = 0 ] || fail "a reconcile that gave up says it changed policies: $out"
[ "$(state)" = "$all/$all" ] || fail "a reconcile that gave up left policies partly disarmed: $(state)"
wait $r
[ "$(q -d $db -c "SELECT gdpr._restriction_policy_reconcile()")" = "$all" ] || fail "the reconcile did not disarm every policy"
[ "$(state)" = "0/$all" ] || fail "still armed after the reconcile: $(state)"
[ "$(q -d $db -c "SELECT gdpr._restriction_policy_reconcile()")" = 0 ] || fail "a reconcile with nothing to do changed policies"

# 7. A restriction written without triggers firing (session_replication_role =
#    replica, as a logical subscription's apply does) leaves the policies
#    dormant: the reconcile arms them and the subject is hidden.
q -d $db -c "SET session_replication_role = replica" \
  -c "INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES ('crm.contacts', '7', 'replicated')" >/dev/null
[ "$(state)" = "0/$all" ] || fail "a restriction without triggers armed the policies: $(state)"
[ "$(q -d $db -c "SELECT gdpr._restriction_policy_reconcile()")" = "$all" ] || fail "the reconcile did not arm every policy"
expect_armed_with "a replicated restriction, reconciled" 7
reset
# ... and a session that read while another subject was restricted (its cache
# of the restrictions filled) no longer reads a subject restricted without
# triggers after the reconcile, although no policy changed.
q -d $db -c "SELECT gdpr.restrict_subject('6', 'known')" >/dev/null
out_file=$(mktemp)
psql -X -At -d $db -c "SET ROLE crm_gdpr_dormant_app" -c "SELECT count(*) FROM crm.contacts WHERE id IN (6, 7)" \
  -c "SELECT pg_sleep(3)" -c "SELECT count(*) FROM crm.contacts WHERE id = 7" > "$out_file" 2>&1 &
r=$!
sleep 1
q -d $db -c "SET session_replication_role = replica" \
  -c "INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES ('crm.contacts', '7', 'replicated')" >/dev/null
[ "$(q -d $db -c "SELECT gdpr._restriction_policy_reconcile()")" = 0 ] || fail "armed already, yet the reconcile changed policies"
wait $r
[ "$(sed -n 2p "$out_file")" = 1 ] || fail "the session did not read subject 7 before: $(cat "$out_file")"
[ "$(tail -1 "$out_file")" = 0 ] || fail "a session's cache still shows subject 7 after the reconcile: $(cat "$out_file")"
rm -f "$out_file"
reset
[ "$(q -d $db -c "SELECT has_function_privilege('crm_gdpr_dormant_app', 'gdpr._restriction_policy_reconcile()', 'EXECUTE')")" = f ] \
  || fail "gdpr_app may run the reconcile"
cleanup
echo "restriction dormant ok"
