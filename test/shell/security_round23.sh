#!/usr/bin/env bash
# Hostile review, round 23: attacks not covered by security.sh and
# security_round16.sh to security_round22.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension).
# Every check runs to the end and prints "ok" or "FAIL: round23.N: ..."; the
# script fails when one check failed (a FAIL is an attack that succeeded).
#
# Themes: the tree guard of round 22 (tree_guard.c, the ProcessUtility hook)
# looks at ALTER TABLE ... ATTACH/DETACH PARTITION, INHERIT/NO INHERIT and
# DROP TABLE only, and at the rows it sees before PostgreSQL locks anything.
# - 23.1: CREATE TABLE child () INHERITS (<registered>, <unregistered>): the
#   child is registered through its first parent, and a child of a table of
#   the owner's that is not registered (what round 22.3 refuses for ALTER
#   TABLE ... INHERIT).  plain, granted the unregistered parent, reads,
#   updates and deletes the child's rows through it: no record, and a
#   restricted subject's row is shown.
# - 23.2: the triggers a partition gets when it joins a registered tree
#   (gdpr._on_new_child, 25_triggers.sql) are skipped when the table already
#   has a trigger named gdpr_log_insert: the owner gives a table a trigger
#   of his own by that name and attaches it empty.  Rows others then insert
#   through the registered table (logged) land in a partition with no
#   UPDATE, DELETE or TRUNCATE trigger and no restriction policy: the owner
#   changes and deletes them through the partition's name, no record; the
#   DDL guard never complains (the partition was never "whole").
# - 23.3: DROP SCHEMA ... CASCADE drops a partition of a registered table
#   (moved there by ALTER TABLE ... SET SCHEMA) with its rows: no DELETE
#   record, nothing in gdpr.registry_changes (tree_guard.c looks at DROP
#   TABLE only; _on_sql_drop forgets registered tables only).
# - 23.4: ATTACH PARTITION of a table that holds rows of a transaction not
#   yet committed: holds_rows() looks with the latest snapshot before the
#   ATTACH takes its lock, sees the table empty, and the ATTACH then waits
#   for the transaction and attaches its rows: no INSERT record.
# - 23.5: the same race the other way: DETACH PARTITION of an empty
#   partition while another role's INSERT through the registered table (into
#   that partition) is not committed; the detached table holds that role's
#   rows, the owner reads them unlogged, no DELETE record.
# - 23.6: the extension's triggers on a registered table are dropped with
#   an extension of the owner's: ALTER TRIGGER ... DEPENDS ON EXTENSION
#   (allowed to the table's owner, not refused by the DDL guard), then DROP
#   EXTENSION (not watched by the guard's event triggers).  Writes by every
#   role go unlogged, and the UPDATE/DELETE triggers' refusal of writes to a
#   restricted subject's rows goes with them.
# - 23.7: what the fixes also close: a temporary child, INHERIT of a table
#   with an unregistered parent, DETACH ... CONCURRENTLY, DROP OWNED BY of
#   another role's partition; and what they leave open: a refused drop
#   caught in a subtransaction, the registered table dropped with its tree.
# - 23.9: what resisted: a failed write or read naming the row when the error
#   comes in RETURNING, an InitPlan, a CTE, ORDER BY, GROUP BY, DISTINCT ON, a
#   window's PARTITION BY or an aggregate's FILTER; CREATE TABLE ... PARTITION
#   OF a registered table gets the triggers.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round23 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
hostile_leaks round23
# reads SINCE ROLE: the rows of the notes tables the log counts as read by ROLE since id SINCE.
reads() {
  q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $1 AND role_name = '$2' AND operation = 'SELECT'
                 AND (table_name LIKE '%notes%' OR tbl::text LIKE '%notes%')"
}

# The registered trees: crm.notes_i (inheritance), crm.notes_p (partitioned,
# crm.notes_p1 holding a note per contact, inserted by adm through the
# registered table: logged).
owner $db "CREATE TABLE crm.notes_i (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text);
  CREATE TABLE crm.notes_p (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text) PARTITION BY RANGE (id);
  CREATE TABLE crm.notes_p1 PARTITION OF crm.notes_p FOR VALUES FROM (1) TO (1001);" >/dev/null 2>&1
su $db "SELECT gdpr.register_table('crm.notes_i', 'contact_id', 'crm.contacts'); SELECT gdpr.register_table('crm.notes_p', 'contact_id', 'crm.contacts')" >/dev/null 2>&1
owner $db "GRANT SELECT, INSERT ON crm.notes_i, crm.notes_p TO adm" >/dev/null
as adm $db "INSERT INTO crm.notes_p SELECT id, id, 'note of ' || email FROM crm.contacts" >/dev/null
log_flush

# ---------------------------------------------------------------------------
# Round23.1: CREATE TABLE ... INHERITS (<registered>, <unregistered>).
owner $db "CREATE TABLE crm.u (id bigint, contact_id bigint, note text);
  GRANT USAGE ON SCHEMA crm TO plain; GRANT SELECT, UPDATE, DELETE ON crm.u TO plain" >/dev/null
out=$(as crm_owner $db "CREATE TABLE crm.notes_c () INHERITS (crm.notes_i, crm.u)" "GRANT SELECT, INSERT ON crm.notes_c TO adm")
as adm $db "INSERT INTO crm.notes_c SELECT id, id, 'note of ' || email FROM crm.contacts" >/dev/null
x=150
as adm $db "SELECT gdpr.restrict_subject('$x', 'round23')" >/dev/null
xe=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $x")
log_flush
since=$(last_id)
out=$(as plain $db "SELECT note FROM crm.u")
log_flush
read=$(got_emails "$out"); n=$(reads $since plain)
if [ "$read" -ge "$total" ] && [ "$n" -lt "$read" ]; then
  bad "round23.1" "plain read $read e-mails of registered crm.notes_i's child crm.notes_c through crm.u (CREATE TABLE crm.notes_c () INHERITS (crm.notes_i, crm.u)); the log counts $n rows"
else ok "round23.1: reads through a second, unregistered parent: $read e-mails, $n rows logged ($(state_of "$out"))"; fi
grep -qF "$xe" <<<"$out" && bad "round23.1" "plain saw restricted subject $x's note through crm.u" \
  || ok "round23.1: a restricted subject is not shown through a second, unregistered parent"
since=$(last_id)
before=$(q -d $db -c "SELECT count(*) FROM crm.notes_i WHERE id BETWEEN 11 AND 20")
out=$(as plain $db "UPDATE crm.u SET note = 'round23' WHERE id <= 10" "DELETE FROM crm.u WHERE id BETWEEN 11 AND 20")
log_flush
c=$(q -d $db -c "SELECT (SELECT count(*) FROM crm.notes_i WHERE note = 'round23') + $before - (SELECT count(*) FROM crm.notes_i WHERE id BETWEEN 11 AND 20)")
w=$(writes $since)
if [ "$c" -gt 0 ] && [ "$w" = 0 ]; then
  bad "round23.1" "plain changed or deleted $c rows of registered crm.notes_i's child through crm.u; no write record"
else ok "round23.1: writes through a second, unregistered parent: $c rows, $w write records ($(state_of "$out"))"; fi
as adm $db "SELECT gdpr.lift_restriction('$x', 'round23')" >/dev/null

# ---------------------------------------------------------------------------
# Round23.2: a table with a trigger of the owner's named gdpr_log_insert,
# attached empty: it never gets the extension's triggers.  adm inserts
# contacts' notes through crm.notes_p (logged); the owner changes, deletes
# and truncates them through the partition.
out=$(as crm_owner $db "CREATE FUNCTION crm.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'" \
  "CREATE TABLE crm.notes_p2 (LIKE crm.notes_p)" \
  "CREATE TRIGGER gdpr_log_insert AFTER INSERT ON crm.notes_p2 FOR EACH STATEMENT EXECUTE FUNCTION crm.noop()" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.notes_p2 FOR VALUES FROM (1001) TO (2001)")
as adm $db "INSERT INTO crm.notes_p SELECT 1000 + id, id, 'note of ' || email FROM crm.contacts" >/dev/null
trg=$(q -d $db -c "SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = to_regclass('crm.notes_p2') AND NOT tgisinternal")
log_flush
since=$(last_id)
before=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id BETWEEN 1191 AND 1200")
out=$(as crm_owner $db "UPDATE crm.notes_p2 SET note = 'forged' WHERE id <= 1050" "DELETE FROM crm.notes_p2 WHERE id > 1190")
log_flush
c=$(q -d $db -c "SELECT (SELECT count(*) FROM crm.notes_p WHERE note = 'forged') + $before - (SELECT count(*) FROM crm.notes_p WHERE id BETWEEN 1191 AND 1200)")
w=$(writes $since)
if [ "$c" -gt 0 ] && [ "$w" = 0 ]; then
  bad "round23.2" "crm_owner changed or deleted $c rows of registered crm.notes_p through partition crm.notes_p2 (attached with a trigger of his own named gdpr_log_insert; its triggers: $trg); no write record"
else ok "round23.2: a partition attached with a trigger named gdpr_log_insert: $c rows changed, $w write records ($(state_of "$out"))"; fi
since=$(last_id)
before=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id BETWEEN 1001 AND 2000")
out=$(as crm_owner $db "TRUNCATE crm.notes_p2")
log_flush
after=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id BETWEEN 1001 AND 2000")
w=$(writes $since)
if [ "$after" -lt "$before" ] && [ "$w" = 0 ]; then
  bad "round23.2" "crm_owner emptied partition crm.notes_p2 of registered crm.notes_p ($before rows) by TRUNCATE; no record"
else ok "round23.2: TRUNCATE of that partition: $before -> $after rows, $w write records ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round23.3: a partition moved to a schema of the owner's, dropped with it.
since=$(last_id)
before=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id <= 1000")
ch0=$(q -d $db -c "SELECT count(*) FROM gdpr.registry_changes")
out=$(as crm_owner $db "CREATE SCHEMA crm_tmp" "ALTER TABLE crm.notes_p1 SET SCHEMA crm_tmp" "DROP SCHEMA crm_tmp CASCADE")
log_flush
after=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id <= 1000")
w=$(writes $since)
ch=$(( $(q -d $db -c "SELECT count(*) FROM gdpr.registry_changes") - ch0 ))
if [ "$after" -lt "$before" ] && [ "$w" = 0 ] && [ "$ch" = 0 ]; then
  bad "round23.3" "crm_owner deleted $((before - after)) rows of registered crm.notes_p by DROP SCHEMA ... CASCADE of its partition (moved by SET SCHEMA): no write record, nothing in registry_changes"
else ok "round23.3: DROP SCHEMA ... CASCADE of a partition: $before -> $after rows, $w write records, $ch registry changes ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round23.4: ATTACH PARTITION while the attached table's rows are not yet
# committed: the guard sees it empty, the ATTACH waits, attaches the rows.
owner $db "CREATE TABLE crm.raced (LIKE crm.notes_p)" >/dev/null
since=$(last_id)
as crm_owner $db "BEGIN" "INSERT INTO crm.raced SELECT 3000 + id, id, 'raced' FROM crm.contacts WHERE id <= 10" \
  "SELECT pg_sleep(3)" "COMMIT" >/dev/null &
wait_sleeper crm_owner || bad "round23.4" "setup: the inserting session never slept"
out=$(as crm_owner $db "ALTER TABLE crm.notes_p ATTACH PARTITION crm.raced FOR VALUES FROM (3001) TO (4001)")
wait
log_flush
c=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE note = 'raced'")
w=$(writes $since)
if [ "$c" -gt 0 ] && [ "$w" = 0 ]; then
  bad "round23.4" "crm_owner put $c rows into registered crm.notes_p by ATTACH PARTITION of a table whose INSERT was not yet committed; no INSERT record"
else ok "round23.4: ATTACH racing an uncommitted INSERT: $c rows entered, $w write records ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round23.5: DETACH PARTITION of an empty partition while adm's INSERT into
# it (through crm.notes_p, logged) is not yet committed.
owner $db "CREATE TABLE crm.notes_p5 PARTITION OF crm.notes_p FOR VALUES FROM (5001) TO (6001)" >/dev/null
since=$(last_id)
as adm $db "BEGIN" "INSERT INTO crm.notes_p SELECT 5000 + id, id, 'note of ' || email FROM crm.contacts" \
  "SELECT pg_sleep(3)" "COMMIT" >/dev/null &
wait_sleeper adm || bad "round23.5" "setup: the inserting session never slept"
out=$(as crm_owner $db "ALTER TABLE crm.notes_p DETACH PARTITION crm.notes_p5" "SELECT note FROM crm.notes_p5")
wait
log_flush
read=$(got_emails "$out"); n=$(reads $since crm_owner)
d=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation IN ('DELETE', 'TRUNCATE') AND (table_name LIKE '%notes%' OR tbl::text LIKE '%notes%')")
if [ "$read" -ge "$total" ] && [ "$n" -lt "$read" ]; then
  bad "round23.5" "crm_owner detached crm.notes_p5 while adm's INSERT into it was uncommitted, and read its $read notes' e-mails; the log counts $n rows, $d DELETE records"
else ok "round23.5: DETACH racing an uncommitted INSERT: $read e-mails read, $n rows logged, $d DELETE records ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round23.7: the same doors, other keys (what the fixes of 23.1 to 23.5 also
# close).  refused ID WHAT SQLSTATE OUT: the statement was refused with SQLSTATE.
out=$(as crm_owner $db "CREATE TEMP TABLE notes_t () INHERITS (crm.notes_i)")
refused round23.7 "a temporary child of a registered table (its rows would go with the session)" 42501 "$out"
out=$(as crm_owner $db "CREATE TABLE pg_temp.notes_t () INHERITS (crm.notes_i)")
refused round23.7 "a child of a registered table created in schema pg_temp" 42501 "$out"
out=$(as crm_owner $db "SET search_path = pg_temp, crm" "CREATE TABLE notes_t () INHERITS (crm.notes_i)")
refused round23.7 "a child of a registered table created with pg_temp first in search_path" 42501 "$out"
owner $db "CREATE TABLE crm.u2 (id bigint, contact_id bigint, note text); CREATE TABLE crm.c2 () INHERITS (crm.u2)" >/dev/null
out=$(as crm_owner $db "ALTER TABLE crm.c2 INHERIT crm.notes_i")
refused round23.7 "ALTER TABLE ... INHERIT <registered> of an empty table that has an unregistered parent" 42501 "$out"
owner $db "CREATE TABLE crm.notes_p6 PARTITION OF crm.notes_p FOR VALUES FROM (6001) TO (7001)" >/dev/null
out=$(as crm_owner $db "ALTER TABLE crm.notes_p DETACH PARTITION crm.notes_p6 CONCURRENTLY")
refused round23.7 "DETACH PARTITION ... CONCURRENTLY of a partition of a registered table" 0A000 "$out"
out=$(as crm_owner $db "ALTER TABLE crm.notes_p DETACH PARTITION crm.notes_p6")
[ "$(state_of "$out")" = 00000 ] && ok "round23.7: an empty partition detaches without CONCURRENTLY"   || bad "round23.7" "an empty partition could not be detached: $(head -c 300 <<<"$out")"
# A partition of another role's, holding rows, dropped with everything that
# role owns (DROP OWNED BY), and a drop caught in a subtransaction.
su $db "CREATE TABLE crm.notes_p8 PARTITION OF crm.notes_p FOR VALUES FROM (8001) TO (9001)" >/dev/null 2>&1
as adm $db "INSERT INTO crm.notes_p SELECT 8000 + id, id, 'note of ' || email FROM crm.contacts WHERE id <= 20" >/dev/null
su $db "ALTER TABLE crm.notes_p8 OWNER TO plain" >/dev/null
out=$(as plain $db "DROP OWNED BY plain")
n=$(q -d $db -c "SELECT count(*) FROM crm.notes_p WHERE id > 8000 AND id <= 9000")
[ "$(state_of "$out")" = 42501 ] && [ "$n" -gt 0 ] && ok "round23.7: DROP OWNED BY of a partition holding rows: refused, $n rows kept"   || bad "round23.7" "DROP OWNED BY of a partition holding rows: $(state_of "$out"), $n rows left"
out=$(as crm_owner $db "DO \$\$BEGIN DROP TABLE crm.notes_p5; EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'refused'; END\$\$")
[ "$(state_of "$out")" = 00000 ] && grep -q refused <<<"$out" && ok "round23.7: a refused drop caught in a subtransaction fails only that subtransaction"   || bad "round23.7" "a refused drop caught in a subtransaction: $(head -c 300 <<<"$out")"
# The registered table itself goes with its partitions (the DDL guard records it).
owner $db "CREATE TABLE crm.notes_q (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text) PARTITION BY RANGE (id);
  CREATE TABLE crm.notes_q1 PARTITION OF crm.notes_q FOR VALUES FROM (1) TO (1001)" >/dev/null
su $db "SELECT gdpr.register_table('crm.notes_q', 'contact_id', 'crm.contacts')" >/dev/null
owner $db "GRANT INSERT ON crm.notes_q TO adm" >/dev/null
as adm $db "INSERT INTO crm.notes_q SELECT id, id, 'q' FROM crm.contacts WHERE id <= 5" >/dev/null
out=$(as crm_owner $db "DROP TABLE crm.notes_q")
[ "$(state_of "$out")" = 00000 ] && ok "round23.7: a registered table is dropped with its partitions holding rows"   || bad "round23.7" "the drop of a registered table with its partitions: $(head -c 300 <<<"$out")"

# ---------------------------------------------------------------------------
# Round23.9: what resisted.
# A failed write or read names the row whatever evaluates the failing expression.
wcheck 9 clerk "UPDATE ... RETURNING (email || phone)::int, per contact" "" \
  "$(each_row "UPDATE crm.contacts c SET phone = phone WHERE id = %s AND %s > 0 RETURNING (c.email || ' ' || c.phone)::int")"
wcheck 9 clerk "UPDATE ... WHERE id = (SELECT (email || phone)::int ...) (an InitPlan), per contact" "" \
  "$(each_row "UPDATE crm.contacts SET phone = phone WHERE id = (SELECT (email || ' ' || phone)::int FROM crm.contacts WHERE id = %s AND %s > 0)")"
wcheck 9 clerk "WITH x AS MATERIALIZED (SELECT ... FROM crm.contacts) UPDATE ... SET phone = (x.email || x.phone)::int, per contact" "" \
  "$(each_row "WITH x AS MATERIALIZED (SELECT id, email, phone FROM crm.contacts WHERE id = %s) UPDATE crm.contacts c SET phone = (x.email || ' ' || x.phone)::int FROM x WHERE x.id = c.id AND c.id = %s")"
wcheck 9 clerk "SELECT ... ORDER BY (email || phone)::int, per contact" "" \
  "$(each_row "SELECT id FROM crm.contacts WHERE id = %s AND %s > 0 ORDER BY (email || ' ' || phone)::int")"
wcheck 9 clerk "SELECT ... GROUP BY (email || phone)::int, per contact" "" \
  "$(each_row "SELECT count(*) FROM crm.contacts WHERE id = %s AND %s > 0 GROUP BY (email || ' ' || phone)::int")"
wcheck 9 clerk "SELECT DISTINCT ON ((email || phone)::int), per contact" "" \
  "$(each_row "SELECT DISTINCT ON ((email || ' ' || phone)::int) id FROM crm.contacts WHERE id = %s AND %s > 0")"
wcheck 9 clerk "SELECT sum(id) OVER (PARTITION BY (email || phone)::int), per contact" "" \
  "$(each_row "SELECT sum(id) OVER (PARTITION BY (email || ' ' || phone)::int) FROM crm.contacts WHERE id = %s AND %s > 0")"
wcheck 9 clerk "SELECT count(*) FILTER (WHERE (email || phone)::int > 0), per contact" "" \
  "$(each_row "SELECT count(*) FILTER (WHERE (email || ' ' || phone)::int > 0) FROM crm.contacts WHERE id = %s AND %s > 0")"
# CREATE TABLE ... PARTITION OF a registered table: the partition gets the
# triggers; the owner's writes through its name are logged.
since=$(last_id)
out=$(as crm_owner $db "CREATE TABLE crm.notes_p7 PARTITION OF crm.notes_p FOR VALUES FROM (7001) TO (8001)" \
  "INSERT INTO crm.notes_p7 VALUES (7001, 1, 'round23')" "UPDATE crm.notes_p7 SET note = 'round23b'" "DELETE FROM crm.notes_p7")
log_flush
w=$(writes $since)
[ "$w" -ge 3 ] && ok "round23.9: CREATE TABLE ... PARTITION OF a registered table: writes through its name logged ($w records)" \
  || bad "round23.9" "writes into a partition created by CREATE TABLE ... PARTITION OF: $w records ($(state_of "$out"))"

# ---------------------------------------------------------------------------
# Round23.6 (last: it leaves crm.contacts without its triggers): the owner
# makes the extension's triggers on crm.contacts depend on an extension of
# his own (a trusted one: CREATE on the database is enough), then drops that
# extension.  ALTER TRIGGER ... DEPENDS ON EXTENSION leaves the triggers in
# place and enabled (the DDL guard sees nothing to refuse); DROP EXTENSION
# drops them with it, and no event trigger of the guard fires on DROP
# EXTENSION.  Then clerk's UPDATE of crm.contacts is not logged.
need_owner_ext $db round23.6
out=$(as crm_owner $db "CREATE EXTENSION owner_ext SCHEMA crm"   "ALTER TRIGGER gdpr_log_update ON crm.contacts DEPENDS ON EXTENSION owner_ext"   "ALTER TRIGGER gdpr_log_delete ON crm.contacts DEPENDS ON EXTENSION owner_ext" "DROP EXTENSION owner_ext")
trg=$(q -d $db -c "SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'crm.contacts'::regclass AND NOT tgisinternal")
since=$(last_id)
as clerk $db "UPDATE crm.contacts SET phone = 'round23' WHERE id <= 5" >/dev/null
log_flush
c=$(q -d $db -c "SELECT count(*) FROM crm.contacts WHERE phone = 'round23'")
w=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'UPDATE' AND tbl = 'crm.contacts'::regclass")
if [ "$c" -gt 0 ] && [ "$w" = 0 ]; then
  bad "round23.6" "crm_owner dropped the log's UPDATE and DELETE triggers of registered crm.contacts (ALTER TRIGGER ... DEPENDS ON EXTENSION owner_ext, DROP EXTENSION owner_ext; left: $trg); clerk's UPDATE of $c contacts: no record"
else ok "round23.6: triggers tied to an extension of the owner's: $c rows updated by clerk, $w UPDATE records ($(state_of "$out"))"; fi

hostile_verdict security_round23
