#!/usr/bin/env bash
# The log writer on a full disk (issue 24.3 / 24's "full disk counted"): while
# it cannot extend the log's files, every read taken from the queue by a
# failed round is counted as lost — in gdpr.access_log_losses, not only in
# the server log — and the writer stays up and catches up once there is
# room: reads done = reads logged + reads recorded as lost, exactly.
# The full disk is the writer's own file-size limit (prlimit RLIMIT_FSIZE, soft, at
# the size of the log's partition: extending it fails with EFBIG, the error a
# full disk gives as ENOSPC); 1 MB WAL segments keep the WAL under it.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
command -v prlimit >/dev/null || fail "prlimit (util-linux) is needed"
top=$(mktemp -d /tmp/crm_gdpr_fulldisk.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(pg_config --bindir)
trap 'cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"' EXIT
CLUSTER_INITDB_OPTS=--wal-segsize=1 cluster_start "$top" "crm_gdpr.database = 'crm'" \
  "crm_gdpr.log_flush_interval = '200ms'" "crm_gdpr.log_seal_interval = '1s'" "crm_gdpr.enable_worker = off" \
  "max_wal_size = '32MB'" "min_wal_size = '4MB'"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(300)" -f test/fixtures/registry.sql >/dev/null
wait_for 30 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer')" || fail "no log writer"
# The month's partition, some 4 MB: the largest file the writer writes.
q -d crm -c 'BEGIN' -c 'SELECT gdpr._log_mac_door(true)' \
  -c "INSERT INTO gdpr.access_log (operation, table_name, row_count, subject_refs)
        SELECT 'SELECT', 'crm.contacts', 1, ARRAY[md5(i::text)] FROM generate_series(1, 30000) i" -c 'COMMIT' >/dev/null
part=$(q -d crm -c "SELECT tableoid::regclass FROM gdpr.access_log ORDER BY id DESC LIMIT 1")
size=$(q -d crm -c "SELECT pg_relation_size('$part')")
[ "$size" -gt 2000000 ] || fail "the partition $part is only $size bytes"
wpid=$(q -d crm -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer'")
cluster_as_owner prlimit --pid "$wpid" --fsize="$size:unlimited" || fail "prlimit on the log writer failed"

echo 'SELECT email FROM crm.contacts WHERE id = 1 + (random() * 250)::int;' >"$top/read.sql"
PGAPPNAME=full_disk_load timeout 60 "$CLUSTER_BIN/pgbench" -n -c 2 -j 2 -T 6 -f "$top/read.sql" \
  -l --log-prefix="$top/pgb" crm >"$top/pgbench.out" 2>&1 || fail "pgbench: $(cat "$top/pgbench.out")"
done_reads=$(cat "$top"/pgb.* | wc -l)
grep -q "could not extend file" "$CLUSTER_LOG" || fail "the log never filled its file: no failed round to count"
cluster_as_owner prlimit --pid "$wpid" --fsize=unlimited:unlimited || fail "the limit could not be lifted"
wait_for 30 "SELECT (SELECT coalesce(sum(times), 0) FROM gdpr.access_log WHERE application_name = 'full_disk_load')
                    + (SELECT lost_since_install FROM gdpr.access_log_status) >= $done_reads" ||
  fail "reads neither logged nor counted as lost: $done_reads done, $(q -d crm -c "SELECT sum(times) FROM gdpr.access_log WHERE application_name = 'full_disk_load'") logged, status: $(q -d crm -c 'SELECT lost_since_install, losses_by_cause FROM gdpr.access_log_status')"
logged=$(q -d crm -c "SELECT coalesce(sum(times), 0) FROM gdpr.access_log WHERE application_name = 'full_disk_load'")
lost=$(q -d crm -c "SELECT lost_since_install FROM gdpr.access_log_status")
[ $((logged + lost)) -eq "$done_reads" ] || fail "$done_reads reads done, $logged logged + $lost lost: a read counted twice"
[ "$(q -d crm -c "SELECT (losses_by_cause ->> 'flush failed')::bigint > 0 FROM gdpr.access_log_status")" = t ] ||
  fail "no loss recorded as 'flush failed': $(q -d crm -c 'SELECT losses_by_cause FROM gdpr.access_log_status')"
[ "$(q -d crm -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer'")" = "$wpid" ] ||
  fail "the log writer did not survive the failed rounds"
# With room again, the writer writes: new reads reach the log.
for i in $(seq 1 20); do PGAPPNAME=after_room q -d crm -c "SELECT email FROM crm.contacts WHERE id = $i" >/dev/null; done
wait_for 20 "SELECT sum(times) = 20 FROM gdpr.access_log WHERE application_name = 'after_room'" ||
  fail "the writer does not write once there is room again"
[ "$(q -d crm -c 'SELECT ok FROM gdpr.verify_access_log()')" = t ] || fail "verify: $(q -d crm -c 'SELECT * FROM gdpr.verify_access_log()')"
echo "full disk ok: $done_reads reads, $logged logged, $lost counted as lost"
