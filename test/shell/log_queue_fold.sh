#!/usr/bin/env bash
# A read that repeats its session's last one is added to that read's record
# in the queue while no taker has it (log_queue.c); a compare-and-swap of
# the record's state decides between the reader and the log writer.  Under
# four clients reading by key with two statements in turn, and a log writer
# taking every 10 ms so that its takes meet the readers' additions, every
# read is written once: none lost, none twice, none dropped, each person
# read named, and the log verifies.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster qfold "crm_gdpr.database = 'crm'" "crm_gdpr.log_flush_interval = '10ms'" "crm_gdpr.enable_worker = off"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(300)" -f test/fixtures/registry.sql >/dev/null
min=$(q -d crm -c 'SELECT min(id) FROM crm.contacts')
chmod 755 "$top"
printf '%s\n' '\set id :min + random(0, 99)' 'SELECT email FROM crm.contacts WHERE id = :id;' > "$top/email.sql"
printf '%s\n' '\set id :min + random(0, 99)' 'SELECT phone FROM crm.contacts WHERE id = :id;' > "$top/phone.sql"
# The read above written first: the counts below are the clients' alone.
wait_for 20 "SELECT queued = 0 FROM gdpr.access_log_queue()" || fail "the queue is not drained"
sleep 0.5
before=$(q -d crm -c "SELECT written || ' ' || dropped FROM gdpr.access_log_queue()")
out=$(PGAPPNAME=fold_race "$CLUSTER_BIN/pgbench" -n -M prepared -c 4 -j 2 -T 4 -D min="$min" \
  -f "$top/email.sql@3" -f "$top/phone.sql@1" crm 2>&1) || fail "pgbench failed: $out"
reads=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
[ "${reads:-0}" -gt 1000 ] || fail "too few reads to test anything: $out"
wait_for 20 "SELECT queued = 0 FROM gdpr.access_log_queue()" || fail "the queue is not drained"
q -d crm -c 'SELECT gdpr.flush_access_log()' >/dev/null
read -r written_before dropped_before <<<"$before"
[ "$(q -d crm -c "SELECT (written - $written_before) || ',' || (dropped - $dropped_before) FROM gdpr.access_log_queue()")" = "$reads,0" ] ||
  fail "$reads reads, queue counts: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue()')"
[ "$(q -d crm -c "SELECT sum(times) FROM gdpr.access_log WHERE application_name = 'fold_race'")" = "$reads" ] ||
  fail "$reads reads, logged: $(q -d crm -c "SELECT columns, sum(times), count(*) FROM gdpr.access_log WHERE application_name = 'fold_race' GROUP BY 1")"
# Each row's reads are its own statement's.
[ "$(q -d crm -c "SELECT string_agg(DISTINCT columns::text, ' ' ORDER BY columns::text) FROM gdpr.access_log WHERE application_name = 'fold_race'")" = '{id,email} {id,phone}' ] ||
  fail "the two statements' reads are mixed up"
[ "$(q -d crm -c "SELECT count(DISTINCT k) = (SELECT count(DISTINCT gdpr._log_subject_key(i::text)) FROM generate_series($min, $min + 99) i)
                    AND bool_and(k IN (SELECT gdpr._log_subject_key(i::text) FROM generate_series($min, $min + 99) i))
                   FROM gdpr.access_log l, unnest(l.subject_keys) k WHERE application_name = 'fold_race'")" = t ] ||
  fail "the people read are not those named"
[ "$(q -d crm -c "SELECT bool_and(last_at >= at) AND bool_and(times > 1 OR last_at IS NULL) FROM gdpr.access_log WHERE application_name = 'fold_race'")" = t ] ||
  fail "a row's times are not in order"
[ "$(q -d crm -c 'SELECT ok FROM gdpr.verify_access_log()')" = t ] || fail "verify: $(q -d crm -c 'SELECT * FROM gdpr.verify_access_log()')"
echo "repeated reads added to their record, under takes, ok ($reads reads, $(q -d crm -c "SELECT count(*) FROM gdpr.access_log WHERE application_name = 'fold_race'") rows)"
