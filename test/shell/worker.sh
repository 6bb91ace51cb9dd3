#!/usr/bin/env bash
# The purge worker purges on its own, skips a held subject, survives a reload,
# comes back after SIGKILL; the launcher starts no worker where the extension
# is not installed, and both at CREATE EXTENSION; the log writer vacuums the
# journals it empties; it arms the restriction's policies for a restriction
# written without triggers.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster worker "crm_gdpr.database = 'crm'" "crm_gdpr.purge_naptime = '1s'" "crm_gdpr.purge_batch_size = 500"
worker_pid() { q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr purge worker'"; }

createdb crm
wait_for 10 "SELECT true FROM pg_stat_activity WHERE application_name = 'crm_gdpr launcher'" \
  || fail "the launcher does not show in pg_stat_activity"
sleep 1.5
[ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname = 'crm'")" = 0 ] ||
  fail "a worker stays in a database without the extension"

# (20 s: "at once" against the launcher's naptime of 60 s, with room for a loaded machine.)
# One transaction: the worker (every second) never sees the policies before
# the hold is placed (it once purged the contact first).
# (The held contact is the first due; the others only go: it stays the first.)
first_due="SELECT min(id) FROM crm.contacts c WHERE last_contact_at < now() - interval '3 years'
             AND NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)"
q -d crm -c 'BEGIN' -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(1000)" -f test/fixtures/registry.sql \
  -c "SELECT gdpr.place_hold(($first_due)::text, 'litigation')" -c 'COMMIT' >/dev/null
held=$(q -d crm -c "$first_due")
wait_for 20 "SELECT count(*) = 2 FROM pg_stat_activity WHERE datname = 'crm' AND application_name IN ('crm_gdpr purge worker', 'crm_gdpr log writer')" \
  || fail "CREATE EXTENSION does not start the workers at once"
wait_for 20 "SELECT count(*) = 0 FROM gdpr.retention_status WHERE rows_due > 0" || fail "the worker did not purge"
[ "$(q -d crm -c "SELECT count(*) FROM crm.contacts WHERE id = $held")" = 1 ] || fail "a held subject was purged"
[ "$(q -d crm -c "SELECT count(*) > 0 FROM gdpr.purge_history WHERE started_by = 'worker' AND rows > 0")" = t ] \
  || fail "no worker run in the history"
# The contacts kept for their orders lose their identity in the policy's last
# batch, the first one short of the batch size (no batch more finding none).
wait_for 20 "SELECT coalesce(sum(rows_referenced), 0) = 0 FROM gdpr.retention_status" \
  || fail "the worker left contacts past due identified"
[ "$(q -d crm -c "SELECT coalesce(sum(anonymised), 0) > 0 FROM gdpr.purge_history WHERE started_by = 'worker'")" = t ] \
  || fail "the worker anonymised none of the contacts kept for their orders"

# The log writer vacuums the journals it deleted from after moving their rows (log_writer.c).
q -d crm -c "UPDATE crm.contacts SET city = city WHERE id IN (SELECT id FROM crm.contacts ORDER BY id LIMIT 20)" >/dev/null
wait_for 20 "SELECT count(*) = 0 FROM gdpr.access_log_journal" || fail "the log writer did not move the journal"
wait_for 20 "SELECT sum(vacuum_count) > 0 FROM pg_stat_all_tables
              WHERE relid IN ('gdpr.access_log_journal_1'::regclass, 'gdpr.access_log_journal_2'::regclass)" \
  || fail "the log writer did not vacuum the journals"
# Each round brings the restriction's read policies to the state of
# gdpr.restrictions: a restriction written without triggers firing (as a
# logical subscription's apply does) is armed by the worker, and said.
q -d crm -c "SET session_replication_role = replica" \
  -c "INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES ('crm.contacts', '$held', 'replicated')" >/dev/null
wait_for 20 "SELECT bool_and(pg_get_expr(p.polqual, p.polrelid) <> 'true') FROM pg_policy p
              WHERE p.polname = 'gdpr_restriction' AND p.polrelid IN (SELECT gdpr._registered_relations())" \
  || fail "the worker did not arm the policies for a restriction written without triggers"
grep -q 'restriction policies brought to the state of gdpr.restrictions' "$top/server.log" \
  || fail "the worker's arming is not in the server log"
q -d crm -c "SELECT gdpr.lift_restriction('$held')" >/dev/null
pid=$(worker_pid)
cluster_as_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" reload >/dev/null
sleep 1.5
[ "$(worker_pid)" = "$pid" ] || fail "the worker did not survive a reload"

kill -9 "$pid"
wait_for 30 "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'crm_gdpr purge worker' AND pid <> $pid" \
  || fail "the worker did not come back after SIGKILL"
q -d crm -c "UPDATE crm.contacts SET last_contact_at = now() - interval '5 years' WHERE id IN (SELECT id FROM crm.contacts
               c WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) AND id <> $held ORDER BY id LIMIT 3)" >/dev/null
wait_for 20 "SELECT count(*) = 0 FROM gdpr.retention_status WHERE policy_id = 1 AND rows_due > 0" \
  || fail "the restarted worker does not purge"
# A run left 'running' by a crash is marked interrupted when the worker starts again.
q -d crm -c "INSERT INTO gdpr.purge_runs (started_by, dry_run, started_at) VALUES ('before the crash', false, now() - interval '1 hour')" >/dev/null
cluster_as_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -l "$top/server.log" -m immediate -w restart >/dev/null 2>&1
wait_for 30 "SELECT status = 'interrupted' FROM gdpr.purge_runs WHERE started_by = 'before the crash'" \
  || fail "a run left running by a crash is not marked interrupted"
echo "worker ok"
