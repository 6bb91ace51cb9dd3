#!/usr/bin/env bash
# make bench-log-many (and the end of make bench-log): transactions made of
# many statements (issue 24.1).  A CRM import or an ORM saving row after row
# runs thousands of single-row INSERTs in one transaction, each in a
# savepoint or not.  Measured in one cluster, plain (extension installed, no
# table registered) against logged (the registry: every INSERT logged):
#   (m) a PL/pgSQL loop of MANY single-row INSERTs into crm.interactions in
#       one transaction (COMMIT included);
#   (s) SAVEPOINTS single-row INSERTs, each in a subtransaction of its own
#       (a BEGIN ... EXCEPTION block, as an import that skips bad rows does).
# Each runs ROUNDS times, alternating; the ratio is the median of the rounds'
# ratios.  The memory is that of the backend's memory contexts just before
# COMMIT (pg_backend_memory_contexts: what the transaction still holds).
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-10000}
MANY=${MANY:-400000}
SAVEPOINTS=${SAVEPOINTS:-40000}
ROUNDS=${ROUNDS:-3}
bench_start "synchronous_commit = off" "crm_gdpr.database = 'logged'" "crm_gdpr.enable_worker = off" \
  "logging_collector = off"

load() {  # load DB [registry]
  bench_load_crm "$1" "$SCALE" "${2:-}"
  # The loop: n single-row INSERTs, each in a subtransaction or not; returns
  # the bytes of the backend's memory contexts at its end (before COMMIT).
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -c "CREATE FUNCTION public.inserts(n int, savepoints boolean) RETURNS bigint
    LANGUAGE plpgsql AS \$\$
    DECLARE contacts int := (SELECT max(id) FROM crm.contacts);
    BEGIN
      FOR i IN 1..n LOOP
        IF savepoints THEN
          BEGIN
            INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (1 + i % contacts, 'call', 'bench', now());
          EXCEPTION WHEN unique_violation THEN NULL;
          END;
        ELSE
          INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (1 + i % contacts, 'call', 'bench', now());
        END IF;
      END LOOP;
      RETURN (SELECT sum(total_bytes) FROM pg_backend_memory_contexts);
    END \$\$" >/dev/null
}
load plain
load logged registry

# run DB N SAVEPOINTS: "milliseconds bytes", COMMIT included (psql's \timing).
run() {
  psql -X -q -d "$1" -c CHECKPOINT
  psql -X -At -d "$1" -c '\timing on' -c "SELECT public.inserts($2, $3)" |
    awk '/^Time:/ { ms = $2 } /^[0-9]+$/ { mem = $1 } END { print ms, mem }'
}
declare -A ms mem ratios
for w in many savepoints; do
  n=$MANY; sp=false
  [ "$w" = savepoints ] && { n=$SAVEPOINTS; sp=true; }
  for i in $(seq 1 "$ROUNDS"); do
    order="plain logged"
    [ $((i % 2)) = 0 ] && order="logged plain"
    declare -A this=()
    for db in $order; do
      read -r t m < <(run "$db" "$n" "$sp")
      this[$db]=$t; ms[$db.$w]="${ms[$db.$w]:-} $t"; mem[$db.$w]="${mem[$db.$w]:-} $m"
    done
    ratios[$w]="${ratios[$w]:-} $(ratio "${this[logged]}" "${this[plain]}")"
    unset this
    psql -X -q -d logged -c "SELECT gdpr.flush_access_log()" >/dev/null
  done
done
for w in many savepoints; do echo "rounds' ratios, $w, logged vs plain (time):${ratios[$w]}"; done
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
maxof() { tr ' ' '\n' | grep -v '^$' | sort -n | tail -1; }
logged_rows=$(psql -X -At -d logged -c "SELECT count(*) || ' log rows for ' || sum(times) || ' INSERT statements' FROM gdpr.access_log WHERE operation = 'INSERT'")

echo "many statements per transaction: $MANY INSERTs in one transaction, $SAVEPOINTS in savepoints, $ROUNDS rounds (median of the rounds' ratios), $(nproc) cores, $(date -u +%Y-%m-%d)"
bench_header
for w in many savepoints; do
  label="(m) $MANY INSERTs in one transaction (ms)"
  [ "$w" = savepoints ] && label="(s) $SAVEPOINTS INSERTs, a savepoint each (ms)"
  r=$(median <<<"${ratios[$w]}")
  bench_row "$label" "$(median <<<"${ms[logged.$w]}")" "$(median <<<"${ms[plain.$w]}")" "$r" "<= 1.5 x ($(verdict "$r" 1.5 le))"
  lm=$(maxof <<<"${mem[logged.$w]}"); pm=$(maxof <<<"${mem[plain.$w]}")
  verdict_mem=$(awk -v b="$lm" 'BEGIN { print (b <= 64 * 1048576 ? "met" : "MISSED") }')
  bench_row "    backend memory before COMMIT (max)" "$(mb "$lm")" "$(mb "$pm")" "-" "<= 64 MB ($verdict_mem)"
done
echo "logged database: $logged_rows"
