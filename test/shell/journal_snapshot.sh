#!/usr/bin/env bash
# A held snapshot leaves the log writer's cost flat (issue 24.4): while a
# REPEATABLE READ transaction stays idle (its snapshot keeps VACUUM from
# removing anything deleted since), writes go on and the journals stay a few
# hundred kB — the log writer truncates them (log_journals.c) — instead of
# growing with time; every write is logged once the snapshot is released.
# Then the fallback: a session holding a lock on a journal keeps it from being
# truncated; its rows are still moved (by DELETE), nothing is lost, and once
# the lock goes a later round truncates it.
# LOAD_RATE (writes/s, default 400) and LOAD_SECONDS (default 30) make it a
# measurement: the journals' size and the log writer's CPU ticks per 10 s are
# printed.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_journal.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(pg_config --bindir)
trap 'exec 3>&- 4>&- 2>/dev/null; cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"' EXIT
cluster_start "$top" "crm_gdpr.database = 'crm'" "crm_gdpr.enable_worker = off"
rate=${LOAD_RATE:-400}
seconds=${LOAD_SECONDS:-30}
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(1000)" -f test/fixtures/registry.sql >/dev/null
wait_for 30 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer')" || fail "no log writer"
wpid=$(q -d crm -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer'")
# Each transaction updates one contact that exists: one logged write.
maxid=$(q -d crm -c "SELECT max(id) FROM crm.contacts")
printf '%s\n' '\set r random(1, :maxid)' \
  "UPDATE crm.contacts SET city = 'c' || :r % 100 WHERE id = (SELECT min(id) FROM crm.contacts WHERE id >= :r);" >"$top/write.sql"

# The journals' tables (one up to 0.2), their size with TOAST, and the log writer's CPU in ticks.
journals="SELECT c.oid::regclass FROM pg_class c
           WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'access_log_journal%'"
journal_bytes() { q -d crm -c "SELECT sum(pg_total_relation_size(j)) FROM ($journals) x(j)"; }
ticks() { awk '{print $14 + $15}' "/proc/$wpid/stat"; }
# load APP SECONDS: writes at $rate a second in the background; its log in $top/APP.*
load() {
  PGAPPNAME=$1 timeout $(($2 + 60)) "$CLUSTER_BIN/pgbench" -n -c 4 -j 2 -R "$rate" -T "$2" -D maxid="$maxid" -f "$top/write.sql" \
    -l --log-prefix="$top/$1" crm >"$top/$1.out" 2>&1 &
  load_pid=$!
}
writes_done() { cat "$top/$1".[0-9]* | wc -l; }
logged_sql() { echo "(SELECT coalesce(sum(times), 0) FROM gdpr.access_log WHERE application_name = '$1' AND operation = 'UPDATE')"; }
logged() { q -d crm -c "SELECT $(logged_sql "$1")"; }

# --- a held snapshot -------------------------------------------------------
# An idle transaction that read something: its snapshot is held until COMMIT.
exec 3> >(psql -X -q -d crm >/dev/null)
echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM crm.contacts;" >&3
wait_for 10 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xmin IS NOT NULL)" ||
  fail "no snapshot held"
load snapshot_load "$seconds"
sizes=(); cpu=()
for i in $(seq 1 $((seconds / 10))); do
  t0=$(ticks); sleep 10; t1=$(ticks)
  sizes+=("$(journal_bytes)"); cpu+=($((t1 - t0)))
done
wait $load_pid
# No writing transaction may fail while the journals are switched and
# truncated under it (a commit once found its cached journals forgotten by
# the truncation's invalidation: "gdpr.access_log_journal does not exist").
! grep -E "error|aborted" "$top/snapshot_load.out" || fail "a writing transaction failed while the journals were truncated"
echo "journals' bytes every 10 s: ${sizes[*]}; log writer's CPU ticks per 10 s: ${cpu[*]} ($rate writes/s, snapshot held)"
third=${sizes[$(( (${#sizes[@]} - 1) / 3 ))]}; last=${sizes[-1]}
max=$(printf '%s\n' "${sizes[@]}" | sort -n | tail -1)
[ "$max" -lt $((2 * 1024 * 1024)) ] || fail "the journals grew to $max bytes under a held snapshot: ${sizes[*]}"
[ "$last" -lt $((third + 512 * 1024)) ] || fail "the journals grow with time under a held snapshot: $third bytes at a third, $last at the end"
echo "COMMIT;" >&3; exec 3>&-
done_writes=$(writes_done snapshot_load)
echo "writes done: $done_writes in $seconds s"
[ "$done_writes" -gt $((rate * seconds / 3)) ] || fail "the load wrote only $done_writes times: $(cat "$top/snapshot_load.out")"
wait_for 30 "SELECT $(logged_sql snapshot_load) >= $done_writes AND journal_rows = 0 FROM gdpr.access_log_status" ||
  fail "writes lost: $done_writes done, $(logged snapshot_load) logged"
[ "$(logged snapshot_load)" = "$done_writes" ] || fail "writes logged twice: $done_writes done, $(logged snapshot_load) logged"

# --- a journal locked: moved by DELETE, truncated later --------------------
filenode() { q -d crm -c "SELECT pg_relation_filenode('gdpr.access_log_journal_$1')"; }
exec 4> >(psql -X -q -d crm >/dev/null)
echo "BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK gdpr.access_log_journal_1 IN ACCESS SHARE MODE; SELECT 1;" >&4
wait_for 10 "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'gdpr.access_log_journal_1'::regclass
                              AND mode = 'AccessShareLock' AND granted)" || fail "the journal was not locked"
locked1=$(filenode 1); before2=$(filenode 2)
load locked_load 20
sleep 2
wait_for 30 "SELECT pg_relation_size('gdpr.access_log_journal_1') > 32 * 8192" ||
  fail "the locked journal never grew past the truncation threshold: the fallback is not tested"
wait_for 30 "SELECT count(*) < $rate * 3 FROM gdpr.access_log_journal" || fail "the locked journal's rows are not moved"
wait $load_pid
[ "$(filenode 1)" = "$locked1" ] || fail "a journal was truncated under another session's lock"
[ "$(filenode 2)" != "$before2" ] || fail "the other journal was not truncated meanwhile"
echo "COMMIT;" >&4; exec 4>&-
done_writes=$(writes_done locked_load)
wait_for 30 "SELECT $(logged_sql locked_load) >= $done_writes AND journal_rows = 0 FROM gdpr.access_log_status" ||
  fail "writes lost while a journal was locked: $done_writes done, $(logged locked_load) logged"
[ "$(logged locked_load)" = "$done_writes" ] || fail "writes logged twice: $done_writes done, $(logged locked_load) logged"
# Writes again: the journal grown while locked is truncated by a later round.
load after_lock 8
wait $load_pid
wait_for 30 "SELECT pg_relation_filenode('gdpr.access_log_journal_1') <> $locked1" ||
  fail "the journal locked meanwhile was never truncated afterwards"
done_writes=$(writes_done after_lock)
wait_for 30 "SELECT $(logged_sql after_lock) = $done_writes" || fail "writes lost after the lock: $done_writes done, $(logged after_lock) logged"
# --- as fast as they go: a journal truncated nearly every round -------------
# Each truncation invalidates the journal in every writing backend, at any
# point of their commits: none of them may fail.
"$CLUSTER_BIN/pgbench" -n -c 2 -j 2 -T 15 -D maxid="$maxid" -f "$top/write.sql" crm >"$top/burst.out" 2>&1 ||
  fail "a writing transaction failed while the journals were truncated: $(grep -E 'error|abort' "$top/burst.out" | head -3)"
echo "burst: $(grep -o 'tps = [0-9.]*' "$top/burst.out"), no transaction failed"
echo "journal_snapshot ok"
