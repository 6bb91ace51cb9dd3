#!/usr/bin/env bash
# make bench-rights: export and erasure of one subject, p50 and p95 latency,
# at SCALE contacts (10 interactions each) and at SCALE/10, in one run: the
# time must follow the subject's rows, not the size of the database.
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-100000}
N=${N:-300}
bench_start "crm_gdpr.enable_worker = off"

# load DB CONTACTS: the sample CRM with its registry
load() {
  createdb "$1"
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
    -f test/fixtures/crm.sql -c "SELECT crm.generate($2)" -f test/fixtures/registry.sql -c 'VACUUM ANALYZE' >/dev/null
}
# latency DB SCRIPT CONTACTS: "p50 p95" in ms over N transactions on distinct random subjects
latency() {
  local db=$1 script=$2 log="$bench_top/lat_$1_$RANDOM"
  printf '%s\n' "$script" > "$log.sql"
  # Distinct subjects: the erasure of a subject happens once.
  psql -X -q -d "$db" -c "DROP TABLE IF EXISTS bench_ids; CREATE TABLE bench_ids AS
      SELECT row_number() OVER () AS k, id FROM (SELECT id FROM crm.contacts ORDER BY random() LIMIT $N) s;
      CREATE INDEX ON bench_ids (k)" >/dev/null
  pgbench -n -c 1 -t "$N" -D n="$N" -f "$log.sql" -l --log-prefix="$log" "$db" >"$log.out" 2>&1 || { tail -3 "$log.out" >&2; }
  cat "$log".[0-9]* | awk '{ print $3 / 1000 }' | sort -n |
    awk '{ a[NR] = $1 } END { printf "%.3f %.3f", a[int(NR * 0.5 + 0.5)], a[int(NR * 0.95 + 0.5)] }'
}
export_script='\set k random(1, :n)
SELECT gdpr.export_subject((SELECT id FROM bench_ids WHERE k = :k)::text);'
erase_script='SELECT gdpr.erase_subject((SELECT id FROM bench_ids WHERE k = :client_id * 0 + (SELECT count(*) FROM gdpr.erasures) + 1)::text);'

small=$((SCALE / 10))
load big "$SCALE"
load small "$small"
# The loads leave gigabytes to write back: measured under that, every commit's
# WAL flush waits behind it (the full run of 2026-11-25 saw 6.8 ms instead of 4).
psql -X -q -c CHECKPOINT && sync
read -r e50_big e95_big <<<"$(latency big "$export_script")"
read -r e50_small e95_small <<<"$(latency small "$export_script")"
read -r d50_big d95_big <<<"$(latency big "$erase_script")"
read -r d50_small d95_small <<<"$(latency small "$erase_script")"
interactions=$(psql -X -At -d big -c "SELECT count(*) FROM crm.interactions")

echo "rights benchmark: $SCALE contacts / $interactions interactions vs $small contacts, $N subjects each, $(nproc) cores, $(date -u +%Y-%m-%d)"
bench_header
bench_row "export_subject p50 ($SCALE contacts)" "$e50_big ms" "-" "-" "< 5 ms ($(verdict "$e50_big" 5 lt))"
bench_row "export_subject p95" "$e95_big ms" "-" "-" "-"
bench_row "export p50: $SCALE vs $small contacts" "$e50_big ms" "$e50_small ms" "$(ratio "$e50_big" "$e50_small")" "<= 1.5 x ($(verdict "$(ratio "$e50_big" "$e50_small")" 1.5))"
bench_row "erase_subject p50 ($SCALE contacts)" "$d50_big ms" "-" "-" "< 10 ms ($(verdict "$d50_big" 10 lt))"
bench_row "erase_subject p95" "$d95_big ms" "-" "-" "-"
bench_row "erase p50: $SCALE vs $small contacts" "$d50_big ms" "$d50_small ms" "$(ratio "$d50_big" "$d50_small")" "<= 1.5 x ($(verdict "$(ratio "$d50_big" "$d50_small")" 1.5))"
