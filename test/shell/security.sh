#!/usr/bin/env bash
# The attacker's suite of issue 16: the extension must never widen anyone's
# rights.  Roles as an attacker meets them: crm_owner owns the CRM's tables
# (not a superuser), adm is in gdpr_admin, app in gdpr_app, aud in
# gdpr_auditor, plain may only log in.  Every check runs to the end and prints
# "ok" or "FAIL: finding N: ..."; the script fails when one check failed.
#
# A private cluster (as worker.sh): the purge worker must run in a database of
# its own (sec_worker, every second) while the other checks run in sec, and
# the roles die with the cluster.
#
# HOSTILE_UPDATE_SURFACE=1 rewrites test/expected/role_surface.txt from what
# the cluster grants (after a deliberate change of privileges; review the diff).
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster security "crm_gdpr.database = 'sec_worker'" "crm_gdpr.purge_naptime = '1s'"

hostile_suite
# refused FINDING WHAT ROLE DB SQL: the call must fail with 42501.
refused() {
  local finding=$1 what=$2 role=$3 db=$4 sql=$5 out st
  out=$(as "$role" "$db" "$sql"); st=$(state_of "$out")
  if [ "$st" = 42501 ]; then ok "$finding: $what: refused (42501)"
  else bad "$finding" "$what: expected SQLSTATE 42501, got $st: $(grep -v '^SQLSTATE=' <<<"$out" | head -c 300 | tr '\n' ' ')"; fi
}
su() { q -d "$1" -c "$2"; }                 # as the superuser, stop on error

# ---------------------------------------------------------------------------
# Roles and two CRMs owned by crm_owner, declared by the superuser.
q -d postgres -c 'SET client_min_messages = warning' -c "
  CREATE ROLE crm_owner LOGIN; CREATE ROLE hr_owner NOLOGIN; CREATE ROLE plain LOGIN;" >/dev/null
setup_db() {  # setup_db DB: the extension, the CRM owned by crm_owner, the registry, the hooks' tools
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
  # The attacker's tools, as crm_owner: crm.escalate(hook) records who ran it
  # and, when that is not crm_owner, makes crm_owner a superuser.  Wrappers of
  # the volatilities that index expressions, generated columns and CHECK
  # constraints need.  hostile.setup = on marks the runs of the setup itself.
  q -U crm_owner -d "$db" -c "
    CREATE TABLE crm.who_ran (hook text, usr name, setup boolean, PRIMARY KEY (hook, usr, setup));
    GRANT INSERT ON crm.who_ran TO PUBLIC;
    CREATE FUNCTION crm.escalate(hook text) RETURNS boolean LANGUAGE plpgsql AS \$\$
    BEGIN
      INSERT INTO crm.who_ran VALUES (hook, current_user, coalesce(current_setting('hostile.setup', true), '') = 'on')
        ON CONFLICT DO NOTHING;
      IF current_user <> 'crm_owner' THEN
        BEGIN
          EXECUTE 'ALTER ROLE crm_owner SUPERUSER';
        EXCEPTION WHEN OTHERS THEN NULL;   -- refused: keep the record of who ran
        END;
      END IF;
      RETURN true;
    END \$\$;
    GRANT EXECUTE ON FUNCTION crm.escalate(text) TO PUBLIC;
    CREATE FUNCTION crm.hook_immutable(hook text, v text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$\$
    BEGIN PERFORM crm.escalate(hook); RETURN length(v); END \$\$;
    CREATE FUNCTION crm.hook_trigger() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN PERFORM crm.escalate('trigger'); RETURN NULL; END \$\$;
    CREATE TABLE crm.deletion_notes (id bigserial PRIMARY KEY, noted_at timestamptz,
                                     hooked boolean DEFAULT crm.escalate('default'));
    CREATE FUNCTION crm.note_deletion() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN INSERT INTO crm.deletion_notes (noted_at) VALUES (now()); RETURN NULL; END \$\$;" >/dev/null
  # adm may administer the CRM: every privilege on its tables (finding 2
  # takes some away for a check), nothing more.
  # The application reads its CRM (asking about a person is reading his row).
  q -U crm_owner -d "$db" -c "GRANT USAGE ON SCHEMA crm TO adm, app" \
    -c "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO adm" \
    -c "GRANT SELECT ON crm.contacts TO app" >/dev/null
}
setup_db sec

# ---------------------------------------------------------------------------
# Finding 1: what crm_owner controls runs as crm_owner, never as a superuser.
declare -A hook_on hook_off
hook_on[trigger]="CREATE TRIGGER zz_hostile AFTER DELETE ON crm.marketing_events FOR EACH STATEMENT EXECUTE FUNCTION crm.hook_trigger()"
hook_off[trigger]="DROP TRIGGER zz_hostile ON crm.marketing_events"
hook_on[index]="CREATE INDEX hostile_index ON crm.contacts (crm.hook_immutable('index', notes))"
hook_off[index]="DROP INDEX crm.hostile_index"
hook_on[generated]="ALTER TABLE crm.contacts ADD COLUMN hostile_generated int GENERATED ALWAYS AS (crm.hook_immutable('generated', notes)) STORED"
hook_off[generated]="ALTER TABLE crm.contacts DROP COLUMN hostile_generated"
# (A rule on a registered table was the way to the default until round 25.2
# made CREATE RULE on one refused: now the owner's trigger inserts the row.)
hook_on[default]="CREATE TRIGGER zz_default AFTER DELETE ON crm.marketing_events FOR EACH STATEMENT EXECUTE FUNCTION crm.note_deletion()"
hook_off[default]="DROP TRIGGER zz_default ON crm.marketing_events"
hook_on[check]="ALTER TABLE crm.contacts ADD CONSTRAINT hostile_check CHECK (crm.hook_immutable('check', notes) >= 0 OR notes IS NULL)"
hook_off[check]="ALTER TABLE crm.contacts DROP CONSTRAINT hostile_check"
hook_on[rls]="ALTER TABLE crm.marketing_events ENABLE ROW LEVEL SECURITY; ALTER TABLE crm.marketing_events FORCE ROW LEVEL SECURITY;
              CREATE POLICY hostile_policy ON crm.marketing_events USING (crm.escalate('rls'))"
# (Row-level security itself stays on: the extension's restriction policy needs it, issue 23.4.)
hook_off[rls]="DROP POLICY hostile_policy ON crm.marketing_events; ALTER TABLE crm.marketing_events NO FORCE ROW LEVEL SECURITY"
hooks=(trigger index generated default check rls)
# Rows the purge must act on, made by crm_owner: notes past their year
# (an UPDATE of crm.contacts), marketing events past their 13 months (a
# DELETE from crm.marketing_events), and a recent event of the customer the
# erasure takes (so that its DELETE there has a row).
due_rows() {
  echo "UPDATE crm.contacts SET notes = 'hostile', last_contact_at = now() - interval '2 years'
         WHERE id IN (SELECT id FROM crm.contacts WHERE last_contact_at > now() - interval '1 year' ORDER BY id LIMIT 3);
        INSERT INTO crm.marketing_events (contact_id, campaign, event, at)
          SELECT id, 'hostile', 'sent', now() - interval '2 years' FROM crm.contacts ORDER BY id LIMIT 3;
        INSERT INTO crm.marketing_events (contact_id, campaign, event, at) VALUES ($1, 'hostile', 'sent', now());"
}
# A customer not yet erased: his row is kept for his invoices, so the erasure
# UPDATEs crm.contacts (index, generated column, CHECK) and DELETEs from
# crm.marketing_events (trigger, rule, policy).
customer() {
  q -d "$1" -c "SELECT c.id FROM crm.contacts c WHERE c.email LIKE '%@example.%'
                  AND EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) ORDER BY c.id LIMIT 1"
}
# hook_check DB HOOK PATH OUTPUT: crm_owner is no superuser, and the hook ran
# as crm_owner (a policy may not run at all: a superuser bypasses RLS).
hook_check() {
  local db=$1 hook=$2 path=$3 out=$4 super ran others
  super=$(q -d "$db" -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'crm_owner'")
  ran=$(q -d "$db" -c "SELECT count(*) FROM crm.who_ran WHERE hook = '$hook' AND NOT setup")
  others=$(q -d "$db" -c "SELECT coalesce(string_agg(DISTINCT usr, ','), '') FROM crm.who_ran
                           WHERE hook = '$hook' AND NOT setup AND usr <> 'crm_owner'")
  if [ "$super" = t ]; then
    bad "finding 1" "$hook via $path: crm_owner became SUPERUSER (the $hook ran as: $others)"
  elif [ -n "$others" ]; then
    bad "finding 1" "$hook via $path: crm_owner's code ran as $others, not as crm_owner"
  elif [ "$ran" = 0 ] && [ "$hook" != rls ]; then
    bad "finding 1" "$hook via $path: the $hook never fired (the path did not run: $(head -c 300 <<<"$out" | tr '\n' ' '))"
  else
    ok "finding 1: $hook via $path: runs as crm_owner, no escalation"
  fi
}
reset_owner() {
  q -d "$1" -c "ALTER ROLE crm_owner NOSUPERUSER" -c "TRUNCATE crm.who_ran" >/dev/null
}
install_hook() {  # install_hook DB HOOK SUBJECT
  q -U crm_owner -d "$1" -c "BEGIN; SET LOCAL hostile.setup = on; ${hook_on[$2]}; $(due_rows "$3") COMMIT;" >/dev/null
}
remove_hook() {
  q -d "$1" -c "ALTER ROLE crm_owner NOSUPERUSER" >/dev/null
  q -U crm_owner -d "$1" -c "BEGIN; SET LOCAL hostile.setup = on; ${hook_off[$2]}; COMMIT;" >/dev/null
}

for hook in "${hooks[@]}"; do
  for path in purge erase; do
    reset_owner sec
    subject=$(customer sec)
    install_hook sec "$hook" "$subject"
    if [ "$path" = purge ]; then out=$(as adm sec "SELECT count(*) FROM gdpr.purge()")
    else out=$(as adm sec "SELECT gdpr.erase_subject('$subject')->>'status'"); fi
    [ "$(state_of "$out")" = 00000 ] || echo "     (the $path as adm failed: $(head -n 2 <<<"$out" | tr '\n' ' '))"
    hook_check sec "$hook" "$([ "$path" = purge ] && echo 'gdpr.purge()' || echo 'gdpr.erase_subject()') as adm" "$out"
    remove_hook sec "$hook"
  done
done

# The worker: it purges sec_worker every second.  A hook counts when two
# whole rounds started after it was in place.
setup_db sec_worker
worker_rounds() {
  q -d sec_worker -c "SELECT coalesce(max(id), 0) FROM gdpr.purge_runs WHERE started_by = 'worker'"
}
for hook in "${hooks[@]}"; do
  reset_owner sec_worker
  before=$(worker_rounds)
  install_hook sec_worker "$hook" "$(customer sec_worker)"
  done_rounds=0
  for _ in $(seq 1 150); do
    done_rounds=$(q -d sec_worker -c "SELECT count(*) FROM gdpr.purge_runs WHERE started_by = 'worker'
                                         AND id > $before AND status <> 'running'")
    [ "$done_rounds" -ge 2 ] && break
    sleep 0.2
  done
  if [ "$done_rounds" -lt 2 ]; then bad "finding 1" "$hook via the purge worker: the worker did not run twice in 30 s"
  else hook_check sec_worker "$hook" "the purge worker" ""; fi
  remove_hook sec_worker "$hook"
done
q -d postgres -c "ALTER ROLE crm_owner NOSUPERUSER" >/dev/null

# ---------------------------------------------------------------------------
# Finding 2: gdpr_admin acts on a table only with the rights that the act
# needs on it.  secret.staff belongs to hr_owner; adm has no grant on it and
# no USAGE on schema secret (so only its OID reaches it); hr.payroll is in a
# schema adm may use, without any grant on the table.
q -d sec -c "
  CREATE SCHEMA secret AUTHORIZATION hr_owner; CREATE SCHEMA hr AUTHORIZATION hr_owner;
  GRANT USAGE ON SCHEMA hr TO adm;
  CREATE TABLE secret.staff (id int PRIMARY KEY, password_hash text, salary numeric, hired_at date, badge bytea);
  CREATE TABLE hr.payroll (id int PRIMARY KEY, password_hash text, salary numeric, hired_at date, badge bytea);
  ALTER TABLE secret.staff OWNER TO hr_owner; ALTER TABLE hr.payroll OWNER TO hr_owner;" >/dev/null
staff_oid=$(q -d sec -c "SELECT 'secret.staff'::regclass::oid")
payroll_oid=$(q -d sec -c "SELECT 'hr.payroll'::regclass::oid")
put_rows() {  # the rows again, as if no erasure had happened (each check alone)
  as postgres sec "DELETE FROM gdpr.erasures WHERE subject_table::oid IN ($staff_oid, $payroll_oid)" >/dev/null
  q -d sec -c "SET client_min_messages = warning" -c "
    INSERT INTO secret.staff VALUES (1, 'pbkdf2-sha256\$secret-staff', 98765, '2001-01-01', gdpr.encrypt('badge', ''))
      ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, salary = excluded.salary, badge = excluded.badge;
    INSERT INTO hr.payroll VALUES (1, 'pbkdf2-sha256\$hr-payroll', 87654, '2001-01-01', gdpr.encrypt('badge', ''))
      ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, salary = excluded.salary, badge = excluded.badge;" >/dev/null
}
row_intact() {  # row_intact FINDING WHAT TABLE: the row is still there, unchanged
  local n
  n=$(q -d sec -c "SELECT count(*) FROM $3 WHERE id = 1 AND password_hash LIKE 'pbkdf2-sha256%' AND salary > 80000
                    AND gdpr.ciphertext_key(badge) IS NOT NULL AND badge = badge")
  if [ "$n" = 1 ]; then ok "$1: $2: the row of $3 is intact"; else bad "$1" "$2: the row of $3 was deleted or changed"; fi
}
put_rows
for t in "staff by OID|$staff_oid::oid::regclass|secret.staff" "staff by name|'secret.staff'::regclass|secret.staff" \
         "payroll by name|'hr.payroll'::regclass|hr.payroll" "payroll by OID|$payroll_oid::oid::regclass|hr.payroll"; do
  IFS='|' read -r label ref tbl <<<"$t"
  refused "finding 2" "adm registers $label" adm sec "SELECT gdpr.register_subject_table($ref, 'id')"
done
# Registered by the superuser, so that each act below is refused for lack of
# rights on the table, not because the table is unknown.
for tbl in secret.staff hr.payroll; do
  q -d sec -c "SELECT gdpr.register_subject_table('$tbl', 'id') WHERE NOT EXISTS
                 (SELECT FROM gdpr.subject_tables s WHERE s.tbl = '$tbl'::regclass)" \
    -c "SELECT gdpr.classify('$tbl', 'salary', 'financial', 'customer_management', 'contract')
          WHERE NOT EXISTS (SELECT FROM gdpr.personal_columns p WHERE p.tbl = '$tbl'::regclass AND p.col = 'salary')" >/dev/null
done
for t in "staff by OID|$staff_oid::oid::regclass|secret.staff" "staff by name|'secret.staff'::regclass|secret.staff" \
         "payroll by name|'hr.payroll'::regclass|hr.payroll" "payroll by OID|$payroll_oid::oid::regclass|hr.payroll"; do
  IFS='|' read -r label ref tbl <<<"$t"
  out=$(as adm sec "SELECT gdpr.export_subject('1', $ref)::text")
  if [ "$(state_of "$out")" = 42501 ] && ! grep -q pbkdf2 <<<"$out"; then ok "finding 2: adm exports $label: refused (42501)"
  else bad "finding 2" "adm exports $label: expected 42501, got $(state_of "$out"): $(grep -v '^SQLSTATE' <<<"$out" | head -c 200)"; fi
  put_rows
  refused "finding 2" "adm erases in $label" adm sec "SELECT gdpr.erase_subject('1', NULL, $ref)"
  row_intact "finding 2" "after adm erased in $label" "$tbl"
  put_rows
  refused "finding 2" "adm restricts in $label" adm sec "SELECT gdpr.restrict_subject('1', 'to see', $ref)"
  as postgres sec "UPDATE gdpr.restrictions SET lifted_at = now(), lifted_by = current_user
                     WHERE subject_table = '$tbl'::regclass AND lifted_at IS NULL" >/dev/null
  refused "finding 2" "adm rotates the key of badge in $label" adm sec "SELECT gdpr.rotate_key($ref, 'badge')"
  put_rows
  refused "finding 2" "adm sets a retention on $label" adm sec \
    "SELECT gdpr.set_retention($ref, NULL, '1 day', 'hired_at', 'delete')"
  as adm sec "SELECT count(*) FROM gdpr.purge()" >/dev/null
  row_intact "finding 2" "after adm set a retention on $label and purged" "$tbl"
  q -d sec -c "DELETE FROM gdpr.retention_policies WHERE tbl = '$tbl'::regclass" >/dev/null
  put_rows
done
# CRM tables: adm may erase only where it may DELETE (and UPDATE), export
# only what it may SELECT, register only what it owns.
subject=$(customer sec)
email=$(q -d sec -c "SELECT email FROM crm.contacts WHERE id = $subject")
q -U crm_owner -d sec -c "REVOKE DELETE ON ALL TABLES IN SCHEMA crm FROM adm" >/dev/null
refused "finding 2" "adm erases a contact without DELETE on the CRM" adm sec \
  "SELECT gdpr.erase_subject('$subject', NULL, 'crm.contacts')"
[ "$(q -d sec -c "SELECT email FROM crm.contacts WHERE id = $subject")" = "$email" ] \
  && ok "finding 2: the contact is intact" || bad "finding 2" "adm without DELETE erased contact $subject"
q -U crm_owner -d sec -c "GRANT DELETE ON ALL TABLES IN SCHEMA crm TO adm" \
  -c "REVOKE SELECT ON ALL TABLES IN SCHEMA crm FROM adm" >/dev/null
subject=$(customer sec)      # today the check above erased the first one
email=$(q -d sec -c "SELECT email FROM crm.contacts WHERE id = $subject")
out=$(as adm sec "SELECT gdpr.export_subject('$subject', 'crm.contacts')::text")
if [ "$(state_of "$out")" = 42501 ] && ! grep -qF "$email" <<<"$out"; then ok "finding 2: adm exports without SELECT on the CRM: refused (42501)"
else bad "finding 2" "adm exports a contact without SELECT on the CRM: expected 42501, got $(state_of "$out"), his e-mail in the output: $(grep -qF "$email" <<<"$out" && echo yes || echo no)"; fi
q -U crm_owner -d sec -c "GRANT SELECT ON ALL TABLES IN SCHEMA crm TO adm" >/dev/null
refused "finding 2" "adm registers crm.companies (every DML grant, not its owner)" adm sec \
  "SELECT gdpr.register_subject_table('crm.companies', 'id')"
# crm.contacts is the only subject table again (the calls below name none).
q -d sec -c "SET client_min_messages = warning" -c "SELECT gdpr.unregister_table(s.tbl) FROM gdpr.subject_tables s WHERE s.tbl <> 'crm.contacts'::regclass" >/dev/null

# ---------------------------------------------------------------------------
# Finding 3: no pseudonym oracle, no internal helper for app and auditor, and
# the exact surface of each role.
for who in aud adm; do
  for domain in access-log erasure-ledger suppression subject-key retention erasure; do
    out=$(as "$who" sec "SELECT gdpr.pseudonymise('30', '$domain')")
    st=$(state_of "$out")
    if [ "$st" != 00000 ]; then ok "finding 3: $who pseudonymises in reserved domain $domain: refused ($st)"
    else bad "finding 3" "$who computes pseudonyms of reserved domain '$domain' (got $(head -n 1 <<<"$out"))"; fi
  done
done
[ "$(state_of "$(as postgres sec "SELECT gdpr.pseudonymise('30', 'newsletter-export')")")" = 00000 ] \
  || bad "finding 3" "pseudonymise works for nobody (no key?): the refusals above prove nothing"
contacts_oid=$(q -d sec -c "SELECT 'crm.contacts'::regclass::oid")   # aud has no USAGE on schema crm
oracle="SELECT (gdpr._retention_due(jsonb_populate_record(NULL::gdpr.retention_policies, jsonb_build_object(
          'id', 999, 'tbl', $contacts_oid, 'keep', now() - timestamptz '1950-01-01', 'after_table', $contacts_oid,
          'after_column', 'birth_date', 'action', 'delete'))))::text"
for who in aud app; do
  out=$(as "$who" sec "$oracle")
  # Refused (42501), or gone (42883): retention_status now stands on gdpr.retention_counts(), which takes no argument.
  st=$(state_of "$out")
  if [ "$st" = 42501 ] || [ "$st" = 42883 ]; then ok "finding 3: $who calls gdpr._retention_due: refused ($st)"
  else bad "finding 3" "$who calls gdpr._retention_due on crm.contacts.birth_date: $(state_of "$out"), count and oldest of born before 1950: $(head -n 1 <<<"$out")"; fi
done
helpers=$(q -d sec -c "SET search_path = pg_catalog" -c "
  SELECT coalesce(string_agg(r || ': ' || p.oid::regprocedure::text, ', ' ORDER BY r, p.oid::regprocedure::text), '')
    FROM unnest(ARRAY['gdpr_app', 'gdpr_auditor']) r, pg_proc p
   WHERE p.pronamespace = 'gdpr'::regnamespace AND p.proname LIKE '\_%' AND has_function_privilege(r, p.oid, 'EXECUTE')")
[ -z "$helpers" ] && ok "finding 3: no internal helper (_name) is executable by gdpr_app or gdpr_auditor" \
  || bad "finding 3" "internal helpers executable by app or auditor roles: $helpers"
# The surface: what each role may execute in schema gdpr and do to its
# relations (partitions' numbers folded, so that the month does not matter).
surface=$top/role_surface.txt
q -d sec -c "SET search_path = pg_catalog" -c "
  WITH roles(r, label) AS (VALUES ('gdpr_admin', 'gdpr_admin'), ('gdpr_app', 'gdpr_app'),
                                  ('gdpr_auditor', 'gdpr_auditor'), ('plain', 'login-only'))
  SELECT DISTINCT line COLLATE \"C\" FROM (
    SELECT label || ' schema gdpr ' || lower(x) AS line FROM roles, unnest(ARRAY['USAGE', 'CREATE']) x
     WHERE has_schema_privilege(r, 'gdpr', x)
    UNION ALL
    SELECT label || ' member of ' || m.roleid::regrole::text FROM roles JOIN pg_auth_members m ON m.member = r::regrole
    UNION ALL
    SELECT label || ' execute ' || p.oid::regprocedure::text FROM roles, pg_proc p
     WHERE p.pronamespace = 'gdpr'::regnamespace AND has_function_privilege(r, p.oid, 'EXECUTE')
    UNION ALL
    SELECT label || ' ' || lower(x) || ' ' || regexp_replace(c.oid::regclass::text, '[0-9]+', 'N', 'g')
      FROM roles, pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) x
     WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND has_table_privilege(r, c.oid, x)
    UNION ALL
    SELECT label || ' sequence ' || lower(x) || ' ' || regexp_replace(c.oid::regclass::text, '[0-9]+', 'N', 'g')
      FROM roles, pg_class c, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) x
     WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind = 'S' AND has_sequence_privilege(r, c.oid, x)) s
  ORDER BY 1" >"$surface"
if [ "${HOSTILE_UPDATE_SURFACE:-}" = 1 ]; then cp "$surface" test/expected/role_surface.txt; fi
if diff -u test/expected/role_surface.txt "$surface" >"$top/surface.diff"; then
  ok "finding 3: each role's surface is test/expected/role_surface.txt ($(wc -l <"$surface") lines)"
else
  bad "finding 3" "the roles' surface changed (- expected, + now; if intended: HOSTILE_UPDATE_SURFACE=1):"
  cat "$top/surface.diff"
fi

# ---------------------------------------------------------------------------
# Finding 4: after an erasure, nothing in schema gdpr names him.
id=987654
email=zacharie.quillard.987654@example.net
phone='+33 6 98 76 54 32'
reason='Mr Martin, 12 rue de la Paix'
q -U crm_owner -d sec -c "INSERT INTO crm.contacts (id, first_name, last_name, email, phone, address, city, last_contact_at)
  VALUES ($id, 'Zacharie', 'Quillard', '$email', '$phone', '12 rue de la Paix', 'Paris', now())" >/dev/null
request=$(as adm sec "SELECT gdpr.open_request('$id', 'erasure')" | head -n 1)
# The registers of issue 21 name him too: the request's contact, a breach's list of people.
as adm sec "SELECT gdpr.verify_identity($request, 'identity_document')" \
  "SELECT gdpr.set_requester_contact($request, '$email')" \
  "SELECT gdpr.link_breach_subject_ids(gdpr.report_breach('laptop lost'), ARRAY['$id'])" >/dev/null
hold=$(as adm sec "SELECT gdpr.place_hold('$id', '$reason: litigation')" | head -n 1)
[[ "$request" =~ ^[0-9]+$ && "$hold" =~ ^[0-9]+$ ]] || bad "finding 4" "setup: open_request or place_hold failed: $request $hold"
steps=(
  "adm|SELECT gdpr.release_hold($hold)"
  "adm|SELECT gdpr.restrict_subject('$id', '$reason contests his address')"
  "adm|SELECT gdpr.lift_restriction('$id', '$reason: settled')"
  "app|SELECT gdpr.grant_consent('$id', 'newsletter', 'web', '{\"ip\": \"192.0.2.7\", \"user_agent\": \"x\", \"form\": \"signup\", \"notice_version\": 1}')"
  "app|SELECT gdpr.withdraw_consent('$id', 'newsletter', 'email', '{\"message_id\": \"<m1@example.net>\"}')"
  "crm_owner|SELECT count(*) FROM crm.contacts WHERE id = $id"
  "crm_owner|UPDATE crm.contacts SET city = 'Lyon' WHERE id = $id"
  "crm_owner|INSERT INTO crm.interactions (contact_id, kind, occurred_at, summary) VALUES ($id, 'call', now(), 'asked to be forgotten')"
  "adm|SELECT length(gdpr.export_subject('$id')::text)"
  "adm|SELECT gdpr.flush_access_log()")
run_steps() {
  local s out
  for s in "$@"; do
    out=$(as "${s%%|*}" sec "${s#*|}")
    [ "$(state_of "$out")" = 00000 ] || bad "finding 4" "setup step failed (${s#*|}): $(head -n 2 <<<"$out" | tr '\n' ' ')"
  done
}
run_steps "${steps[@]}"
scan() { q -d sec -c "SET search_path = pg_catalog" -c "
  CREATE FUNCTION pg_temp.hits(needles text[]) RETURNS SETOF text LANGUAGE plpgsql AS \$\$
  DECLARE
    t regclass;
    n text;
    row text;
  BEGIN
    FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind = 'r' ORDER BY 1 LOOP
      FOREACH n IN ARRAY needles LOOP
        FOR row IN EXECUTE format('SELECT x::text FROM %s x', t) LOOP
          IF row ~* n THEN RETURN NEXT format('%s holds %s: %s', t, n, left(row, 160)); END IF;
        END LOOP;
      END LOOP;
    END LOOP;
  END \$\$;
  SELECT * FROM pg_temp.hits(ARRAY['(^|[^0-9A-Za-z])$id(\$|[^0-9A-Za-z])', '$email', '\+33 6 98 76 54 32', '33698765432',
                                   'Mr Martin', 'rue de la Paix', 'Quillard'])"; }
# The scan can fail: before the erasure, his open request names him.
[ -n "$(scan)" ] || bad "finding 4" "the scan finds nothing even before the erasure: it proves nothing"
run_steps "adm|SELECT gdpr.erase_subject('$id', $request)->>'status'" "adm|SELECT gdpr.flush_access_log()"
[ "$(q -d sec -c "SELECT count(*) FROM crm.contacts WHERE id = $id")" = 0 ] || bad "finding 4" "contact $id was not erased"
hits=$(scan)
[ -z "$hits" ] && ok "finding 4: after the erasure no table of schema gdpr holds his id, e-mail, phone or the reasons' text" \
  || { bad "finding 4" "after the erasure, schema gdpr still identifies subject $id:"; sed 's/^/     /' <<<"$hits"; }

# ---------------------------------------------------------------------------
# Finding 5: a restricted subject is kept, and not counted as due.
id=876543
due_sql="SELECT coalesce(sum(rows_due), 0) FROM gdpr.retention_status"
as adm sec "SELECT count(*) FROM gdpr.purge()" >/dev/null     # nothing else is due now
# His contact row (due for deletion, and its notes for nullifying), an
# interaction and a marketing event, all five years old: 4 rows due.
q -U crm_owner -d sec -c "
  INSERT INTO crm.contacts (id, first_name, last_name, email, notes, last_contact_at)
    VALUES ($id, 'Rémi', 'Restreint', 'remi.restreint@example.net', 'claims damages', now() - interval '5 years');
  INSERT INTO crm.interactions (contact_id, kind, occurred_at, summary) VALUES ($id, 'call', now() - interval '5 years', 'old');
  INSERT INTO crm.marketing_events (contact_id, campaign, event, at) VALUES ($id, 'old', 'sent', now() - interval '5 years')" >/dev/null
due_before=$(q -d sec -c "$due_sql")
out=$(as adm sec "SELECT gdpr.restrict_subject('$id', 'keeps evidence for a legal claim')")
[ "$(state_of "$out")" = 00000 ] || bad "finding 5" "restrict_subject failed: $(head -n 2 <<<"$out" | tr '\n' ' ')"
due_after=$(q -d sec -c "$due_sql")
as adm sec "SELECT count(*) FROM gdpr.purge()" >/dev/null
kept=$(q -d sec -c "SELECT (SELECT count(*) FROM crm.contacts WHERE id = $id AND notes IS NOT NULL) || ',' ||
                           (SELECT count(*) FROM crm.interactions WHERE contact_id = $id) || ',' ||
                           (SELECT count(*) FROM crm.marketing_events WHERE contact_id = $id)")
[ "$kept" = 1,1,1 ] && ok "finding 5: the purge keeps every row of a restricted subject" \
  || bad "finding 5" "the purge acted on a restricted subject's rows (contact with notes, interactions, events left: $kept of 1,1,1)"
[ "$due_before" -ge 4 ] && [ "$due_after" = $((due_before - 4)) ] \
  && ok "finding 5: retention_status stops counting a restricted subject's 4 rows as due" \
  || bad "finding 5" "retention_status counts a restricted subject's rows as due (rows_due in all $due_before before, $due_after once restricted; expected 4 fewer)"
# Whether retention_status also says "kept because restricted" (a column of
# its own) is for the fix to define; a check of it belongs next to the fix.

# ---------------------------------------------------------------------------
# Issue 23.4: restriction stops reads.  The subject restricted above is hidden
# from app (gdpr_app) and from plain (LOGIN only, given SELECT by the owner),
# in his contact row and in the tables linked to it; adm sees him; the hidden
# reads are logged; crm_owner cannot take the policy or row-level security
# away; nobody but a superuser switches the filter off.  And (issue 23.3) the
# suppression and departure triggers of the subject table are guarded too.
q -U crm_owner -d sec -c "GRANT USAGE ON SCHEMA crm TO plain" -c "GRANT SELECT ON crm.contacts, crm.interactions TO plain, app" >/dev/null
seen_sql="SELECT (SELECT count(*) FROM crm.contacts WHERE id = $id) + (SELECT count(*) FROM crm.interactions WHERE contact_id = $id)"
for who in app plain; do
  out=$(as "$who" sec "$seen_sql")
  [ "$(head -n 1 <<<"$out")" = 0 ] && ok "issue 23.4: $who reads none of a restricted subject's rows"     || bad "issue 23.4" "$who reads a restricted subject's rows: $(head -n 2 <<<"$out" | tr '\n' ' ')"
done
out=$(as adm sec "$seen_sql")
[ "$(head -n 1 <<<"$out")" = 2 ] && ok "issue 23.4: adm (gdpr_admin) still reads them"   || bad "issue 23.4" "adm does not read the restricted subject's 2 rows: $(head -n 2 <<<"$out" | tr '\n' ' ')"
as adm sec "SELECT gdpr.flush_access_log()" >/dev/null
logged=$(q -d sec -c "SELECT string_agg(DISTINCT role_name, ',' ORDER BY role_name) FROM gdpr.restriction_violations
                       WHERE subject_keys = ARRAY[gdpr._log_subject_key('$id')] AND outcome = 'filtered'")
[ "$logged" = app,plain ] && ok "issue 23.4: the hidden reads of app and plain are logged as violations"   || bad "issue 23.4" "restriction_violations names '$logged', expected app,plain"
refused "issue 23.4" "crm_owner drops the restriction policy" crm_owner sec "DROP POLICY gdpr_restriction ON crm.contacts"
refused "issue 23.4" "crm_owner switches row-level security off" crm_owner sec "ALTER TABLE crm.interactions DISABLE ROW LEVEL SECURITY"
refused "issue 23.4" "crm_owner changes the policy" crm_owner sec "ALTER POLICY gdpr_restriction ON crm.contacts USING (true)"
refused "issue 23.4" "app switches the filter off" app sec "SET crm_gdpr.restriction_reads = off"
refused "issue 23.4" "adm switches the filter off" adm sec "SET crm_gdpr.restriction_reads = off"
refused "issue 23.4" "app switches the filter off for crm.contacts" app sec "SELECT gdpr.set_restriction_reads('crm.contacts', 'off')"
refused "issue 23.4" "adm, not the owner, switches the filter off for crm.contacts" adm sec \
  "SELECT gdpr.set_restriction_reads('crm.contacts', 'off')"
refused "issue 23.4" "plain asks the policy's function about a table it cannot read" plain sec \
  "SELECT gdpr.restriction_visible('gdpr.restrictions'::regclass, '(0,1)')"
refused "issue 23.3" "crm_owner disables the trigger that checks inserts against the suppression list" crm_owner sec "ALTER TABLE crm.contacts DISABLE TRIGGER gdpr_log_insert"
refused "issue 23.3" "crm_owner disables the departure trigger" crm_owner sec "ALTER TABLE crm.contacts DISABLE TRIGGER gdpr_subject_departed"
refused "issue 23.3" "crm_owner drops the departure trigger" crm_owner sec "DROP TRIGGER gdpr_subject_departed ON crm.contacts"
out=$(as app sec "$seen_sql")
[ "$(head -n 1 <<<"$out")" = 0 ] && ok "issue 23.4: after those attempts app still reads none of his rows" \
  || bad "issue 23.4" "after the owner's attempts app reads the restricted subject: $(head -n 1 <<<"$out")"
# The policy is dormant (USING (true)) while nobody is restricted: the owner
# cannot change it then either, nor can app or plain arm or disarm it.
policy_sql="SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'crm.contacts'::regclass AND polname = 'gdpr_restriction'"
refused "issue 23.4" "app lifts the restriction by writing gdpr.restrictions" app sec \
  "UPDATE gdpr.restrictions SET lifted_at = now() WHERE lifted_at IS NULL"
refused "issue 23.4" "app takes the lock of the policy's flips" app sec "SELECT gdpr._restriction_policy_armed()"
as adm sec "SELECT gdpr.lift_restriction('$id', 'settled')" >/dev/null
[ "$(su sec "$policy_sql")" = true ] && ok "issue 23.4: nobody restricted, the policy is dormant" \
  || bad "issue 23.4" "nobody restricted, the policy says $(su sec "$policy_sql")"
refused "issue 23.4" "crm_owner alters the dormant policy to what it says" crm_owner sec \
  "ALTER POLICY gdpr_restriction ON crm.contacts USING (true)"
refused "issue 23.4" "crm_owner arms it by hand" crm_owner sec \
  "ALTER POLICY gdpr_restriction ON crm.contacts USING (gdpr.restriction_visible(tableoid, ctid, id))"
refused "issue 23.4" "plain restricts by writing gdpr.restrictions" plain sec \
  "INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES ('crm.contacts', '1', 'x')"
as adm sec "SELECT gdpr.restrict_subject('$id', 'again')" >/dev/null
[ "$(su sec "$policy_sql")" = "gdpr.restriction_visible(tableoid, ctid, id)" ] && ok "issue 23.4: restricted again, the policy is armed" \
  || bad "issue 23.4" "restricted again, the policy says $(su sec "$policy_sql")"
refused "issue 23.4" "crm_owner changes the armed policy to true" crm_owner sec "ALTER POLICY gdpr_restriction ON crm.contacts USING (true)"
out=$(as app sec "$seen_sql")
[ "$(head -n 1 <<<"$out")" = 0 ] && ok "issue 23.4: restricted again, app reads none of his rows" \
  || bad "issue 23.4" "restricted again, app reads his rows: $(head -n 1 <<<"$out")"

# ---------------------------------------------------------------------------
# Finding 7: IMMUTABLE functions are PARALLEL SAFE.
unsafe=$(q -d sec -c "SET search_path = pg_catalog" -c "
  SELECT coalesce(string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text), '')
    FROM pg_proc p WHERE p.pronamespace = 'gdpr'::regnamespace AND p.provolatile = 'i' AND p.proparallel <> 's'")
[ -z "$unsafe" ] && ok "finding 7: every IMMUTABLE function of schema gdpr is PARALLEL SAFE" \
  || bad "finding 7" "IMMUTABLE but not PARALLEL SAFE: $unsafe"

# ---------------------------------------------------------------------------
# Issue 18.5: parallel workers read what the leader never counts.  app (in
# gdpr_app) under a row limit makes every plan parallel and keeps the leader
# out of the scan: the workers used to read all 200 contacts unrefused, the
# read logged with 0 rows.  A read of a registered table has no workers.
su sec "ALTER ROLE app IN DATABASE sec SET crm_gdpr.max_rows_per_query = 50" >/dev/null
refused "finding 18.5" "a parallel read by gdpr_app past max_rows_per_query" app sec \
  "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
   SET max_parallel_workers_per_gather = 4; SET parallel_leader_participation = off;
   SELECT count(email) FROM crm.contacts"
su sec "ALTER ROLE app IN DATABASE sec RESET crm_gdpr.max_rows_per_query" >/dev/null
plan=$(as app sec "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
  EXPLAIN (COSTS OFF) SELECT string_agg(email, ',') FROM crm.contacts")
grep -q Gather <<<"$plan" && bad "finding 18.5" "a read of a registered table by gdpr_app gets parallel workers: $(tr '\n' ' ' <<<"$plan")" \
  || ok "finding 18.5: a read of a registered table by gdpr_app gets no parallel workers"

hostile_verdict security
