#!/usr/bin/env bash
# Hostile review, round 25: attacks not covered by security.sh and
# security_round16.sh to security_round24.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension).
# Every check runs to the end and prints "ok" or "FAIL: round25.N: ..."; the
# script fails when one check failed (a FAIL is an attack that succeeded).
#
# Themes: what crm_gdpr_reads_are_logged() (read_hook.c) and the
# restriction trigger (restriction.c) exempt, and who can get his own code
# into the exempt part.
# - 25.1: a foreign key's cascade is exempt from the read log, and so is
#   everything it runs.  crm_gdpr_reads_are_logged() returns false whenever
#   the security context has SECURITY_NOFORCE_RLS ("a foreign key check
#   ... returns nothing to anyone").  But ri_triggers.c sets that context
#   (ri_PerformCheck: SetUserIdAndSecContext(owner of the referencing table,
#   ... | SECURITY_NOFORCE_RLS)) around the whole SPI query of an ON
#   DELETE/ON UPDATE CASCADE (or SET NULL / SET DEFAULT) action, and the
#   BEFORE ROW triggers of the referencing table fire INSIDE that query: any
#   query those triggers run reads with the context still set.  Any role
#   that may read a registered table builds the path from nothing: two
#   TEMPORARY tables (TEMP is granted to PUBLIC), a foreign key ON DELETE
#   CASCADE (or ON UPDATE CASCADE) between them, and a BEFORE DELETE (or
#   UPDATE) row trigger on the referencing one calling a pg_temp function
#   that SELECTs crm.contacts; one DELETE (UPDATE) of the referenced temp
#   row.  clerk and app read every e-mail; the log has no record at all.
#   The same trigger fired by a direct DELETE of the temp row is logged
#   (25.9): only the cascade's context hides it.
# - 25.2: a rule of the owner's rides the extension's own statement.
#   crm_gdpr_reads_are_logged() exempts every query started at the nesting
#   level of gdpr._owner_exec's statement (crm_gdpr_owner_exec_depth > 0 &&
#   exec_nesting <= crm_gdpr_owner_exec_level), to spare the erasure's and
#   the purge's own DELETE/UPDATE.  Round 21 made what that statement runs
#   NESTED (a trigger, a function) count again; but a rule's actions are not
#   nested: the rewriter turns the extension's one statement into several
#   queries (owner_context.c owner_exec: SPI_execute_plan runs them all at the
#   same level).  The owner adds CREATE RULE ... ON UPDATE / ON DELETE TO
#   crm.contacts DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts
#   (the DDL guard records CREATE RULE as DDL, nothing more).  When adm erases
#   a subject, the erasure's UPDATE/DELETE of crm.contacts copies the whole
#   table, the erased person's e-mail included, into the owner's table: no
#   SELECT record (the erasure is logged as ERASE and its DELETEs, the
#   copy's INSERT into an unregistered table as nothing).  The same with
#   gdpr.purge() (a retention policy on crm.marketing_events, a rule ON
#   DELETE TO it; the purge worker runs the same statements through
#   gdpr._owner_exec, and its own exemption, crm_gdpr_in_own_worker, spares
#   likewise only what is nested: not run here).
#   The same rule fired by clerk's own UPDATE is logged (25.9).
# - 25.3: the restriction (Art. 18) is lifted for whatever runs during the
#   extension's statement.  crm_gdpr_refuse_restricted_write() (restriction.c)
#   returns at once when crm_gdpr_owner_exec_depth > 0, nested or not (meant
#   for key rotation, which runs as the table's owner).  The owner, refused
#   when he updates a restricted subject's row himself (25.9), puts an AFTER
#   DELETE statement trigger on crm.interactions that does it; the next
#   erasure of ANY subject by adm fires it, and the restricted row is
#   changed.  The log then names adm as the writer of that UPDATE
#   (log_write.c writer_name(): in the owner context
#   SECURITY_LOCAL_USERID_CHANGE is set, so GetOuterUserId(), adm), not
#   crm_owner.
# - 25.4: the restriction does not stop TRUNCATE nor a rewriting ALTER
#   TABLE.  restriction.c refuses UPDATE and DELETE from the statement
#   trigger's old transition table; gdpr._log_write() skips the check for
#   TRUNCATE (no transition table; the AFTER TRUNCATE trigger comes when
#   the rows are gone anyway), and ALTER TABLE ... ALTER COLUMN ... TYPE
#   ... USING (...) rewrites every row without any trigger (the DDL guard,
#   _record_alter_code in 20_schema_sync.sql, only records it as DDL).  The
#   owner, whose DELETE of restricted subject 150's interactions is refused
#   (25.9), empties crm.interactions by TRUNCATE (one TRUNCATE record, no
#   subject, no row count), and rewrites 150's contact row by ALTER TYPE
#   USING.  doc/reference.md (restrict_subject): "only storage goes on".
# Fixed (helper-34's suite failed 7 checks on 1782077; all pass):
# - 25.1: only a foreign key's own query is exempt (read_hook.c fk_nesting:
#   what starts while one runs is logged).
# - 25.2: CREATE RULE on a registered table is refused (_guard_ddl_end), a
#   table with rules is not registered (_check_table), and the planner
#   refuses a statement run as owner that a rule rewrote
#   (crm_gdpr_check_owner_query): the erasure fails whole.
# - 25.3: the exemptions of the extension's statement (restriction, the
#   writer named) cover that statement and its own triggers, not the
#   statements the owner's code makes (crm_gdpr_in_owner_statement).
# - 25.4: TRUNCATE (restriction.c restricted_truncate) and ALTER COLUMN TYPE
#   / SET EXPRESSION (_record_alter_code) are refused to all but gdpr_admin
#   while a subject of the table's subject table is restricted.
# - 25.9: what resisted: the reading trigger of 25.1 fired by a direct
#   DELETE, the rule of 25.2 fired by clerk's own UPDATE (both logged), the
#   owner's own UPDATE and DELETE of a restricted subject (refused), a
#   cursor read to its end in a session that then terminates itself, and
#   gdpr.decrypt() in a DO block's simple expression (no executor): logged.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round25 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
hostile_leaks round25
# contact_reads SINCE: the rows of crm.contacts the log counts as read (any role) since id SINCE.
contact_reads() {
  count "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $1 AND operation = 'SELECT' AND tbl = 'crm.contacts'::regclass"
}

# ---------------------------------------------------------------------------
# Round25.1: reads inside a foreign key's cascade.  Two temporary tables of
# the reader's own, the referencing one with a BEFORE row trigger that reads
# crm.contacts, passing each e-mail to peek.
grab='CREATE FUNCTION pg_temp.grab() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_temp.peek(email) FROM crm.contacts; RETURN coalesce(NEW, OLD); END$$'
check 1 clerk "a BEFORE DELETE trigger on a temporary table, fired by ON DELETE CASCADE from another temporary table" \
  "CREATE TEMP TABLE p (id int PRIMARY KEY)" "CREATE TEMP TABLE c (pid int REFERENCES p ON DELETE CASCADE)" "$grab" \
  "CREATE TRIGGER g BEFORE DELETE ON c FOR EACH ROW EXECUTE FUNCTION pg_temp.grab()" \
  "INSERT INTO p VALUES (1)" "INSERT INTO c VALUES (1)" "DELETE FROM p"
check 1 app "a BEFORE UPDATE trigger on a temporary table, fired by ON UPDATE CASCADE from another temporary table" \
  "CREATE TEMP TABLE p (id int PRIMARY KEY)" "CREATE TEMP TABLE c (pid int REFERENCES p ON UPDATE CASCADE)" "$grab" \
  "CREATE TRIGGER g BEFORE UPDATE ON c FOR EACH ROW EXECUTE FUNCTION pg_temp.grab()" \
  "INSERT INTO p VALUES (1)" "INSERT INTO c VALUES (1)" "UPDATE p SET id = 2"
# For comparison (resisted): the same trigger fired by a DELETE of the
# referencing row itself is logged.
check 9 clerk "the same BEFORE DELETE trigger fired by a direct DELETE (no cascade)" \
  "CREATE TEMP TABLE c (pid int)" "$grab" "CREATE TRIGGER g BEFORE DELETE ON c FOR EACH ROW EXECUTE FUNCTION pg_temp.grab()" \
  "INSERT INTO c VALUES (1)" "DELETE FROM c"
# A cursor read to its end, then the session terminates itself before the
# portal is closed (no ExecutorEnd): still logged.
check 9 clerk "a cursor fetched to its end, then pg_terminate_backend() of its own session" \
  "BEGIN" "DECLARE c CURSOR FOR SELECT email FROM crm.contacts" "FETCH ALL FROM c" "SELECT pg_terminate_backend(pg_backend_pid())"

# ---------------------------------------------------------------------------
# Round25.2: a rule of the owner's on crm.contacts, fired by adm's erasure.
# Refused now: CREATE RULE on a registered table.  The backstop (the planner
# refuses a rewritten statement run as owner) is checked with rules the DDL
# guard did not see: the superuser's, with event triggers off
# (session_replication_role = replica).
owner $db "CREATE TABLE crm.loot (email text)" >/dev/null 2>&1
rule_u="CREATE RULE steal_u AS ON UPDATE TO crm.contacts DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts"
rule_d="CREATE RULE steal_d AS ON DELETE TO crm.contacts DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts"
rule_p="CREATE RULE steal_p AS ON DELETE TO crm.marketing_events DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts"
refused round25.2 "crm_owner's CREATE RULE ... ON UPDATE TO <registered subject table>" 42501 "$(as crm_owner $db "$rule_u")"
refused round25.2 "crm_owner's CREATE RULE ... ON DELETE TO <registered table>" 42501 "$(as crm_owner $db "$rule_p")"
out=$(as crm_owner $db "CREATE TABLE crm.ruled (id int PRIMARY KEY, contact_id bigint REFERENCES crm.contacts)" \
  "CREATE RULE r AS ON DELETE TO crm.ruled DO INSTEAD NOTHING")
refused round25.2 "gdpr.register_table() of a table with a rule" 55000 "$(as postgres $db "SELECT gdpr.register_table('crm.ruled')")"
su $db "SET session_replication_role = replica; $rule_u; $rule_d" >/dev/null
victim=20
ve=$(count "SELECT email FROM crm.contacts WHERE id = $victim")
log_flush
since=$(last_id)
out=$(as adm $db "SELECT gdpr.erase_subject('$victim')")
log_flush
copied=$(count "SELECT count(DISTINCT email) FROM crm.loot")
left=$(count "SELECT count(*) FROM crm.contacts WHERE id = $victim AND email = '$ve'")
n=$(contact_reads $since)
if [ "$copied" -gt 0 ] && [ "$n" -lt "$copied" ]; then
  bad "round25.2" "a rule (ON UPDATE/ON DELETE TO crm.contacts DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts) copied $copied e-mails during adm's erasure of subject $victim; the log counts $n rows of crm.contacts read"
elif [ "$(state_of "$out")" = 42501 ] && [ "$left" = 1 ]; then
  ok "round25.2: a rule on crm.contacts the guard did not see: the erasure is refused whole (42501), nothing copied, subject $victim untouched"
else bad "round25.2" "a rule on crm.contacts the guard did not see: erasure $(state_of "$out"), $copied e-mails copied, subject $victim's row left $left: $(head -c 300 <<<"$out")"; fi
# The same through the purge (adm's gdpr.purge() of a retention policy on
# crm.marketing_events; the purge worker runs the same statements).
su $db "TRUNCATE crm.loot; SET session_replication_role = replica; $rule_p" >/dev/null
log_flush
since=$(last_id)
ev0=$(count "SELECT count(*) FROM crm.marketing_events")
out=$(as adm $db "SELECT gdpr.set_retention('crm.marketing_events', NULL, '13 months', 'at', 'delete')" "SELECT 'purged=' || coalesce(sum(rows), 0) FROM gdpr.purge()")
log_flush
purged=$(sed -n 's/^purged=//p' <<<"$out")
copied=$(count "SELECT count(DISTINCT email) FROM crm.loot")
n=$(contact_reads $since)
if [ "$copied" -gt 0 ] && [ "$n" -lt "$copied" ]; then
  bad "round25.2" "a rule (ON DELETE TO crm.marketing_events DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts) copied $copied e-mails during adm's gdpr.purge() (${purged:-?} rows purged); the log counts $n rows of crm.contacts read"
elif [ "$copied" = 0 ] && [ "$(count "SELECT count(*) FROM crm.marketing_events")" = "$ev0" ]; then
  ok "round25.2: a rule on crm.marketing_events the guard did not see: the purge deletes nothing there, nothing copied ($(state_of "$out"))"
else bad "round25.2" "a rule on crm.marketing_events the guard did not see: purge ${purged:-?}, $copied copied: $(head -c 300 <<<"$out")"; fi
as adm $db "SELECT gdpr.remove_retention('crm.marketing_events', NULL)" >/dev/null
su $db "DROP RULE steal_p ON crm.marketing_events" >/dev/null
# For comparison (resisted): the same rule fired by clerk's own UPDATE is logged.
owner $db "TRUNCATE crm.loot" >/dev/null
since=$(last_id)
as clerk $db "UPDATE crm.contacts SET notes = notes WHERE id = 30" >/dev/null
log_flush
copied=$(count "SELECT count(DISTINCT email) FROM crm.loot")
n=$(contact_reads $since)
[ "$copied" -gt 0 ] && [ "$n" -ge "$copied" ] && ok "round25.9: the owner's rule fired by clerk's UPDATE: its read is logged ($copied e-mails copied, $n rows logged)" \
  || bad "round25.9" "the owner's rule fired by clerk's UPDATE copied $copied e-mails; the log counts $n rows read"
owner $db "DROP RULE steal_u ON crm.contacts; DROP RULE steal_d ON crm.contacts" >/dev/null

# ---------------------------------------------------------------------------
# Round25.3: a restricted subject's row changed by the owner's trigger,
# fired by adm's erasure of another subject.
x=150
as adm $db "SELECT gdpr.restrict_subject('$x', 'round25')" >/dev/null
notes0=$(count "SELECT notes FROM crm.contacts WHERE id = $x")
out=$(as crm_owner $db "UPDATE crm.contacts SET notes = 'tampered' WHERE id = $x")
refused round25.9 "crm_owner's own UPDATE of restricted subject $x" 42501 "$out"
owner $db "CREATE FUNCTION crm.tamper() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN UPDATE crm.contacts SET notes = 'tampered' WHERE id = $x; RETURN NULL; END\$\$;
  CREATE TRIGGER tamper AFTER DELETE ON crm.interactions FOR EACH STATEMENT EXECUTE FUNCTION crm.tamper()" >/dev/null
log_flush
since=$(last_id)
out=$(as adm $db "SELECT gdpr.erase_subject('21')")
log_flush
notes1=$(count "SELECT notes FROM crm.contacts WHERE id = $x")
who=$(count "SELECT coalesce(string_agg(DISTINCT h.role_name, ','), 'nobody') FROM gdpr.access_history('$x') h
               WHERE h.id > $since AND h.operation = 'UPDATE' AND h.tbl = 'crm.contacts'::regclass")
if [ "$notes1" = tampered ] && [ "$notes0" != tampered ]; then
  bad "round25.3" "crm_owner's trigger (AFTER DELETE ON crm.interactions), fired by adm's erasure of subject 21, updated restricted subject $x's row (notes '$notes0' -> '$notes1'); the log (access_history('$x')) names $who as the writer of that UPDATE"
else ok "round25.3: the owner's trigger fired by the erasure could not change restricted subject $x's row ($(state_of "$out"))"; fi
owner $db "DROP TRIGGER tamper ON crm.interactions" >/dev/null
# Who the log names for what the owner's trigger writes during an erasure:
# the owner (his code), not adm (whose erasure fired it).
y=151
owner $db "CREATE FUNCTION crm.touch() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN UPDATE crm.contacts SET notes = 'touched' WHERE id = $y; RETURN NULL; END\$\$;
  CREATE TRIGGER touch AFTER DELETE ON crm.interactions FOR EACH STATEMENT EXECUTE FUNCTION crm.touch()" >/dev/null
log_flush
since=$(last_id)
out=$(as adm $db "SELECT gdpr.erase_subject('22')")
log_flush
who=$(count "SELECT coalesce(string_agg(DISTINCT h.role_name, ','), 'nobody') FROM gdpr.access_history('$y') h
               WHERE h.id > $since AND h.operation = 'UPDATE' AND h.tbl = 'crm.contacts'::regclass")
[ "$who" = crm_owner ] && ok "round25.3: the owner's trigger's UPDATE during adm's erasure is logged as crm_owner's ($(state_of "$out"))" \
  || bad "round25.3" "the owner's trigger's UPDATE of subject $y during adm's erasure is logged as $who's ($(state_of "$out"))"
owner $db "DROP TRIGGER touch ON crm.interactions" >/dev/null

# ---------------------------------------------------------------------------
# Round25.4: TRUNCATE and a rewriting ALTER TABLE are not refused while a
# subject with rows in the table is restricted (his DELETE is, 25.9 above).
out=$(as crm_owner $db "DELETE FROM crm.interactions WHERE contact_id = $x")
refused round25.9 "crm_owner's DELETE of restricted subject $x's interactions" 42501 "$out"
before=$(count "SELECT count(*) FROM crm.interactions WHERE contact_id = $x")
out=$(as crm_owner $db "TRUNCATE crm.interactions")
after=$(count "SELECT count(*) FROM crm.interactions WHERE contact_id = $x")
if [ "$before" -gt 0 ] && [ "$after" = 0 ]; then
  bad "round25.4" "crm_owner emptied crm.interactions by TRUNCATE while subject $x, who had $before rows there, is restricted (his DELETE is refused); TRUNCATE accepted"
else ok "round25.4: TRUNCATE of a table holding a restricted subject's rows: $(state_of "$out"), his rows $before -> $after"; fi
notes0=$(count "SELECT notes FROM crm.contacts WHERE id = $x")
out=$(as crm_owner $db "ALTER TABLE crm.contacts ALTER COLUMN notes TYPE text USING CASE WHEN id = $x THEN 'rewritten' ELSE notes END")
notes1=$(count "SELECT notes FROM crm.contacts WHERE id = $x")
if [ "$notes1" = rewritten ] && [ "$notes0" != rewritten ]; then
  bad "round25.4" "crm_owner changed restricted subject $x's notes by ALTER TABLE crm.contacts ALTER COLUMN notes TYPE text USING (...) ('$notes0' -> '$notes1'); recorded only as DDL (no subject, no refusal)"
else ok "round25.4: ALTER TABLE ... TYPE ... USING on a restricted subject's row: $(state_of "$out"), notes kept"; fi
as adm $db "SELECT gdpr.lift_restriction('$x', 'round25')" >/dev/null

# ---------------------------------------------------------------------------
# Round25.9: gdpr_admin's decryption outside the executor (a PL/pgSQL simple
# expression in a DO block, the session ending right after) is still logged.
c=$(q -U adm -d $db -c "SELECT gdpr.encrypt('round25 secret', 'email')")
log_flush
since=$(last_id)
out=$(as adm $db "DO \$\$BEGIN RAISE NOTICE 'got %', gdpr.decrypt('$c'::bytea, 'email'); END\$\$")
log_flush
n=$(count "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'DECRYPT' AND role_name = 'adm'")
grep -q 'got round25 secret' <<<"$out" && [ "$n" -ge 1 ] && ok "round25.9: gdpr.decrypt() in a DO block's simple expression: logged ($n DECRYPT records)" \
  || bad "round25.9" "gdpr.decrypt() in a DO block's simple expression: $n DECRYPT records ($(head -c 200 <<<"$out"))"

hostile_verdict security_round25
