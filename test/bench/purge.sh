#!/usr/bin/env bash
# make bench-purge: crm_gdpr's purge against a hand-written batched DELETE of
# the same rows (two copies of one database), each while a pgbench client
# writes to the CRM; prints the time ratio, the writer's TPS during each, and
# its longest wait.  SCALE contacts (default 20000; 160000 gives ~1 M expired rows).
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-20000}
BATCH=${BATCH:-10000}
bench_start "crm_gdpr.enable_worker = off"
createdb bench_template
psql -X -q -d bench_template -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
  -f test/fixtures/crm.sql -c "SELECT crm.generate($SCALE)" -f test/fixtures/registry.sql >/dev/null
# Three tables purged by whole rows: contacts, interactions, marketing events.
psql -X -q -d bench_template -c "SELECT gdpr.unregister_table('crm.orders')" >/dev/null 2>&1 || true
psql -X -q -d bench_template -c "DELETE FROM gdpr.retention_policies WHERE col IS NOT NULL OR action <> 'delete'" \
  -c 'VACUUM ANALYZE' >/dev/null
createdb -T bench_template bench_ours
createdb -T bench_template bench_hand
due=$(psql -X -At -d bench_ours -c "SELECT sum(rows) FROM gdpr.purge(true)")

cat > "$bench_top/writer.sql" <<'SQL'
\set c random(1, :scale)
BEGIN;
INSERT INTO crm.interactions (contact_id, kind, occurred_at, agent, summary)
  SELECT id, 'call', now(), 'bench', 'written during the purge' FROM crm.contacts WHERE id >= :c ORDER BY id LIMIT 1;
UPDATE crm.contacts SET last_contact_at = now() WHERE id = (SELECT id FROM crm.contacts WHERE id >= :c ORDER BY id LIMIT 1);
END;
SQL
# run_with_writer DB SQL: time SQL while pgbench writes to DB; prints "ms tps max_latency_ms"
run_with_writer() {
  local db=$1 sql=$2 log="$bench_top/pgbench_$1"
  # Neither run writes back what the one before it left dirty.
  psql -X -q -d "$db" -c CHECKPOINT
  pgbench -n -c 2 -j 2 -T 600 -D scale="$SCALE" -f "$bench_top/writer.sql" -l --log-prefix="$log" "$db" \
    >"$bench_top/$1.pgbench_out" 2>&1 &
  local pid=$!
  sleep 1
  local ms
  ms=$(psql -X -At -d "$db" -c "SELECT public.bench_ms(\$q\$$sql\$q\$, 1)" 2>/dev/null || echo "failed")
  kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true
  local tps max
  # pgbench's log: one line per transaction, the third field its latency (us);
  # the writer ran from one second before the statement to its end.
  tps=$(cat "$log".* 2>/dev/null | awk -v ms="$ms" '{ n++; if ($3 > m) m = $3 } END { printf "%.0f %.1f", n / ((ms / 1000) + 1), m / 1000 }')
  echo "$ms $tps"
}
psql -X -q -d bench_ours -c "CREATE FUNCTION public.bench_ms(q text, runs int DEFAULT 3) RETURNS numeric LANGUAGE plpgsql AS \$\$
  DECLARE t0 timestamptz; BEGIN t0 := clock_timestamp(); EXECUTE q; RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1); END \$\$"
psql -X -q -d bench_hand -c "CREATE FUNCTION public.bench_ms(q text, runs int DEFAULT 3) RETURNS numeric LANGUAGE plpgsql AS \$\$
  DECLARE t0 timestamptz; BEGIN t0 := clock_timestamp(); EXECUTE q; RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1); END \$\$"

hand="DO \$h\$ DECLARE n bigint; BEGIN
  LOOP DELETE FROM crm.interactions WHERE ctid = ANY (ARRAY(SELECT ctid FROM crm.interactions
         WHERE occurred_at < now() - interval '3 years' LIMIT $BATCH)); GET DIAGNOSTICS n = ROW_COUNT; EXIT WHEN n = 0; END LOOP;
  LOOP DELETE FROM crm.marketing_events WHERE ctid = ANY (ARRAY(SELECT ctid FROM crm.marketing_events
         WHERE at < now() - interval '13 months' LIMIT $BATCH)); GET DIAGNOSTICS n = ROW_COUNT; EXIT WHEN n = 0; END LOOP;
  LOOP DELETE FROM crm.contacts c WHERE ctid = ANY (ARRAY(SELECT ctid FROM crm.contacts c
         WHERE last_contact_at < now() - interval '3 years'
           AND NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) LIMIT $BATCH));
       GET DIAGNOSTICS n = ROW_COUNT; EXIT WHEN n = 0; END LOOP;
END \$h\$"
read -r hand_ms hand_tps hand_wait <<<"$(run_with_writer bench_hand "$hand")"
read -r ours_ms ours_tps ours_wait <<<"$(run_with_writer bench_ours "SET crm_gdpr.purge_batch_size = $BATCH; SELECT * FROM gdpr.purge()")"
left=$(psql -X -At -d bench_ours -c "SELECT coalesce(sum(rows_due), 0) FROM gdpr.retention_status")

r=$(ratio "$ours_ms" "$hand_ms")
echo "purge benchmark: $SCALE contacts, $due expired rows over 3 tables, batches of $BATCH, $(nproc) cores, $(date -u +%Y-%m-%d)"
bench_header
bench_row "purge time vs hand-written batched DELETE" "$ours_ms ms" "$hand_ms ms" "$r" "<= 1.20 x ($(verdict "$r" 1.2))"
bench_row "concurrent writer TPS during the run" "$ours_tps" "$hand_tps" "$(ratio "$ours_tps" "$hand_tps")" "-"
bench_row "writer's longest transaction" "$ours_wait ms" "$hand_wait ms" "-" "-"
bench_row "rows still due after the purge" "$left" "-" "-" "0"
