#!/usr/bin/env bash
# A month of the access log that is over gets its subject index from a
# worker of its own (log_indexer.c), never from the log writer: building it
# took the log writer off its work for the whole build (minutes to hours on
# a busy CRM), the read queue filled and the reads after that were lost.
# Here the index cannot be built (a session holds a lock on the month that
# CREATE INDEX waits for): reads are still written by the log writer; once
# the lock goes, the indexer builds the index, says so in the server log,
# and exits.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_indexer.XXXXXX)
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
has_index="SELECT EXISTS (SELECT FROM pg_indexes WHERE schemaname = 'gdpr' AND tablename = '$month' AND indexname = '${month}_subject_keys')"
[ "$(q -d crm -c "$has_index")" = f ] || fail "the month has its index already"

# A session holds a lock on the month that CREATE INDEX waits for.
exec 3> >(psql -X -q -d crm >/dev/null)
echo "BEGIN; LOCK TABLE gdpr.$month IN ROW EXCLUSIVE MODE;" >&3
wait_for 10 "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'gdpr.$month'::regclass AND mode = 'RowExclusiveLock' AND granted)" ||
  fail "the lock is not held"

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
# Reads made meanwhile are written, within seconds.
PGAPPNAME=during_index q -d crm -c "SELECT email FROM crm.contacts WHERE id = (SELECT min(id) FROM crm.contacts)" >/dev/null
wait_for 15 "SELECT EXISTS (SELECT FROM gdpr.access_log WHERE application_name = 'during_index')" ||
  fail "a read is not written while the month's index waits: $(q -d crm -c "SELECT backend_type || ': ' || coalesce(wait_event_type, '-') || ' ' || left(query, 60) FROM pg_stat_activity WHERE backend_type LIKE 'crm_gdpr%'")"
[ "$(q -d crm -c "$has_index")" = f ] || fail "the index was built through the lock"

# The lock goes: at the next maintenance the indexer builds the index and exits.
echo "COMMIT;" >&3; exec 3>&-
restart_writer
wait_for 30 "$has_index" ||
  fail "the indexer did not build the month's index"
wait_for 10 "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log indexer')" ||
  fail "the indexer did not exit"
grep -q 'crm_gdpr log indexer: indexed 1 month(s) of the access log' "$top/server.log" ||
  fail "the server log does not say the month was indexed"
[ "$(q -d crm -c "SELECT count(*) FROM gdpr._log_months_to_index()")" = 0 ] || fail "a month still waits for its index"
echo "log indexer: reads written while a month's index waited; the index built by the indexer, which exited"
