#!/usr/bin/env bash
# Hostile review, round 16: attacks not covered by security.sh.  Roles as in
# security.sh: crm_owner owns the CRM's tables (not a superuser), adm is in
# gdpr_admin, app in gdpr_app, aud in gdpr_auditor, plain may only log in.
# Every check runs to the end and prints "ok" or "FAIL: round16.N: ..."; the
# script fails when one check failed (a FAIL is an attack that succeeded).
#
# The theme of the findings: code the extension runs as the superuser who
# owns it (SECURITY DEFINER functions, the C triggers' queries "as the
# extension's owner") converts values of CRM columns with casts.  A cast from
# a type belongs to that type's owner (CREATE CAST needs only the ownership of
# one of its types) and is found without search_path, so a table owner who
# gives a column a type of his own (an enum, a composite) and a cast from it
# to text or json has his function run as the superuser: the pinned
# search_path and the security-restricted context do not stop it.
#
# A private cluster: the purge worker purges sec_worker every second.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round16 "crm_gdpr.database = 'sec_worker'" "crm_gdpr.purge_naptime = '1s'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
q -d postgres -c 'SET client_min_messages = warning' -c "
  CREATE ROLE crm_owner LOGIN; CREATE ROLE plain LOGIN;" >/dev/null
setup_db() {  # setup_db DB: the extension, the CRM owned by crm_owner, the registry, the attacker's tools
  local db=$1
  createdb "$db"
  q -d "$db" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
    -c "GRANT CREATE ON DATABASE $db TO crm_owner" >/dev/null
  q -d "$db" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'adm') THEN
        CREATE ROLE adm LOGIN IN ROLE gdpr_admin; CREATE ROLE app LOGIN IN ROLE gdpr_app;
        CREATE ROLE aud LOGIN IN ROLE gdpr_auditor;
      END IF; END \$\$" >/dev/null
  q -U crm_owner -d "$db" -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
    -c 'SELECT crm.generate(200)' >/dev/null
  q -d "$db" -c 'SET client_min_messages = warning' -f test/fixtures/registry.sql >/dev/null
  # crm.escalate(hook): records who ran it and, when that is not crm_owner,
  # makes crm_owner a superuser (as in security.sh).
  q -U crm_owner -d "$db" -c "
    CREATE TABLE crm.who_ran (hook text, usr name, PRIMARY KEY (hook, usr));
    GRANT INSERT ON crm.who_ran TO PUBLIC;
    CREATE FUNCTION crm.escalate(hook text) RETURNS boolean LANGUAGE plpgsql AS \$\$
    BEGIN
      INSERT INTO crm.who_ran VALUES (hook, current_user) ON CONFLICT DO NOTHING;
      IF current_user <> 'crm_owner' THEN
        BEGIN
          EXECUTE 'ALTER ROLE crm_owner SUPERUSER';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
      END IF;
      RETURN true;
    END \$\$;
    GRANT EXECUTE ON FUNCTION crm.escalate(text) TO PUBLIC;" >/dev/null
  q -U crm_owner -d "$db" -c "GRANT USAGE ON SCHEMA crm TO adm, app" \
    -c "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO adm" \
    -c "GRANT SELECT ON crm.contacts TO app" >/dev/null
}
reset_owner() { q -d "$1" -c "ALTER ROLE crm_owner NOSUPERUSER" -c "TRUNCATE crm.who_ran" >/dev/null; }
# escalated FINDING WHAT DB HOOK OUT [PROOF]: crm_owner's function HOOK must
# have run (else the attack proves nothing) and only as crm_owner, and
# crm_owner must still be no superuser.  Where the extension never calls his
# cast at all (src/cast_free.c), PROOF (yes or no) says whether the code path
# attacked did run over his row.
escalated() {
  local finding=$1 what=$2 db=$3 hook=$4 out=${5:-} proof=${6:-} super ran others
  super=$(q -d "$db" -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'crm_owner'")
  ran=$(q -d "$db" -c "SELECT count(*) FROM crm.who_ran WHERE hook = '$hook'")
  others=$(q -d "$db" -c "SELECT coalesce(string_agg(DISTINCT usr, ','), '') FROM crm.who_ran
                           WHERE hook = '$hook' AND usr <> 'crm_owner'")
  if [ "$super" = t ]; then
    bad "$finding" "$what: crm_owner became SUPERUSER (his function ran as: $others)"
  elif [ -n "$others" ]; then
    bad "$finding" "$what: crm_owner's function ran as $others"
  elif [ "$ran" = 0 ] && [ "$proof" = yes ]; then
    ok "$finding: $what: the path ran over his row, his cast was never called"
  elif [ "$ran" = 0 ]; then
    bad "$finding" "$what: the attacker's function never ran, the check proves nothing: $(head -c 300 <<<"$out" | tr '\n' ' ')"
  else
    ok "$finding: $what: crm_owner's function runs as crm_owner only"
  fi
  reset_owner "$db"
}
setup_db sec

# ---------------------------------------------------------------------------
# Round16.1: the write trigger's far subjects (log_write.c,
# summarise_far_subjects) run gdpr._subject_ids_sql()'s query as the
# extension's owner: "SELECT t.<link>::text FROM (parents of gdpr_new) t".
# A table three steps from its subject whose key type is crm_owner's enum:
# crm_owner's cast to text runs as the superuser at his first INSERT.
owner sec "
  CREATE TYPE crm.person_key AS ENUM ('p1', 'p2', 'p3', 'p4');
  CREATE TABLE crm.people (id crm.person_key PRIMARY KEY, name text);
  CREATE TABLE crm.deals (id bigint PRIMARY KEY, person crm.person_key NOT NULL REFERENCES crm.people);
  CREATE TABLE crm.deal_notes (id bigint PRIMARY KEY, deal_id bigint NOT NULL REFERENCES crm.deals, note text,
                               at timestamptz NOT NULL DEFAULT now());
  INSERT INTO crm.people VALUES ('p1', 'Alice'), ('p2', 'Bob'), ('p3', 'Carol');
  INSERT INTO crm.deals VALUES (1, 'p1'), (2, 'p2'), (3, 'p3');" >/dev/null
su sec "SELECT gdpr.register_subject_table('crm.people', 'id');
        SELECT gdpr.register_table('crm.deals'); SELECT gdpr.register_table('crm.deal_notes');" >/dev/null
# After the registration: CREATE CAST needs only the ownership of the enum.
owner sec "
  CREATE FUNCTION crm.key_text(k crm.person_key) RETURNS text LANGUAGE plpgsql AS \$\$
  BEGIN PERFORM crm.escalate(coalesce(nullif(current_setting('hostile.hook', true), ''), 'key cast')); RETURN k::name::text; END \$\$;
  CREATE CAST (crm.person_key AS text) WITH FUNCTION crm.key_text(crm.person_key);" >/dev/null
reset_owner sec
out=$(as crm_owner sec "SET hostile.hook = 'far'" "INSERT INTO crm.deal_notes (id, deal_id, note) VALUES (1, 1, 'hello')")
escalated "round16.1" "INSERT into a table two links from its subject (log_write.c summarise_far_subjects, cast of the link key to text)" sec far "$out"

# Round16.2: gdpr._subjects_departed() (76_departures.sql), SECURITY
# DEFINER and not even in a security-restricted context, runs
# "gdpr._subject_ref(..., g.<id>::text) FROM gdpr_gone g" as the superuser.
out=$(as crm_owner sec "SET hostile.hook = 'departed'" "DELETE FROM crm.deals WHERE id = 3" "DELETE FROM crm.people WHERE id = 'p3'")
proof=$(q -d sec -c "SELECT CASE WHEN EXISTS (SELECT FROM gdpr.departed_subjects d
                      WHERE d.subject_ref = gdpr._subject_ref('crm.people'::regclass, 'p3')) THEN 'yes' ELSE 'no' END")
escalated "round16.2" "DELETE from a subject table whose key is crm_owner's enum (76_departures.sql _subjects_departed, g.id::text)" sec departed "$out" "$proof"

# Round16.3: the suppression gate (suppression_gate.c,
# crm_gdpr_check_suppression) runs "gdpr._check_suppression($1, to_jsonb(n), ...)
# FROM gdpr_new n" as the extension's owner once the list is not empty (after
# any erasure).  to_jsonb() converts a column of a user type with its cast to
# json: crm_owner adds such a column to crm.contacts.
subject=$(q -d sec -c "SELECT c.id FROM crm.contacts c WHERE c.email LIKE '%@example.%'
                         AND EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) ORDER BY c.id LIMIT 1")
erased_email=$(q -d sec -c "SELECT email FROM crm.contacts WHERE id = $subject")
out=$(as adm sec "SELECT gdpr.erase_subject('$subject', NULL, 'crm.contacts')->>'status'")
[ "$(q -d sec -c "SELECT count(*) > 0 FROM gdpr.suppressions")" = t ] \
  || bad "round16.3" "setup: the erasure left the suppression list empty: $(head -n 2 <<<"$out" | tr '\n' ' ')"
owner sec "
  CREATE TYPE crm.tier AS ENUM ('gold', 'silver');
  CREATE FUNCTION crm.tier_json(t crm.tier) RETURNS json LANGUAGE plpgsql AS \$\$
  BEGIN PERFORM crm.escalate(coalesce(nullif(current_setting('hostile.hook', true), ''), 'json cast')); RETURN to_json(t::name::text); END \$\$;
  CREATE CAST (crm.tier AS json) WITH FUNCTION crm.tier_json(crm.tier);
  ALTER TABLE crm.contacts ADD COLUMN tier crm.tier;" >/dev/null
reset_owner sec
out=$(as crm_owner sec "SET hostile.hook = 'suppression'" \
  "INSERT INTO crm.contacts (first_name, email, tier) VALUES ('Eve', 'eve.round16@example.org', 'gold')")
# The check did read the row: the erased person's e-mail, brought back with it, is refused.
out2=$(as crm_owner sec "SET hostile.hook = 'suppression'" \
  "INSERT INTO crm.contacts (first_name, email, tier) VALUES ('Eve', '$erased_email', 'silver')")
proof=$([ "$(state_of "$out2")" = 23514 ] && echo yes || echo no)
escalated "round16.3" "INSERT into crm.contacts with a column of crm_owner's type (suppression_gate.c, to_jsonb of the new row)" sec suppression "$out $out2" "$proof"

# Round16.4: the validation trigger gdpr._validate_contact() (87_quality.sql),
# SECURITY DEFINER, starts with to_jsonb(NEW).  A database of its own, whose
# suppression list is empty (so that round16.3 does not fire instead).
setup_db sec_val
su sec_val "SELECT gdpr.set_validation('crm.contacts', 'email', 'email', 'flag')" >/dev/null
owner sec_val "
  CREATE TYPE crm.tier AS ENUM ('gold', 'silver');
  CREATE FUNCTION crm.tier_json(t crm.tier) RETURNS json LANGUAGE plpgsql AS \$\$
  BEGIN PERFORM crm.escalate(coalesce(nullif(current_setting('hostile.hook', true), ''), 'json cast')); RETURN to_json(t::name::text); END \$\$;
  CREATE CAST (crm.tier AS json) WITH FUNCTION crm.tier_json(crm.tier);
  ALTER TABLE crm.contacts ADD COLUMN tier crm.tier;" >/dev/null
reset_owner sec_val
[ "$(q -d sec_val -c "SELECT count(*) FROM gdpr.suppressions")" = 0 ] || bad "round16.4" "setup: the suppression list is not empty"
out=$(as crm_owner sec_val "SET hostile.hook = 'validation'" \
  "INSERT INTO crm.contacts (first_name, email, tier) VALUES ('Eve', 'eve.round16@example.org', 'gold')" \
  "INSERT INTO crm.contacts (first_name, email, tier) VALUES ('Eve', 'not an e-mail', 'gold')")
# The trigger did read the row: the malformed e-mail is flagged.
proof=$(grep -q 'invalid email in column "email"' <<<"$out" && echo yes || echo no)
escalated "round16.4" "INSERT into crm.contacts with a validated e-mail column and a column of crm_owner's type (87_quality.sql _validate_contact, to_jsonb(NEW))" sec_val validation "$out" "$proof"

# ---------------------------------------------------------------------------
# The conversions that replaced x::text and to_jsonb(r) where the extension
# reads CRM rows as its owner (src/cast_free.c) give what these give, for
# types whose cast to text is not their output (bool, inet, char(n)), nested
# ones, a domain, an enum and a composite without casts, and NULLs; and for a
# type of the owner's with a cast to text written in SQL, its output.
su sec_val "
  CREATE SCHEMA eq;
  CREATE TYPE eq.mood AS ENUM ('calm', 'busy');
  CREATE TYPE eq.pair AS (a int, b text);
  CREATE DOMAIN eq.code AS text CHECK (VALUE ~ '^[A-Z]+\$');
  CREATE TABLE eq.t (b bool, i inet, c char(5), j jsonb, js json, ta text[], ia int[], n numeric, ts timestamptz,
                     m eq.mood, p eq.pair, d eq.code, ma eq.mood[], x int);
  INSERT INTO eq.t VALUES (true, '10.0.0.1', 'ab', '{\"k\": [1, \"two\", null]}', '{ \"k\" :  1 }', '{a,\"b c\",NULL}', '{1,2}',
                           1.50, '2026-01-02 03:04:05+01', 'busy', ROW(1, 'x y'), 'ABC', '{calm,busy}', NULL),
                          (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
  ALTER TABLE eq.t DROP COLUMN x;
  ALTER TABLE eq.t ADD COLUMN added int DEFAULT 7;" >/dev/null
got=$(q -d sec_val -c "SELECT bool_and(gdpr._row_jsonb(t) = to_jsonb(t)) AND count(*) = 2
                          AND bool_and(gdpr._text(b) IS NOT DISTINCT FROM b::text AND gdpr._text(i) IS NOT DISTINCT FROM i::text
                                       AND gdpr._text(c) IS NOT DISTINCT FROM c::text AND gdpr._text(j) IS NOT DISTINCT FROM j::text
                                       AND gdpr._text(ta) IS NOT DISTINCT FROM ta::text AND gdpr._text(m) IS NOT DISTINCT FROM m::text
                                       AND gdpr._text(p) IS NOT DISTINCT FROM p::text AND gdpr._text(d) IS NOT DISTINCT FROM d::text
                                       AND gdpr._text(ma) IS NOT DISTINCT FROM ma::text AND gdpr._text(ts) IS NOT DISTINCT FROM ts::text)
                     FROM eq.t")
[ "$got" = t ] && ok "cast_free: gdpr._row_jsonb and gdpr._text give what to_jsonb and ::text give" \
  || bad "cast_free" "gdpr._row_jsonb / gdpr._text differ from to_jsonb / ::text (got: $got)"
got=$(q -d sec_val -c "SELECT gdpr._text('gold'::crm.tier) = 'gold' AND gdpr._row_jsonb(ROW('gold'::crm.tier)) = '{\"f1\": \"gold\"}'
                          AND (SELECT count(*) FROM crm.who_ran) = 0")
[ "$got" = t ] && ok "cast_free: crm_owner's casts of his type to json are never called; its output is" \
  || bad "cast_free" "crm_owner's cast was called or the output differs (got: $got)"

# Round16.5: the purge worker.  Its DELETE of crm.deal_notes (run as the
# owner) fires the write trigger, whose far-subject query runs as the
# superuser: crm_owner's cast runs in the worker with the superuser's rights
# although the worker "runs statements as the table's owner".
setup_db sec_worker
owner sec_worker "
  CREATE TYPE crm.person_key AS ENUM ('p1', 'p2', 'p3', 'p4');
  CREATE TABLE crm.people (id crm.person_key PRIMARY KEY, name text);
  CREATE TABLE crm.deals (id bigint PRIMARY KEY, person crm.person_key NOT NULL REFERENCES crm.people);
  CREATE TABLE crm.deal_notes (id bigint PRIMARY KEY, deal_id bigint NOT NULL REFERENCES crm.deals, note text,
                               at timestamptz NOT NULL DEFAULT now());
  INSERT INTO crm.people VALUES ('p1', 'Alice'), ('p2', 'Bob');
  INSERT INTO crm.deals VALUES (1, 'p1'), (2, 'p2');" >/dev/null
su sec_worker "SELECT gdpr.register_subject_table('crm.people', 'id');
               SELECT gdpr.register_table('crm.deals'); SELECT gdpr.register_table('crm.deal_notes');
               SELECT gdpr.set_retention('crm.deal_notes', NULL, '1 year', 'at', 'delete');" >/dev/null
# The cast logs who ran it except in crm_owner's own INSERT below (marked
# hostile.setup), whose trigger runs it too.
owner sec_worker "
  CREATE FUNCTION crm.key_text(k crm.person_key) RETURNS text LANGUAGE plpgsql AS \$\$
  BEGIN
    IF current_setting('hostile.setup', true) IS DISTINCT FROM 'on' THEN PERFORM crm.escalate('worker'); END IF;
    RETURN k::name::text;
  END \$\$;
  CREATE CAST (crm.person_key AS text) WITH FUNCTION crm.key_text(crm.person_key);" >/dev/null
before=$(q -d sec_worker -c "SELECT coalesce(max(id), 0) FROM gdpr.purge_runs WHERE started_by = 'worker'")
reset_owner sec_worker
q -U crm_owner -d sec_worker -c "BEGIN; SET LOCAL hostile.setup = on;
  INSERT INTO crm.deal_notes (id, deal_id, note, at) VALUES (1, 1, 'old', now() - interval '2 years'), (2, 2, 'old', now() - interval '2 years');
  COMMIT;" >/dev/null
reset_owner sec_worker
for _ in $(seq 1 150); do
  [ "$(q -d sec_worker -c "SELECT count(*) FROM crm.deal_notes")" = 0 ] && break
  sleep 0.2
done
if [ "$(q -d sec_worker -c "SELECT count(*) FROM crm.deal_notes")" != 0 ]; then
  bad "round16.5" "the purge worker did not purge crm.deal_notes in 30 s: the check proves nothing"
  reset_owner sec_worker
else
  escalated "round16.5" "the purge worker's DELETE of a table two links from its subject (purge_worker.c -> log_write.c far subjects)" sec_worker worker
fi

# Round16.8: the owner of the CRM's database (often the CRM's owner, not a
# superuser) silences the access log: ALTER DATABASE ... SET
# default_transaction_read_only = on is applied to the workers' connections
# (BackgroundWorkerInitializeConnection reads pg_db_role_setting) and the
# extension does not override it, so from the log writer's next start (a
# restart of the server, or of the worker, simulated here) every flush fails
# with "cannot execute INSERT in a read-only transaction": reads and writes
# of registered tables are no longer logged (the purge stops too).
writer_pid() { q -d sec_worker -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer' AND datname = 'sec_worker'"; }
su sec_worker "ALTER DATABASE sec_worker OWNER TO crm_owner" >/dev/null
q -U crm_owner -d sec_worker -c "GRANT USAGE ON SCHEMA crm TO app" -c "GRANT SELECT ON crm.contacts TO app" >/dev/null
q -U crm_owner -d sec_worker -c "ALTER DATABASE sec_worker SET default_transaction_read_only = on" >/dev/null
old=$(writer_pid)
[ -n "$old" ] && q -d sec_worker -c "SELECT pg_terminate_backend($old)" >/dev/null
for _ in $(seq 1 100); do new=$(writer_pid); [ -n "$new" ] && [ "$new" != "$old" ] && break; sleep 0.2; done
since=$(q -d sec_worker -c "SELECT coalesce(max(id), 0) FROM gdpr.access_log")
as app sec_worker "SELECT count(email) FROM crm.contacts" >/dev/null
logged=0
for _ in $(seq 1 50); do
  logged=$(q -d sec_worker -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'app' AND tbl = 'crm.contacts'::regclass")
  [ "$logged" -gt 0 ] && break
  sleep 0.2
done
if [ -z "$new" ] || [ "$new" = "$old" ]; then bad "round16.8" "setup: the log writer did not start again in 20 s"
elif [ "$logged" -gt 0 ]; then ok "round16.8: the database owner's default_transaction_read_only does not stop the log writer"
else bad "round16.8" "after crm_owner's ALTER DATABASE sec_worker SET default_transaction_read_only = on and a restart of the log writer, app's read of crm.contacts is not in the log after 10 s (server log: $(grep -c 'cannot execute INSERT in a read-only transaction' "$top/server.log") x 'cannot execute INSERT in a read-only transaction')"; fi
PGOPTIONS='-c default_transaction_read_only=off' q -d sec_worker -c "ALTER DATABASE sec_worker RESET default_transaction_read_only" >/dev/null

# ---------------------------------------------------------------------------
# What resisted (not in security.sh).  Writes and reads the log must record,
# whatever way the attacker uses.
log_rows() {  # log_rows DB TABLE OPERATION SINCE_ID: rows counted by the log
  as adm "$1" "SELECT gdpr.flush_access_log()" >/dev/null
  q -d "$1" -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $4
                  AND tbl = '$2'::regclass AND operation = '$3'"
}
last_id() { q -d "$1" -c "SELECT coalesce(max(id), 0) FROM gdpr.access_log"; }
expect_logged() {  # expect_logged FINDING WHAT DB TABLE OPERATION SINCE ROWS
  local n
  n=$(log_rows "$3" "$4" "$5" "$6")
  if [ "$n" -ge "$7" ]; then ok "$1: $2: logged ($n rows)"; else bad "$1" "$2: the log has $n of the $7 rows $5 on $4"; fi
}
db=sec_val
since=$(last_id $db)
as crm_owner $db "BEGIN" "UPDATE crm.contacts SET city = 'Prepared' WHERE id IN (SELECT id FROM crm.contacts ORDER BY id LIMIT 2)" \
  "PREPARE TRANSACTION 'round16'" >/dev/null
as crm_owner $db "COMMIT PREPARED 'round16'" >/dev/null
expect_logged "round16.6" "an UPDATE committed by PREPARE TRANSACTION / COMMIT PREPARED" $db crm.contacts UPDATE "$since" 2
since=$(last_id $db)
as crm_owner $db "CREATE TABLE crm.src AS SELECT id, 'Merged'::text AS city FROM crm.contacts ORDER BY id LIMIT 3" \
  "MERGE INTO crm.contacts c USING crm.src s ON c.id = s.id WHEN MATCHED THEN UPDATE SET city = s.city" \
  "MERGE INTO crm.marketing_events m USING crm.src s ON m.contact_id = s.id WHEN MATCHED THEN DELETE" >/dev/null
expect_logged "round16.6" "an UPDATE by MERGE" $db crm.contacts UPDATE "$since" 3
since=$(last_id $db)
as app $db "BEGIN" "DECLARE c CURSOR WITH HOLD FOR SELECT email FROM crm.contacts" "COMMIT" "FETCH 5 FROM c" "CLOSE c" >/dev/null
expect_logged "round16.6" "a read through a cursor WITH HOLD fetched after its transaction" $db crm.contacts SELECT "$since" 5
since=$(last_id $db)
as crm_owner $db "CREATE TABLE crm.contacts_kid (LIKE crm.contacts INCLUDING ALL)" "ALTER TABLE crm.contacts_kid INHERIT crm.contacts" \
  "INSERT INTO crm.contacts_kid (id, first_name, email) VALUES (900001, 'Kid', 'kid.round16@example.org')" \
  "UPDATE crm.contacts_kid SET city = 'Kid city'" >/dev/null
expect_logged "round16.6" "a direct UPDATE of a child attached by ALTER TABLE ... INHERIT" $db crm.contacts_kid UPDATE "$since" 1
for who in app plain adm; do
  for s in log_reads log_subjects_max; do
    out=$(as $who $db "SET crm_gdpr.$s = 0")
    [ "$(state_of "$out")" = 42501 ] && ok "round16.7: $who sets crm_gdpr.$s: refused" \
      || bad "round16.7" "$who sets crm_gdpr.$s: $(state_of "$out")"
  done
done

hostile_verdict security_round16
