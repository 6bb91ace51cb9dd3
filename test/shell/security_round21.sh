#!/usr/bin/env bash
# Hostile review, round 21: attacks not covered by security.sh and
# security_round16.sh to security_round20.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension).
# Every check runs to the end and prints "ok" or "FAIL: round21.N: ..."; the
# script fails when one check failed (a FAIL is an attack that succeeded).
#
# Themes:
# - 21.1: a domain's CHECK is a function of the reader's own, but it is not
#   always a CoerceToDomain node in the condition: the server's type input
#   functions (record_in, array_in, range_in, domain_in) and
#   jsonb_populate_record check the domains of the type they build, and they
#   are the server's own, not volatile.  A condition that builds such a value
#   from a column and rejects every row hands every e-mail to the reader's
#   function, unlogged (a write rolled back likewise).
# - 21.2: the table's owner reads the planner's statistics of a registered
#   table (pg_stats.histogram_bounds: every e-mail after SET STATISTICS and
#   ANALYZE), unlogged.  NOT PREVENTED, documented (doc/access-log.md, "Not
#   logged"; reported as KNOWN, not as a failure): pg_stats filters on
#   row_security_active(), false for the owner of a table without FORCE ROW
#   LEVEL SECURITY; the planner feeds the owner's non-leakproof operators
#   the histogram (statistic_proc_security_check trusts a role that may
#   SELECT the column).  Weighed and not taken: FORCE ROW LEVEL SECURITY on
#   registered tables (the owner, often the CRM's own role, would meet every
#   policy of the table); a get_relation_stats_hook (the server sets acl_ok
#   after it: only withholding the statistics from everyone would do, and the
#   CRM's plans would suffer); logging reads of pg_statistic (its rows are
#   filtered by joins above the scan: a query about another table would be
#   logged as reading this one's).  What holds: every other role sees
#   nothing (the checks below), and an owner nobody logs in as closes it.
# - 21.3: a trigger of the owner's, fired by the extension's own erasure
#   (run as the owner, not logged as a read), reads the whole table
#   unlogged: what the extension's statement runs nested was exempt too.
# - 21.4: the same trigger fired by the purge worker (a retention policy):
#   everything the worker ran was exempt.
# - 21.9: what resisted (logged or refused).
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round21 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'" "max_prepared_transactions = 10"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
# total, smax, got_emails, peek (the reader's function: each value it is
# given goes to the client) and check N ROLE LABEL SQL... (lib.sh); here
# each check also creates a domain whose CHECK calls peek, and a composite
# type and a range over it.
hostile_leaks round21
dom='CREATE DOMAIN pg_temp.d AS text CHECK (pg_temp.peek(VALUE))'
comp='CREATE TYPE pg_temp.c AS (a pg_temp.d)'
range='CREATE TYPE pg_temp.r AS RANGE (subtype = pg_temp.d)'
leak_setup=("$peek" "$dom" "$comp" "$range")

# ---------------------------------------------------------------------------
# Round21.1: a domain's CHECK reached through the server's type input.
check 1 clerk "WHERE jsonb_populate_record(NULL::c, jsonb_build_object('a', email)) IS NULL (c has a column of domain d)" \
  "SELECT count(*) FROM crm.contacts WHERE jsonb_populate_record(NULL::pg_temp.c, jsonb_build_object('a', email)) IS NULL"
check 1 clerk "WHERE json_populate_record(NULL::c, json_build_object('a', email)) IS NULL" \
  "SELECT count(*) FROM crm.contacts WHERE json_populate_record(NULL::pg_temp.c, json_build_object('a', email)) IS NULL"
check 1 clerk "WHERE ('{\"' || email || '\"}')::d[] IS NULL (array_in)" \
  "SELECT count(*) FROM crm.contacts WHERE ('{\"' || email || '\"}')::pg_temp.d[] IS NULL"
check 1 clerk "WHERE ('(\"' || email || '\")')::c IS NULL (record_in)" \
  "SELECT count(*) FROM crm.contacts WHERE ('(\"' || email || '\")')::pg_temp.c IS NULL"
check 1 clerk "WHERE ('[\"' || email || '\",]')::r IS NULL (range_in)" \
  "SELECT count(*) FROM crm.contacts WHERE ('[\"' || email || '\",]')::pg_temp.r IS NULL"
check 1 clerk "WHERE domain_in(email::cstring, 'd'::regtype, -1) IS NULL" \
  "SELECT count(*) FROM crm.contacts WHERE domain_in(email::cstring, 'pg_temp.d'::regtype, -1) IS NULL"
check 1 clerk "UPDATE ... WHERE ('{\"' || email || '\"}')::d[] IS NULL, ROLLBACK" \
  "BEGIN" "UPDATE crm.contacts SET phone = phone WHERE ('{\"' || email || '\"}')::pg_temp.d[] IS NULL" "ROLLBACK"

# ---------------------------------------------------------------------------
# Round21.2: the planner's statistics, by the table's owner.  Row-level
# security hides a registered table's statistics in pg_stats from every
# other role (round17.6), not from its owner (row_security_active() is false
# for the owner without FORCE ROW LEVEL SECURITY): crm_owner raises the
# columns' statistics target, runs ANALYZE and reads every e-mail, phone
# number and subject key in histogram_bounds, with no record at all.
since=$(last_id)
out=$(as crm_owner $db "ALTER TABLE crm.contacts ALTER COLUMN email SET STATISTICS 10000" \
  "ALTER TABLE crm.contacts ALTER COLUMN id SET STATISTICS 10000" "ANALYZE crm.contacts" \
  "SELECT attname, histogram_bounds FROM pg_stats WHERE schemaname = 'crm' AND tablename = 'contacts' AND attname IN ('email', 'id')")
log_flush
read=$(got_emails "$out")
n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'crm_owner' AND tbl = 'crm.contacts'::regclass")
if [ "$read" -gt 0 ] && [ "$n" -lt "$read" ]; then
  known "round21.2" "crm_owner read $read e-mails (and the subject keys) in pg_stats.histogram_bounds after ANALYZE; the log counts $n rows"
elif [ "$read" = 0 ]; then ok "round21.2: pg_stats shows crm_owner no e-mail of a registered table ($(state_of "$out"))"
else ok "round21.2: crm_owner's $read e-mails from pg_stats are logged ($n rows)"; fi
# The same through the planner, without a row read (EXPLAIN): the estimate
# of an operator of the owner's own calls its function on every histogram
# bound of the column, when the role may see the statistics.
lt='CREATE FUNCTION pg_temp.lt(a text, b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RAISE NOTICE $x$peek %$x$, a; RETURN a < b; END$$'
op='CREATE OPERATOR pg_temp.<<< (leftarg = text, rightarg = text, function = pg_temp.lt, restrict = scalarltsel)'
for who in crm_owner clerk app adm; do
  since=$(last_id)
  out=$(as $who $db "$lt" "$op" "EXPLAIN SELECT * FROM crm.contacts WHERE email OPERATOR(pg_temp.<<<) 'm'")
  log_flush
  read=$(got_emails "$out")
  n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = '$who' AND tbl = 'crm.contacts'::regclass")
  if [ "$read" -gt 0 ] && [ "$n" -lt "$read" ] && [ "$who" = crm_owner ]; then
    known "round21.2" "$who's operator saw $read e-mails of the statistics while EXPLAIN planned a query; the log counts $n rows"
  elif [ "$read" -gt 0 ] && [ "$n" -lt "$read" ]; then
    bad "round21.2" "$who's operator saw $read e-mails of the statistics while EXPLAIN planned a query; the log counts $n rows"
  else ok "round21.2: $who's operator in EXPLAIN: $read e-mails of the statistics seen, $n rows logged"; fi
done
su $db "ALTER TABLE crm.contacts ALTER COLUMN email SET STATISTICS -1; ALTER TABLE crm.contacts ALTER COLUMN id SET STATISTICS -1; ANALYZE crm.contacts" >/dev/null

# ---------------------------------------------------------------------------
# Round21.9: what resisted.
# The domain's CHECK as such (CoerceToDomain) is a function of the reader's.
check 9 clerk "WHERE email::d IS NULL (CoerceToDomain)" "SELECT count(*) FROM crm.contacts WHERE email::pg_temp.d IS NULL"
# An error caught inside the same statement, row by row: each failed query names its row.
check 9 clerk "a DO block reading each row in a query that fails on it, catching each error" \
  "DO \$\$BEGIN FOR i IN 1..200 LOOP BEGIN PERFORM (email || ' ' || phone)::int FROM crm.contacts WHERE id = i; EXCEPTION WHEN others THEN RAISE NOTICE '%', SQLERRM; END; END LOOP; END\$\$"
# A cursor fetched, then its transaction prepared (the cursor is closed there) or left open at disconnection.
check 9 clerk "a cursor fetched, then PREPARE TRANSACTION" "BEGIN" "DECLARE k CURSOR FOR SELECT email FROM crm.contacts" "FETCH ALL FROM k" "PREPARE TRANSACTION 'round21'"
q -d $db -c "ROLLBACK PREPARED 'round21'" >/dev/null
check 9 clerk "a cursor fetched, then the session ends in its transaction" "BEGIN" "DECLARE k CURSOR FOR SELECT email FROM crm.contacts" "FETCH ALL FROM k"

# No over-counting: a condition building a value of the server's types through their input logs no read.
no_read round21.9 clerk "a condition through the input of types without a domain" \
  "SELECT count(*) FROM crm.contacts WHERE ('{' || id || '}')::int[] = '{0}' OR jsonb_populate_record(NULL::crm.contacts, jsonb_build_object('id', id)) IS NULL"

# ---------------------------------------------------------------------------
# Round21.3 (last: the erasure takes a contact away): the extension's own statements on a CRM table run as its owner
# (gdpr._owner_exec) and are not logged as reads: they are logged as what
# they do (ERASE, PURGE...).  But everything nested in them was left out
# too: a trigger of the owner's on crm.contacts, fired by an erasure that a
# gdpr_admin runs, copies every contact's e-mail and phone into a table of
# the owner's, and no read is logged.
owner $db "CREATE TABLE crm.stash (t text);
  CREATE FUNCTION crm.spy() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN
    INSERT INTO crm.stash SELECT email || ' ' || phone FROM crm.contacts; RETURN NULL; END\$\$;
  CREATE TRIGGER zz_spy AFTER UPDATE OR DELETE ON crm.contacts FOR EACH STATEMENT EXECUTE FUNCTION crm.spy();" >/dev/null
since=$(last_id)
out=$(as adm $db "SELECT gdpr.erase_subject('7') ->> 'status'")
log_flush
copied=$(q -d $db -c "SELECT count(*) FROM crm.stash")
n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'crm_owner' AND operation = 'SELECT' AND tbl = 'crm.contacts'::regclass")
e=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'adm' AND operation = 'ERASE'")
if [ "$(head -n 1 <<<"$out")" != erased ] || [ "$e" -lt 1 ]; then bad "round21.3" "setup: the erasure did not run: $(head -c 300 <<<"$out")"
elif [ "$copied" -gt 0 ] && [ "$n" -lt "$copied" ]; then
  bad "round21.3" "crm_owner's trigger, fired by adm's erasure, copied $copied contacts into crm.stash; the log counts $n rows read"
else ok "round21.3: crm_owner's trigger fired by an erasure: $copied contacts copied, $n rows logged"; fi
# No more than that: the erasure's own statements are not reads of adm's.
a=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'adm' AND operation = 'SELECT'")
[ "$a" = 0 ] && ok "round21.3: the erasure's own statements log no read" || bad "round21.3" "the erasure's own statements logged $a reads of adm's"

# ---------------------------------------------------------------------------
# Round21.4: the same trigger fired by the purge worker: no one has to act.
# The worker's own statements are not logged as reads; neither was what they
# fired.  A retention policy that clears old notes (UPDATE crm.contacts), a
# contact with old notes, the worker's naptime at 1 s.
# purge_fires LABEL ID: contact ID gets old notes; the worker clears them.
purge_fires() {
  local label=$1 id=$2 copied=0 since n p
  su $db "UPDATE crm.contacts SET last_contact_at = now() - interval '5 years', notes = 'old' WHERE id = $id" >/dev/null
  owner $db "TRUNCATE crm.stash" >/dev/null
  log_flush   # the superuser's UPDATE fired the trigger too: its read goes before since
  since=$(last_id)
  # The policy only now: any wake-up of the worker before since (a reload,
  # its start) would purge the row with its PURGE record before since.
  as adm $db "SELECT gdpr.set_retention('crm.contacts', 'notes', '1 year', 'last_contact_at', 'nullify')" >/dev/null
  su postgres "ALTER SYSTEM SET crm_gdpr.purge_naptime = '1s'" >/dev/null
  su postgres "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 120); do
    copied=$(q -d $db -c "SELECT count(*) FROM crm.stash")
    [ "$copied" -gt 0 ] && [ "$(q -d $db -c "SELECT notes IS NULL FROM crm.contacts WHERE id = $id")" = t ] && break
    sleep 1
  done
  sleep 1; copied=$(q -d $db -c "SELECT count(*) FROM crm.stash")
  log_flush
  n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'crm_owner' AND operation = 'SELECT' AND tbl = 'crm.contacts'::regclass")
  p=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'PURGE'")
  if [ "$p" -lt 1 ] || [ "$copied" = 0 ]; then bad "round21.4" "setup: the purge worker did not clear the notes ($label: $p PURGE records, $copied rows copied)"
  elif [ "$n" -lt "$copied" ]; then
    bad "round21.4" "crm_owner's $label, fired by the purge worker, copied $copied contacts into crm.stash; the log counts $n rows read"
  else ok "round21.4: crm_owner's $label fired by the purge worker: $copied contacts copied, $n rows logged"; fi
}
purge_fires "statement trigger" 12
su postgres "ALTER SYSTEM RESET crm_gdpr.purge_naptime" >/dev/null
su postgres "SELECT pg_reload_conf()" >/dev/null
owner $db "DROP TRIGGER zz_spy ON crm.contacts; DROP TABLE crm.stash; DROP FUNCTION crm.spy()" >/dev/null

hostile_verdict security_round21
