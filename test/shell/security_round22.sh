#!/usr/bin/env bash
# Hostile review, round 22: attacks not covered by security.sh and
# security_round16.sh to security_round21.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension).
# Every check runs to the end and prints "ok" or "FAIL: round22.N: ..."; the
# script fails when one check failed (a FAIL is an attack that succeeded).
#
# Themes:
# - 22.1: a failed UPDATE, DELETE or MERGE names the row "its scan of the
#   written table holds" when the error comes (read_failing.c,
#   find_write_scans).  But the scan does not hold the row when a Hash, a
#   Sort or a Material node stands between it and the expression that
#   fails: the scan has run to its end (its slot cleared) before the join
#   returns its first row.  An error in the SET, a join's condition or a
#   MERGE action, evaluated above the Hash, names the written row's e-mail
#   and phone; the failed write is logged with 0 rows, nobody named.  Any
#   role may steer the plan (enable_nestloop, enable_mergejoin = off).
# - 22.2: the table's owner takes rows out of a registered table and puts
#   rows in without a write record: DETACH PARTITION or ALTER TABLE ... NO
#   INHERIT makes a partition or child an unregistered table (its reads are
#   no longer logged, the guard no longer keeps its triggers), DROP TABLE of
#   a partition deletes its rows, ATTACH PARTITION or INHERIT puts a table
#   of forged rows in (a filled table attached).  No DELETE, INSERT or
#   TRUNCATE record, nothing in
#   gdpr.registry_changes.
# - 22.3: the other way round: the owner makes a registered table a child
#   (INHERIT) or a partition (ATTACH PARTITION) of a table of his that is not
#   registered, and grants it to a role with no privilege on the registered
#   table: reads and writes through the parent are not logged, and a
#   restricted subject's row is shown.
# - 22.9: what resisted: a read failing above a Hash is counted, an upsert
#   failing on a sub-partition's existing row names it, a foreign key's DETAIL
#   gives no key, COPY FROM is refused, no role may write the log or the
#   journals, a column named with array syntax is recorded as it is.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round22 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
hostile_leaks round22
hash='SET enable_nestloop = off; SET enable_mergejoin = off'
sort='SET enable_nestloop = off; SET enable_hashjoin = off; SET enable_indexscan = off; SET enable_bitmapscan = off'
mat='SET enable_hashjoin = off; SET enable_mergejoin = off; SET enable_indexscan = off; SET enable_bitmapscan = off'

# ---------------------------------------------------------------------------
# Round22.1: a failed write whose error comes above a Hash, Sort or Material
# node over the written table's scan.  One contact per statement, 200
# statements: every e-mail and phone number, 200 failed writes logged with
# 0 rows.
wcheck 1 clerk "UPDATE ... FROM generate_series g WHERE g = c.id + 0 SET phone = (email || phone)::int (Hash), per contact" "$hash" \
  "$(each_row "UPDATE crm.contacts c SET phone = (c.email || ' ' || c.phone)::int FROM generate_series(%s, 100000) g WHERE g = c.id + 0 AND g = %s")"
wcheck 1 clerk "the same UPDATE through a Sort (merge join)" "$sort" \
  "$(each_row "UPDATE crm.contacts c SET phone = (c.email || ' ' || c.phone)::int FROM generate_series(1, 100000) g WHERE g = c.id + 0 AND g BETWEEN %s AND %s")"
wcheck 1 clerk "the same UPDATE through a Material (nested loop, its second outer row)" "$mat" \
  "$(each_row "UPDATE crm.contacts c SET phone = (c.email || ' ' || c.phone)::int FROM generate_series(0, %s, %s) g WHERE g = c.id + 0")"
wcheck 1 clerk "DELETE ... USING generate_series g WHERE g = c.id + 0 AND (email || g)::int > 0 (a join filter above the Hash)" "$hash" \
  "$(each_row "DELETE FROM crm.contacts c USING generate_series(%s, 100000) g WHERE g = c.id + 0 AND g = %s AND (c.email || ' ' || c.phone || g)::int > 0")"
wcheck 1 clerk "MERGE ... USING generate_series g ON g = c.id + 0 WHEN MATCHED THEN UPDATE SET phone = (email || phone)::int (Hash)" "$hash" \
  "$(each_row "MERGE INTO crm.contacts c USING (SELECT g FROM generate_series(%s, 100000) g WHERE g = %s) s ON s.g = c.id + 0 WHEN MATCHED THEN UPDATE SET phone = (c.email || ' ' || c.phone)::int")"
n=$(q -d $db -c "SELECT count(*) FROM crm.contacts")
[ "$n" = 200 ] || bad "round22.1" "setup: a failed write left $n contacts"

# ---------------------------------------------------------------------------
# Round22.9: what resisted.
# The read counterpart of 22.1: the rows a scan passes on to a Hash are counted.
check 9 clerk "SELECT (email || phone)::int ... JOIN generate_series g ON g = c.id + 0 (Hash), per contact" "$hash" \
  "$(each_row "SELECT (c.email || ' ' || c.phone)::int FROM crm.contacts c JOIN generate_series(%s, 100000) g ON g = c.id + 0 WHERE g = %s")"
# A write's condition or SET passing values on above a Hash, then ROLLBACK:
# every row of the written table the scan passed on is a read (rounds 19, 20).
check 9 clerk "UPDATE ... SET phone = CASE WHEN peek(email || g) ... FROM generate_series g (Hash), ROLLBACK" "$hash" "BEGIN" \
  "UPDATE crm.contacts c SET phone = CASE WHEN pg_temp.peek(c.email || g) THEN c.phone END FROM generate_series(1, 100000) g WHERE g = c.id + 0" "ROLLBACK"
# An upsert failing on the existing row of a partition two levels down, laid
# out otherwise than its root (a dropped column, another order): the failed
# write names that row's subject.
owner $db "CREATE TABLE crm.n2 (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text) PARTITION BY RANGE (id);
  CREATE TABLE crm.n2a PARTITION OF crm.n2 FOR VALUES FROM (1) TO (1001) PARTITION BY RANGE (id);
  CREATE TABLE crm.n2a1 (note text, x int, contact_id bigint, id bigint NOT NULL);
  ALTER TABLE crm.n2a1 DROP COLUMN x;
  ALTER TABLE crm.n2a ATTACH PARTITION crm.n2a1 FOR VALUES FROM (1) TO (1001);
  INSERT INTO crm.n2 SELECT id, id, 'note of ' || email FROM crm.contacts;" >/dev/null 2>&1
su $db "SELECT gdpr.register_table('crm.n2', 'contact_id', 'crm.contacts')" >/dev/null 2>&1
q -d postgres -c "CREATE ROLE clerk2 LOGIN" >/dev/null
owner $db "GRANT SELECT, INSERT, UPDATE ON crm.n2 TO clerk2; GRANT USAGE ON SCHEMA crm TO clerk2" >/dev/null
since=$(last_id)
out=$(as clerk2 $db "INSERT INTO crm.n2 AS n (id) VALUES (7) ON CONFLICT (id) DO UPDATE SET note = (n.note)::int::text")
log_flush
named=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'clerk2' AND detail ? 'failed'
                       AND gdpr._log_subject_key('7') = ANY (subject_keys)")
if grep -q '@example' <<<"$out" && [ "$named" = 0 ]; then
  bad "round22.9" "clerk2's upsert into a two-level partitioned table showed contact 7's note, the failed write does not name 7"
else ok "round22.9: an upsert failing on a sub-partition's existing row names its subject ($named records)"; fi
# A DELETE of a contact still referenced: the foreign key's DETAIL gives no key (row-level security).
out=$(as clerk $db "DELETE FROM crm.contacts WHERE email LIKE 'a%'")
grep -q 'Key (' <<<"$out" && bad "round22.9" "a failed DELETE's foreign key error names a key: $(grep 'Key (' <<<"$out")" \
  || ok "round22.9: a DELETE stopped by a foreign key names no key ($(state_of "$out"))"
# COPY FROM into a registered table: refused (row-level security), so no unlogged insert.
owner $db "GRANT INSERT ON crm.contacts TO clerk2" >/dev/null
out=$(printf '9001\tcopy@example.org\n' | psql -X -q -U clerk2 -d $db -c "COPY crm.contacts (id, email) FROM STDIN" 2>&1 || true)
n=$(q -d $db -c "SELECT count(*) FROM crm.contacts WHERE id = 9001")
[ "$n" = 0 ] && ok "round22.9: COPY FROM into a registered table is refused" || bad "round22.9" "clerk2 inserted by COPY FROM: $out"
# No role of the extension, nor the table's owner, may write the log, its
# partitions, seals, or the journals.
n=$(q -d $db -c "SELECT string_agg(r.rolname || ':' || c.oid::regclass::text, ' ')
                   FROM pg_class c CROSS JOIN (VALUES ('adm'), ('app'), ('aud'), ('plain'), ('crm_owner'), ('clerk')) r(rolname)
                  WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE 'access_log%'
                    AND has_table_privilege(r.rolname, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')")
[ -z "$n" ] && ok "round22.9: no role may write the access log, its seals or journals" || bad "round22.9" "writable: $n"
# A column whose name is an array literal's syntax ("a\"b,c{}\\") in a write's and a read's record.
since=$(last_id)
owner $db 'ALTER TABLE crm.contacts ADD COLUMN "a""b,c{}\" text; UPDATE crm.contacts SET "a""b,c{}\" = $$v$$ WHERE id = 5' >/dev/null
log_flush
n=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'UPDATE' AND columns = ARRAY['a\"b,c{}\\']::name[]")
[ "$n" = 1 ] && ok "round22.9: a column named with array syntax is recorded as it is" || bad "round22.9" "the UPDATE of column \"a\"\"b,c{}\\\" was recorded $n times as it is"
owner $db 'ALTER TABLE crm.contacts DROP COLUMN "a""b,c{}\"' >/dev/null

# ---------------------------------------------------------------------------
# Round22.2: partitions and inheritance children taken out and put back by
# the table's owner.  crm.notes_p, partitioned, registered (its partitions
# notes_p1 with a note per contact, notes_p2 with ten), and crm.notes_i,
# registered, whose child notes_c has a note per contact.
owner $db "CREATE TABLE crm.notes_p (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text) PARTITION BY RANGE (id);
  CREATE TABLE crm.notes_p1 PARTITION OF crm.notes_p FOR VALUES FROM (1) TO (1001);
  CREATE TABLE crm.notes_p2 PARTITION OF crm.notes_p FOR VALUES FROM (1001) TO (2001);
  INSERT INTO crm.notes_p SELECT id, id, 'note of ' || email FROM crm.contacts;
  INSERT INTO crm.notes_p SELECT 1000 + id, id, 'note of ' || email FROM crm.contacts WHERE id <= 10;
  CREATE TABLE crm.notes_i (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text);
  CREATE TABLE crm.notes_c () INHERITS (crm.notes_i);
  INSERT INTO crm.notes_c SELECT id, id, 'note of ' || email FROM crm.contacts;" >/dev/null 2>&1
su $db "SELECT gdpr.register_table('crm.notes_p', 'contact_id', 'crm.contacts'); SELECT gdpr.register_table('crm.notes_i', 'contact_id', 'crm.contacts')" >/dev/null 2>&1
# writes SINCE: the write records (INSERT, UPDATE, DELETE, TRUNCATE) of the notes tables since id SINCE.
writes() {
  q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $1 AND operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
                 AND (table_name LIKE 'crm.notes%' OR tbl::text LIKE 'crm.notes%')"
}
log_flush
# DROP TABLE of a partition: its ten rows deleted.
since=$(last_id); rc=$(last_id)
out=$(as crm_owner $db "DROP TABLE crm.notes_p2")
log_flush
left=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id > 1000")
w=$(writes $since)
ch=$(q -d $db -c "SELECT count(*) FROM gdpr.registry_changes WHERE at > now() - interval '1 minute' AND object LIKE '%notes_p2%'")
if [ "$left" = 0 ] && [ "$w" = 0 ] && [ "$ch" = 0 ]; then
  bad "round22.2" "crm_owner deleted 10 rows of registered crm.notes_p by DROP TABLE of its partition: no write record, nothing in registry_changes"
elif [ "$left" != 0 ]; then ok "round22.2: DROP TABLE of a registered table's partition refused ($(state_of "$out"))"
else ok "round22.2: DROP TABLE of a partition is on record ($w write records, $ch registry changes)"; fi
# DETACH PARTITION, then the owner reads the detached partition.
since=$(last_id)
out=$(as crm_owner $db "ALTER TABLE crm.notes_p DETACH PARTITION crm.notes_p1" "SELECT note FROM crm.notes_p1")
log_flush
read=$(got_emails "$out")
n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'crm_owner' AND operation = 'SELECT'")
if [ "$read" -ge "$total" ] && [ "$n" -lt "$read" ]; then
  bad "round22.2" "crm_owner detached partition crm.notes_p1 of registered crm.notes_p and read its $read notes' e-mails; the log counts $n rows"
else ok "round22.2: a detached partition: $read e-mails read, $n rows logged ($(state_of "$out"))"; fi
# forged_check COUNT_SQL BAD_FMT OK_FMT: crm_owner's statements since $since
# left COUNT_SQL's rows forged or changed in a registered table: bad when no
# write was recorded for them.
forged_check() {
  local forged w
  forged=$(q -d $db -c "$1")
  w=$(writes $since)
  if [ "$forged" -gt 0 ] && [ "$w" = 0 ]; then bad "round22.2" "crm_owner $(printf "$2" "$forged")"
  else ok "round22.2: $(printf "$3" "$forged"), $w write records ($(state_of "$out"))"; fi
}
# ... changes its rows with its triggers dropped, and attaches it again.
since=$(last_id)
out=$(as crm_owner $db "DROP TRIGGER gdpr_log_update ON crm.notes_p1" "UPDATE crm.notes_p1 SET note = 'forged' WHERE id <= 4" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.notes_p1 FOR VALUES FROM (1) TO (1001)")
log_flush
forged_check "SELECT count(*) FROM crm.notes_p WHERE note = 'forged'" \
  "changed %s rows of registered crm.notes_p (DETACH, DROP TRIGGER, UPDATE, ATTACH); no write record" \
  "a partition detached, changed and attached again: %s rows changed"
# NO INHERIT: the child's triggers dropped, rows deleted, INHERIT again.
since=$(last_id)
out=$(as crm_owner $db "ALTER TABLE crm.notes_c NO INHERIT crm.notes_i" "SELECT note FROM crm.notes_c" "DROP TRIGGER gdpr_log_delete ON crm.notes_c" \
  "DELETE FROM crm.notes_c WHERE id <= 50" "ALTER TABLE crm.notes_c INHERIT crm.notes_i")
log_flush
read=$(got_emails "$out")
left=$(q -d $db -c "SELECT count(*) FROM crm.notes_i")
w=$(writes $since)
n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'crm_owner' AND operation = 'SELECT'")
if [ "$left" -lt 200 ] && [ "$w" = 0 ]; then
  bad "round22.2" "crm_owner deleted $((200 - left)) rows of registered crm.notes_i (NO INHERIT, DROP TRIGGER, DELETE, INHERIT); no write record (and read $read e-mails, $n rows logged)"
elif [ "$read" -ge "$total" ] && [ "$n" -lt "$read" ]; then
  bad "round22.2" "crm_owner read $read e-mails of a child taken out of registered crm.notes_i by NO INHERIT; the log counts $n rows"
else ok "round22.2: a child taken out by NO INHERIT: $((200 - left)) rows deleted, $w write records, $read e-mails read, $n rows logged ($(state_of "$out"))"; fi

# ATTACH PARTITION of a table of forged rows: they are rows of the registered table now.
since=$(last_id)
out=$(as crm_owner $db "CREATE TABLE crm.notes_new (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text)" \
  "INSERT INTO crm.notes_new SELECT 2000 + id, id, 'forged' FROM crm.contacts WHERE id <= 10" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.notes_new FOR VALUES FROM (2001) TO (3001)")
log_flush
forged_check "SELECT count(*) FROM crm.notes_p WHERE id > 2000" \
  "put %s forged rows into registered crm.notes_p by ATTACH PARTITION; no INSERT record" \
  "ATTACH PARTITION of a filled table: %s rows"

# ---------------------------------------------------------------------------
# Round22.3: a registered table made a child or a partition of an
# unregistered table of the owner's.  The read hook counts no scan of it
# under that parent, its statement triggers do not fire for a write through
# the parent, its gdpr_restriction policy is not applied there; plain, who
# has no privilege on crm.contacts, gets one on the parent.
owner $db "CREATE TABLE crm.evil (id bigint, email text, phone text); ALTER TABLE crm.contacts INHERIT crm.evil;
  GRANT USAGE ON SCHEMA crm TO plain; GRANT SELECT, UPDATE ON crm.evil TO plain;
  CREATE TABLE crm.evilp (LIKE crm.orders) PARTITION BY RANGE (id);
  ALTER TABLE crm.evilp ATTACH PARTITION crm.orders FOR VALUES FROM (0) TO (100000000);
  GRANT SELECT, UPDATE ON crm.evilp TO plain;" >/dev/null 2>&1 || true
x=150
as adm $db "SELECT gdpr.restrict_subject('$x', 'round22')" >/dev/null
xe=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $x")
since=$(last_id)
out=$(as plain $db "SELECT email FROM crm.evil")
log_flush
read=$(got_emails "$out"); set -- $(logged $since plain)
if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
  bad "round22.3" "plain read $read e-mails of crm.contacts through crm.evil (ALTER TABLE crm.contacts INHERIT crm.evil); the log counts $1 rows, names $2 subjects"
else ok "round22.3: reads through an unregistered parent: logged ($read read, $1 rows, $2 subjects; $(state_of "$out"))"; fi
grep -qF "$xe" <<<"$out" && bad "round22.3" "plain saw restricted subject $x's e-mail through crm.evil" \
  || ok "round22.3: a restricted subject is not shown through an unregistered parent"
since=$(last_id)
out=$(as plain $db "UPDATE crm.evil SET phone = 'round22' WHERE id = 10" "UPDATE crm.evilp SET iban = 'round22' WHERE id = 3")
log_flush
c=$(q -d $db -c "SELECT (SELECT count(*) FROM crm.contacts WHERE phone = 'round22') + (SELECT count(*) FROM crm.orders WHERE iban = 'round22')")
w=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'UPDATE'")
if [ "$c" -gt 0 ] && [ "$w" -lt 2 ]; then
  bad "round22.3" "plain changed $c rows of crm.contacts and crm.orders through unregistered parents (INHERIT, ATTACH PARTITION); $w UPDATE records"
else ok "round22.3: writes through an unregistered parent: $c rows changed, $w records ($(state_of "$out"))"; fi
as adm $db "SELECT gdpr.lift_restriction('$x', 'round22')" >/dev/null
# The refusals themselves (tree_guard.c), and what stays allowed: an empty
# table attached to a registered one and detached again.
out=$(as crm_owner $db "CREATE TABLE crm.evil_t (id bigint, email text, phone text)" "ALTER TABLE crm.contacts INHERIT crm.evil_t")
[ "$(state_of "$out")" = 42501 ] && ok "round22.3: ALTER TABLE <registered> INHERIT <unregistered> refused (42501)" \
  || bad "round22.3" "ALTER TABLE crm.contacts INHERIT crm.evil_t: $(state_of "$out")"
out=$(as crm_owner $db "CREATE TABLE crm.evil_tp (LIKE crm.orders) PARTITION BY RANGE (id)" \
  "ALTER TABLE crm.evil_tp ATTACH PARTITION crm.orders FOR VALUES FROM (0) TO (100000000)")
[ "$(state_of "$out")" = 42501 ] && ok "round22.3: ATTACH PARTITION <registered> to an unregistered parent refused (42501)" \
  || bad "round22.3" "ALTER TABLE crm.evil_tp ATTACH PARTITION crm.orders: $(state_of "$out")"
out=$(as crm_owner $db "CREATE TABLE crm.notes_empty (LIKE crm.notes_p)" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.notes_empty FOR VALUES FROM (5001) TO (6001)" \
  "ALTER TABLE crm.notes_p DETACH PARTITION crm.notes_empty" "DROP TABLE crm.notes_empty")
[ "$(state_of "$out")" = 00000 ] && ok "round22.2: an empty partition is attached, detached and dropped as before" \
  || bad "round22.2" "an empty partition of crm.notes_p: $(grep -v SQLSTATE <<<"$out" | head -c 300)"

hostile_verdict security_round22
