#!/usr/bin/env bash
# make bench-queue (issue 19.2): the read queue under two databases, one of
# them flooding it.  Both have crm_gdpr and the sample CRM's registry, each
# its own log writer (the launcher).  The victim reads contacts by key with
# pgbench (every read logged); the flooder reads with a purpose changed at
# every statement, so that none of its records can be folded, from FLOODERS
# clients at full speed.  Each round runs the victim alone and under the
# flood (order reversed every other round); the verdict is the median of the
# rounds' ratios of the victim's TPS, and the victim's reads lost, which must
# be 0: every read pgbench made is in the victim's log, none dropped.
# On a small shared machine the flooder also takes CPU from the victim: the
# ratio measures both, the queue's fairness and the CPU it leaves.
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-20000}
T=${T:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-1}
FLOODERS=${FLOODERS:-2}
QUEUE=${QUEUE:-4096}
bench_start "synchronous_commit = off" "crm_gdpr.enable_worker = off" "logging_collector = off" \
  "crm_gdpr.log_queue_size = $QUEUE" "crm_gdpr.log_flush_interval = '200ms'"

for db in victim flooder; do
  createdb "$db"
  psql -X -q -d "$db" -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
    -f test/fixtures/crm.sql -c "SELECT crm.generate($SCALE)" -f test/fixtures/registry.sql -c 'VACUUM ANALYZE' >/dev/null
done
n=$(psql -X -At -d victim -c "SELECT max(id) FROM crm.contacts")
printf '%s\n' '\set id random(1, :n)' 'SELECT first_name, email FROM crm.contacts WHERE id = :id;' > "$bench_top/read.sql"
printf '%s\n' '\set id random(1, :n)' "SELECT set_config('crm_gdpr.purpose', 'flood_' || :id, false);" \
  'SELECT first_name, email FROM crm.contacts WHERE id = :id;' > "$bench_top/flood.sql"
# Both log writers running before the first round.
for _ in $(seq 1 100); do
  [ "$(psql -X -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer'
                        AND datname IN ('victim', 'flooder')")" = 2 ] && break
  sleep 0.1
done

# victim RUN: pgbench in the victim as application RUN; prints "TPS transactions".
victim() {
  PGAPPNAME=$1 pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$T" -D n="$n" -f "$bench_top/read.sql" victim 2>&1 |
    awk '/^number of transactions actually processed/ { split($0, a, ": "); split(a[2], b, "/"); tx = b[1] }
         /^tps = / { tps = $3 } END { print tps, tx }'
}
drained() {
  for _ in $(seq 1 600); do
    [ "$(psql -X -At -d victim -c "SELECT queued = 0 FROM gdpr.access_log_status")" = t ] && return
    sleep 0.1
  done
}
logged() { psql -X -At -d victim -c "SELECT coalesce(sum(times), 0) FROM gdpr.access_log WHERE application_name = '$1'"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

alone_runs="" flooded_runs="" ratios="" lost=0 reads=0
for i in $(seq 1 "$ROUNDS"); do
  order="alone flooded"
  [ $((i % 2)) = 0 ] && order="flooded alone"
  declare -A tps=()
  for mode in $order; do
    run="victim_${mode}_$i"
    if [ "$mode" = flooded ]; then
      pgbench -n -c "$FLOODERS" -j "$FLOODERS" -T "$((T + 2))" -D n="$n" -f "$bench_top/flood.sql" flooder >/dev/null 2>&1 &
      flood=$!
      sleep 1                                   # the flood is on when the victim starts
    fi
    read -r tps[$mode] tx < <(victim "$run")
    [ "$mode" = flooded ] && wait "$flood"
    drained
    for _ in $(seq 1 100); do got=$(logged "$run"); [ "$got" -ge "$tx" ] && break; sleep 0.1; done
    reads=$((reads + tx)); lost=$((lost + tx - got))
    echo "round $i, $mode: ${tps[$mode]} TPS, $tx reads, $got logged"
  done
  alone_runs="$alone_runs ${tps[alone]}"; flooded_runs="$flooded_runs ${tps[flooded]}"
  ratios="$ratios $(ratio "${tps[flooded]}" "${tps[alone]}")"
  unset tps
done
echo "rounds' ratios, flooded vs alone:$ratios"
victim_drops=$(psql -X -At -d victim -c "SELECT coalesce(sum(dropped), 0) FROM gdpr.access_log_queue_drops() WHERE database = 'victim'")
flood_drops=$(psql -X -At -d victim -c "SELECT coalesce(sum(dropped), 0) FROM gdpr.access_log_queue_drops() WHERE database = 'flooder'")
alarms=$(psql -X -At -d victim -c "SELECT coalesce(string_agg(database || ': ' || alarm, ', '), 'none') FROM gdpr.log_queue_alarms")

echo "read queue benchmark: $SCALE contacts per database, queue $QUEUE, victim pgbench -M prepared -c $CLIENTS -T $T, flooder $FLOODERS clients (a purpose per read), $ROUNDS rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
bench_header
bench_row "victim's logged reads: flooded vs alone (TPS)" "$(median <<<"$flooded_runs")" "$(median <<<"$alone_runs")" \
  "$(median <<<"$ratios")" "reported (CPU shared with the flooder)"
bench_row "victim's reads lost (of $reads)" "$((lost + victim_drops))" "0" "-" \
  "= 0 ($([ "$((lost + victim_drops))" = 0 ] && echo met || echo MISSED))"
echo "flooder's reads dropped: $flood_drops (its own share full); alarms: $alarms"
[ "$((lost + victim_drops))" = 0 ]
