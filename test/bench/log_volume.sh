#!/usr/bin/env bash
# make bench-log-volume: what the access log costs on disk per logged read
# (issue 24.7), at a steady load: pgbench throttled (-R) at READS reads/s
# (select by key on crm.contacts, as make bench-log) and, at the same time,
# WRITES write transactions/s (update a contact, insert an interaction), for
# T seconds, on the sample CRM of SCALE contacts with its tables registered
# and the log writer running in it.  Then the log is flushed, the month's
# subject index built (as the log maintenance worker builds it once the month is over),
# and the log's partitions measured: heap (with its TOAST) and indexes (BRIN,
# GIN), each divided by the reads logged (sum(times) of the SELECT rows).
# Throttled: on a busy machine the load is the same, only the latency moves.
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-100000}
T=${T:-60}
READS=${READS:-1000}
WRITES=${WRITES:-100}
CLIENTS=${CLIENTS:-2}
bench_start "synchronous_commit = off" "crm_gdpr.database = 'logged'" "crm_gdpr.enable_worker = off" \
  "logging_collector = off"

bench_load_crm logged "$SCALE" registry
n=$(psql -X -At -d logged -c "SELECT max(id) FROM crm.contacts")
bench_crm_app logged

# The log's partitions: heap (main fork and TOAST) and indexes, in bytes.
sizes() {
  psql -X -At -F ' ' -d logged -c "SELECT coalesce(sum(pg_relation_size(c.oid) + coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)), 0),
           coalesce(sum(pg_indexes_size(c.oid)), 0)
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'gdpr.access_log'::regclass"
}
drained() {
  for _ in $(seq 1 600); do
    [ "$(psql -X -At -d logged -c "SELECT queued = 0 AND journal_rows = 0 FROM gdpr.access_log_status")" = t ] && return
    sleep 0.1
  done
}
psql -X -q -d logged -c "SELECT gdpr.flush_access_log()" -c CHECKPOINT >/dev/null
read -r heap0 index0 <<<"$(sizes)"
first=$(psql -X -At -d logged -c "SELECT coalesce(max(id), 0) FROM gdpr.access_log")
pgbench -n -M prepared -U bench_app -c "$CLIENTS" -j "$CLIENTS" -T "$T" -R "$READS" -D n="$n" \
  -f "$bench_top/select.sql" logged > "$bench_top/reads.out" 2>&1 &
reads_pid=$!
pgbench -n -M prepared -U bench_app -c 1 -j 1 -T "$T" -R "$WRITES" -D n="$n" \
  -f "$bench_top/write.sql" logged > "$bench_top/writes.out" 2>&1 &
writes_pid=$!
wait "$reads_pid" "$writes_pid"
drained
psql -X -q -d logged -c "SELECT gdpr.flush_access_log()" >/dev/null
read -r heap1 index1 <<<"$(sizes)"
# The month's subject index, built now as it is once the month is over.
psql -X -q -d logged -c "SELECT gdpr._log_index_month(m.part) FROM gdpr._log_months() m
                          WHERE now() < m.month_end AND now() >= m.month_end - interval '1 month'" >/dev/null
read -r _ index2 <<<"$(sizes)"
read -r reads read_rows read_bytes writes write_rows write_bytes lost <<<"$(psql -X -At -F ' ' -d logged -c "
  SELECT coalesce(sum(l.times) FILTER (WHERE l.operation = 'SELECT'), 0), count(*) FILTER (WHERE l.operation = 'SELECT'),
         coalesce(sum(pg_column_size(l.*)) FILTER (WHERE l.operation = 'SELECT'), 0),
         coalesce(sum(l.times) FILTER (WHERE l.operation IN ('INSERT', 'UPDATE')), 0),
         count(*) FILTER (WHERE l.operation IN ('INSERT', 'UPDATE')),
         coalesce(sum(pg_column_size(l.*)) FILTER (WHERE l.operation IN ('INSERT', 'UPDATE')), 0),
         (SELECT dropped FROM gdpr.access_log_queue())
    FROM gdpr.access_log l WHERE l.id > $first")"
# Over 60 s most people are read once: each key is a GIN entry of its own
# (some 50 bytes).  Over a month the same customers are read again and
# again and each further row naming one adds a posting to his entry.  A
# month is too long to run: its index is built on MONTH_ROWS rows shaped as
# the log's rows of folded reads (200 keys drawn among the CRM's contacts,
# 64-bit keys, four rows a page), in which a key comes back every
# contacts / 200 rows, as it does in a month's log at any rate.  Reads by
# key fold 200 people to a row, one key a read: bytes per key = per read.
MONTH_ROWS=${MONTH_ROWS:-100000}
read -r month_keys month_gin <<<"$(psql -X -q -At -F ' ' -d logged -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
SET maintenance_work_mem = '512MB';
CREATE TEMP TABLE month_rows (pad text, subject_keys bigint[]);
ALTER TABLE month_rows ALTER subject_keys SET STORAGE main;
INSERT INTO month_rows
SELECT repeat('x', 340),
       (SELECT array_agg(DISTINCT ('x' || substr(md5(floor(random() * $n)::bigint::text), 1, 16))::bit(64)::bigint)
          FROM generate_series(1, 200) WHERE r > 0)
  FROM generate_series(1, $MONTH_ROWS) r;
CREATE INDEX month_gin ON month_rows USING gin (subject_keys);
SELECT (SELECT sum(cardinality(subject_keys)) FROM month_rows), pg_relation_size('month_gin');
SQL
)"
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.1f", a / b }'; }
heap_per_read=$(per $((heap1 - heap0)) "$reads")
index_per_read=$(per $((index1 - index0)) "$reads")
gin_per_read=$(per $((index2 - index1)) "$reads")
echo "access log volume: $SCALE contacts, pgbench -R $READS reads/s (-c $CLIENTS) + -R $WRITES write transactions/s, ${T} s, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "reads logged: $reads in $read_rows rows ($(per "$read_bytes" "$reads") B of row a read, rows of $(per "$read_bytes" "$read_rows") B);" \
  "write statements: $writes in $write_rows rows ($(per "$write_bytes" "$writes") B a statement); reads dropped: $lost"
bench_header
bench_row "log heap per logged read (bytes)" "$heap_per_read" "-" "-" "<= 15 B ($(verdict "$heap_per_read" 15 le))"
bench_row "log BRIN indexes per logged read (bytes)" "$index_per_read" "-" "-" "for information"
bench_row "log subject GIN index per logged read (bytes)" "$gin_per_read" "-" "-" "for information"
bench_row "log subject GIN per read, a month (bytes)" "$(per "$month_gin" "$month_keys")" "-" "-" "for information"
