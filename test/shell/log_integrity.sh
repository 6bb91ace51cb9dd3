#!/usr/bin/env bash
# The access log's integrity against what other sessions do (issues 18.9,
# 19.3, 24.3, 24.6): an open transaction of an unrelated role, of a CRM
# writer, or a long read does not hold the seal back; the seal, the flush and the purge take locks no other role can
# take, and a lock held too long is reported with its holder; a clean
# restart under read load loses no read.  Loopback only, bounded in time.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_logint.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(pg_config --bindir)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"; }
trap cleanup EXIT
cluster_start "$top" "crm_gdpr.database = 'crm'" "crm_gdpr.log_flush_interval = '200ms'" \
  "crm_gdpr.log_seal_interval = '1s'" "crm_gdpr.enable_worker = off"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(300)" -f test/fixtures/registry.sql -c 'CREATE ROLE plain LOGIN' >/dev/null

# --- 18.9 and 19.3: a LOGIN-only role holds a transaction open, with the
# advisory keys the seal and the purge used to take.
mkfifo "$top/plain.in"
psql -X -q -U plain -d crm <"$top/plain.in" >"$top/plain.out" 2>&1 &
pids+=($!)
exec 7>"$top/plain.in"
echo "BEGIN; SELECT pg_advisory_xact_lock(hashtext('crm_gdpr.access_log_seal')), pg_advisory_xact_lock(hashtext('crm_gdpr purge'));" >&7
wait_for 5 "SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND pid = (SELECT pid FROM pg_stat_activity WHERE usename = 'plain')" || fail "plain holds no lock: $(cat "$top/plain.out")"
sleep 1
PGAPPNAME=late_reader q -d crm -c 'SELECT email FROM crm.contacts WHERE id = 7' >/dev/null
read_at=$(q -d crm -c "SELECT clock_timestamp()")
wait_for 15 "SELECT sealed_upto > '$read_at' AND EXISTS (SELECT FROM gdpr.access_log WHERE application_name = 'late_reader')
               FROM gdpr.access_log_status" ||
  fail "an unrelated open transaction holds the seal back: $(q -d crm -c 'SELECT sealed_upto, unsealed_rows FROM gdpr.access_log_status')"
out=$(timeout 20 psql -X -q -At -v ON_ERROR_STOP=1 -d crm -c 'SELECT count(*) FROM gdpr.purge()' 2>&1) ||
  fail "the purge failed while plain held a lock: $out"
grep -q 'another purge' <<<"$out" && fail "plain's advisory lock stops the purge: $out"
[ "$(timeout 20 psql -X -At -d crm -c 'SELECT gdpr.flush_access_log() >= 0' 2>&1)" = t ] || fail "the flush is blocked"
echo "COMMIT;" >&7
exec 7>&-
# Nobody else can take the seal lock; the one who can (a superuser) is named.
err=$(psql -X -q -U plain -d crm -c 'LOCK TABLE gdpr.access_log_seals IN SHARE UPDATE EXCLUSIVE MODE' 2>&1) &&
  fail "a plain role takes the seal lock"
mkfifo "$top/su.in"
PGAPPNAME=lock_holder psql -X -q -d crm <"$top/su.in" >/dev/null 2>&1 &
pids+=($!)
exec 8>"$top/su.in"
echo "BEGIN; LOCK TABLE gdpr.access_log_seals IN SHARE UPDATE EXCLUSIVE MODE;" >&8
wait_for 5 "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'lock_holder' AND l.relation = 'gdpr.access_log_seals'::regclass)" || fail "lock not taken"
err=$(timeout 20 psql -X -q -d crm -c "SELECT gdpr._lock_own_table('gdpr.access_log_seals', 300)" 2>&1) &&
  fail "the seal lock was taken while held"
grep -q "could not lock gdpr.access_log_seals within 300 ms" <<<"$err" && grep -q "application 'lock_holder'" <<<"$err" ||
  fail "the wait does not say who holds the lock: $err"
echo "COMMIT;" >&8
exec 8>&-

# --- 24.6: a CRM writer that stays in its transaction, and a read longer than
# several seal intervals, do not hold the seal back; their rows arrive in the
# open block with the times they had in detail.late, and the log verifies.
mkfifo "$top/writer.in"
PGAPPNAME=idle_writer psql -X -q -d crm <"$top/writer.in" >"$top/writer.out" 2>&1 &
pids+=($!)
exec 9>"$top/writer.in"
echo "BEGIN; UPDATE crm.contacts SET phone = '+33 1 00 00 00 08' WHERE id = 8;" >&9
wait_for 5 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'idle_writer' AND state = 'idle in transaction')" ||
  fail "the writer did not start: $(cat "$top/writer.out")"
PGAPPNAME=long_reader timeout 30 psql -X -q -d crm -c 'SELECT pg_sleep(4), email FROM crm.contacts WHERE id = 9' >/dev/null &
pids+=($!)
sleep 1
PGAPPNAME=late_reader2 q -d crm -c 'SELECT email FROM crm.contacts WHERE id = 10' >/dev/null
read_at=$(q -d crm -c "SELECT clock_timestamp()")
wait_for 15 "SELECT sealed_upto > '$read_at' FROM gdpr.access_log_status" ||
  fail "an open writing transaction or a long read holds the seal back: $(q -d crm -c 'SELECT sealed_upto, unsealed_rows FROM gdpr.access_log_status')"
echo "COMMIT;" >&9
exec 9>&-
wait_for 15 "SELECT count(*) = 2 FROM gdpr.access_log
              WHERE application_name IN ('idle_writer', 'long_reader') AND detail ? 'late'" ||
  fail "the late write and read are not in the log with their times: $(q -d crm -c "SELECT application_name, operation, at, detail FROM gdpr.access_log WHERE application_name IN ('idle_writer', 'long_reader')")"
[ "$(q -d crm -c "SELECT bool_and((detail #>> '{late,at}')::timestamptz < at AND at >= '$read_at')
                    FROM gdpr.access_log WHERE application_name IN ('idle_writer', 'long_reader')")" = t ] ||
  fail "a late row is not in the open block, or lost its time"
wait_for 15 "SELECT sealed_upto > (SELECT max(at) FROM gdpr.access_log WHERE application_name = 'idle_writer')
               FROM gdpr.access_log_status" || fail "the late rows are not sealed"
[ "$(q -d crm -c 'SELECT ok FROM gdpr.verify_access_log()')" = t ] ||
  fail "verify after late rows: $(q -d crm -c 'SELECT * FROM gdpr.verify_access_log()')"

# --- 24.3: a clean restart under read load loses nothing.  The writer waits
# 5 s between rounds, so that the queue holds reads when the server stops.
wait_for 30 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer')" ||
  fail "no log writer"
q -d crm -c "ALTER SYSTEM SET crm_gdpr.log_flush_interval = '5s'" -c 'SELECT pg_reload_conf()' >/dev/null
echo 'SELECT email FROM crm.contacts WHERE id = 1 + (random() * 250)::int;' >"$top/read.sql"
PGAPPNAME=restart_load timeout 30 "$CLUSTER_BIN/pgbench" -n -c 4 -j 2 -R 400 -T 4 -f "$top/read.sql" \
  -l --log-prefix="$top/pgb" crm >"$top/pgbench.out" 2>&1 &
load=$!
sleep 2
queued=$(q -d crm -c 'SELECT queued FROM gdpr.access_log_queue()')
cluster_as_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -m fast -w -t 60 restart -l "$CLUSTER_LOG" >/dev/null ||
  fail "restart failed"
wait $load || true
done_reads=$(cat "$top"/pgb.* | wc -l)
[ "$done_reads" -gt 100 ] && [ "$queued" -gt 0 ] || fail "no load to speak of: $done_reads reads, $queued queued at the stop"
q -d crm -c "ALTER SYSTEM RESET crm_gdpr.log_flush_interval" -c 'SELECT pg_reload_conf()' >/dev/null
wait_for 20 "SELECT sum(times) >= $done_reads FROM gdpr.access_log WHERE application_name = 'restart_load'" ||
  fail "a clean restart lost reads: $done_reads done, $(q -d crm -c "SELECT sum(times) FROM gdpr.access_log WHERE application_name = 'restart_load'") logged ($queued queued 2 s in), status: $(q -d crm -c 'SELECT lost_since_install, losses_by_cause FROM gdpr.access_log_status')"
[ "$(q -d crm -c 'SELECT lost_since_install FROM gdpr.access_log_status')" = 0 ] ||
  fail "losses recorded: $(q -d crm -c 'SELECT losses_by_cause FROM gdpr.access_log_status')"
grep -q "writing the queued reads before shutting down" "$CLUSTER_LOG" || fail "the writer did not drain the queue"
echo "log_integrity ok"
