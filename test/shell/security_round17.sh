#!/usr/bin/env bash
# Hostile review, round 17: attacks not covered by security.sh and
# security_round16.sh.  Roles as there: crm_owner owns the CRM's tables (not
# a superuser), adm is in gdpr_admin, app in gdpr_app; adm2 is a gdpr_admin
# who may create tables in a schema of his own.  Every check runs to the end
# and prints "ok" or "FAIL: round17.N: ..."; the script fails when one check
# failed (a FAIL is an attack that succeeded).
#
# Themes:
# - 17.1-17.2: code the extension runs as the superuser who owns it still
#   converts values to a CRM column's type: gdpr._check_scope()
#   (10_registry.sql), called by set_retention, remove_retention,
#   set_retention_fallback (_policy_of) and set_subject_profile, runs
#   EXECUTE 'SELECT (<literal>::<column type>)::text' in the SECURITY
#   DEFINER function itself.  A cast to the owner's DOMAIN runs its CHECK
#   (his function); a cast of his enum to text runs his CREATE CAST.  Both run
#   with the superuser's rights.
# - 17.3: functions reading CRM rows as the table's owner bypass the
#   row-level security policies the owner set for the caller.
# - 17.4-17.5: reads of personal data that leave no access log record.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round17 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

hostile_suite

# ---------------------------------------------------------------------------
# Roles and a CRM owned by crm_owner, registered by the superuser (the DBA).
q -d postgres -c 'SET client_min_messages = warning' -c "
  CREATE ROLE crm_owner LOGIN; CREATE ROLE plain LOGIN;" >/dev/null
db=sec
createdb $db
q -d $db -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
  -c "GRANT CREATE ON DATABASE $db TO crm_owner" \
  -c "CREATE ROLE adm LOGIN IN ROLE gdpr_admin; CREATE ROLE app LOGIN IN ROLE gdpr_app;
      CREATE ROLE adm2 LOGIN IN ROLE gdpr_admin; CREATE SCHEMA adm2_own AUTHORIZATION adm2;" >/dev/null
q -U crm_owner -d $db -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
  -c 'SELECT crm.generate(200)' >/dev/null
q -d $db -c 'SET client_min_messages = warning' -f test/fixtures/registry.sql >/dev/null
# The retention policies of the fixture would let the purge remove rows under the checks.
q -d $db -c 'SET client_min_messages = warning' -c "DELETE FROM gdpr.retention_policies" >/dev/null
# crm.escalate(hook): records who ran it and, when that is not crm_owner,
# makes crm_owner a superuser (as in security.sh).
q -U crm_owner -d $db -c "
  CREATE TABLE crm.who_ran (hook text, usr name, PRIMARY KEY (hook, usr));
  GRANT INSERT ON crm.who_ran TO PUBLIC;
  CREATE FUNCTION crm.escalate(hook text) RETURNS boolean LANGUAGE plpgsql AS \$\$
  BEGIN
    INSERT INTO crm.who_ran VALUES (hook, current_user) ON CONFLICT DO NOTHING;
    IF current_user NOT IN ('crm_owner', 'adm2') THEN
      BEGIN
        EXECUTE 'ALTER ROLE ' || coalesce(nullif(current_setting('hostile.me', true), ''), 'crm_owner') || ' SUPERUSER';
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
    END IF;
    RETURN true;
  END \$\$;
  GRANT USAGE ON SCHEMA crm TO PUBLIC;
  GRANT EXECUTE ON FUNCTION crm.escalate(text) TO PUBLIC;" >/dev/null
q -U crm_owner -d $db -c "GRANT USAGE ON SCHEMA crm TO adm, app" \
  -c "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO adm" \
  -c "GRANT SELECT ON crm.contacts TO app" >/dev/null
reset_roles() { q -d $db -c "ALTER ROLE crm_owner NOSUPERUSER" -c "ALTER ROLE adm2 NOSUPERUSER" -c "TRUNCATE crm.who_ran" >/dev/null; }
# escalated FINDING WHAT HOOK OUT [ROLE]: the attacker's function HOOK must
# have run (else the check proves nothing) and only as the attacker ROLE
# (crm_owner unless said), and ROLE must still be no superuser.
escalated() {
  local finding=$1 what=$2 hook=$3 out=${4:-} who=${5:-crm_owner} super ran others
  super=$(q -d $db -c "SELECT rolsuper FROM pg_roles WHERE rolname = '$who'")
  ran=$(q -d $db -c "SELECT count(*) FROM crm.who_ran WHERE hook = '$hook'")
  others=$(q -d $db -c "SELECT coalesce(string_agg(DISTINCT usr, ','), '') FROM crm.who_ran
                         WHERE hook = '$hook' AND usr <> '$who'")
  if [ "$super" = t ]; then
    bad "$finding" "$what: $who became SUPERUSER (his function ran as: $others)"
  elif [ -n "$others" ]; then
    bad "$finding" "$what: $who's function ran as $others"
  elif [ "$ran" = 0 ]; then
    ok "$finding: $what: $who's function was not called"
  else
    ok "$finding: $what: $who's function runs as $who only"
  fi
  reset_roles
}

# ---------------------------------------------------------------------------
# Round17.1: crm_owner plants a domain on a column of his table whose CHECK
# calls his function; the gdpr_admin (not a superuser, no special trust in
# crm_owner) sets an ordinary retention policy scoped by that column.
# gdpr._check_scope() checks the scope's values with
# EXECUTE 'SELECT (''gold''::crm.tier_d)::text' inside SECURITY DEFINER
# set_retention(): the domain's CHECK runs as the extension's owner.
owner $db "
  CREATE DOMAIN crm.tier_d AS text CHECK (crm.escalate('scope domain') AND VALUE <> '');
  ALTER TABLE crm.contacts ADD COLUMN tier crm.tier_d;" >/dev/null
reset_roles
out=$(as adm $db "SELECT gdpr.set_retention('crm.contacts', NULL, '5 years', 'last_contact_at', 'delete', 'tier', '{gold}')")
escalated "round17.1" "adm's set_retention scoped by a column of crm_owner's domain (10_registry.sql _check_scope, literal::domain)" \
  "scope domain" "$out"
# The same path through remove_retention (_policy_of -> _check_scope).
out=$(as adm $db "SELECT gdpr.remove_retention('crm.contacts', NULL, 'tier', '{gold}')")
escalated "round17.1" "adm's remove_retention of that policy (60_retention.sql _policy_of -> _check_scope)" "scope domain" "$out"

# Round17.1b: his enum and a cast of it to text in PL/pgSQL (CREATE CAST needs
# only the ownership of the enum): "(literal::crm.tier_e)::text" in
# _check_scope calls it, here through set_subject_profile() called by the DBA.
owner $db "
  CREATE TYPE crm.tier_e AS ENUM ('gold', 'silver');
  CREATE FUNCTION crm.tier_text(t crm.tier_e) RETURNS text LANGUAGE plpgsql AS \$\$
  BEGIN PERFORM crm.escalate('scope enum cast'); RETURN t::name::text; END \$\$;
  CREATE CAST (crm.tier_e AS text) WITH FUNCTION crm.tier_text(crm.tier_e);
  ALTER TABLE crm.contacts ADD COLUMN tier_e crm.tier_e;" >/dev/null
reset_roles
out=$(as postgres $db "SELECT gdpr.set_subject_profile('crm.contacts', NULL, 'tier_e', '{gold}')")
escalated "round17.1" "the DBA's set_subject_profile with customer values of crm_owner's enum (50_consent.sql -> _check_scope, enum::text cast)" \
  "scope enum cast" "$out"
out=$(as adm $db "SELECT gdpr.set_retention('crm.contacts', NULL, '6 years', 'last_contact_at', 'delete', 'tier_e', '{silver}')")
escalated "round17.1" "adm's set_retention scoped by a column of crm_owner's enum with a PL/pgSQL cast to text" "scope enum cast" "$out"
q -d $db -c "SET client_min_messages = warning" -c "DELETE FROM gdpr.retention_policies" \
  -c "UPDATE gdpr.subject_tables SET status_column = NULL, status_customer_values = NULL" >/dev/null

# Round17.2: no victim needed: a gdpr_admin who may create a table (a schema
# of his own) registers it, gives it a column of his domain and sets a scoped
# retention policy: he becomes superuser by himself.
q -U adm2 -d $db -c "SET client_min_messages = warning" -c "
  CREATE DOMAIN adm2_own.d AS text CHECK (crm.escalate('adm2 domain'));
  CREATE TABLE adm2_own.people (id bigint PRIMARY KEY, seen timestamptz, kind adm2_own.d);" \
  -c "SELECT gdpr.register_subject_table('adm2_own.people', 'id')" >/dev/null 2>&1 || true
reset_roles
out=$(as adm2 $db "SET hostile.me = 'adm2'" \
  "SELECT gdpr.set_retention('adm2_own.people', NULL, '1 year', 'seen', 'delete', 'kind', '{x}')")
if ! q -d $db -c "SELECT 1 FROM gdpr.registered_tables WHERE tbl = 'adm2_own.people'::regclass" | grep -q 1; then
  bad "round17.2" "setup: adm2 could not register his own table: the check proves nothing: $(head -c 300 <<<"$out" | tr '\n' ' ')"
else
  escalated "round17.2" "a gdpr_admin's set_retention on his own registered table with a column of his domain" "adm2 domain" "$out" adm2
fi
owner $db "ALTER TABLE crm.contacts DROP COLUMN tier" >/dev/null; owner $db "ALTER TABLE crm.contacts DROP COLUMN tier_e" >/dev/null

# ---------------------------------------------------------------------------
# Round17.3: row-level security.  crm_owner hides contacts 1-10 and their
# orders from adm and app with restrictive policies (the extension already
# has row-level security on).  What the database refuses them, the
# extension's functions give them: they read as the table's owner, who is
# not subject to his own policies, and check only table privileges.
owner $db "
  CREATE POLICY hide_vip ON crm.contacts AS RESTRICTIVE FOR SELECT TO adm, app USING (id > 10);
  CREATE POLICY hide_vip ON crm.orders AS RESTRICTIVE FOR SELECT TO adm, app USING (contact_id > 10);" >/dev/null
vip=$(q -d $db -c "SELECT c.id FROM crm.contacts c WHERE c.id <= 10 AND EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) ORDER BY c.id LIMIT 1")
vip_email=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $vip")
seen=$(as adm $db "SELECT count(*) FROM crm.contacts WHERE id = $vip")
[ "$(head -n 1 <<<"$seen")" = 0 ] || bad "round17.3" "setup: adm sees contact $vip directly: $seen"
out=$(as adm $db "SELECT gdpr.export_subject('$vip', 'crm.contacts')")
if grep -qF "$vip_email" <<<"$out"; then
  bad "round17.3" "adm's export_subject('$vip') returns the row (and orders) of a contact row-level security hides from adm ($vip_email)"
else ok "round17.3: export_subject keeps to what row-level security lets adm read ($(state_of "$out"))"; fi
out=$(as adm $db "SELECT gdpr.report_breach('round17 laptop lost', now() - interval '1 hour')")
breach=$(head -n 1 <<<"$out")
as adm $db "SELECT gdpr.link_breach_subjects($breach, 'crm.contacts')" >/dev/null
out=$(as adm $db "SELECT contact->>'email' FROM gdpr.breach_subjects($breach) WHERE subject_id = '$vip'")
if grep -qF "$vip_email" <<<"$out"; then
  bad "round17.3" "adm's breach_subjects() returns the e-mail of contact $vip, which row-level security hides from adm"
else ok "round17.3: breach_subjects keeps to what row-level security lets adm read ($(state_of "$out"))"; fi
# app: the existence of a hidden contact, by the answer (false) against the
# error an unknown id gets.
hidden=$(as app $db "SELECT gdpr.may_process('$vip', 'newsletter', 'crm.contacts')")
unknown=$(as app $db "SELECT gdpr.may_process('987654', 'newsletter', 'crm.contacts')")
if [ "$(state_of "$hidden")" != "$(state_of "$unknown")" ]; then
  bad "round17.3" "app tells a contact hidden by row-level security ($(state_of "$hidden")) from an unknown one ($(state_of "$unknown")) with may_process()"
else ok "round17.3: may_process answers a hidden contact as an unknown one"; fi
owner $db "DROP POLICY hide_vip ON crm.contacts; DROP POLICY hide_vip ON crm.orders" >/dev/null

# ---------------------------------------------------------------------------
# Round17.4: a read through an error message.  A row that makes the query's
# own condition fail is never passed on by the scan, so the read hook counts
# 0 rows and logs nothing; the error names the values.  app (SELECT only)
# reads the e-mail, phone and birth date of any contact, one a statement.
log_rows() {  # log_rows ROLE TABLE OPERATION SINCE_ID: rows counted by the log
  local n
  for _ in 1 2 3; do as adm $db "SELECT gdpr.flush_access_log()" >/dev/null; sleep 0.5; done
  q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $4
                 AND role_name = '$1' AND tbl = '$2'::regclass AND operation = '$3'"
}
last_id() { q -d $db -c "SELECT coalesce(max(id), 0) FROM gdpr.access_log"; }
since=$(last_id)
leaked=0
ids=$(q -d $db -c "SELECT id FROM crm.contacts WHERE email IS NOT NULL AND phone IS NOT NULL ORDER BY id LIMIT 3")
for id in $ids; do
  email=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $id")
  out=$(as app $db "SELECT 1 FROM crm.contacts WHERE id = $id AND (email || ' ' || phone || ' ' || coalesce(birth_date::text, ''))::int > 0")
  grep -qF "$email" <<<"$out" && leaked=$((leaked + 1))
done
n=$(log_rows app crm.contacts SELECT "$since")
# The row is never passed on (the error comes before its quals pass): each
# failed read is logged as such, and counts and names the row it failed on
# (read_failing.c), so that it is in that contact's access history.
named=$(q -d $db -c "SELECT count(DISTINCT k) FROM gdpr.access_log l, unnest(l.subject_keys) k
                      WHERE l.id > $since AND l.role_name = 'app' AND l.tbl = 'crm.contacts'::regclass
                        AND l.operation = 'SELECT' AND l.detail ->> 'failed' = 'true'
                        AND k IN (SELECT gdpr._log_subject_key(i) FROM unnest(string_to_array('$(echo $ids)', ' ')) i)")
if [ "$leaked" = 0 ]; then ok "round17.4: an error message gives app no value of crm.contacts"
elif [ "$n" -ge "$leaked" ] && [ "$named" -ge "$leaked" ]; then ok "round17.4: $leaked reads through an error message: logged, $named contacts named"
else bad "round17.4" "app read $leaked contacts' e-mail, phone and birth date through error messages (invalid input syntax for type integer); the log has $n rows naming $named of them"; fi
# The same through the condition of an UPDATE or DELETE (adm), which reads
# without RETURNING and writes nothing.
since=$(last_id)
id=$(q -d $db -c "SELECT id FROM crm.contacts WHERE email IS NOT NULL AND phone IS NOT NULL ORDER BY id DESC LIMIT 1")
email=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $id")
out=$(as adm $db "DELETE FROM crm.contacts WHERE id = $id AND (email || ' ' || phone)::int > 0")
n=$(log_rows adm crm.contacts SELECT "$since")
n2=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'adm' AND tbl = 'crm.contacts'::regclass")
named=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'adm' AND tbl = 'crm.contacts'::regclass
                      AND detail ->> 'failed' = 'true' AND gdpr._log_subject_key('$id') = ANY (subject_keys)")
if ! grep -qF "$email" <<<"$out"; then ok "round17.4: an error in a DELETE's condition gives adm no value"
elif [ "$n2" -gt 0 ] && [ "$named" -gt 0 ]; then ok "round17.4: a read through a DELETE's error: logged, contact $id named"
else bad "round17.4" "adm read contact $id's e-mail and phone through the error of a DELETE's condition; the log does not name him"; fi

# Round17.5: bulk reads by the extension's own functions that log no event
# of their own (export_subject logs EXPORT; these nothing): the contact
# columns of every subject a breach is linked to (adm), in one call.
since=$(last_id)
as adm $db "SELECT gdpr.link_breach_subjects($breach, 'crm.contacts')" >/dev/null
out=$(as adm $db "SELECT count(contact->>'email') FROM gdpr.breach_subjects($breach)")
got=$(head -n 1 <<<"$out")
for _ in 1 2 3; do as adm $db "SELECT gdpr.flush_access_log()" >/dev/null; sleep 0.5; done
n=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'adm' AND tbl = 'crm.contacts'::regclass")
if ! [[ "$got" =~ ^[0-9]+$ ]] || [ "$got" = 0 ]; then ok "round17.5: breach_subjects gives adm no e-mail ($got)"
elif [ "$n" -gt 0 ]; then ok "round17.5: breach_subjects' read of $got e-mails is logged ($n rows)"
else bad "round17.5" "adm read $got contacts' e-mails, phones and addresses with gdpr.breach_subjects(); no access log record of it"; fi

# ---------------------------------------------------------------------------
# What resisted.
# The planner's statistics: pg_stats hides tables with row-level security
# (on for every registered table), so app cannot read the e-mails ANALYZE
# keeps in histogram_bounds without a logged read.
su $db "ANALYZE crm.contacts" >/dev/null
out=$(as app $db "SELECT count(*) FROM pg_stats WHERE schemaname = 'crm' AND tablename = 'contacts' AND attname = 'email'")
[ "$(head -n 1 <<<"$out")" = 0 ] && ok "round17.6: pg_stats shows app nothing of a registered table" \
  || bad "round17.6" "app reads the statistics of crm.contacts.email in pg_stats (values of the column, not logged)"
# A failing row's values are not in the error of a CHECK violation (row-level
# security on: PostgreSQL leaves the DETAIL out).
out=$(as adm $db "UPDATE crm.contacts SET segment = 'x' WHERE id = (SELECT min(id) FROM crm.contacts)")
grep -q "Failing row contains" <<<"$out" && bad "round17.6" "a CHECK violation shows adm the failing row: $(head -c 200 <<<"$out")" \
  || ok "round17.6: a CHECK violation's error does not show the row"
# Writes hidden by settings: only a superuser may set session_replication_role.
for who in crm_owner adm app; do
  out=$(as $who $db "SET session_replication_role = replica")
  [ "$(state_of "$out")" = 42501 ] && ok "round17.6: $who sets session_replication_role: refused" \
    || bad "round17.6" "$who sets session_replication_role = replica: $(state_of "$out")"
done
# A table attached as a partition of a registered partitioned table gets the
# triggers: crm_owner's direct write into it is logged.
owner $db "
  CREATE TABLE crm.events_p (id bigint PRIMARY KEY, contact_id bigint NOT NULL REFERENCES crm.contacts, what text) PARTITION BY RANGE (id);
  CREATE TABLE crm.events_p1 PARTITION OF crm.events_p FOR VALUES FROM (0) TO (1000);" >/dev/null
su $db "SELECT gdpr.register_table('crm.events_p')" >/dev/null
owner $db "CREATE TABLE crm.events_p2 (id bigint PRIMARY KEY, contact_id bigint NOT NULL REFERENCES crm.contacts, what text);
           ALTER TABLE crm.events_p ATTACH PARTITION crm.events_p2 FOR VALUES FROM (1000) TO (2000);" >/dev/null
since=$(last_id)
cid=$(q -d $db -c "SELECT min(id) FROM crm.contacts")
as crm_owner $db "INSERT INTO crm.events_p2 VALUES (1001, $cid, 'direct')" "INSERT INTO crm.events_p1 VALUES (1, $cid, 'direct')" >/dev/null
n=$(log_rows crm_owner crm.events_p2 INSERT "$since")
n1=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND tbl = 'crm.events_p1'::regclass AND operation = 'INSERT'")
[ "$n" -ge 1 ] && [ "$n1" -ge 1 ] && ok "round17.6: direct INSERTs into a partition (created, attached) are logged" \
  || bad "round17.6" "direct INSERTs into partitions: attached $n, created $n1 rows in the log"

hostile_verdict security_round17
