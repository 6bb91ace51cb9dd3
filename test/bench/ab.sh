#!/usr/bin/env bash
# A/B of the access log's cost between two source trees (a change and main):
#   bash test/bench/ab.sh TREE_A TREE_B [select|write]
# Each tree is built and installed into a cluster of its own; both clusters
# are up at once, each with a plain and a logged database as make bench-log
# makes them.  Rounds alternate A.plain A.logged B.plain B.logged and the
# reverse, so that the machine's drift falls on both; each round gives
# logged / plain for A and for B, and B / A for the logged runs.  The
# verdict is the median of the rounds.  On a small virtual machine a round
# moves by 5 to 10 %: a change worth less than that needs many rounds.
set -uo pipefail
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd); W=${3:-select}
ROUNDS=${ROUNDS:-6}; T=${T:-10}; SCALE=${SCALE:-100000}; CLIENTS=${CLIENTS:-2}
cd "$(dirname "$0")/../.."
source test/cluster.sh
work=$(mktemp -d /tmp/crm_gdpr_ab.XXXXXX); chmod 755 "$work"   # the server's user goes through it
declare -A host data bin
stop_all() { for x in A B; do [ -n "${data[$x]:-}" ] && cluster_as_owner "${bin[$x]}/pg_ctl" -D "${data[$x]}" -m fast -w stop >/dev/null 2>&1; done; rm -rf "$work"; }
trap stop_all EXIT
for x in A B; do
  src=${!x}
  (cd "$src" && make -s 2>&1 | grep -Ev '^(gcc|clang)'; cluster_install "$work/$x") || exit 1
  CLUSTER_BIN=$work/$x/install$(${PG_CONFIG:-pg_config} --bindir)
  cluster_start "$work/$x" "shared_buffers = '1GB'" "max_parallel_workers_per_gather = 0" "work_mem = '64MB'" \
    "max_wal_size = '4GB'" "checkpoint_timeout = '30min'" "synchronous_commit = off" "crm_gdpr.database = 'logged'" \
    "crm_gdpr.enable_worker = off" "logging_collector = off" || exit 1
  host[$x]=$PGHOST; data[$x]=$CLUSTER_DATA; bin[$x]=$CLUSTER_BIN
  for db in plain logged; do
    createdb "$db"
    psql -X -q -d "$db" -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
      -f test/fixtures/crm.sql -c "SELECT crm.generate($SCALE)" $([ "$db" = logged ] && echo -f test/fixtures/registry.sql) \
      -c 'VACUUM ANALYZE' >/dev/null
  done
  psql -X -q -d postgres -c 'CREATE ROLE bench_app LOGIN' >/dev/null
  for db in plain logged; do
    psql -X -q -d "$db" -c 'GRANT USAGE ON SCHEMA crm TO bench_app' \
      -c 'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA crm TO bench_app' \
      -c 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO bench_app' >/dev/null
  done
done
# The scripts of make bench-log (test/bench/lib.sh, bench_crm_app).
printf '%s\n' '\set id random(1, :n)' \
  'SELECT first_name, last_name, email, phone FROM crm.contacts WHERE id = :id;' > "$work/select.sql"
printf '%s\n' '\set id random(1, :n)' 'BEGIN;' \
  "UPDATE crm.contacts SET phone = '+33 6 ' || lpad((:id % 100000000)::text, 8, '0') WHERE id = :id;" \
  "INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES (:id, 'call', 'bench', now());" \
  'END;' > "$work/write.sql"
n=$(PGHOST=${host[A]} psql -X -At -d plain -c "SELECT max(id) FROM crm.contacts")
tps() {  # tps A|B DB
  PGHOST=${host[$1]} psql -X -q -d "$2" -c CHECKPOINT
  PGHOST=${host[$1]} pgbench -n -M prepared -U bench_app -c "$CLIENTS" -j "$CLIENTS" -T "$T" -D n="$n" \
    -f "$work/$W.sql" "$2" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
drained() {  # the log writer done with the run, so that it does not run during the next
  for _ in $(seq 1 300); do
    [ "$(PGHOST=${host[$1]} psql -X -At -d logged -c "SELECT queued = 0 AND journal_rows = 0 FROM gdpr.access_log_status")" = t ] && return
    sleep 0.1
  done
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ra=""; rb=""; rab=""
for i in $(seq 1 "$ROUNDS"); do
  order="A.plain A.logged B.plain B.logged"
  [ $((i % 2)) = 0 ] && order="B.logged B.plain A.logged A.plain"
  declare -A t=()
  for c in $order; do
    t[$c]=$(tps "${c%.*}" "${c#*.}")
    [ "${c#*.}" = logged ] && drained "${c%.*}"
  done
  r1=$(div "${t[A.logged]}" "${t[A.plain]}"); r2=$(div "${t[B.logged]}" "${t[B.plain]}"); r3=$(div "${t[B.logged]}" "${t[A.logged]}")
  echo "round $i: A ${t[A.logged]} / ${t[A.plain]} = $r1   B ${t[B.logged]} / ${t[B.plain]} = $r2   B / A logged $r3"
  ra="$ra $r1"; rb="$rb $r2"; rab="$rab $r3"; unset t
done
echo "$W, $ROUNDS rounds of $T s, $SCALE contacts: A logged/plain $(median <<<"$ra")  B logged/plain $(median <<<"$rb")  B/A logged $(median <<<"$rab")"
