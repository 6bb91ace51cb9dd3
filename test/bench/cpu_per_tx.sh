#!/usr/bin/env bash
# Where a logged transaction's processor time goes, by process: the CPU time
# (utime + stime from /proc) per committed transaction of the pgbench clients,
# the backends serving them, the log writer and the server's other processes,
# for `make bench-log`'s workloads in a plain and a logged database of one
# cluster.  TPS says how much slower a logged run is; this says who spent the
# difference (issue 24.8): the backend's own extra work, the log writer's, or
# the machine's noise (a class that moves as much between two plain runs).
#
# Each round runs plain, logged, plain; a run is pgbench for T seconds, measured
# from its second second to T - 5 (so that every process is alive at both
# ends), transactions counted by pg_stat_database in the same window.
#   W (select | write, select), SCALE (contacts, 100000), T (seconds, 15),
#   ROUNDS (3).  Needs an otherwise idle machine, as any timing.
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-100000}
T=${T:-15}
W=${W:-select}
ROUNDS=${ROUNDS:-3}
[ "$T" -ge 10 ] || { echo "cpu_per_tx: T must be 10 seconds or more" >&2; exit 1; }
bench_start "shared_preload_libraries = 'crm_gdpr'" "synchronous_commit = off" "crm_gdpr.database = 'logged'" \
  "crm_gdpr.enable_worker = off" "logging_collector = off"
bench_load_crm plain "$SCALE"
bench_load_crm logged "$SCALE" registry
n=$(psql -X -At -d plain -c "SELECT max(id) FROM crm.contacts")
bench_crm_app plain logged

# snapshot: "pid class ticks" for every process of the cluster and pgbench,
# read in one process (a shell loop forking per process is too slow under load).
snapshot() {
  python3 - <<'EOF'
import os
for p in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\0', b' ').decode(errors='replace')
        if 'postgres' not in cmd and 'pgbench' not in cmd:
            continue
        st = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        continue
    cls = ('pgbench' if 'pgbench' in cmd else 'backend' if 'bench_app' in cmd
           else 'log_writer' if 'log writer' in cmd else 'other')
    print(p, cls, int(st[11]) + int(st[12]))
EOF
}
commits() {
  psql -X -At -d "$1" -c "SELECT pg_stat_force_next_flush()" \
    -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'" | tail -n 1
}
# run DB: one measured run; prints "DB tps backend pgbench log_writer other"
# (microseconds of CPU a transaction).
run() {
  local x0 x1 tps hz
  hz=$(getconf CLK_TCK)
  psql -X -q -d "$1" -c CHECKPOINT
  pgbench -n -M prepared -U bench_app -c 2 -j 2 -T "$T" -D n="$n" -f "$bench_top/$W.sql" "$1" > "$bench_top/out" 2>&1 &
  sleep 1
  snapshot > "$bench_top/a"; x0=$(commits "$1")
  sleep $((T - 6))
  snapshot > "$bench_top/b"; x1=$(commits "$1")
  wait
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$bench_top/out")
  awk -v db="$1" -v tps="$tps" -v tx=$((x1 - x0)) -v hz="$hz" -v A="$bench_top/a" '
    BEGIN { while ((getline l < A) > 0) { split(l, f, " "); a[f[1]] = f[3] } }
    { cpu[$2] += $3 - ($1 in a ? a[$1] : 0) }
    END { printf "%s %.0f", db, tps
          split("backend pgbench log_writer other", c, " ")
          for (i = 1; i <= 4; i++) printf " %.2f", cpu[c[i]] * 1e6 / hz / tx
          print "" }' "$bench_top/b"
  bench_drained logged
}
echo "cpu_per_tx: $W, $SCALE contacts, pgbench -M prepared -c 2 -T $T x $ROUNDS rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
printf '%-8s %8s %9s %9s %11s %9s   (us of CPU a transaction)\n' run tps backend pgbench log_writer other
for _ in $(seq 1 "$ROUNDS"); do
  for db in plain logged plain; do
    run "$db" | awk '{ printf "%-8s %8s %9s %9s %11s %9s\n", $1, $2, $3, $4, $5, $6 }' | tee -a "$bench_top/runs"
  done
done
# Per round, logged less the mean of its two plain runs (a drift over the
# round cancels, as in make bench-log); the median of the rounds.
awk '{ r = int((NR - 1) / 3); k = (NR - 1) % 3; for (i = 3; i <= 6; i++) v[r, k, i] = $i }
  END { rounds = int(NR / 3)
        for (i = 3; i <= 6; i++) {
          for (r = 0; r < rounds; r++) d[r + 1] = v[r, 1, i] - (v[r, 0, i] + v[r, 2, i]) / 2
          for (x = 2; x <= rounds; x++) for (y = x; y > 1 && d[y - 1] > d[y]; y--) { t = d[y]; d[y] = d[y - 1]; d[y - 1] = t }
          m[i] = d[int((rounds + 1) / 2)] }
        printf "%-8s %8s", "median", "-"; for (i = 3; i <= 6; i++) printf " %9s", sprintf("%+.2f", m[i]); print "   (logged - plain, by round)" }' \
  "$bench_top/runs"
