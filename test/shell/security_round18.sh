#!/usr/bin/env bash
# Hostile review, round 18: attacks not covered by security.sh,
# security_round16.sh and security_round17.sh, aimed at the code of round 17
# (gdpr._rls_filters, gdpr._text / gdpr._row_jsonb, failed writes logged).
# Roles as there: crm_owner owns the CRM's tables (not a superuser), adm is
# in gdpr_admin, app in gdpr_app.  Every check runs to the end and prints
# "ok" or "FAIL: round18.N: ..."; the script fails when one check failed (a
# FAIL is an attack that succeeded).
#
# Themes:
# - 18.1-18.3: gdpr._rls_filters() (05_security.sql), which decides whether
#   row-level security hides rows from the caller (the extension then reads
#   them as the table's owner), answers otherwise than the server.
# - 18.4: gdpr._text / gdpr._row_jsonb (cast_free.c) with odd types.
# - 18.5: failed writes logged (read_hook.c RunningWrite).
# - 18.6: other databases of the server, pg_dump, large objects, NOTIFY.
#
# A private cluster.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
own_cluster round18 "crm_gdpr.database = 'sec'" "crm_gdpr.log_flush_interval = '200ms'"

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
      CREATE ROLE aud LOGIN IN ROLE gdpr_auditor;" >/dev/null
q -U crm_owner -d $db -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
  -c 'SELECT crm.generate(200)' >/dev/null
q -d $db -c 'SET client_min_messages = warning' -f test/fixtures/registry.sql >/dev/null
# The retention policies of the fixture would let the purge remove rows under the checks.
q -d $db -c 'SET client_min_messages = warning' -c "DELETE FROM gdpr.retention_policies" >/dev/null
q -U crm_owner -d $db -c "GRANT USAGE ON SCHEMA crm TO adm, app, plain" \
  -c "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO adm" \
  -c "GRANT SELECT ON crm.contacts TO app" >/dev/null

log_flush() { for _ in 1 2 3; do as adm $db "SELECT gdpr.flush_access_log()" >/dev/null; sleep 0.5; done; }
last_id() { q -d $db -c "SELECT coalesce(max(id), 0) FROM gdpr.access_log"; }
vip=$(q -d $db -c "SELECT c.id FROM crm.contacts c WHERE c.id <= 10 AND c.email IS NOT NULL
                    AND EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) ORDER BY c.id LIMIT 1")
vip_email=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $vip")

# ---------------------------------------------------------------------------
# Round18.1: row_security = off, set by the caller.  crm_owner hides contacts
# 1-10 from adm (a restrictive policy, as in round17.3).  With row_security
# off the server refuses adm any read of crm.contacts (42501: the query would
# be affected by row-level security); gdpr._rls_filters() reads the caller's
# own row_security and answers "nothing hidden": export_subject reads the
# rows as their owner (not subject to his policies, so row_security = off
# changes nothing for him) and hands them to adm.
owner $db "CREATE POLICY hide_vip ON crm.contacts AS RESTRICTIVE FOR SELECT TO adm, app USING (id > 10);
           CREATE POLICY hide_vip ON crm.orders AS RESTRICTIVE FOR SELECT TO adm, app USING (contact_id > 10);" >/dev/null
direct=$(as adm $db "SET row_security = off" "SELECT email FROM crm.contacts WHERE id = $vip")
grep -qF "$vip_email" <<<"$direct" && bad "round18.1" "setup: adm reads contact $vip directly with row_security off"
out=$(as adm $db "SET row_security = off" "SELECT gdpr.export_subject('$vip', 'crm.contacts')")
if grep -qF "$vip_email" <<<"$out"; then
  bad "round18.1" "adm: SET row_security = off; export_subject('$vip') returns a contact row-level security hides from adm ($vip_email); directly: $(state_of "$direct")"
else ok "round18.1: export_subject with row_security = off keeps to what adm may read ($(state_of "$out"))"; fi
out=$(as adm $db "SELECT gdpr.report_breach('round18 laptop', now() - interval '1 hour')")
breach=$(head -n 1 <<<"$out")
su $db "SELECT gdpr.link_breach_subjects($breach, 'crm.contacts')" >/dev/null
out=$(as adm $db "SET row_security = off" "SELECT contact->>'email' FROM gdpr.breach_subjects($breach) WHERE subject_id = '$vip'")
if grep -qF "$vip_email" <<<"$out"; then
  bad "round18.1" "adm: SET row_security = off; breach_subjects() returns the e-mail of hidden contact $vip"
else ok "round18.1: breach_subjects with row_security = off keeps to what adm may read ($(state_of "$out"))"; fi
hidden=$(as app $db "SET row_security = off" "SELECT gdpr.may_process('$vip', 'newsletter', 'crm.contacts')")
unknown=$(as app $db "SET row_security = off" "SELECT gdpr.may_process('987654', 'newsletter', 'crm.contacts')")
if [ "$(state_of "$hidden")" != "$(state_of "$unknown")" ]; then
  bad "round18.1" "app (row_security off) tells a hidden contact ($(state_of "$hidden")) from an unknown one ($(state_of "$unknown")) with may_process()"
else ok "round18.1: may_process with row_security = off answers a hidden contact as an unknown one"; fi
# Without row_security = off, still refused (round17.3 holds).
out=$(as adm $db "SELECT gdpr.export_subject('$vip', 'crm.contacts')")
grep -qF "$vip_email" <<<"$out" && bad "round18.1" "adm's export_subject returns hidden contact $vip (round17.3 again)" \
  || ok "round18.1: export_subject with row_security on: refused ($(state_of "$out"))"
owner $db "DROP POLICY hide_vip ON crm.contacts; DROP POLICY hide_vip ON crm.orders" >/dev/null

# ---------------------------------------------------------------------------
# Round18.2: a policy granted through a NOINHERIT role.  The server applies a
# policy TO r to a role that has r's privileges (has_privs_of_role);
# _rls_filters asks pg_has_role(.., 'MEMBER'), which follows NOINHERIT
# memberships too.  crm_owner's table crm.prospects has row-level security
# of its own (before registration: no gdpr_restriction_open): every row for
# role seeall, a user's own rows for everyone.  adm is a member of seeall
# only through mid, NOINHERIT: the server shows adm his own rows only, and
# SET ROLE seeall / mid gives him no SELECT at all.
q -d postgres -c "SET client_min_messages = warning" -c "CREATE ROLE seeall NOLOGIN; CREATE ROLE mid NOLOGIN NOINHERIT;
  GRANT seeall TO mid; GRANT mid TO adm" >/dev/null
owner $db "
  CREATE TABLE crm.prospects (id bigint PRIMARY KEY, email text, rep name);
  INSERT INTO crm.prospects SELECT i, 'prospect' || i || '@example.org', CASE WHEN i % 2 = 0 THEN 'adm' ELSE 'bob' END
    FROM generate_series(1, 20) i;
  ALTER TABLE crm.prospects ENABLE ROW LEVEL SECURITY;
  CREATE POLICY all_rows ON crm.prospects FOR SELECT TO seeall USING (true);
  CREATE POLICY own_rows ON crm.prospects FOR SELECT USING (rep = current_user);
  GRANT SELECT, UPDATE, DELETE ON crm.prospects TO adm;" >/dev/null
su $db "SELECT gdpr.register_subject_table('crm.prospects', 'id');
        SELECT gdpr.classify('crm.prospects', 'email', 'contact', 'prospecting', 'legitimate_interest', 'x')" >/dev/null
direct=$(as adm $db "SELECT count(*) FROM crm.prospects WHERE id = 1")
[ "$(head -n 1 <<<"$direct")" = 0 ] || bad "round18.2" "setup: adm sees prospect 1 directly: $direct"
out=$(as adm $db "SELECT gdpr.export_subject('1', 'crm.prospects')")
if grep -qF "prospect1@example.org" <<<"$out"; then
  bad "round18.2" "adm's export_subject('1', 'crm.prospects') returns a row the server hides from him (policy TO seeall, reached only through NOINHERIT mid)"
else ok "round18.2: a policy reached through a NOINHERIT role does not open the rows to export_subject ($(state_of "$out"))"; fi

# Round18.3: a permissive policy per command.  crm.leads (row-level security
# of its own) lets everyone read every row (FOR SELECT USING (true)) but
# update or delete only the rows of his own accounts (rep = current_user).
# _rls_filters(role, tbl, 'SELECT, DELETE') asks for a permissive USING
# (true) policy of ANY of the commands: the SELECT one passes it for DELETE
# too, and erase_subject deletes, as the table's owner, rows adm may not
# delete himself.
owner $db "
  CREATE TABLE crm.leads (id bigint PRIMARY KEY, email text, rep name);
  INSERT INTO crm.leads SELECT i, 'lead' || i || '@example.org', CASE WHEN i % 2 = 0 THEN 'adm' ELSE 'bob' END
    FROM generate_series(1, 20) i;
  ALTER TABLE crm.leads ENABLE ROW LEVEL SECURITY;
  CREATE POLICY read_all ON crm.leads FOR SELECT USING (true);
  CREATE POLICY del_own ON crm.leads FOR DELETE USING (rep = current_user);
  CREATE POLICY upd_own ON crm.leads FOR UPDATE USING (rep = current_user);
  GRANT SELECT, UPDATE, DELETE ON crm.leads TO adm;" >/dev/null
su $db "SELECT gdpr.register_subject_table('crm.leads', 'id');
        SELECT gdpr.classify('crm.leads', 'email', 'contact', 'prospecting', 'legitimate_interest', 'x')" >/dev/null
direct=$(as adm $db "DELETE FROM crm.leads WHERE id = 1")
n=$(q -d $db -c "SELECT count(*) FROM crm.leads WHERE id = 1")
[ "$n" = 1 ] || bad "round18.3" "setup: adm deletes lead 1 (bob's) directly: $direct"
out=$(as adm $db "SELECT gdpr.erase_subject('1', NULL, 'crm.leads')")
n=$(q -d $db -c "SELECT count(*) FROM crm.leads WHERE id = 1")
if [ "$n" = 0 ]; then
  bad "round18.3" "adm's erase_subject('1', NULL, 'crm.leads') deleted a row adm's DELETE policy (rep = current_user) keeps from him ($(state_of "$out"))"
else ok "round18.3: erase_subject keeps to the rows adm may delete ($(state_of "$out"))"; fi
out=$(as adm $db "SELECT gdpr.restrict_subject('3', 'x', 'crm.leads')")
n=$(q -d $db -c "SELECT count(*) FROM gdpr.restrictions WHERE subject_table = 'crm.leads'::regclass AND subject_id = '3' AND lifted_at IS NULL")
if [ "$n" != 0 ]; then
  bad "round18.3" "adm's restrict_subject('3', 'crm.leads') restricted a lead whose rows adm may not UPDATE (policy upd_own) ($(state_of "$out"))"
else ok "round18.3: restrict_subject needs the UPDATE policy too ($(state_of "$out"))"; fi
# The other way round: a restrictive policy TO seeall (reached through
# NOINHERIT mid) does not apply to adm, who reads every order; _rls_filters
# counts it and refuses adm his export.
owner $db "CREATE POLICY r_mid ON crm.orders AS RESTRICTIVE FOR SELECT TO seeall USING (false)" >/dev/null
c=$(q -d $db -c "SELECT min(contact_id) FROM crm.orders")
all=$(q -d $db -c "SELECT count(*) FROM crm.orders")
direct=$(as adm $db "SELECT count(*) FROM crm.orders")
out=$(as adm $db "SELECT gdpr.export_subject('$c', 'crm.contacts') IS NOT NULL")
if [ "$(head -n 1 <<<"$direct")" = "$all" ] && [ "$(state_of "$out")" = 42501 ]; then
  bad "round18.2" "adm reads all $all orders himself, yet export_subject('$c') is refused: a restrictive policy TO seeall (NOINHERIT) counted for adm"
else ok "round18.2: a policy that does not apply to adm does not refuse him ($(state_of "$out"))"; fi
owner $db "DROP POLICY r_mid ON crm.orders" >/dev/null

# ---------------------------------------------------------------------------
# Round18.4: the suppression check (suppression_gate.c) runs
# "SELECT gdpr._check_suppression($1, gdpr._row_jsonb(n), ...) FROM gdpr_new n":
# an unqualified n is a COLUMN n when the table has one.  crm_owner adds a
# column n of a composite type: the check gets that column (NULL) instead of
# the row, and the e-mail of an erased person goes back into the CRM.  (A
# column n of any other type makes every INSERT fail: function
# gdpr._row_jsonb(text) does not exist; a column o every UPDATE.)
sid=$(q -d $db -c "SELECT c.id FROM crm.contacts c WHERE c.id > 150 AND c.email IS NOT NULL ORDER BY c.id LIMIT 1")
em=$(q -d $db -c "SELECT email FROM crm.contacts WHERE id = $sid")
as adm $db "SELECT gdpr.erase_subject('$sid', NULL, 'crm.contacts')->>'status'" >/dev/null
out=$(as crm_owner $db "INSERT INTO crm.contacts (first_name, email) VALUES ('Eve', '$em')")
[ "$(state_of "$out")" = 23514 ] || bad "round18.4" "setup: the erased e-mail is not refused without the column: $(state_of "$out")"
owner $db "CREATE TYPE crm.pair AS (a int, b text); ALTER TABLE crm.contacts ADD COLUMN n crm.pair" >/dev/null
out=$(as crm_owner $db "INSERT INTO crm.contacts (first_name, email) VALUES ('Eve', '$em')")
n=$(q -d $db -c "SELECT count(*) FROM crm.contacts WHERE email = '$em'")
if [ "$n" != 0 ]; then
  bad "round18.4" "crm_owner re-inserted erased $em past the suppression list by adding a column named n (composite) to crm.contacts"
else ok "round18.4: a column named n does not blind the suppression check ($(state_of "$out"))"; fi
owner $db "DELETE FROM crm.contacts WHERE email = '$em'; ALTER TABLE crm.contacts DROP COLUMN n" >/dev/null

# gdpr._row_jsonb keeps a row type's descriptor in fn_extra, keyed by type
# and typmod only; the validation trigger's expression lives as long as the
# transaction: an ALTER COLUMN ... TYPE between two INSERTs.  This server
# refuses the stale descriptor (an error); it must not crash.
su $db "SELECT gdpr.set_validation('crm.leads', 'email', 'email', 'flag')" >/dev/null
owner $db "ALTER TABLE crm.leads ADD COLUMN nn text" >/dev/null
out=$(as crm_owner $db "BEGIN" "INSERT INTO crm.leads VALUES (100, 'a@b.org', 'adm', 'x')" \
      "ALTER TABLE crm.leads ALTER COLUMN nn TYPE int USING 2147483632" \
      "INSERT INTO crm.leads VALUES (101, 'not an email', 'adm', 2147483632)" "COMMIT")
up=$(q -d $db -c "SELECT 1")
[ "$up" = 1 ] && ok "round18.4: a stale row type in _row_jsonb's cache: $(grep -m1 -o 'ERROR: .*' <<<"$out" | head -c 80), no crash" \
  || bad "round18.4" "the server went down after ALTER COLUMN TYPE between two validated INSERTs"
# Wide rows (150 columns, one dropped), TOASTed values, anonymous records: as to_jsonb.
got=$(su $db "CREATE TABLE public.wide AS SELECT $(seq -s, -f 'i AS c%g' 1 150), repeat(md5(i::text), 5000) AS big
                FROM generate_series(1, 3) i;
              ALTER TABLE public.wide DROP COLUMN c7;
              SELECT bool_and(gdpr._row_jsonb(w) = to_jsonb(w)) FROM public.wide w
               WHERE gdpr._row_jsonb(ROW(1, 'a', NULL::int, ARRAY[ROW(2, 'b')])) = to_jsonb(ROW(1, 'a', NULL::int, ARRAY[ROW(2, 'b')]))" | tail -n 1)
[ "$got" = t ] && ok "round18.4: _row_jsonb = to_jsonb for 150 columns, a dropped one, TOASTed values, anonymous records" \
  || bad "round18.4" "_row_jsonb differs from to_jsonb on wide/TOASTed/anonymous rows: $got"

# ---------------------------------------------------------------------------
# Round18.5: what the failed-write logging must not lose.  Rows an UPDATE
# ... RETURNING hands over in a subtransaction that is then rolled back (a
# PL/pgSQL block that catches the error it raised with them, a ROLLBACK TO
# SAVEPOINT): logged.  And a role without the privilege gets no record
# written in its name (the executor refuses before the hook notes the write).
since=$(last_id)
as adm $db 'DO $$ DECLARE v text; BEGIN BEGIN UPDATE crm.contacts SET phone = phone WHERE id = 40 RETURNING email INTO v;
            RAISE EXCEPTION $x$got %$x$, v; EXCEPTION WHEN OTHERS THEN RAISE NOTICE $x$%$x$, SQLERRM; END; END $$' >/dev/null
as adm $db "BEGIN" "SAVEPOINT a" "UPDATE crm.contacts SET phone = phone WHERE id BETWEEN 41 AND 42 RETURNING email" "ROLLBACK TO a" "COMMIT" >/dev/null
for _ in 1 2 3 4 5; do as plain $db "UPDATE crm.contacts SET phone = phone WHERE id = 43" >/dev/null; done
log_flush
n=$(q -d $db -c "SELECT coalesce(sum(row_count), 0) FROM gdpr.access_log WHERE id > $since AND role_name = 'adm' AND tbl = 'crm.contacts'::regclass")
p=$(q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $since AND role_name = 'plain'")
[ "$n" -ge 3 ] && ok "round18.5: rows read by UPDATE ... RETURNING in rolled-back subtransactions are logged ($n)" \
  || bad "round18.5" "adm read 3 e-mails with UPDATE ... RETURNING in rolled-back subtransactions; the log counts $n"
[ "$p" = 0 ] && ok "round18.5: refused UPDATEs by a role without the privilege write no record" \
  || bad "round18.5" "plain, without UPDATE, wrote $p records into the access log with refused UPDATEs"

# A whole row passed as a bare alias is a column of that name when the table
# has one: the export's to_jsonb(c) gave a column named c instead of the row.
owner $db "CREATE TABLE crm.people_c (id int PRIMARY KEY, c text, n text, email text);
           INSERT INTO crm.people_c VALUES (1, 'see', 'en', 'c1@example.org')" >/dev/null
su $db "SELECT gdpr.register_subject_table('crm.people_c', 'id')" >/dev/null
got=$(q -d $db -c "SELECT gdpr.export_subject('1', 'crm.people_c') #> '{data,crm.people_c,0}' ?& ARRAY['id', 'c', 'n', 'email']")
[ "$got" = t ] && ok "whole rows: the export of a table with columns named c and n gives the row" \
  || bad "whole rows" "the export of a table with a column named c gives: $(q -d $db -c "SELECT gdpr.export_subject('1', 'crm.people_c') #> '{data,crm.people_c}'")"

hostile_verdict security_round18
