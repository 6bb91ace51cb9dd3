#!/usr/bin/env bash
# Hostile review, round 26: a second read of round 25's fixes (ea0b7bb).
# Roles as in security_round25.sh: crm_owner owns the CRM's tables (not a
# superuser), adm is in gdpr_admin, app in gdpr_app, clerk reads, updates and
# deletes crm.contacts (in no role of the extension).  Every check prints "ok"
# or "FAIL: round26.N: ..." (an attack that succeeded); the script fails when
# one check failed.
#
# - 26.1: a foreign key's query still runs the reader's code unlogged, at plan
#   time.  Round 25.1 exempts from the read log only the queries started while
#   no foreign key's ExecutorRun/ExecutorFinish is under way (read_hook.c
#   crm_gdpr_reads_are_logged: SECURITY_NOFORCE_RLS && fk_nesting == 0).  But
#   ri_PerformCheck sets the context before SPI_execute_snapshot, which PLANS
#   the cascade's query (a custom plan) before its ExecutorRun: fk_nesting is
#   still 0 there.  An ON DELETE (ON UPDATE) SET DEFAULT cascade runs "UPDATE
#   ONLY c SET pid = DEFAULT ..."; the rewriter puts the column's default in,
#   and the planner folds a call to a function declared IMMUTABLE (a pg_temp
#   plpgsql function reading crm.contacts) right away (eval_const_expressions)
#   in the foreign key's context.  Two TEMPORARY tables, a default, one DELETE
#   (UPDATE): clerk and app read every e-mail, the log has nothing.  The same
#   default used by an INSERT ... DEFAULT VALUES is logged (26.9).
#   Fix: count the foreign key's query as running from its planning on: a
#   planner hook (read_planner.c) that increments fk_nesting while it plans
#   in a SECURITY_NOFORCE_RLS context, so that any query started during that
#   planning (a folded IMMUTABLE function, a STABLE one estimated) is logged.
# - 26.2: the owner's code still runs with the extension statement's
#   exemption when it is a utility statement.  crm_gdpr_in_owner_statement()
#   (owner_context.c) tells the extension's statement from the owner's by
#   exec_nesting <= owner_exec_level + 1, and exec_nesting counts only
#   ExecutorRun/ExecutorFinish.  A statement trigger of the owner's on
#   crm.interactions, fired at the end of the erasure's DELETE (level + 1),
#   runs TRUNCATE crm.marketing_events: a utility statement, no executor;
#   its AFTER TRUNCATE trigger (gdpr._log_write -> restricted_truncate) comes
#   still at level + 1: exempt.  A restricted subject's marketing events are
#   gone (the owner's own TRUNCATE is refused, 26.9).
#   Fix: do not infer "the extension's statement" from the nesting level;
#   mark it (a flag set by owner_exec around its own SPI call, cleared by a
#   ProcessUtility hook and by any trigger function call that is not the
#   extension's), or refuse TRUNCATE of a table with restricted subjects
#   whatever the context (the erasure and the purge never TRUNCATE).
# - 26.3: a rewriting ALTER TABLE of the owner's, run by his trigger during
#   adm's erasure, passes as adm's.  _record_alter_code (20_schema_sync.sql)
#   lets gdpr_admin rewrite a restricted table, and asks gdpr._caller()
#   (GetOuterUserId(): the session's role, adm, while the owner's trigger runs
#   as crm_owner in the extension's owner context or in any SECURITY DEFINER
#   function).  The trigger's ALTER TABLE crm.orders ALTER COLUMN
#   invoice_number TYPE text USING (CASE WHEN contact_id = <restricted> ...)
#   rewrites the restricted subject's order (the owner's own is refused, 26.9).
#   Fix: check the role that runs the ALTER (current_user / GetUserId()), not
#   the caller; or refuse it in any owner context.
# - 26.4: a foreign key's cascade of the extension's statement is exempt from
#   the restriction, and the owner chooses the foreign key.
#   crm_gdpr_in_owner_statement() is true at level + 1, where the AFTER
#   triggers of a cascade run ("those of a foreign key's cascade too").  The
#   owner adds ALTER TABLE crm.interactions ADD FOREIGN KEY (id) REFERENCES
#   crm.marketing_events (id) ON DELETE CASCADE NOT VALID (no validation: any
#   values), so that a restricted subject's interaction k hangs on the
#   marketing event k of another subject Y.  adm erases Y: the erasure's
#   DELETE of Y's events cascades to the restricted subject's interaction,
#   and gdpr._log_write lets it go (logged as adm's DELETE).  The owner's own
#   DELETE of that event is refused (26.9).
#   Fix: the erasure and the purge never touch restricted subjects' rows, so
#   their statements need no restriction exemption (only key rotation does):
#   keep the exemption for key rotation's statements alone, or check a
#   cascade's rows always.
# Fixed (helper-35's suite failed 5 checks on ea0b7bb; all pass):
# - 26.1: a foreign key's query counts from its planning on (read_planner.c)
#   and through its ExecutorStart (read_hook.c), not only its run.
# - 26.2: crm_gdpr_in_owner_statement() also requires no utility statement
#   started since the extension's (read_hook.c counts them).
# - 26.3: _record_alter_code asks gdpr._ddl_runner(), the role that runs the
#   utility statement (read_hook.c notes it), not gdpr._caller().
# - 26.4: the restriction's exemption covers the extension statement's own
#   table only (crm_gdpr_owner_statement_table()), not a cascade elsewhere.
# - 26.9: what resisted: the same default of 26.1 in a plain INSERT (logged);
#   the owner's own TRUNCATE, ALTER ... TYPE USING and cascading DELETE under
#   restriction (refused); CREATE OR REPLACE RULE on a registered table
#   (refused); TRUNCATE crm.companies CASCADE reaching crm.contacts (refused);
#   no spurious reads logged for foreign key checks of INSERTs into
#   registered tables nor for a cascaded DELETE across three registered
#   levels, and such an erasure still works.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round26 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite
hostile_crm sec
hostile_leaks round26

# ---------------------------------------------------------------------------
# Round26.1: a default folded by the planner in a foreign key's SET DEFAULT.
dflt='CREATE FUNCTION pg_temp.d() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM pg_temp.peek(email) FROM crm.contacts; RETURN 0; END$$'
check 1 clerk "an IMMUTABLE default on a temporary table, folded while planning an ON DELETE SET DEFAULT cascade" \
  "$dflt" "CREATE TEMP TABLE p (id int PRIMARY KEY)" "INSERT INTO p VALUES (0), (1)" \
  "CREATE TEMP TABLE c (pid int DEFAULT pg_temp.d() REFERENCES p ON DELETE SET DEFAULT)" \
  "INSERT INTO c VALUES (1)" "DELETE FROM p WHERE id = 1"
check 1 app "an IMMUTABLE default on a temporary table, folded while planning an ON UPDATE SET DEFAULT cascade" \
  "$dflt" "CREATE TEMP TABLE p (id int PRIMARY KEY)" "INSERT INTO p VALUES (0), (1)" \
  "CREATE TEMP TABLE c (pid int DEFAULT pg_temp.d() REFERENCES p ON UPDATE SET DEFAULT)" \
  "INSERT INTO c VALUES (1)" "UPDATE p SET id = 2 WHERE id = 1"
# For comparison (resisted): the same default in a plain INSERT is logged.
check 9 clerk "the same IMMUTABLE default folded while planning INSERT ... DEFAULT VALUES" \
  "$dflt" "CREATE TEMP TABLE c (pid int DEFAULT pg_temp.d())" "INSERT INTO c DEFAULT VALUES"

# ---------------------------------------------------------------------------
# Regressions (resisted): foreign key checks and cascades of ordinary writes
# log no reads; an erasure through three registered levels still works.
owner $db "CREATE TABLE crm.inotes (id bigserial PRIMARY KEY, interaction_id bigint NOT NULL REFERENCES crm.interactions ON DELETE CASCADE, body text);
  GRANT ALL ON crm.inotes, crm.inotes_id_seq TO adm;
  INSERT INTO crm.inotes (interaction_id, body) SELECT id, 'note' FROM crm.interactions" >/dev/null
su $db "SELECT gdpr.register_table('crm.inotes')" >/dev/null
owner $db "GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO adm" >/dev/null
i31=$(count "SELECT min(id) FROM crm.interactions WHERE contact_id = 31")
d=$(count "SELECT min(c.id) FROM crm.contacts c WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)
             AND EXISTS (SELECT FROM crm.interactions i JOIN crm.inotes n ON n.interaction_id = i.id WHERE i.contact_id = c.id)")
log_flush
since=$(last_id)
out=$(as adm $db "INSERT INTO crm.interactions (contact_id, kind, occurred_at) VALUES (30, 'call', now())" \
  "INSERT INTO crm.orders (contact_id, ordered_at, amount) VALUES (30, now(), 1)" \
  "INSERT INTO crm.inotes (interaction_id, body) VALUES ($i31, 'x')" \
  "DELETE FROM crm.contacts WHERE id = $d")
log_flush
n=$(count "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'SELECT' AND role_name = 'adm' AND tbl IN ('crm.contacts'::regclass, 'crm.interactions'::regclass)")
del=$(count "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND operation = 'DELETE' AND tbl = 'crm.inotes'::regclass")
[ "$(state_of "$out")" = 00000 ] && [ "$n" = 0 ] && [ "$del" -ge 1 ] \
  && ok "round26.9: INSERTs with foreign keys and a DELETE cascading over three registered levels: no read logged, the cascade's DELETE logged" \
  || bad "round26.9" "foreign key checks and cascades of adm's writes: $(state_of "$out"), $n reads logged, $del DELETE records of crm.inotes: $(head -c 300 <<<"$out")"
e=$(count "SELECT min(c.id) FROM crm.contacts c WHERE c.id > 40 AND EXISTS (SELECT FROM crm.interactions i JOIN crm.inotes n ON n.interaction_id = i.id WHERE i.contact_id = c.id)")
out=$(as adm $db "SELECT gdpr.erase_subject('$e')")
left=$(count "SELECT count(*) FROM crm.inotes n JOIN crm.interactions i ON i.id = n.interaction_id WHERE i.contact_id = $e")
[ "$(state_of "$out")" = 00000 ] && [ "$left" = 0 ] && ok "round26.9: the erasure of subject $e through three registered levels works" \
  || bad "round26.9" "the erasure of subject $e (three registered levels): $(state_of "$out"), $left notes left: $(head -c 300 <<<"$out")"

# ---------------------------------------------------------------------------
# Restricted subject x for 26.2 to 26.4.
x=150
as adm $db "SELECT gdpr.restrict_subject('$x', 'round26')" >/dev/null

# Round26.4: the owner's NOT VALID foreign key, cascading from the erasure of
# another subject into the restricted subject's rows.
k=$(count "SELECT min(i.id) FROM crm.interactions i JOIN crm.marketing_events m ON m.id = i.id WHERE i.contact_id = $x AND m.contact_id <> $x")
y=$(count "SELECT contact_id FROM crm.marketing_events WHERE id = $k")
owner $db "ALTER TABLE crm.interactions ADD CONSTRAINT hook FOREIGN KEY (id) REFERENCES crm.marketing_events (id) ON DELETE CASCADE NOT VALID" >/dev/null
out=$(as crm_owner $db "DELETE FROM crm.marketing_events WHERE id = $k")
refused round26.9 "crm_owner's own DELETE of the marketing event his foreign key hangs restricted subject $x's interaction on" 42501 "$out"
before=$(count "SELECT count(*) FROM crm.interactions WHERE contact_id = $x")
since=$(last_id)
out=$(as adm $db "SELECT gdpr.erase_subject('$y')")
log_flush
after=$(count "SELECT count(*) FROM crm.interactions WHERE contact_id = $x")
who=$(count "SELECT coalesce(string_agg(DISTINCT h.role_name, ','), 'nobody') FROM gdpr.access_history('$x') h
               WHERE h.id > $since AND h.operation = 'DELETE' AND h.tbl = 'crm.interactions'::regclass")
if [ "$after" -lt "$before" ]; then
  bad "round26.4" "crm_owner's NOT VALID foreign key crm.interactions (id) -> crm.marketing_events (id) ON DELETE CASCADE: adm's erasure of subject $y deleted restricted subject $x's interaction $k ($before -> $after rows); the log names $who as the deleter"
else ok "round26.4: a cascade of the erasure into restricted subject $x's rows: $(state_of "$out"), his interactions $before -> $after"; fi
owner $db "ALTER TABLE crm.interactions DROP CONSTRAINT hook" >/dev/null

# Round26.2: the owner's trigger TRUNCATEs during the erasure.
out=$(as crm_owner $db "TRUNCATE crm.marketing_events")
refused round26.9 "crm_owner's own TRUNCATE of crm.marketing_events while subject $x is restricted" 42501 "$out"
owner $db "CREATE FUNCTION crm.wipe() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN
    BEGIN TRUNCATE crm.marketing_events; EXCEPTION WHEN object_in_use THEN NULL; END;
    RETURN NULL; END\$\$;
  CREATE TRIGGER wipe AFTER DELETE ON crm.interactions FOR EACH STATEMENT EXECUTE FUNCTION crm.wipe()" >/dev/null
before=$(count "SELECT count(*) FROM crm.marketing_events WHERE contact_id = $x")
since=$(last_id)
out=$(as adm $db "SELECT gdpr.erase_subject('24')")
log_flush
after=$(count "SELECT count(*) FROM crm.marketing_events WHERE contact_id = $x")
who=$(count "SELECT coalesce(string_agg(DISTINCT role_name, ','), 'nobody') FROM gdpr.access_log WHERE id > $since AND operation = 'TRUNCATE'")
if [ "$before" -gt 0 ] && [ "$after" = 0 ]; then
  bad "round26.2" "crm_owner's trigger (AFTER DELETE ON crm.interactions: TRUNCATE crm.marketing_events), fired by adm's erasure of subject 24, emptied restricted subject $x's $before marketing events; the TRUNCATE is logged as $who's"
else ok "round26.2: a TRUNCATE by the owner's trigger during the erasure: $(state_of "$out"), restricted subject $x's events $before -> $after"; fi
owner $db "DROP TRIGGER wipe ON crm.interactions" >/dev/null

# Round26.3: the owner's trigger rewrites a restricted subject's order by
# ALTER TABLE ... TYPE ... USING during the erasure.
out=$(as crm_owner $db "ALTER TABLE crm.orders ALTER COLUMN invoice_number TYPE text USING CASE WHEN contact_id = $x THEN 'rewritten' ELSE invoice_number END")
refused round26.9 "crm_owner's own ALTER TABLE crm.orders ... TYPE ... USING while subject $x is restricted" 42501 "$out"
owner $db "CREATE FUNCTION crm.rewrite() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN
    BEGIN ALTER TABLE crm.orders ALTER COLUMN invoice_number TYPE text USING CASE WHEN contact_id = $x THEN 'rewritten' ELSE invoice_number END;
    EXCEPTION WHEN object_in_use THEN NULL; END;
    RETURN NULL; END\$\$;
  CREATE TRIGGER rewrite AFTER DELETE ON crm.interactions FOR EACH STATEMENT EXECUTE FUNCTION crm.rewrite()" >/dev/null
before=$(count "SELECT count(*) FROM crm.orders WHERE contact_id = $x AND invoice_number = 'rewritten'")
out=$(as adm $db "SELECT gdpr.erase_subject('25')")
after=$(count "SELECT count(*) FROM crm.orders WHERE contact_id = $x AND invoice_number = 'rewritten'")
if [ "$after" -gt "$before" ]; then
  bad "round26.3" "crm_owner's trigger (AFTER DELETE ON crm.interactions: ALTER TABLE crm.orders ALTER COLUMN invoice_number TYPE text USING ...), fired by adm's erasure of subject 25, rewrote restricted subject $x's $after orders (_record_alter_code took the caller, adm, for the role altering)"
else ok "round26.3: an ALTER ... TYPE USING by the owner's trigger during the erasure: $(state_of "$out"), subject $x's orders kept"; fi
owner $db "DROP TRIGGER rewrite ON crm.interactions" >/dev/null

# Resisted: other ways to TRUNCATE or to put a rule on a registered table.
owner $db "CREATE TABLE crm.loot (email text)" >/dev/null
refused round26.9 "crm_owner's CREATE OR REPLACE RULE ... ON UPDATE TO crm.contacts" 42501 \
  "$(as crm_owner $db "CREATE OR REPLACE RULE steal AS ON UPDATE TO crm.contacts DO ALSO INSERT INTO crm.loot SELECT email FROM crm.contacts")"
refused round26.9 "crm_owner's TRUNCATE crm.companies CASCADE (reaching crm.contacts and its tree) while subject $x is restricted" 42501 \
  "$(as crm_owner $db "TRUNCATE crm.companies CASCADE")"
as adm $db "SELECT gdpr.lift_restriction('$x', 'round26')" >/dev/null

hostile_verdict security_round26
