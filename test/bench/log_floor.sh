#!/usr/bin/env bash
# make bench-log-floor: where the cost of logging a write goes.  The write
# workload of make bench-log (update a contact, insert an interaction, one
# transaction) in three databases of one cluster:
#   plain   - the sample CRM, extension installed, no table registered
#   floor   - plain with the access log's triggers exactly as register_table
#             makes them (same events, transition tables, arguments), calling
#             a function that does nothing (test/bench/noop_trigger.c): what
#             PostgreSQL's statement triggers with transition tables cost by
#             themselves, the floor of any capture of writes built on them
#   logged  - the registry: writes logged, the log writer running
# floor/plain is PostgreSQL's share; logged/floor the extension's own (the
# trigger's work, the journal row at commit, the log writer).  For
# information: no goal.  Rounds alternate the order, each round's ratios are
# taken against its own plain run, the verdicts are the medians.
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-100000}
T=${T:-10}
ROUNDS=${ROUNDS:-7}
CLIENTS=${CLIENTS:-2}
bench_start "shared_preload_libraries = 'crm_gdpr'" "synchronous_commit = off" "crm_gdpr.database = 'logged'" \
  "crm_gdpr.enable_worker = off" "logging_collector = off"

bench_load_crm plain "$SCALE"
bench_load_crm logged "$SCALE" registry
createdb -T plain floor
# The no-op function, built here against the server's headers, readable by the server's user.
cc -O2 -shared -fPIC -I"$($CLUSTER_PG_CONFIG --includedir-server)" test/bench/noop_trigger.c -o "$bench_top/noop_trigger.so"
chmod 755 "$bench_top" "$bench_top/noop_trigger.so"
psql -X -q -d floor -v ON_ERROR_STOP=1 \
  -c "CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE c AS '$bench_top/noop_trigger.so', 'noop_trigger'"
# The logged database's triggers on the CRM's tables, each calling the no-op instead.
psql -X -At -d logged -c "SELECT regexp_replace(pg_get_triggerdef(t.oid), 'FUNCTION gdpr\.[a-z_]+\(', 'FUNCTION public.noop_trigger(') || ';'
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE NOT t.tgisinternal AND c.relnamespace = 'crm'::regnamespace ORDER BY t.tgname, c.relname" > "$bench_top/floor_triggers.sql"
psql -X -q -d floor -v ON_ERROR_STOP=1 -f "$bench_top/floor_triggers.sql"
ntriggers=$(wc -l < "$bench_top/floor_triggers.sql")
psql -X -q -d floor -c 'VACUUM ANALYZE' >/dev/null
n=$(psql -X -At -d plain -c "SELECT max(id) FROM crm.contacts")
bench_crm_app plain floor logged

tps() {  # tps DB: the write workload, from a checkpoint (see log.sh)
  psql -X -q -d "$1" -c CHECKPOINT
  pgbench -n -M prepared -U bench_app -c "$CLIENTS" -j "$CLIENTS" -T "$T" -D n="$n" -f "$bench_top/write.sql" "$1" 2>&1 |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
drained() { bench_drained logged; }
declare -A runs ratios
for i in $(seq 1 "$ROUNDS"); do
  order="plain floor logged"
  [ $((i % 2)) = 0 ] && order="logged floor plain"
  declare -A this=()
  for db in $order; do this[$db]=$(tps "$db"); runs[$db]="${runs[$db]:-} ${this[$db]}"; drained; done
  ratios[floor]="${ratios[floor]:-} $(ratio "${this[floor]}" "${this[plain]}")"
  ratios[logged]="${ratios[logged]:-} $(ratio "${this[logged]}" "${this[plain]}")"
  ratios[extension]="${ratios[extension]:-} $(ratio "${this[logged]}" "${this[floor]}")"
  unset this
done
for k in floor logged extension; do echo "rounds' ratios, $k:${ratios[$k]}"; ratios[$k]=$(median <<<"${ratios[$k]}"); done
for k in plain floor logged; do runs[$k]=$(median <<<"${runs[$k]}"); done

echo "access log floor: $SCALE contacts, update + insert, pgbench -M prepared -c $CLIENTS -T $T x $ROUNDS rounds (median of the rounds' ratios), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "floor: the $ntriggers triggers the registry put on the CRM's tables, each calling a function that does nothing"
bench_header
bench_row "(f) PostgreSQL's triggers alone vs plain" "${runs[floor]}" "${runs[plain]}" "${ratios[floor]}" "for information"
bench_row "(b) logged vs plain (as make bench-log)" "${runs[logged]}" "${runs[plain]}" "${ratios[logged]}" "for information"
bench_row "(e) logged vs floor: the extension's own" "${runs[logged]}" "${runs[floor]}" "${ratios[extension]}" "for information"
