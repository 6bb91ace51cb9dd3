#!/usr/bin/env bash
# The access log's months that are over get their subject index, and those
# past crm_gdpr.access_log_keep their removal, from a worker of their own
# (log_months.c), never from the log writer: both took the log writer off
# its work for their whole length (an index build: minutes to hours on a
# busy CRM; counting a month: gigabytes read; its DROP: waiting for anyone
# reading the log), the read queue filled and the reads after that were
# lost.  Here neither can be done (a session holds locks on the two months
# that CREATE INDEX and DROP TABLE wait for): reads are still written by
# the log writer; once the locks go, the worker indexes the one month and
# drops the other, records the removal, says so in the server log, and
# exits.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_months.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(pg_config --bindir)
trap 'exec 3>&- 2>/dev/null; cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"' EXIT
cluster_start "$top" "crm_gdpr.database = 'crm'" "crm_gdpr.enable_worker = off" "crm_gdpr.log_flush_interval = '200ms'"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(100)" -f test/fixtures/registry.sql >/dev/null
writer="SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer' AND datname = 'crm'"
wait_for 30 "SELECT EXISTS ($writer)" || fail "no log writer"

# A month over for two months, as a CRM's log has after two month ends:
# without its subject index, so it waits for one.
month=$(q -d crm -c "SELECT gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '2 months')")
q -d crm -c "DO \$\$ BEGIN EXECUTE gdpr._log_partition_sql('$month',
  (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '2 months') AT TIME ZONE 'UTC',
  (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month') AT TIME ZONE 'UTC'); END \$\$" >/dev/null
# And a month 14 months old, past the log's retention (1 year), with 3 rows.
old=$(q -d crm -c "SELECT gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '14 months')")
q -d crm -c "DO \$\$ BEGIN EXECUTE gdpr._log_partition_sql('$old',
  (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '14 months') AT TIME ZONE 'UTC',
  (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '13 months') AT TIME ZONE 'UTC'); END \$\$" \
  -c "INSERT INTO gdpr.access_log (at, operation, application_name)
        SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '14 months' + interval '1 day') AT TIME ZONE 'UTC', 'SELECT', 'old'
          FROM generate_series(1, 3)" >/dev/null
has_old="SELECT to_regclass('gdpr.$old') IS NOT NULL"
[ "$(q -d crm -c "$has_old")" = t ] || fail "no old month"
has_index="SELECT EXISTS (SELECT FROM pg_indexes WHERE schemaname = 'gdpr' AND tablename = '$month' AND indexname = '${month}_subject_keys')"
[ "$(q -d crm -c "$has_index")" = f ] || fail "the month has its index already"

# A session holds locks on the two months that CREATE INDEX and DROP TABLE wait for.
exec 3> >(psql -X -q -d crm >/dev/null)
echo "BEGIN; LOCK TABLE gdpr.$month IN ROW EXCLUSIVE MODE; LOCK TABLE gdpr.$old IN ACCESS SHARE MODE;" >&3
wait_for 10 "SELECT count(*) = 2 FROM pg_locks WHERE relation IN ('gdpr.$month'::regclass, 'gdpr.$old'::regclass) AND granted
               AND pid <> pg_backend_pid()" ||
  fail "the locks are not held"

# restart_writer: the log writer ends; the launcher starts another, whose
# maintenance runs first.
restart_writer() {
  local old
  old=$(q -d crm -c "$writer")
  q -d crm -c "SELECT pg_terminate_backend($old)" >/dev/null
  wait_for 60 "SELECT EXISTS ($writer AND pid <> $old)" || fail "the launcher did not start the log writer again"
}
restart_writer
sleep 1
# Reads made meanwhile are written, within seconds (the worker gives the
# DROP up after 2 s and leaves the month for the next maintenance).
PGAPPNAME=during_index q -d crm -c "SELECT email FROM crm.contacts WHERE id = (SELECT min(id) FROM crm.contacts)" >/dev/null
wait_for 15 "SELECT EXISTS (SELECT FROM gdpr.access_log WHERE application_name = 'during_index')" ||
  fail "a read is not written while the months wait: $(q -d crm -c "SELECT backend_type || ': ' || coalesce(wait_event_type, '-') || ' ' || left(query, 60) FROM pg_stat_activity WHERE backend_type LIKE 'crm_gdpr%'")"
[ "$(q -d crm -c "$has_index")" = f ] || fail "the index was built through the lock"
[ "$(q -d crm -c "$has_old")" = t ] || fail "the old month was dropped through the lock"

# The locks go: at the next maintenance the worker indexes, drops and exits.
echo "COMMIT;" >&3; exec 3>&-
restart_writer
wait_for 30 "$has_index" ||
  fail "the worker did not build the month's index"
wait_for 30 "SELECT NOT ($has_old)" || fail "the worker did not drop the month past retention"
[ "$(q -d crm -c "SELECT row_count FROM gdpr.access_log_retention WHERE what = 'partition $old dropped'")" = 3 ] ||
  fail "the removal is not recorded with its rows: $(q -d crm -c "SELECT what, row_count FROM gdpr.access_log_retention")"
wait_for 10 "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log maintenance')" ||
  fail "the worker did not exit"
grep -q 'crm_gdpr log maintenance: 1 month(s) of the access log indexed, 3 row(s) of months past retention dropped' "$top/server.log" ||
  fail "the server log does not say what was done: $(grep 'crm_gdpr log maintenance' "$top/server.log")"
[ "$(q -d crm -c "SELECT (SELECT count(*) FROM gdpr._log_months_to_index()) + (SELECT count(*) FROM gdpr._log_months_to_drop())")" = 0 ] ||
  fail "a month still waits"
[ "$(q -d crm -c "SELECT ok FROM gdpr.verify_access_log()")" = t ] || fail "the log does not verify after the removal"
echo "log months: reads written while two months waited; then one indexed, one dropped and recorded by the worker, which exited"
