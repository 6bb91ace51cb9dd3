#!/usr/bin/env bash
# Hostile review, round 24: attacks not covered by security.sh and
# security_round16.sh to security_round23.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension).
# Every check runs to the end and prints "ok" or "FAIL: round24.N: ..."; the
# script fails when one check failed (a FAIL is an attack that succeeded).
#
# Themes: what the round-23 tree guard (tree_guard.c, _on_new_child, the DDL
# guard's _triggers_whole) may have missed.
# - 24.1: a temporary grandchild.  refuse_kind() looks at the table that
#   joins a registered tree, not at the tables under it: a permanent table
#   of the owner's with a TEMPORARY child (PostgreSQL allows a temporary
#   child of a permanent parent) joins crm.notes_i by ALTER TABLE ...
#   INHERIT while empty.  Rows inserted into the temporary table (logged)
#   then vanish with the session, or at every commit (ON COMMIT DELETE
#   ROWS): no DELETE or TRUNCATE record.  The drop at the session's end, or
#   ON COMMIT DROP, is not a utility statement: crm_gdpr_guard_tree_after()
#   never runs for it.
# - 24.2: ATTACH PARTITION racing a rename.  check_join() resolves the
#   partition's name without a lock (relid_of: RangeVarGetRelid NoLock),
#   then waits for its lock in holds_rows(); meanwhile another session of
#   the owner renames the empty table away and gives its name to a table
#   full of rows.  The guard looks at the empty one; PostgreSQL resolves the
#   name again after the lock and attaches the full one: rows enter
#   crm.notes_p with no INSERT record.
# - 24.3: the same race for DETACH PARTITION: an empty partition's name is
#   given to a partition holding rows while the DETACH waits; the full one
#   is detached and read with no log.
# - 24.4: the restriction policy of an inheritance child is not guarded:
#   _restriction_policy_whole() finds the registered table with
#   pg_partition_ancestors(), which does not see inheritance parents, so an
#   inheritance child is always "whole".  The owner drops gdpr_restriction
#   on crm.notes_c, or switches row-level security off: a restricted
#   subject's rows are shown to a reader of the child.  With row-level
#   security off, every later refresh of the policies (_on_sql_drop, at any
#   drop of a registered table) fails on gdpr_restriction_open (42710).
# - 24.5: the subject trigger's function is not checked:
#   _whole_tables() calls _triggers_whole(t, _subject_trigger_names(), NULL).
#   The owner replaces gdpr_subject_departed on crm.contacts with a function
#   of his own (CREATE OR REPLACE TRIGGER): deleted subjects are no longer
#   recorded as departed (nor objectors suppressed, nor consent retired).
# - 24.6: a child of two registered tables dropped with the first one
#   (DROP TABLE ... CASCADE): note_drop() records only the first registered
#   ancestor (crm_gdpr_registered_as), which is gone, so the rows of the
#   other registered table, still there, vanish with no record for it.
# - 24.7: what resisted.  24.8: what must keep working.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round24 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
hostile_leaks round24
# removals SINCE: the DELETE and TRUNCATE records of any table since id SINCE.
removals() {
  q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $1 AND operation IN ('DELETE', 'TRUNCATE')"
}
# reads SINCE ROLE: the rows the log counts as read by ROLE since id SINCE (any table).
reads() {
  q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $1 AND role_name = '$2' AND operation = 'SELECT'"
}

# The registered trees: crm.notes_i (inheritance, child crm.notes_c),
# crm.notes_p (partitioned, crm.notes_p1 holding a note per contact,
# inserted by adm through the registered table: logged).
owner $db "CREATE TABLE crm.notes_i (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text);
  CREATE TABLE crm.notes_p (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text) PARTITION BY RANGE (id);
  CREATE TABLE crm.notes_p1 PARTITION OF crm.notes_p FOR VALUES FROM (1) TO (1001);" >/dev/null 2>&1
su $db "SELECT gdpr.register_table('crm.notes_i', 'contact_id', 'crm.contacts'); SELECT gdpr.register_table('crm.notes_p', 'contact_id', 'crm.contacts')" >/dev/null 2>&1
owner $db "CREATE TABLE crm.notes_c () INHERITS (crm.notes_i);
  GRANT SELECT, INSERT ON crm.notes_i, crm.notes_p, crm.notes_c TO adm" >/dev/null 2>&1
as adm $db "INSERT INTO crm.notes_p SELECT id, id, 'note of ' || email FROM crm.contacts" >/dev/null
as adm $db "INSERT INTO crm.notes_c SELECT id, id, 'note of ' || email FROM crm.contacts" >/dev/null
owner $db "CREATE FUNCTION crm.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'" >/dev/null
log_flush

# ---------------------------------------------------------------------------
# Round24.1: a temporary grandchild.  crm.x1 (permanent, empty) has a
# temporary child; crm.x1 joins crm.notes_i; rows inserted into the
# temporary child (logged) vanish with the session.
since=$(last_id)
before=$(count "SELECT count(*) FROM crm.notes_i")
out=$(as crm_owner $db "CREATE TABLE crm.x1 (LIKE crm.notes_i)" "CREATE TEMP TABLE tg () INHERITS (crm.x1)" \
  "ALTER TABLE crm.x1 INHERIT crm.notes_i" "INSERT INTO tg SELECT 9000 + id, id, 'temp ' || email FROM crm.contacts WHERE id <= 10" \
  "SELECT 'inside=' || count(*) FROM crm.notes_i")
inside=$(sed -n 's/^inside=//p' <<<"$out")
log_flush
after=$(count "SELECT count(*) FROM crm.notes_i")
r=$(removals $since)
if [ "${inside:-0}" -gt "$before" ] && [ "$after" -lt "${inside:-0}" ] && [ "$r" = 0 ]; then
  bad "round24.1" "crm_owner put a temporary table under registered crm.notes_i (CREATE TEMP TABLE tg () INHERITS (crm.x1); ALTER TABLE crm.x1 INHERIT crm.notes_i): its $((inside - before)) rows (INSERT logged) vanished with the session, no DELETE record"
else ok "round24.1: a temporary grandchild: $before -> ${inside:-?} -> $after rows in crm.notes_i, $r removal records ($(state_of "$out"))"; fi
# The same at every commit: ON COMMIT DELETE ROWS.
since=$(last_id)
out=$(as crm_owner $db "CREATE TABLE crm.x2 (LIKE crm.notes_i)" "CREATE TEMP TABLE tg2 () INHERITS (crm.x2) ON COMMIT DELETE ROWS" \
  "ALTER TABLE crm.x2 INHERIT crm.notes_i" "BEGIN" "INSERT INTO tg2 SELECT 9100 + id, id, 'temp ' || email FROM crm.contacts WHERE id <= 10" \
  "SELECT 'inside=' || count(*) FROM crm.notes_i" "COMMIT" "SELECT 'committed=' || count(*) FROM crm.notes_i")
inside=$(sed -n 's/^inside=//p' <<<"$out"); committed=$(sed -n 's/^committed=//p' <<<"$out")
log_flush
r=$(removals $since)
if [ "${inside:-0}" -gt "$before" ] && [ "${committed:-0}" -lt "${inside:-0}" ] && [ "$r" = 0 ]; then
  bad "round24.1" "rows of a temporary grandchild (ON COMMIT DELETE ROWS) of registered crm.notes_i vanished at COMMIT ($inside -> $committed rows), no DELETE or TRUNCATE record"
else ok "round24.1: a temporary grandchild, ON COMMIT DELETE ROWS: ${inside:-?} -> ${committed:-?} rows at commit, $r removal records ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round24.2: ATTACH PARTITION racing a rename.  crm.ra is empty, crm.rb
# holds a note per contact.  A session of the owner renames crm.ra away and
# crm.rb to crm.ra, and waits before committing; the ATTACH of crm.ra
# resolves the name to the empty table, waits for its lock, then attaches
# the full one.
owner $db "CREATE TABLE crm.ra (LIKE crm.notes_p); CREATE TABLE crm.rb (LIKE crm.notes_p);
  INSERT INTO crm.rb SELECT 2000 + id, id, 'raced ' || email FROM crm.contacts" >/dev/null 2>&1
since=$(last_id)
as crm_owner $db "BEGIN" "ALTER TABLE crm.ra RENAME TO ra_old" "ALTER TABLE crm.rb RENAME TO ra" "SELECT pg_sleep(3)" "COMMIT" >/dev/null &
wait_sleeper crm_owner || bad "round24.2" "setup: the renaming session never slept"
out=$(as crm_owner $db "ALTER TABLE crm.notes_p ATTACH PARTITION crm.ra FOR VALUES FROM (2001) TO (3001)")
wait
log_flush
c=$(count "SELECT count(*) FROM crm.notes_p WHERE note LIKE 'raced %'")
w=$(writes $since)
if [ "$c" -gt 0 ] && [ "$w" = 0 ]; then
  bad "round24.2" "crm_owner put $c rows into registered crm.notes_p by ATTACH PARTITION crm.ra while another session renamed the empty crm.ra away and a full table to crm.ra; no INSERT record"
else ok "round24.2: ATTACH racing a rename: $c rows entered, $w write records ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round24.3: DETACH PARTITION racing a rename: the empty partition's name is
# given to crm.notes_p1 (a note per contact) while the DETACH waits.
owner $db "CREATE TABLE crm.notes_pe PARTITION OF crm.notes_p FOR VALUES FROM (5001) TO (6001)" >/dev/null
before=$(count "SELECT count(*) FROM crm.notes_p")
since=$(last_id)
as crm_owner $db "BEGIN" "ALTER TABLE crm.notes_pe RENAME TO notes_pe_old" "ALTER TABLE crm.notes_p1 RENAME TO notes_pe" \
  "SELECT pg_sleep(3)" "COMMIT" >/dev/null &
wait_sleeper crm_owner || bad "round24.3" "setup: the renaming session never slept"
out=$(as crm_owner $db "ALTER TABLE crm.notes_p DETACH PARTITION crm.notes_pe")
wait
out2=$(as crm_owner $db "SELECT note FROM crm.notes_pe")
log_flush
after=$(count "SELECT count(*) FROM crm.notes_p")
read=$(got_emails "$out2"); n=$(reads $since crm_owner); d=$(removals $since)
if [ "$after" -lt "$before" ] && [ "$read" -gt 0 ] && [ "$n" -lt "$read" ]; then
  bad "round24.3" "crm_owner detached crm.notes_p1 ($((before - after)) rows) by DETACH PARTITION crm.notes_pe while another session gave the empty partition's name to it, and read $read e-mails; the log counts $n rows read, $d DELETE records"
else ok "round24.3: DETACH racing a rename: $before -> $after rows in crm.notes_p, $read e-mails read, $n rows logged ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round24.4: the restriction policy of an inheritance child.  plain may read
# crm.notes_c; subject x is restricted.
owner $db "GRANT USAGE ON SCHEMA crm TO plain; GRANT SELECT ON crm.notes_c TO plain" >/dev/null
x=150
xe=$(count "SELECT email FROM crm.contacts WHERE id = $x")
as adm $db "SELECT gdpr.restrict_subject('$x', 'round24')" >/dev/null
out=$(as plain $db "SELECT note FROM crm.notes_c")
grep -qF "$xe" <<<"$out" && bad "round24.4" "setup: plain saw restricted subject $x's note in crm.notes_c with the policy in place" \
  || ok "round24.4: a restricted subject is hidden in an inheritance child while its policy is there"
out=$(as crm_owner $db "DROP POLICY gdpr_restriction ON crm.notes_c")
out2=$(as plain $db "SELECT note FROM crm.notes_c")
if grep -qF "$xe" <<<"$out2"; then
  bad "round24.4" "crm_owner dropped the gdpr_restriction policy of crm.notes_c, inheritance child of registered crm.notes_i (DROP POLICY accepted by the DDL guard); plain then saw restricted subject $x's note"
else ok "round24.4: DROP POLICY gdpr_restriction on an inheritance child: $(state_of "$out"), restricted subject hidden"; fi
out=$(as crm_owner $db "ALTER TABLE crm.notes_c DISABLE ROW LEVEL SECURITY")
[ "$(state_of "$out")" = 00000 ] && bad "round24.4" "crm_owner switched row-level security off on crm.notes_c, inheritance child of registered crm.notes_i (ALTER TABLE ... DISABLE ROW LEVEL SECURITY accepted)" \
  || ok "round24.4: DISABLE ROW LEVEL SECURITY on an inheritance child: refused ($(state_of "$out"))"
out=$(as crm_owner $db "ALTER TABLE crm.notes_pe_old DISABLE ROW LEVEL SECURITY")
refused round24.4 "for comparison: DISABLE ROW LEVEL SECURITY on a partition" 42501 "$out"
as adm $db "SELECT gdpr.lift_restriction('$x', 'round24')" >/dev/null
# Put back (row-level security on; the next refresh of the policies, at any
# drop of a registered table, recreates gdpr_restriction: with row-level
# security off it fails on gdpr_restriction_open, which is still there).
owner $db "ALTER TABLE crm.notes_c ENABLE ROW LEVEL SECURITY" >/dev/null 2>&1 || true

# ---------------------------------------------------------------------------
# Round24.5: gdpr_subject_departed replaced by a function of the owner's.
# A contact the owner adds and clerk deletes is recorded as departed; after
# the replacement, not.
dep() { count "SELECT count(*) FROM gdpr.departed_subjects"; }
owner $db "INSERT INTO crm.contacts (first_name, last_name, email) VALUES ('Gone', 'One', 'gone.one@example.com'), ('Gone', 'Two', 'gone.two@example.com')" >/dev/null
d0=$(dep)
as clerk $db "DELETE FROM crm.contacts WHERE email = 'gone.one@example.com'" >/dev/null
d1=$(dep)
out=$(as crm_owner $db "CREATE OR REPLACE TRIGGER gdpr_subject_departed AFTER DELETE ON crm.contacts FOR EACH STATEMENT EXECUTE FUNCTION crm.noop()")
fn=$(count "SELECT tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'crm.contacts'::regclass AND tgname = 'gdpr_subject_departed'")
as clerk $db "DELETE FROM crm.contacts WHERE email = 'gone.two@example.com'" >/dev/null
d2=$(dep)
gone=$(count "SELECT count(*) FROM crm.contacts WHERE email = 'gone.two@example.com'")
if [ "$d1" -gt "$d0" ] && [ "$gone" = 0 ] && [ "$d2" = "$d1" ]; then
  bad "round24.5" "crm_owner replaced the subject trigger gdpr_subject_departed of registered subject table crm.contacts by CREATE OR REPLACE TRIGGER ... EXECUTE FUNCTION crm.noop() (now calls $fn; the DDL guard let it through); clerk's DELETE of a contact: no departure recorded ($d0 -> $d1 before, $d1 -> $d2 after)"
else ok "round24.5: the subject trigger replaced by the owner's function: $(state_of "$out"), trigger calls $fn, departures $d0 -> $d1 -> $d2"; fi

# ---------------------------------------------------------------------------
# Round24.6: a child of two registered tables, dropped with the first one.
owner $db "CREATE TABLE crm.notes_a (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text);
  CREATE TABLE crm.notes_b (id bigint PRIMARY KEY, contact_id bigint REFERENCES crm.contacts (id), note text)" >/dev/null 2>&1
su $db "SELECT gdpr.register_table('crm.notes_a', 'contact_id', 'crm.contacts'); SELECT gdpr.register_table('crm.notes_b', 'contact_id', 'crm.contacts')" >/dev/null 2>&1
out=$(as crm_owner $db "CREATE TABLE crm.notes_ab () INHERITS (crm.notes_a, crm.notes_b)" "GRANT SELECT, INSERT ON crm.notes_ab, crm.notes_b TO adm")
as adm $db "INSERT INTO crm.notes_ab SELECT id, id, 'ab' FROM crm.contacts WHERE id <= 10" >/dev/null
log_flush
before=$(count "SELECT count(*) FROM crm.notes_b")
ch0=$(count "SELECT count(*) FROM gdpr.registry_changes WHERE object LIKE '%notes_b%'")
since=$(last_id)
out=$(as crm_owner $db "DROP TABLE crm.notes_a CASCADE")
log_flush
after=$(count "SELECT count(*) FROM crm.notes_b")
r=$(removals $since)
ch=$(( $(count "SELECT count(*) FROM gdpr.registry_changes WHERE object LIKE '%notes_b%'") - ch0 ))
if [ "$after" -lt "$before" ] && [ "$r" = 0 ] && [ "$ch" = 0 ]; then
  bad "round24.6" "crm_owner emptied registered crm.notes_b ($before -> $after rows) by DROP TABLE crm.notes_a CASCADE (its child crm.notes_ab, also crm.notes_b's, went with it); no DELETE record, nothing in registry_changes for crm.notes_b"
else ok "round24.6: a child of two registered tables dropped with one: crm.notes_b $before -> $after rows, $r removal records, $ch registry changes ($(state_of "$out"))"; fi

# ---------------------------------------------------------------------------
# Round24.7: what resisted.  A sub-partitioned partition of crm.notes_p
# whose partition holds rows.
owner $db "CREATE TABLE crm.notes_m PARTITION OF crm.notes_p FOR VALUES FROM (10001) TO (20001) PARTITION BY RANGE (id);
  CREATE TABLE crm.notes_m1 PARTITION OF crm.notes_m FOR VALUES FROM (10001) TO (11001)" >/dev/null 2>&1
as adm $db "INSERT INTO crm.notes_p SELECT 10000 + id, id, 'mid' FROM crm.contacts WHERE id <= 20" >/dev/null
kept() { [ "$(count "SELECT count(*) FROM crm.notes_m1")" = 20 ]; }
# dropref ID WHAT OUT: refused (42501) and the rows still there.
dropref() { [ "$(state_of "$3")" = 42501 ] && kept && ok "$1: $2: refused, rows kept" || bad "$1" "$2: $(state_of "$3"), $(count "SELECT count(*) FROM crm.notes_m1") rows left: $(head -c 300 <<<"$3")"; }
dropref round24.7 "DROP TABLE of a sub-partitioned middle partition" "$(as crm_owner $db "DROP TABLE crm.notes_m")"
dropref round24.7 "DROP TABLE in a DO block (EXECUTE)" "$(as crm_owner $db "DO \$\$BEGIN EXECUTE 'DROP TABLE crm.notes_m1'; END\$\$")"
dropref round24.7 "DROP TABLE in a procedure that commits" \
  "$(as crm_owner $db "CREATE PROCEDURE crm.pd() LANGUAGE plpgsql AS \$\$BEGIN DROP TABLE crm.notes_m1; COMMIT; END\$\$" "CALL crm.pd()")"
dropref round24.7 "DROP TABLE in an SQL function" \
  "$(as crm_owner $db "CREATE FUNCTION crm.fd() RETURNS void LANGUAGE sql AS \$\$DROP TABLE crm.notes_m1\$\$" "SELECT crm.fd()")"
out=$(as crm_owner $db "BEGIN" "SAVEPOINT a" "DROP TABLE crm.notes_m1" "RELEASE a" "COMMIT")
kept && grep -q 'cannot be dropped' <<<"$out" && ok "round24.7: DROP TABLE in a subtransaction then RELEASE: refused, rows kept" \
  || bad "round24.7" "DROP TABLE in a subtransaction then RELEASE: $(count "SELECT count(*) FROM crm.notes_m1") rows left: $(head -c 300 <<<"$out")"
need_owner_ext $db round24.7
dropref round24.7 "ALTER EXTENSION owner_ext ADD TABLE <partition>, DROP EXTENSION owner_ext" \
  "$(as crm_owner $db "CREATE EXTENSION owner_ext SCHEMA crm" "ALTER EXTENSION owner_ext ADD TABLE crm.notes_m1" "DROP EXTENSION owner_ext")"
as crm_owner $db "ALTER EXTENSION owner_ext DROP TABLE crm.notes_m1" >/dev/null
# A schema of plain's holding the owner's partition: plain drops it.
su $db "CREATE SCHEMA plainsch AUTHORIZATION plain; GRANT CREATE, USAGE ON SCHEMA plainsch TO crm_owner" >/dev/null
as crm_owner $db "ALTER TABLE crm.notes_m1 SET SCHEMA plainsch" >/dev/null
out=$(as plain $db "DROP SCHEMA plainsch CASCADE")
[ "$(state_of "$out")" = 42501 ] && [ "$(count "SELECT count(*) FROM plainsch.notes_m1")" = 20 ] \
  && ok "round24.7: DROP SCHEMA ... CASCADE by the schema's owner (not the partition's): refused, rows kept" \
  || bad "round24.7" "DROP SCHEMA ... CASCADE by the schema's owner of the owner's partition: $(state_of "$out"): $(head -c 300 <<<"$out")"
as crm_owner $db "ALTER TABLE plainsch.notes_m1 SET SCHEMA crm" >/dev/null
# INHERIT of an unregistered parent by a table registered through an ancestor.
owner $db "CREATE TABLE crm.u9 (id bigint, contact_id bigint, note text)" >/dev/null
refused round24.7 "ALTER TABLE <child of a registered table> INHERIT <unregistered>" 42501 "$(as crm_owner $db "ALTER TABLE crm.notes_c INHERIT crm.u9")"
# ALTER TRIGGER ... DEPENDS ON EXTENSION: a subject trigger, a partition's trigger.
out=$(as crm_owner $db "ALTER TRIGGER gdpr_subject_departed ON crm.contacts DEPENDS ON EXTENSION owner_ext")
refused round24.7 "ALTER TRIGGER gdpr_subject_departed ON <subject table> DEPENDS ON EXTENSION" 42501 "$out"
out=$(as crm_owner $db "ALTER TRIGGER gdpr_log_delete ON crm.notes_m1 DEPENDS ON EXTENSION owner_ext")
refused round24.7 "ALTER TRIGGER gdpr_log_delete ON <sub-partition> DEPENDS ON EXTENSION" 42501 "$out"
# Triggers of the owner's named like the extension's on a table then attached.
out=$(as crm_owner $db "CREATE TABLE crm.ct (LIKE crm.notes_p)" \
  "CREATE CONSTRAINT TRIGGER gdpr_log_update AFTER UPDATE ON crm.ct DEFERRABLE FOR EACH ROW EXECUTE FUNCTION crm.noop()" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.ct FOR VALUES FROM (30001) TO (31001)")
att=$(count "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'crm.ct'::regclass")
[ "$att" = 0 ] && ok "round24.7: a table with a constraint trigger named gdpr_log_update is not attached ($(state_of "$out"))" \
  || bad "round24.7" "a table with a constraint trigger named gdpr_log_update was attached"
out=$(as crm_owner $db "CREATE TABLE crm.dt (LIKE crm.notes_p)" \
  "CREATE TRIGGER gdpr_log_update AFTER UPDATE ON crm.dt FOR EACH STATEMENT EXECUTE FUNCTION crm.noop()" \
  "ALTER TABLE crm.dt DISABLE TRIGGER gdpr_log_update" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.dt FOR VALUES FROM (31001) TO (32001)")
t=$(count "SELECT string_agg(tgname || ':' || tgfoid::regproc || ':' || tgenabled::text, ' ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'crm.dt'::regclass AND tgname LIKE 'gdpr%'")
[ "$t" = "gdpr_log_delete:gdpr._log_write:O gdpr_log_insert:gdpr._log_write:O gdpr_log_truncate:gdpr._log_write:O gdpr_log_update:gdpr._log_write:O" ] \
  && ok "round24.7: a disabled trigger of the owner's named gdpr_log_update is replaced on ATTACH" || bad "round24.7" "ATTACH of a table with a disabled gdpr_log_update of the owner's: its triggers: $t ($(state_of "$out"))"
# A policy named gdpr_restriction of the owner's (USING (true), as dormant) is armed with the others.
out=$(as crm_owner $db "CREATE TABLE crm.pp (LIKE crm.notes_p)" "ALTER TABLE crm.pp ENABLE ROW LEVEL SECURITY" \
  "CREATE POLICY gdpr_restriction ON crm.pp AS RESTRICTIVE FOR SELECT USING (true)" "CREATE POLICY mine ON crm.pp USING (true)" \
  "ALTER TABLE crm.notes_p ATTACH PARTITION crm.pp FOR VALUES FROM (40001) TO (41001)")
as adm $db "SELECT gdpr.restrict_subject('7', 'round24')" >/dev/null
pq=$(count "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'crm.pp'::regclass AND polname = 'gdpr_restriction'")
as adm $db "SELECT gdpr.lift_restriction('7', 'round24')" >/dev/null
[ "$pq" != true ] && ok "round24.7: a pre-created gdpr_restriction policy USING (true) is armed with the others ($pq)" \
  || bad "round24.7" "a partition attached with its own gdpr_restriction policy USING (true) stays unarmed while a subject is restricted"
# CREATE TABLE ... (LIKE ...) INHERITS (<registered>) gets the triggers.
out=$(as crm_owner $db "CREATE TABLE crm.notes_l (LIKE crm.u9) INHERITS (crm.notes_i)")
n=$(count "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crm.notes_l'::regclass AND tgname LIKE 'gdpr_log%'")
[ "$n" = 4 ] && ok "round24.7: CREATE TABLE ... (LIKE ...) INHERITS (<registered>) gets the 4 triggers" || bad "round24.7" "CREATE TABLE ... (LIKE ...) INHERITS: $n triggers ($(state_of "$out"))"
# A temporary table directly under a registered tree, ON COMMIT DROP.
refused round24.7 "CREATE TEMP TABLE ... INHERITS (<registered>) ON COMMIT DROP" 42501 \
  "$(as crm_owner $db "BEGIN" "CREATE TEMP TABLE tg3 () INHERITS (crm.notes_i) ON COMMIT DROP")"

# ---------------------------------------------------------------------------
# Round24.8: what must keep working: an empty partition is attached,
# detached (losing the extension's triggers and policy) and dropped; a
# registered table is dropped with its partitions holding rows.
out=$(as crm_owner $db "CREATE TABLE crm.e1 (LIKE crm.notes_p)" "ALTER TABLE crm.notes_p ATTACH PARTITION crm.e1 FOR VALUES FROM (50001) TO (51001)" \
  "ALTER TABLE crm.notes_p DETACH PARTITION crm.e1" "DROP TABLE crm.e1" \
  "CREATE TABLE crm.e2 PARTITION OF crm.notes_p FOR VALUES FROM (51001) TO (52001)" "DROP TABLE crm.e2")
[ "$(state_of "$out")" = 00000 ] && ! grep -q ERROR <<<"$out" && ok "round24.8: an empty partition attaches, detaches and drops" \
  || bad "round24.8" "an empty partition's attach, detach or drop failed: $(head -c 300 <<<"$out")"
# A partition detached empty leaves with the extension's triggers and policy
# (they would refuse its writes as those of a table that is not registered).
out=$(as crm_owner $db "CREATE TABLE crm.e3 (LIKE crm.notes_p)" "ALTER TABLE crm.notes_p ATTACH PARTITION crm.e3 FOR VALUES FROM (52001) TO (53001)" \
  "ALTER TABLE crm.notes_p DETACH PARTITION crm.e3" "INSERT INTO crm.e3 VALUES (52001, 1, 'after')")
left=$(q -d $db -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crm.e3'::regclass AND tgname LIKE 'gdpr%'")
pol=$(q -d $db -c "SELECT count(*) FROM pg_policy WHERE polrelid = 'crm.e3'::regclass")
[ "$(state_of "$out")" = 00000 ] && [ "$left" = 0 ] && [ "$pol" = 0 ] && ok "round24.8: a partition detached empty loses the extension's triggers and policy, and takes writes" \
  || bad "round24.8" "a partition detached empty: $left triggers and $pol policies left, its INSERT: $(head -c 300 <<<"$out")"
out=$(as crm_owner $db "DROP TABLE crm.notes_p")
[ "$(state_of "$out")" = 00000 ] && ok "round24.8: a registered table is dropped with its partitions holding rows" \
  || bad "round24.8" "the drop of registered crm.notes_p with its partitions: $(head -c 300 <<<"$out")"

hostile_verdict security_round24
