#!/usr/bin/env bash
# A log writer switched off (crm_gdpr.enable_log_writer = off) is not woken
# by readers: reads fill its database's share and are then dropped and
# counted, cheaply.  Before, every claim of room past a quarter of the share
# set the latch of the log writer, alive but switched off, which reset it and
# slept again: a system call and a wake-up per claim (0.59 x plain for reads by
# key in doc/benchmarks.md).  Measured by the log writer's voluntary context
# switches over a session's 40,000 reads (some 1,000 claims past the quarter).
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster wroff "crm_gdpr.database = 'crm'" "crm_gdpr.log_queue_size = 65536" "crm_gdpr.enable_log_writer = off" \
  "crm_gdpr.enable_worker = off"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(300)" -f test/fixtures/registry.sql >/dev/null
wait_for 30 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer')" || fail "no log writer"
wpid=$(q -d crm -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer'")
min=$(q -d crm -c 'SELECT min(id) FROM crm.contacts')
switches() { sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' "/proc/$wpid/status"; }

# A purpose changed at every read: reads that repeat the last one would be
# added to its record (log_queue.c) and claim no room at all.
before=$(switches)
q -d crm -c 'SET client_min_messages = error' -c "DO \$\$ BEGIN FOR i IN 1..40000 LOOP
  PERFORM set_config('crm_gdpr.purpose', 'p' || i, false);
  PERFORM email FROM crm.contacts WHERE id = $min + i % 300; END LOOP; END \$\$" || fail "the reader failed"
after=$(switches)
queue=$(q -d crm -c "SELECT queued || ' queued, ' || dropped || ' dropped' FROM gdpr.access_log_queue()")
# A session holds at most half of its database's share: 32,768 queued (and
# the two reads of the lines above), the rest dropped and counted.
[ "$(q -d crm -c "SELECT queued BETWEEN 32768 AND 32800 AND dropped >= 7200 FROM gdpr.access_log_queue()")" = t ] ||
  fail "the switched-off log writer's queue: $queue"
# Its own timeouts (crm_gdpr.log_flush_interval) wake it a few times during
# the reads; a wake-up per claim would be a thousand.
[ $((after - before)) -lt 100 ] ||
  fail "the switched-off log writer was woken $((after - before)) times by 40,000 reads ($queue)"
echo "switched-off log writer not woken by readers ok ($((after - before)) wake-ups)"
