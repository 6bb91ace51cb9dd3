#!/usr/bin/env bash
# Reads reach the access log through the shared-memory queue and the log
# writer: in a read-only transaction, in one that aborts, by a superuser.
# The writer seals them; a full queue drops and counts, never blocks.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster alog "crm_gdpr.database = 'crm'" "crm_gdpr.log_flush_interval = '200ms'" \
  "crm_gdpr.log_seal_interval = '1s'" "crm_gdpr.log_queue_size = 32" "crm_gdpr.enable_worker = off"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(300)" -f test/fixtures/registry.sql >/dev/null

# A read-only transaction, and one that aborts after its read.
PGAPPNAME=ro_reader psql -X -q -d crm -c 'BEGIN READ ONLY' -c 'SELECT email FROM crm.contacts WHERE id = 21' \
  -c 'COMMIT' >/dev/null
PGAPPNAME=aborted_reader psql -X -q -d crm -c 'BEGIN' -c 'SELECT phone FROM crm.contacts WHERE id = 22' \
  -c 'SELECT 1/0' -c 'COMMIT' >/dev/null 2>&1 || true
wait_for 10 "SELECT count(*) = 2 FROM gdpr.access_log WHERE application_name IN ('ro_reader', 'aborted_reader')" \
  || fail "reads not written by the log writer: $(q -d crm -c 'SELECT * FROM gdpr.access_log_status')"
[ "$(q -d crm -c "SELECT columns FROM gdpr.access_log WHERE application_name = 'ro_reader'")" = '{id,email}' ] ||
  fail "read-only read: wrong columns"
[ "$(q -d crm -c "SELECT role_name FROM gdpr.access_log WHERE application_name = 'aborted_reader'")" = postgres ] ||
  fail "a superuser's read in an aborted transaction is not logged"
[ "$(q -d crm -c "SELECT subject_keys = ARRAY[gdpr._log_subject_key('22')] FROM gdpr.access_log WHERE application_name = 'aborted_reader'")" = t ] ||
  fail "the aborted read does not name its subject"

# Rows streamed to the client before the query fails are logged (issue 18.1).
PGAPPNAME=copy_failed psql -X -q -d crm -c "COPY (SELECT id, email, phone, 1/(ctid <> (SELECT max(ctid) FROM crm.contacts))::int
  FROM crm.contacts) TO STDOUT" >/dev/null 2>&1 && fail "the failing COPY did not fail"
PGAPPNAME=fetch_failed psql -X -q -v FETCH_COUNT=50 -d crm -c "SELECT id, email, 1/(ctid <> (SELECT max(ctid) FROM crm.contacts))::int
  FROM crm.contacts" >/dev/null 2>&1 && fail "the failing SELECT did not fail"
wait_for 10 "SELECT count(*) = 2 FROM gdpr.access_log WHERE application_name IN ('copy_failed', 'fetch_failed')
               AND columns @> '{id,email}' AND row_count >= 299 AND detail ->> 'failed' = 'true'" ||
  fail "a read that failed after streaming rows is not logged: $(q -d crm -c "SELECT application_name, columns, row_count, detail FROM gdpr.access_log WHERE application_name LIKE '%_failed'")"

# The writer keeps the references it made: the same person read again (a hit
# of its cache) is named the same, a neighbour by his own reference.
PGAPPNAME=again_reader psql -X -q -d crm -c 'SELECT phone FROM crm.contacts WHERE id = 22' \
  -c 'SELECT phone FROM crm.contacts WHERE id = 23' >/dev/null
wait_for 10 "SELECT sum(times) = 2 FROM gdpr.access_log WHERE application_name = 'again_reader'" ||
  fail "the second reads were not written"
[ "$(q -d crm -c "SELECT array_agg(r ORDER BY r) = (SELECT array_agg(p ORDER BY p) FROM unnest(ARRAY['22', '23']) i, gdpr._log_subject_key(i) p)
                    FROM gdpr.access_log l, unnest(l.subject_keys) r WHERE application_name = 'again_reader'")" = t ] ||
  fail "a person read again is not named by his key: $(q -d crm -c "SELECT subject_keys FROM gdpr.access_log WHERE application_name = 'again_reader'")"

# The writer seals them, and the chain verifies.
wait_for 10 "SELECT sealed_upto > (SELECT max(at) FROM gdpr.access_log WHERE application_name = 'aborted_reader') FROM gdpr.access_log_status" ||
  fail "the log writer does not seal: $(q -d crm -c 'SELECT * FROM gdpr.access_log_status')"
[ "$(q -d crm -c 'SELECT ok FROM gdpr.verify_access_log()')" = t ] || fail "verify: $(q -d crm -c 'SELECT * FROM gdpr.verify_access_log()')"

# Writer stopped.  A read that repeats the session's last one (the same
# statement, another person) is added to that read's record while no taker
# has it (log_queue.c): 50 reads by key fit in a slot or two of a session's
# 16, none is dropped, and the log names the 50 people once the writer is
# back.  (Before, each read took a slot of its own: 34 of them were dropped.)
q -d crm -c "ALTER SYSTEM SET crm_gdpr.enable_log_writer = off" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
before=$(q -d crm -c "SELECT dropped FROM gdpr.access_log_queue()")
for i in $(seq 1 50); do echo "SELECT city FROM crm.contacts WHERE id = $i;"; done |
  PGAPPNAME=twins psql -X -q -d crm -v ON_ERROR_STOP=1 >/dev/null || fail "a reader failed"
[ "$(q -d crm -c "SELECT queued || ',' || (dropped - $before) FROM gdpr.access_log_queue()")" = 50,0 ] ||
  fail "repeated reads are not added to one record: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue()')"
# The queue still drops and counts when it is full, and no reader fails.
# One session holds at most half of its database's share (log_queue_share.c):
# 16 of the 32 slots.  Reads that are not alike (a purpose changed at every
# read) take a slot each: the twins' record and 15 of them are queued.
before=$(q -d crm -c "SELECT dropped FROM gdpr.access_log_queue()")
for i in $(seq 1 50); do echo "SET crm_gdpr.purpose = 'burst $i'; SELECT city FROM crm.contacts WHERE id = $i;"; done |
  PGAPPNAME=burst psql -X -q -d crm -v ON_ERROR_STOP=1 >/dev/null || fail "a reader failed while the queue was full"
[ "$(q -d crm -c "SELECT queued FROM gdpr.access_log_queue()")" = 66 ] || fail "the queue does not hold a session's bound"
[ "$(q -d crm -c "SELECT dropped - $before FROM gdpr.access_log_queue()")" = 34 ] ||
  fail "drops not counted: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue()')"
q -d crm -c "ALTER SYSTEM RESET crm_gdpr.enable_log_writer" -c "SELECT pg_reload_conf()" >/dev/null
[ "$(q -d crm -c "SELECT sum(dropped) FROM gdpr.access_log_queue_drops() WHERE database = 'crm' AND role = current_user")" -ge 34 ] ||
  fail "drops not attributed: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue_drops()')"
# The alarm (issue 19.2): a row in gdpr.log_queue_alarms for (crm, this
# role), and one WARNING in the server log for the 34 drops (once a minute).
[ "$(q -d crm -c "SELECT string_agg(alarm || ':' || (dropped >= 34), ',') FROM gdpr.log_queue_alarms
                   WHERE database = 'crm' AND role = current_user")" = 'reads dropped:true' ] ||
  fail "no queue alarm: $(q -d crm -c 'SELECT * FROM gdpr.log_queue_alarms')"
[ "$(grep -c 'WARNING:  crm_gdpr: reads of role "postgres" in database "crm" are dropped' "$top/server.log")" = 1 ] ||
  fail "the server log does not warn once: $(grep 'crm_gdpr: reads of role' "$top/server.log")"
wait_for 10 "SELECT sum(times) = 16 FROM gdpr.access_log WHERE application_name = 'burst'" ||
  fail "the queue is not drained once the writer is back"
wait_for 10 "SELECT sum(times) = 50 FROM gdpr.access_log WHERE application_name = 'twins'" ||
  fail "the repeated reads are not all written: $(q -d crm -c "SELECT times, last_at > at FROM gdpr.access_log WHERE application_name = 'twins'")"
[ "$(q -d crm -c "SELECT count(DISTINCT k) = 50 AND bool_and(k IN (SELECT gdpr._log_subject_key(i::text) FROM generate_series(1, 50) i))
                   FROM gdpr.access_log l, unnest(l.subject_keys) k WHERE application_name = 'twins'")" = t ] ||
  fail "the repeated reads do not name their 50 people"
# A read naming more people than a quarter of the queue holds (14 kB of keys,
# 57 slots of 256 bytes; the queue has 32) cannot be queued: it is dropped
# and counted, never lost unseen (before 0.3's small slots: not counted).
q -d crm -c "SET client_min_messages = warning" -c "CREATE TABLE crm.long_keys (ref text PRIMARY KEY, note text)" \
  -c "INSERT INTO crm.long_keys SELECT 'person-' || lpad(i::text, 56, '0'), 'x' FROM generate_series(1, 300) i" \
  -c "SELECT gdpr.register_subject_table('crm.long_keys', 'ref')" \
  -c "SELECT gdpr.classify('crm.long_keys', 'note', 'identification', 'customer_management', 'contract', 'a test')" >/dev/null
before=$(q -d crm -c "SELECT dropped FROM gdpr.access_log_queue()")
PGAPPNAME=too_long psql -X -q -d crm -c "SELECT ref, note FROM crm.long_keys" >/dev/null || fail "the long read failed"
[ "$(q -d crm -c "SELECT dropped - $before FROM gdpr.access_log_queue()")" = 1 ] ||
  fail "a read too long for the queue is not counted as dropped: $(q -d crm -c 'SELECT * FROM gdpr.access_log_queue()')"
# DECRYPT: one row per top-level statement.  A failed statement's decrypts
# do not go into the next statement's row (in a savepoint or not); what AFTER
# triggers run is part of their statement, not statements of their own.
PGAPPNAME=decrypt_failed psql -X -q -d crm \
  -c "SELECT gdpr.decrypt(gdpr.encrypt('a' || i)) || (1 / (i - 3))::text FROM generate_series(1, 5) i" \
  -c "SELECT gdpr.decrypt(gdpr.encrypt('b'))" \
  -c 'BEGIN' -c 'SAVEPOINT s' -c "SELECT gdpr.decrypt(gdpr.encrypt('c' || i)) || (1 / (i - 2))::text FROM generate_series(1, 5) i" \
  -c 'ROLLBACK TO SAVEPOINT s' -c "SELECT gdpr.decrypt(gdpr.encrypt('d'))" -c 'COMMIT' >/dev/null 2>&1 || true
# (The two statements that succeed are alike: their rows may be folded.)
decrypts="SELECT sum(times) || ' statements, ' || sum(row_count) || ' values' FROM gdpr.access_log
           WHERE application_name = 'decrypt_failed' AND operation = 'DECRYPT'"
wait_for 10 "SELECT sum(times) = 2 FROM gdpr.access_log WHERE application_name = 'decrypt_failed' AND operation = 'DECRYPT'" ||
  fail "the statements after failed ones are not logged: $(q -d crm -c "$decrypts")"
[ "$(q -d crm -c "$decrypts")" = "2 statements, 2 values" ] ||
  fail "a failed statement's decrypts are counted in the next one: $(q -d crm -c "$decrypts")"
q -d crm -c "CREATE TABLE decrypted (v text)" \
  -c "CREATE FUNCTION after_decrypted() RETURNS trigger LANGUAGE plpgsql AS \$\$
      BEGIN PERFORM 1; PERFORM gdpr.decrypt(gdpr.encrypt('z')); RETURN NULL; END \$\$" \
  -c "CREATE TRIGGER after_decrypted AFTER INSERT ON decrypted FOR EACH STATEMENT EXECUTE FUNCTION after_decrypted()" >/dev/null
PGAPPNAME=decrypt_trigger psql -X -q -d crm -c "INSERT INTO decrypted SELECT gdpr.decrypt(gdpr.encrypt('a' || i)) FROM generate_series(1, 3) i" >/dev/null
wait_for 10 "SELECT count(*) > 0 FROM gdpr.access_log WHERE application_name = 'decrypt_trigger' AND operation = 'DECRYPT'" ||
  fail "the INSERT's decrypts are not logged"
sleep 0.5
[ "$(q -d crm -c "SELECT sum(times) || ',' || sum(row_count) FROM gdpr.access_log WHERE application_name = 'decrypt_trigger' AND operation = 'DECRYPT'")" = 1,4 ] ||
  fail "an AFTER trigger's statements are taken for top-level ones: $(q -d crm -c "SELECT row_count FROM gdpr.access_log WHERE application_name = 'decrypt_trigger' AND operation = 'DECRYPT'")"
echo "access log reads ok"
