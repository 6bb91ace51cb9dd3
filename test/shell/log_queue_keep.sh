#!/usr/bin/env bash
# A session keeps the read-queue room its transaction did not use while its
# database's share is little used (log_queue_share.c: a select by key each
# transaction then reserves once per sixteen reads), but idle sessions never
# hold enough to starve a reader: 24 sessions that read once and stay
# (each would hold 16 records of room if all kept theirs: 384, more than the
# share of 256), then one that reads 100 times; nothing is dropped, and all
# 124 reads are logged.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_qkeep.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(${PG_CONFIG:-pg_config} --bindir)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"' EXIT
cluster_start "$top" "crm_gdpr.database = 'crm'" "crm_gdpr.log_queue_size = 256" "crm_gdpr.enable_log_writer = off" \
  "crm_gdpr.enable_worker = off"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(300)" -f test/fixtures/registry.sql >/dev/null
min=$(q -d crm -c 'SELECT min(id) FROM crm.contacts')

for i in $(seq 1 24); do
  PGAPPNAME=idle_reader psql -X -q -d crm -c "SELECT email FROM crm.contacts WHERE id = $((min + i))" \
    -c 'SELECT pg_sleep(60)' >/dev/null 2>&1 &
  pids+=($!)
done
wait_for 20 "SELECT queued >= 24 FROM gdpr.access_log_queue()" ||
  fail "the idle sessions' reads are not queued: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue()')"
# A purpose changed at every read, so that each takes room of its own (a read
# that repeats the last one is added to its record, log_queue.c).
PGAPPNAME=busy_reader q -d crm -c "DO \$\$ BEGIN FOR i IN 1..100 LOOP
  PERFORM set_config('crm_gdpr.purpose', 'p' || i, false);
  PERFORM email FROM crm.contacts WHERE id = $min + i; END LOOP; END \$\$" ||
  fail "the busy reader failed"
[ "$(q -d crm -c 'SELECT dropped FROM gdpr.access_log_queue()')" = 0 ] ||
  fail "reads dropped while idle sessions held room: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue()')"
q -d crm -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'idle_reader'" >/dev/null
q -d crm -c 'SELECT gdpr.flush_access_log()' >/dev/null
[ "$(q -d crm -c "SELECT sum(times) FILTER (WHERE application_name = 'idle_reader') || ',' ||
                         sum(times) FILTER (WHERE application_name = 'busy_reader')
                  FROM gdpr.access_log WHERE operation = 'SELECT'")" = 24,100 ] ||
  fail "not every read logged: $(q -d crm -c "SELECT application_name, sum(times) FROM gdpr.access_log GROUP BY 1")"
echo "read queue room kept by sessions ok"
