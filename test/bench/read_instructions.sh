#!/usr/bin/env bash
# The read and write paths by instruction counts: what a logged select by key
# and a logged write transaction (`make bench-log`'s: update a contact,
# insert an interaction) cost the backend over plain, measured with callgrind
# (deterministic, unlike TPS on a shared machine: repeatable to a few
# instructions a statement).
#
#   plain   - the sample CRM, no extension in the database
#   logged  - the same with the extension and the registry (test/fixtures/registry.sql)
#   pgaudit - the sample CRM with pgaudit.log = 'read, write' (as in make bench-log):
#             what pgaudit's backend does a statement, for the comparison of
#             issue 24.8 without the noise of TPS (its log lines' write()
#             calls are not counted, as the journal's page writes are not)
#
# A single-user backend (no log writer: the writer's side is not counted,
# and the queue is made large enough to hold every read well under an
# eighth of it used, as a log writer keeps it in a running server) runs, as the application role bench_app (neither superuser nor owner, so
# that the restriction's policy applies), `make bench-log`'s select by key
# N times as a prepared statement; the same script with no statement gives
# the start-up, and (total - start-up) / N is a statement's cost.  Writes the
# same way: N / 2 of `make bench-log`'s write transactions (prepared), less
# N / 6 of them, over N / 3 (so that start-up and the journal's first pages
# cancel); the journal is left to grow (no log writer), as between two of
# the writer's moves.
#   SCALE (contacts, 100000), N (statements, 5000); KEEP=1 keeps the
#   callgrind files (callgrind_annotate --inclusive=yes FILE).
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-100000}
N=${N:-5000}
command -v valgrind >/dev/null || { echo "read_instructions: valgrind is not installed"; exit 1; }
bench_start "shared_preload_libraries = 'crm_gdpr,pgaudit'" "crm_gdpr.enable_worker = off" "crm_gdpr.database = 'logged'" "crm_gdpr.log_queue_size = $((N * 16))"

createdb crm_template
psql -X -q -d crm_template -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate($SCALE)" >/dev/null
createdb -T crm_template plain
createdb -T crm_template logged
psql -X -q -d logged -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
  -f test/fixtures/registry.sql >/dev/null
createdb -T crm_template pgaudit
psql -X -q -d pgaudit -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgaudit' >/dev/null
psql -X -q -d postgres -c 'CREATE ROLE bench_app LOGIN' >/dev/null
for db in plain logged pgaudit; do
  psql -X -q -d "$db" -c 'GRANT USAGE ON SCHEMA crm TO bench_app' \
    -c 'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA crm TO bench_app' \
    -c 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO bench_app' -c 'VACUUM ANALYZE' >/dev/null
done
n=$(psql -X -At -d plain -c "SELECT max(id) FROM crm.contacts")
cluster_stop

# The scripts: the same ids in both databases (a fixed seed).
header='PREPARE s(int) AS SELECT first_name, last_name, email, phone FROM crm.contacts WHERE id = $1;
SET ROLE bench_app;'
echo "$header" > "$bench_top/start.sql"
{ echo "$header"; awk -v n="$n" -v k="$N" 'BEGIN { srand(1); for (i = 0; i < k; i++) printf "EXECUTE s(%d);\n", 1 + int(rand() * n) }'; } \
  > "$bench_top/reads.sql"
wheader='PREPARE u(int) AS UPDATE crm.contacts SET phone = '"'"'+33 6 '"'"' || lpad(($1 % 100000000)::text, 8, '"'"'0'"'"') WHERE id = $1;
PREPARE i(int) AS INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES ($1, '"'"'call'"'"', '"'"'bench'"'"', now());
SET ROLE bench_app;'
writes() {  # writes K: the header and K write transactions
  echo "$wheader"
  awk -v n="$n" -v k="$1" 'BEGIN { srand(2); for (t = 0; t < k; t++) { id = 1 + int(rand() * n); printf "BEGIN;\nEXECUTE u(%d);\nEXECUTE i(%d);\nCOMMIT;\n", id, id } }'
}
writes $((N / 6)) > "$bench_top/writes_few.sql"
writes $((N / 2)) > "$bench_top/writes.sql"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$bench_top"

# instructions DB SCRIPT: what callgrind counts for a single-user backend running SCRIPT in DB.
# pgaudit's setting comes first in its scripts (a single-user backend does not
# take the database's settings).  A statement that fails stops the benchmark:
# a failed write costs less than one that commits, and would be measured.
instructions() {
  local out="$bench_top/callgrind.$1.$2"
  { [ "$1" != pgaudit ] || echo "SET pgaudit.log = 'read, write';"; cat "$bench_top/$2.sql"; } > "$out.sql"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$out.sql"
  cluster_as_owner valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$CLUSTER_BIN/postgres" --single -D "$CLUSTER_DATA" "$1" < "$out.sql" > "$out.stdout" 2> "$out.stderr"
  if grep -q 'ERROR:' "$out.stderr"; then
    echo "read_instructions: $2 failed in $1:" >&2; grep -m 3 -A1 'ERROR:' "$out.stderr" >&2; exit 1
  fi
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out.stderr" | tail -1
}
declare -A per wper
for db in plain logged pgaudit; do
  start=$(instructions "$db" start) || exit 1
  total=$(instructions "$db" reads) || exit 1
  per[$db]=$(( (total - start) / N ))
  few=$(instructions "$db" writes_few) || exit 1
  total=$(instructions "$db" writes) || exit 1
  wper[$db]=$(( (total - few) / (N / 2 - N / 6) ))
done
[ -z "${KEEP:-}" ] || { mkdir -p /tmp/crm_gdpr_read_instructions && cp "$bench_top"/callgrind.* /tmp/crm_gdpr_read_instructions/ &&
  echo "callgrind files in /tmp/crm_gdpr_read_instructions"; }

echo "read and write paths by instruction counts: $SCALE contacts, $N prepared selects by key and $((N / 2 - N / 6)) write transactions as bench_app, callgrind, $(date -u +%Y-%m-%d)"
bench_header
bench_row "select by key: instructions a statement" "${per[logged]}" "${per[plain]}" "$(ratio "${per[logged]}" "${per[plain]}")" \
  "+$(( per[logged] - per[plain] )) over plain"
bench_row "write transaction: instructions" "${wper[logged]}" "${wper[plain]}" "$(ratio "${wper[logged]}" "${wper[plain]}")" \
  "+$(( wper[logged] - wper[plain] )) over plain"
bench_row "select by key: pgaudit, instructions" "${per[pgaudit]}" "${per[plain]}" "$(ratio "${per[pgaudit]}" "${per[plain]}")" \
  "+$(( per[pgaudit] - per[plain] )) over plain; logged $(( per[logged] - per[pgaudit] )) vs pgaudit"
bench_row "write transaction: pgaudit, instructions" "${wper[pgaudit]}" "${wper[plain]}" "$(ratio "${wper[pgaudit]}" "${wper[plain]}")" \
  "+$(( wper[pgaudit] - wper[plain] )) over plain; logged $(( wper[logged] - wper[pgaudit] )) vs pgaudit"
# pgaudit's lines were written: otherwise its column measures nothing.
audit_lines=$(grep -c 'AUDIT: SESSION' "$bench_top/callgrind.pgaudit.writes.stderr" || true)
echo "pgaudit wrote $audit_lines audit lines for $((N / 2)) write transactions"
[ "$audit_lines" -ge "$N" ] || { echo "read_instructions: pgaudit logged fewer lines than statements" >&2; exit 1; }
