#!/usr/bin/env bash
# Hostile review, round 20: attacks not covered by security.sh and
# security_round16.sh to security_round19.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension),
# clerk2 one with INSERT too.  Every check runs to the end and prints "ok" or
# "FAIL: round20.N: ..."; the script fails when one check failed (a FAIL is an
# attack that succeeded).
#
# Themes (round 19 counted, in a write, only the rows that a condition
# passing values on REJECTED, leaving the rows it accepted to the write
# trigger; but the write trigger's record is in the writing transaction):
# - 20.1: an UPDATE, DELETE or MERGE whose condition or SET hands every row's
#   values to a function of clerk's (RAISE NOTICE), then ROLLBACK (or
#   ROLLBACK TO SAVEPOINT): every e-mail shown, no record at all.
# - 20.2: the same write failing at its end (a foreign key): a failed DELETE
#   of 0 rows, nobody named.
# - 20.3: INSERT ... ON CONFLICT DO UPDATE: the existing row goes through
#   the WHERE and SET of the ON CONFLICT clause without any scan: a WHERE
#   that passes the values on and rejects every row reads the table
#   unlogged, committed.
# - 20.4: no more than before: an ordinary write by key, an ordinary upsert
#   and a SET of the server's functions log no read.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round20 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
# clerk2 may insert and update, not delete (ON CONFLICT DO UPDATE).
q -d postgres -c "CREATE ROLE clerk2 LOGIN" >/dev/null
q -U crm_owner -d $db -c "GRANT USAGE ON SCHEMA crm TO clerk2" -c "GRANT SELECT, INSERT, UPDATE ON crm.contacts TO clerk2" >/dev/null
# total, smax, got_emails, peek (clerk's function: each value it is given goes
# to the client) and check N ROLE LABEL SQL... (lib.sh).
hostile_leaks round20

# ---------------------------------------------------------------------------
# Round20.1: a write that shows every row, then rolled back.
check 1 clerk "UPDATE ... WHERE peek(email), ROLLBACK" "BEGIN" "UPDATE crm.contacts SET phone = phone WHERE pg_temp.peek(email)" "ROLLBACK"
check 1 clerk "UPDATE ... SET phone = CASE WHEN peek(email) ..., ROLLBACK" "BEGIN" "UPDATE crm.contacts SET phone = CASE WHEN pg_temp.peek(email) THEN phone END" "ROLLBACK"
check 1 clerk "UPDATE ... WHERE peek(email), ROLLBACK TO SAVEPOINT" "BEGIN" "SAVEPOINT s" \
  "UPDATE crm.contacts SET phone = phone WHERE pg_temp.peek(email)" "ROLLBACK TO s" "COMMIT"
check 1 clerk "MERGE ... UPDATE SET phone = CASE WHEN peek(c.email) ..., ROLLBACK" "BEGIN" \
  "MERGE INTO crm.contacts c USING (SELECT 1) s ON true WHEN MATCHED THEN UPDATE SET phone = CASE WHEN pg_temp.peek(c.email) THEN c.phone END" "ROLLBACK"
check 1 clerk "UPDATE ... WHERE peek(email) in a PL/pgSQL block that raises and catches" \
  "DO \$\$BEGIN UPDATE crm.contacts SET phone = phone WHERE pg_temp.peek(email); RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END\$\$"
n=$(q -d $db -c "SELECT count(*) FROM crm.contacts")
[ "$n" = 200 ] || bad "round20.1" "setup: a rolled back write left $n contacts"

# ---------------------------------------------------------------------------
# Round20.2: the same write failing at its end.
check 2 clerk "DELETE ... WHERE peek(email), failing on a foreign key" "DELETE FROM crm.contacts WHERE pg_temp.peek(email)"
check 2 clerk "MERGE ... DELETE, failing on a foreign key" \
  "MERGE INTO crm.contacts c USING (SELECT 1) s ON true WHEN MATCHED AND pg_temp.peek(c.email) THEN DELETE"

# ---------------------------------------------------------------------------
# Round20.3: INSERT ... ON CONFLICT DO UPDATE by clerk2 (SELECT, INSERT, UPDATE).
check 3 clerk2 "INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE NOT peek(email)" \
  "INSERT INTO crm.contacts (id) SELECT i FROM generate_series(1, 200) i ON CONFLICT (id) DO UPDATE SET phone = crm.contacts.phone WHERE NOT pg_temp.peek(crm.contacts.email)"
check 3 clerk2 "INSERT ... ON CONFLICT (id) DO UPDATE SET phone = CASE WHEN peek(email) ..., ROLLBACK" "BEGIN" \
  "INSERT INTO crm.contacts (id) SELECT i FROM generate_series(1, 200) i ON CONFLICT (id) DO UPDATE SET phone = CASE WHEN pg_temp.peek(crm.contacts.email) THEN crm.contacts.phone END" "ROLLBACK"
check 3 clerk2 "WITH w AS (INSERT ... ON CONFLICT DO UPDATE ... WHERE NOT peek(email) RETURNING 1) SELECT" \
  "WITH w AS (INSERT INTO crm.contacts AS c (id) SELECT i FROM generate_series(1, 200) i ON CONFLICT (id) DO UPDATE SET phone = c.phone WHERE NOT pg_temp.peek(c.email) RETURNING 1) SELECT count(*) FROM w"
n=$(q -d $db -c "SELECT count(*) FROM crm.contacts")
[ "$n" = 200 ] || bad "round20.3" "setup: an upsert left $n contacts"

# The same on a partitioned table: a partition laid out as its parent shares
# the parent's ON CONFLICT state; one laid out otherwise has its own.
owner $db "CREATE TABLE crm.notes_p (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text) PARTITION BY RANGE (id);
  CREATE TABLE crm.notes_p1 PARTITION OF crm.notes_p FOR VALUES FROM (1) TO (1001);
  INSERT INTO crm.notes_p SELECT id, id, 'note of ' || email FROM crm.contacts;
  GRANT SELECT, INSERT, UPDATE ON crm.notes_p TO clerk2;" >/dev/null
su $db "SELECT gdpr.register_table('crm.notes_p', 'contact_id', 'crm.contacts')" >/dev/null
upsert="INSERT INTO crm.notes_p AS n (id) SELECT i FROM generate_series(1, 200) i ON CONFLICT (id) DO UPDATE SET note = n.note WHERE NOT pg_temp.peek(n.note)"
since=$(last_id)
out=$(as clerk2 $db "$peek" "$upsert")
log_flush
read=$(got_emails "$out")
set -- $(q -d $db -c "SELECT coalesce(sum(row_count), 0) || ' ' || coalesce(sum(cardinality(subject_keys)), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'clerk2' AND operation = 'SELECT' AND tbl IN ('crm.notes_p'::regclass, 'crm.notes_p1'::regclass)")
if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
  bad "round20.3" "clerk2 saw $read notes with an upsert on a partitioned table; the log counts $1 rows read, names $2 subjects"
elif [ "$read" -lt "$total" ]; then bad "round20.3" "setup: the partitioned upsert showed $read notes: $(grep -v peek <<<"$out" | head -c 300)"
else ok "round20.3: an upsert on a partitioned table: logged ($read read, $1 rows, $2 subjects)"; fi
owner $db "CREATE TABLE crm.notes_p2 (note text, id bigint NOT NULL, contact_id bigint);
  ALTER TABLE crm.notes_p ATTACH PARTITION crm.notes_p2 FOR VALUES FROM (1001) TO (2001);" >/dev/null
since=$(last_id)
out=$(as clerk2 $db "$peek" "$upsert")
log_flush
read=$(got_emails "$out"); set -- $(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'clerk2' AND operation = 'SELECT'")
if [ "$read" -gt "$1" ]; then bad "round20.3" "with a partition laid out otherwise, clerk2's upsert saw $read notes, the log counts $1 rows ($(state_of "$out"))"
else ok "round20.3: with a partition laid out otherwise: $read notes seen, $1 rows logged ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round20.4: no over-counting: ordinary writes log no read.
since=$(last_id)
as clerk $db "UPDATE crm.contacts SET phone = phone WHERE id = 5" "UPDATE crm.contacts SET last_contact_at = now(), city = upper(city) WHERE id = 6" >/dev/null
as clerk2 $db "INSERT INTO crm.contacts (id, email) VALUES (7, 'x@example.org') ON CONFLICT (id) DO UPDATE SET phone = excluded.phone WHERE crm.contacts.city IS DISTINCT FROM 'x'" >/dev/null
log_flush
set -- $(logged $since clerk) ; a=$1
set -- $(logged $since clerk2) ; b=$1
w=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name IN ('clerk', 'clerk2') AND operation = 'UPDATE'")
if [ "$a" != 0 ] || [ "$b" != 0 ]; then bad "round20.4" "ordinary writes by key logged reads: clerk $a rows, clerk2 $b rows"
elif [ "$w" -lt 2 ]; then bad "round20.4" "setup: the ordinary writes were not logged ($w UPDATE records)"
else ok "round20.4: ordinary writes by key and an upsert log their writes ($w records), no read"; fi

hostile_verdict security_round20
