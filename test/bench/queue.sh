#!/usr/bin/env bash
# make bench-queue (issue 19.2): the read queue under two databases, one of
# them flooding it.  Both have crm_gdpr and the sample CRM's registry, each
# its own log writer (the launcher).  The victim reads contacts by key with
# pgbench (every read logged); the flooder reads with a purpose changed at
# every statement, so that none of its records can be folded, from FLOODERS
# clients at full speed.  Each round runs the victim alone, under the flood,
# and under the same flood in a database without the extension (cpuflood:
# the same CPU taken, nothing queued), in an order reversed every other
# round; the figures are the medians of the rounds' ratios of the victim's
# TPS, and the victim's reads lost under the flood, which must be 0: every
# read pgbench made is in the victim's log.  On a small shared machine the
# flooder takes CPU from the victim: flooded vs alone measures both, the
# queue's fairness and the CPU left; flooded vs cpuflood the queue alone.  The queue
# (QUEUE, 8192) is smaller than the default so that the flood fills its
# database's share (at 16384 two flooders did not: their log writer kept up),
# and large enough that the victim alone loses nothing (at 2048 a single
# reader at 30,000 reads/s outran its log writer and met its backend's bound,
# flood or not).  Losses alone and flooded are reported apart.
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-20000}
T=${T:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-1}
FLOODERS=${FLOODERS:-3}
QUEUE=${QUEUE:-8192}
# crm_gdpr.database = '': the launcher serves every database with the extension
# (cluster.sh names one database by default).
bench_start "synchronous_commit = off" "crm_gdpr.enable_worker = off" "logging_collector = off" "crm_gdpr.database = ''" \
  "crm_gdpr.log_queue_size = $QUEUE" "crm_gdpr.log_flush_interval = '200ms'"

for db in victim flooder; do
  createdb "$db"
  psql -X -q -d "$db" -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
    -f test/fixtures/crm.sql -c "SELECT crm.generate($SCALE)" -f test/fixtures/registry.sql -c 'VACUUM ANALYZE' >/dev/null
done
createdb cpuflood
psql -X -q -d cpuflood -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate($SCALE)" -c 'VACUUM ANALYZE' >/dev/null
n=$(psql -X -At -d victim -c "SELECT max(id) FROM crm.contacts")
printf '%s\n' '\set id random(1, :n)' 'SELECT first_name, email FROM crm.contacts WHERE id = :id;' > "$bench_top/read.sql"
# 100 reads per statement, each under a purpose of its own: records as fast as
# one backend can make them, none foldable (issue 19's hostile DO block).
printf '%s\n' "DO \$\$ BEGIN FOR i IN 1..100 LOOP PERFORM set_config('crm_gdpr.purpose', 'flood_' || random(), false);" \
  "PERFORM first_name, email FROM crm.contacts WHERE id = 1 + (random() * ($n - 1))::int; END LOOP; END \$\$;" \
  > "$bench_top/flood.sql"
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

declare -A runs=() ratios=()
lost=0 reads=0
declare -A lost_by=()
for i in $(seq 1 "$ROUNDS"); do
  order="alone flooded cpuflood"
  [ $((i % 2)) = 0 ] && order="cpuflood flooded alone"
  declare -A tps=()
  for mode in $order; do
    run="victim_${mode}_$i"
    if [ "$mode" != alone ]; then
      db=flooder; [ "$mode" = cpuflood ] && db=cpuflood
      pgbench -n -c "$FLOODERS" -j "$FLOODERS" -T "$((T + 2))" -D n="$n" -f "$bench_top/flood.sql" "$db" >/dev/null 2>&1 &
      flood=$!
      sleep 1                                   # the flood is on when the victim starts
    fi
    read -r tps[$mode] tx < <(victim "$run")
    [ "$mode" != alone ] && wait "$flood"
    drained
    for _ in $(seq 1 100); do got=$(logged "$run"); [ "$got" -ge "$tx" ] && break; sleep 0.1; done
    reads=$((reads + tx)); lost=$((lost + tx - got)); lost_by[$mode]=$(( ${lost_by[$mode]:-0} + tx - got ))
    echo "round $i, $mode: ${tps[$mode]} TPS, $tx reads, $got logged"
  done
  for mode in alone flooded cpuflood; do runs[$mode]="${runs[$mode]:-} ${tps[$mode]}"; done
  ratios[alone]="${ratios[alone]:-} $(ratio "${tps[flooded]}" "${tps[alone]}")"
  ratios[cpuflood]="${ratios[cpuflood]:-} $(ratio "${tps[flooded]}" "${tps[cpuflood]}")"
  unset tps
done
for k in alone cpuflood; do echo "rounds' ratios, flooded vs $k:${ratios[$k]}"; ratios[$k]=$(median <<<"${ratios[$k]}"); done
for k in alone flooded cpuflood; do runs[$k]=$(median <<<"${runs[$k]}"); done
flood_drops=$(psql -X -At -d victim -c "SELECT coalesce(sum(dropped), 0) FROM gdpr.access_log_queue_drops() WHERE database = 'flooder'")
alarms=$(psql -X -At -d victim -c "SELECT coalesce(string_agg(database || ': ' || alarm, ', ' ORDER BY database), 'none') FROM gdpr.log_queue_alarms")
flooded_lost=${lost_by[flooded]:-0}

echo "read queue benchmark: $SCALE contacts per database, queue $QUEUE, victim pgbench -M prepared -c $CLIENTS -T $T, flooder $FLOODERS clients (DO blocks of 100 reads, a purpose per read), $ROUNDS rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
bench_header
bench_row "victim's logged reads: flooded vs alone (TPS)" "${runs[flooded]}" "${runs[alone]}" "${ratios[alone]}" \
  "reported (the flooder's CPU included)"
bench_row "victim: flooded vs same load, no queue (TPS)" "${runs[flooded]}" "${runs[cpuflood]}" "${ratios[cpuflood]}" \
  "reported (what the queue costs it)"
bench_row "victim's reads lost under the flood" "$flooded_lost" "0" "-" "= 0 ($([ "$flooded_lost" = 0 ] && echo met || echo MISSED))"
echo "victim: $reads reads in all; not in its log: $flooded_lost flooded, ${lost_by[alone]:-0} alone, ${lost_by[cpuflood]:-0} under the plain flood"
echo "flooder's reads dropped: $flood_drops; alarms: $alarms"
[ "$flooded_lost" = 0 ]
