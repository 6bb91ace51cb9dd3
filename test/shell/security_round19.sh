#!/usr/bin/env bash
# Hostile review, round 19: attacks not covered by security.sh and
# security_round16.sh to security_round18.sh.  Roles as there: crm_owner owns
# the CRM's tables (not a superuser), adm is in gdpr_admin, app in gdpr_app,
# aud in gdpr_auditor, plain may only log in; clerk is an ordinary CRM user
# (SELECT, UPDATE, DELETE on crm.contacts, in no role of the extension);
# other owns a second database of the server.  Every check runs to the end and
# prints "ok" or "FAIL: round19.N: ..."; the script fails when one check
# failed (a FAIL is an attack that succeeded).
#
# Themes:
# - 19.1-19.3: reads through a condition.  The read hook counts the rows a
#   scan of a registered table passes on (read_count.c) and leaves a write's
#   own scan to the write trigger; a condition that hands each row's values to
#   a function that passes them on (set_config, a NOTICE, a temporary
#   function of the reader) reads every row it examines, and the rows it
#   rejects were neither counted nor written: SELECT logged "0 rows, nobody",
#   UPDATE, DELETE and MERGE logged nothing at all.
# - 19.4: DDL on a registered table runs the owner's code as the owner only.
# - 19.5: a second database of the server does not reach the CRM's log.
# - 19.6: the internal functions and what each role may execute.
# - 19.7: reads by cursors (WITH HOLD, fetched after COMMIT), prepared
#   statements, COPY (query) TO, temporary views and SQL functions are logged
#   with their subjects.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round19 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
hostile_crm sec
total=$(q -d $db -c "SELECT count(*) FROM crm.contacts WHERE email IS NOT NULL")
# A record names at most crm_gdpr.log_subjects_max subjects (then subjects_truncated).
smax=$(q -d $db -c "SELECT gdpr.setting('log_subjects_max')")
# The e-mails a leak gave back, as the last line of its output before SQLSTATE.
got_emails() { grep -o '[a-z0-9._-]*@example\.[a-z]*' <<<"$1" | sort -u | wc -l; }

# ---------------------------------------------------------------------------
# Round19.1: a SELECT whose condition passes each row's e-mail on.  The scan
# evaluates the condition on every row; set_config (a built-in, no function of
# app's needed) keeps the e-mails in a setting of app's session; the
# condition is false for every row, so the scan passes none on: the log said
# app read 0 rows of crm.contacts, nobody named.
leak="set_config('x.y', coalesce(current_setting('x.y', true), '') || ' ' || email, false) IS NULL"
since=$(last_id)
out=$(as app $db "SELECT count(*) FROM crm.contacts WHERE $leak" "SELECT current_setting('x.y')")
log_flush
read=$(got_emails "$out"); set -- $(logged $since app)
if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
  bad "round19.1" "app read $read e-mails with SELECT count(*) ... WHERE set_config(.. email ..) IS NULL; the log counts $1 rows, names $2 subjects"
else ok "round19.1: a condition that passes values on is logged with the rows it examined ($read read, $1 rows, $2 subjects)"; fi
# The same with a temporary function of app's (IMMUTABLE, RAISE NOTICE).
since=$(last_id)
out=$(as app $db 'CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RAISE NOTICE $x$peek %$x$, t; RETURN false; END$$' \
      "SELECT count(*) FROM crm.contacts WHERE pg_temp.peek(email)")
log_flush
read=$(got_emails "$out"); set -- $(logged $since app)
if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
  bad "round19.1" "app read $read e-mails through NOTICEs of a temporary function in the condition; the log counts $1 rows, names $2 subjects"
else ok "round19.1: a temporary function in the condition: logged ($read read, $1 rows, $2 subjects)"; fi
# Nor rows the reader never saw: a restricted subject's row, hidden from app
# by the gdpr_restriction policy before the condition runs, is not counted.
x=$(q -d $db -c "SELECT min(id) FROM crm.contacts WHERE id > 100")
xe=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $x")
as adm $db "SELECT gdpr.restrict_subject('$x', 'round19')" >/dev/null
since=$(last_id)
out=$(as app $db "SELECT count(*) FROM crm.contacts WHERE $leak" "SELECT current_setting('x.y')")
log_flush
read=$(got_emails "$out"); set -- $(logged $since app)
if grep -qF "$xe" <<<"$out"; then bad "round19.1" "app's condition saw the restricted subject's e-mail $xe"
elif [ "$1" != "$read" ]; then bad "round19.1" "with subject $x restricted, app's condition read $read rows, the log counts $1"
else ok "round19.1: a restricted subject's row, hidden, is neither seen nor counted ($read read, $1 rows)"; fi
as adm $db "SELECT gdpr.lift_restriction('$x', 'round19')" >/dev/null
# Not more than was read: a condition of leakproof or immutable built-ins
# (=, lower) still logs the rows passed on, not the rows examined.
no_read round19.1 app "lower(email) = '...'" "SELECT count(*) FROM crm.contacts WHERE lower(email) = 'nobody@example.org'"
# Nor a stable function of the server's (date_trunc, to_char: they change
# nothing), which an application's report conditions use every day.
no_read round19.1 app "a to_char(date_trunc(...)) condition" \
  "SELECT count(*) FROM crm.contacts WHERE to_char(date_trunc('day', created_at), 'YYYY') = '1900'"

# ---------------------------------------------------------------------------
# Round19.2: the same in an UPDATE or DELETE by clerk (an ordinary CRM user
# with SELECT, UPDATE and DELETE).  The statement's own scan of the table is
# left to the write trigger, which logs the rows written: none.  Every
# e-mail read, no record at all.
for stmt in "UPDATE crm.contacts SET phone = phone WHERE $leak" "DELETE FROM crm.contacts WHERE $leak" \
            "UPDATE crm.contacts c SET phone = c.phone FROM (VALUES (1)) v(x) WHERE set_config('x.y', coalesce(current_setting('x.y', true), '') || ' ' || c.email || v.x, false) IS NULL"; do
  since=$(last_id)
  out=$(as clerk $db "$stmt" "SELECT current_setting('x.y')")
  log_flush
  read=$(got_emails "$out"); set -- $(logged $since clerk)
  n=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'clerk'")
  if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
    bad "round19.2" "clerk read $read e-mails with '${stmt:0:40} ...'; the log has $n records, counts $1 rows read, names $2 subjects"
  else ok "round19.2: '${stmt:0:40} ...': logged ($read read, $1 rows, $2 subjects)"; fi
done
n=$(q -d $db -c "SELECT count(*) FROM crm.contacts")
[ "$n" = 200 ] || bad "round19.2" "setup: a leaking DELETE deleted rows ($n left)"

# ---------------------------------------------------------------------------
# Round19.3: MERGE (PostgreSQL 15): the target's rows go through the join
# condition (ON) and the actions' conditions (WHEN MATCHED AND ...), neither
# of them in the scan; a row they reject is neither read nor written.
for stmt in "MERGE INTO crm.contacts c USING (SELECT 1) s ON true WHEN MATCHED AND set_config('x.y', coalesce(current_setting('x.y', true), '') || ' ' || c.email, false) IS NULL THEN DELETE" \
            "MERGE INTO crm.contacts c USING (SELECT 1) s ON set_config('x.y', coalesce(current_setting('x.y', true), '') || ' ' || c.email, false) IS NULL WHEN MATCHED THEN DELETE"; do
  since=$(last_id)
  out=$(as clerk $db "$stmt" "SELECT current_setting('x.y')")
  log_flush
  read=$(got_emails "$out"); set -- $(logged $since clerk)
  if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
    bad "round19.3" "clerk read $read e-mails with '${stmt:0:60} ...'; the log counts $1 rows read, names $2 subjects"
  else ok "round19.3: '${stmt:0:60} ...': logged ($read read, $1 rows, $2 subjects)"; fi
done
# An ordinary MERGE that updates one row: the write is logged, as before.
since=$(last_id)
as clerk $db "MERGE INTO crm.contacts c USING (SELECT 5 AS id) s ON c.id = s.id WHEN MATCHED THEN UPDATE SET phone = c.phone" >/dev/null
log_flush
n=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'clerk' AND operation IN ('UPDATE', 'MERGE')")
[ "$n" -ge 1 ] && ok "round19.3: an ordinary MERGE's write is logged" || bad "round19.3" "an ordinary MERGE wrote no log record"

# ---------------------------------------------------------------------------
# Round19.4: the extension's event triggers (SECURITY DEFINER) after DDL on a
# registered table: crm_owner's functions in a default, an index expression,
# a CHECK, a USING of ALTER COLUMN TYPE run as crm_owner, never as the
# superuser (who would make crm_owner one).
owner $db "CREATE TABLE crm.hook_runs (who name, su boolean);
  CREATE FUNCTION crm.hook_v(x int) RETURNS int LANGUAGE plpgsql VOLATILE AS \$\$
  BEGIN
    INSERT INTO crm.hook_runs VALUES (current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
    IF current_user <> 'crm_owner' THEN EXECUTE 'ALTER ROLE crm_owner SUPERUSER'; END IF;
    RETURN x;
  END \$\$;
  CREATE FUNCTION crm.hook(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN crm.hook_v(x); END';" >/dev/null
out=$(as crm_owner $db "ALTER TABLE crm.contacts ADD COLUMN h19 int DEFAULT crm.hook(1)" \
      "ALTER TABLE crm.contacts ALTER COLUMN h19 TYPE bigint USING crm.hook(h19)" \
      "CREATE INDEX contacts_h19 ON crm.contacts (crm.hook(h19::int))" \
      "ALTER TABLE crm.contacts ADD CONSTRAINT h19_check CHECK (crm.hook(h19::int) IS NOT NULL)" \
      "ALTER TABLE crm.contacts RENAME COLUMN h19 TO h19b" "ALTER TABLE crm.contacts DROP COLUMN h19b")
runs=$(q -d $db -c "SELECT count(*) FROM crm.hook_runs")
others=$(q -d $db -c "SELECT string_agg(DISTINCT who, ',') FROM crm.hook_runs WHERE who <> 'crm_owner'")
sup=$(q -d $db -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'crm_owner'")
if [ "$runs" = 0 ]; then bad "round19.4" "crm_owner's hook never ran, the check proves nothing: $(head -c 300 <<<"$out")"
elif [ "$sup" = t ] || [ -n "$others" ]; then bad "round19.4" "DDL on a registered table ran crm_owner's function as: $others (superuser now: $sup)"
else ok "round19.4: DDL on a registered table runs crm_owner's functions ($runs times) as crm_owner only"; fi

# ---------------------------------------------------------------------------
# Round19.5: a second database.  other owns otherdb (no extension there) and
# builds what the log writer of sec might mistake for the CRM: schema crm,
# table contacts, triggers named like the extension's.  His reads and writes
# there never reach sec's log, nor its queue's drops.
createdb -O other otherdb
since=$(last_id)
as other otherdb "CREATE SCHEMA crm" "CREATE TABLE crm.contacts (id bigint PRIMARY KEY, email text)" \
   "INSERT INTO crm.contacts SELECT i, 'x' || i || '@other.example' FROM generate_series(1, 50) i" \
   "SELECT count(*) FROM crm.contacts" >/dev/null
for _ in $(seq 1 20); do as other otherdb "SELECT email FROM crm.contacts WHERE id = 3" >/dev/null; done
log_flush
n=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND (role_name = 'other' OR session_user_name = 'other')")
d=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log_queue_drops() WHERE database = 'otherdb'")
[ "$n" = 0 ] && [ "$d" = 0 ] && ok "round19.5: a second database's reads never reach the CRM's log or queue" \
  || bad "round19.5" "reads in otherdb reached sec's log ($n records) or its queue's drops ($d)"
out=$(as other otherdb "SELECT gdpr.flush_access_log()")
[ "$(state_of "$out")" != 00000 ] && ok "round19.5: no gdpr function in otherdb ($(state_of "$out"))" \
  || bad "round19.5" "other calls gdpr.flush_access_log() in otherdb"

# ---------------------------------------------------------------------------
# Round19.6: internal helpers (gdpr._*), the newest included (_text,
# _row_jsonb, _contact_points, _holds_many, _rls_filters,
# _holds_table_privileges), are executable by no role but the extension's
# owner.
for f in "gdpr._text(anyelement)" "gdpr._row_jsonb(record)" "gdpr._holds_table_privileges(name, regclass, text)" \
         "gdpr._rls_filters(name, regclass, text)"; do
  [ -n "$(q -d $db -c "SELECT to_regprocedure('$f')")" ] || bad "round19.6" "setup: $f does not exist"
done
n=$(q -d $db -c "SELECT string_agg(r.rolname || ':' || p.oid::regprocedure::text, ' ')
                   FROM pg_proc p CROSS JOIN (VALUES ('adm'), ('app'), ('aud'), ('plain'), ('crm_owner'), ('clerk')) r(rolname)
                  WHERE p.pronamespace = 'gdpr'::regnamespace AND p.proname LIKE '\_%'
                    AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')")
[ -z "$n" ] && ok "round19.6: no role may execute an internal gdpr._* function" \
  || bad "round19.6" "internal functions executable: $n"
out=$(as app $db "SELECT gdpr._row_jsonb(c) FROM crm.contacts c LIMIT 1")
[ "$(state_of "$out")" = 42501 ] && ok "round19.6: app calling gdpr._row_jsonb: 42501" \
  || bad "round19.6" "app calls gdpr._row_jsonb: $(state_of "$out")"

# ---------------------------------------------------------------------------
# Round19.7: reads by other ways of the protocol, each logged with its subject.
since=$(last_id)
as app $db "BEGIN" "DECLARE c CURSOR WITH HOLD FOR SELECT email FROM crm.contacts WHERE id = 11" "COMMIT" "FETCH ALL FROM c" >/dev/null
as app $db "PREPARE p AS SELECT email FROM crm.contacts WHERE id = \$1" "EXECUTE p(13)" >/dev/null
as app $db "COPY (SELECT email FROM crm.contacts WHERE id = 14) TO STDOUT" >/dev/null
as app $db "CREATE TEMP VIEW v AS SELECT email FROM crm.contacts WHERE id = 15" "SELECT * FROM v" >/dev/null
as app $db "CREATE FUNCTION pg_temp.f(i int) RETURNS text LANGUAGE sql STABLE AS 'SELECT email FROM crm.contacts WHERE id = i'" "SELECT pg_temp.f(16)" >/dev/null
log_flush
set -- $(logged $since app)
[ "$1" -ge 5 ] && [ "$2" -ge 5 ] && ok "round19.7: cursor WITH HOLD, PREPARE, COPY (query), temp view, SQL function: logged ($1 rows, $2 subjects)" \
  || bad "round19.7" "reads by cursor/prepare/copy/view/function of 5 contacts: the log counts $1 rows, $2 subjects"

hostile_verdict security_round19
