# Shared by the benchmarks (test/bench/*.sh): a throwaway cluster from the
# private install, a timing helper, and one table format for the results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source test/cluster.sh
bench_top=$(mktemp -d /tmp/crm_gdpr_bench.XXXXXX)
trap 'cluster_stop; rm -rf "$bench_top"' EXIT
bench_start() {
  make -s 2>&1 | grep -Ev '^(gcc|clang)' || true
  cluster_install "$bench_top"
  cluster_start "$bench_top" "shared_buffers = '1GB'" "max_parallel_workers_per_gather = 0" \
    "work_mem = '64MB'" "max_wal_size = '4GB'" "checkpoint_timeout = '30min'" "$@"
  psql -X -q -c "CREATE FUNCTION public.bench_ms(q text, runs int DEFAULT 3) RETURNS numeric
    LANGUAGE plpgsql AS \$\$
    DECLARE t0 timestamptz; best numeric := 'Infinity';
    BEGIN
      FOR i IN 1..runs LOOP
        t0 := clock_timestamp();
        EXECUTE q;
        best := least(best, extract(epoch FROM clock_timestamp() - t0) * 1000);
      END LOOP;
      RETURN round(best, 1);
    END \$\$"
}
# bench_load_crm DB SCALE [registry]: a database with the extension and the
# sample CRM of SCALE contacts, its tables registered (logged) when asked.
bench_load_crm() {
  createdb "$1"
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
    -f test/fixtures/crm.sql -c "SELECT crm.generate($2)" ${3:+-f test/fixtures/registry.sql} \
    -c 'VACUUM ANALYZE' >/dev/null
}
# bench_ms SQL [RUNS]: best wall time of SQL in milliseconds.
bench_ms() { psql -X -At -c "SELECT public.bench_ms(\$q\$$1\$q\$, ${2:-3})"; }
bench_header() {
  printf '\n%-44s %14s %14s %9s  %s\n' "workload" "crm_gdpr" "baseline" "ratio" "goal"
  printf '%s\n' "--------------------------------------------------------------------------------------------------------"
}
# bench_row WORKLOAD OURS BASELINE RATIO GOAL [VERDICT]; make bench also
# collects every row in BENCH_SUMMARY, to print them as one table at the end.
bench_row() {
  printf '%-44s %14s %14s %9s  %s\n' "$1" "$2" "$3" "$4" "$5"
  [ -z "${BENCH_SUMMARY:-}" ] || printf '%-44s %14s %14s %9s  %s\n' "$1" "$2" "$3" "$4" "$5" >> "$BENCH_SUMMARY"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) print "-"; else printf "%.2f", a / b }'; }
verdict() {  # verdict VALUE GOAL [le|lt|ge]; a missing figure is never a success
  awk -v r="$1" -v g="$2" -v d="${3:-le}" 'BEGIN {
    if (r !~ /^[0-9.]+$/) { print "MISSED: no figure"; exit }
    ok = (d == "le" ? r + 0 <= g + 0 : d == "lt" ? r + 0 < g + 0 : r + 0 >= g + 0); print (ok ? "met" : "MISSED") }'
}
# bench_crm_app DB...: the CRM's application role, neither superuser nor the
# tables' owner (both bypass row-level security: the restriction's policy is
# part of what a logged read costs), in each database; and the two pgbench
# scripts on the sample CRM in $bench_top: select.sql (a contact by key) and
# write.sql (update a contact, insert an interaction, one transaction).
bench_crm_app() {
  psql -X -q -d postgres -c 'DROP ROLE IF EXISTS bench_app' -c 'CREATE ROLE bench_app LOGIN' >/dev/null
  for db in "$@"; do
    psql -X -q -d "$db" -c 'GRANT USAGE ON SCHEMA crm TO bench_app' \
      -c 'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA crm TO bench_app' \
      -c 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO bench_app' >/dev/null
  done
  printf '%s\n' '\set id random(1, :n)' \
    'SELECT first_name, last_name, email, phone FROM crm.contacts WHERE id = :id;' > "$bench_top/select.sql"
  printf '%s\n' '\set id random(1, :n)' 'BEGIN;' \
    "UPDATE crm.contacts SET phone = '+33 6 ' || lpad((:id % 100000000)::text, 8, '0') WHERE id = :id;" \
    "INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:id, 'call', 'bench', now());" \
    'END;' > "$bench_top/write.sql"
}
# median: the median of the numbers on stdin (separated by spaces or lines).
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# bench_drained DB: wait (30 s at most) until DB's log writer has written what is
# queued and journaled, so that it does not run during the next configuration.
bench_drained() {
  for _ in $(seq 1 300); do
    [ "$(psql -X -At -d "$1" -c "SELECT queued = 0 AND journal_rows = 0 FROM gdpr.access_log_status")" = t ] && return
    sleep 0.1
  done
}
