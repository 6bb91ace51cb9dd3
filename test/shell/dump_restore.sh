#!/usr/bin/env bash
# pg_dump of a database with the extension and a filled registry, restored
# into a new database, gives back the same registry, and the registry still
# follows renames there.
source "$(dirname "$0")/lib.sh"
fresh_db dump_src 300
q -d dump_src -f test/fixtures/registry.sql >/dev/null
q -d dump_src >/dev/null <<'SQL'
SELECT gdpr._log_maintain();    -- month partitions, as the log writer makes them
SELECT gdpr.restrict_subject('3', 'accuracy contested');
SELECT gdpr.open_request('4', 'access', now() - interval '2 days');
SELECT gdpr.report_breach('test breach', now() - interval '1 hour', 10);
SELECT gdpr.grant_consent('5', 'newsletter', 'web', '{"ip": "203.0.113.9", "user_agent": "UA", "form": "f1", "notice_version": 1}');
SELECT gdpr.withdraw_consent('6', 'newsletter', 'email', '{}');
SELECT gdpr.place_hold('7', 'litigation');
SELECT gdpr.erase_subject(min(id)::text) FROM crm.contacts c WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) AND id > 10;
SELECT gdpr.purge(true);
CREATE TABLE crm.vault (id int PRIMARY KEY, contact_id bigint REFERENCES crm.contacts, secret bytea);
SELECT gdpr.register_table('crm.vault');
INSERT INTO crm.vault VALUES (1, 8, gdpr.encrypt_for_subject('his diary', '8'));
CREATE ROLE crm_gdpr_dump_app;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_dump_app;
GRANT UPDATE, SELECT ON ALL TABLES IN SCHEMA crm TO crm_gdpr_dump_app;
SELECT email FROM crm.contacts WHERE id = 9;
SELECT gdpr.flush_access_log();
SELECT pg_sleep(1.1);
SELECT gdpr.seal_access_log();
UPDATE crm.contacts SET city = 'Lille' WHERE id = 9;   -- one row left unsealed
SELECT gdpr.flush_access_log();
SQL
# A write still in the journals while the dump runs is not in the dump: the
# journals are not dumped (doc/operations.md, Backups).  (Where a log writer
# runs, crm_gdpr.database, it may move it meanwhile: then nothing to check.)
q -d dump_src -c "SET application_name = 'not_dumped'" -c "UPDATE crm.contacts SET city = 'Lens' WHERE id = 10" >/dev/null
in_journal="SELECT count(*) FROM gdpr.access_log_journal WHERE application_name = 'not_dumped'"
journal_before=$(q -d dump_src -c "$in_journal")

snapshot() {
  q -d "$1" <<'SQL'
SELECT 'pd', * FROM gdpr.personal_data ORDER BY tbl::text, column_name, purpose;
SELECT 'pr', * FROM gdpr.processing_register ORDER BY purpose;
SELECT 'st', * FROM gdpr.subject_tables ORDER BY tbl::text;
SELECT 'rt', * FROM gdpr.registered_tables ORDER BY tbl::text;
SELECT 'pn', * FROM gdpr.purpose_notices ORDER BY purpose, version;
SELECT 'rp', * FROM gdpr.retention_policies ORDER BY id;
SELECT 'rc', * FROM gdpr.recipients ORDER BY id;
SELECT 'rq', id, subject_id, kind, received_at, due_at FROM gdpr.requests ORDER BY id;
SELECT 'rs', id, subject_id, reason, lifted_at FROM gdpr.restrictions ORDER BY id;
SELECT 'br', id, description, detected_at FROM gdpr.breaches ORDER BY id;
SELECT 'tg', tgrelid::regclass, tgname FROM pg_trigger WHERE tgname LIKE 'gdpr%' ORDER BY tgrelid::regclass::text, tgname;
SELECT 'po', p.polrelid::regclass, p.polname, p.polpermissive, pg_get_expr(p.polqual, p.polrelid), c.relrowsecurity
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid ORDER BY p.polrelid::regclass::text, p.polname;
SELECT 'cl', id, subject_id, purpose, event, channel, at, proof, notice_version FROM gdpr.consent_log ORDER BY id;
SELECT 'cs', * FROM gdpr.consent_status ORDER BY subject_id, purpose;
SELECT 'ho', id, subject_id, reason FROM gdpr.holds ORDER BY id;
SELECT 'er', id, subject_ref, report, encode(report_sha256, 'hex') FROM gdpr.erasures ORDER BY id;
SELECT 'su', ref, kind FROM gdpr.suppressions ORDER BY ref;
SELECT 'pr', run_id, status, tbl, rows FROM gdpr.purge_history ORDER BY run_id, policy_id;
SELECT 'vk', gdpr.decrypt(secret) FROM crm.vault;
SELECT 'al', id, at, role_name, operation, table_name, columns, subject_refs, subject_keys, row_count, encode(mac, 'hex')
  FROM gdpr.access_log ORDER BY id;
SELECT 'se', * FROM gdpr.access_log_seals ORDER BY seal_id;
SELECT 'lp', c.relname, c.reloptions, a.attstattarget, (SELECT count(*) FROM gdpr.access_log l WHERE l.tableoid = c.oid)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'subject_keys'
 WHERE i.inhparent = 'gdpr.access_log'::regclass ORDER BY c.relname;
SELECT 'crm', count(*), sum(hashtext(c::text)) FROM crm.contacts c;
SQL
}
before=$(snapshot dump_src)
[ "$(grep -c '^pd' <<<"$before")" -ge 15 ] || fail "registry not filled: $before"

# dump_into SRC DST: pg_dump of SRC restored into a new database DST.
dump_into() {
  local dump
  dump=$(mktemp /tmp/crm_gdpr_dump.XXXXXX)
  pg_dump -Fc -d "$1" -f "$dump"
  dropdb --if-exists "$2"
  createdb "$2"
  pg_restore -d "$2" --exit-on-error "$dump" || fail "pg_restore of $1 into $2 failed"
  rm -f "$dump"
}
dump_into dump_src dump_dst
journal_after=$(q -d dump_src -c "$in_journal")
after=$(snapshot dump_dst)
diff <(echo "$before") <(echo "$after") || fail "registry differs after restore"
[ "$(grep -c '^al' <<<"$before")" -ge 10 ] || fail "the access log was not filled: $(grep '^al' <<<"$before")"
[ "$(grep -c '^se' <<<"$before")" -ge 1 ] || fail "the access log was not sealed"
grep -q "^lp|access_log_$(date -u +%Y_%m)|{toast_tuple_target=8160}|0|[1-9]" <<<"$before" ||
  fail "the log's rows are not in this month's partition: $(grep '^lp' <<<"$before")"
# Same log rows, no more (the restore fired nothing), and still verified.
[ "$(q -d dump_dst -c 'SELECT ok FROM gdpr.verify_access_log()')" = t ] ||
  fail "verify_access_log after restore: $(q -d dump_dst -c 'SELECT * FROM gdpr.verify_access_log()')"
q -d dump_dst -c "SELECT gdpr.flush_access_log()" >/dev/null
if [ "$journal_before$journal_after" = 11 ]; then
  [ "$(q -d dump_dst -c "SELECT count(*) FROM gdpr.access_log_journal WHERE application_name = 'not_dumped'")" = 0 ] &&
    [ "$(q -d dump_dst -c "SELECT count(*) FROM gdpr.access_log WHERE application_name = 'not_dumped'")" = 0 ] ||
    fail "a write waiting in the journal during the dump was dumped"
fi
q -d dump_dst -c "UPDATE crm.contacts SET city = 'Metz' WHERE id = 9" -c "SELECT gdpr.flush_access_log()" >/dev/null
[ "$(q -d dump_dst -c "SELECT count(*) FROM gdpr.access_log WHERE operation = 'UPDATE' AND row_count = 1 AND columns = '{city}'
                       AND application_name IS DISTINCT FROM 'not_dumped'")" = 2 ] ||
  fail "the restored triggers do not log writes"
q -d dump_dst -c "SELECT pg_sleep(1.1)" -c "SELECT gdpr.seal_access_log()" >/dev/null
[ "$(q -d dump_dst -c 'SELECT ok FROM gdpr.verify_access_log()')" = t ] || fail "the restored log cannot be sealed on"

# New rows get new ids, not ones the dump already used.
id=$(q -d dump_dst -c "SELECT gdpr.add_recipient('New recipient', 'DE', 'newsletter')")
[ "$id" -gt "$(q -d dump_src -c 'SELECT max(id) FROM gdpr.recipients')" ] || fail "recipient id $id reused"

# The restored registry still follows the schema.
q -d dump_dst -c 'ALTER TABLE crm.contacts RENAME COLUMN email TO email_address' >/dev/null
n=$(q -d dump_dst -c "SELECT count(*) FROM gdpr.personal_data WHERE column_name = 'email_address'")
[ "$n" -eq 3 ] || fail "rename after restore not followed ($n rows)"
# The restored consent ledger is still append-only.
out=$(psql -X -d dump_dst -c "DELETE FROM gdpr.consent_ledger" 2>&1) && fail "a DELETE on the restored ledger worked"; grep -q "append-only" <<<"$out" || fail "restored ledger is not append-only: $out $(q -d dump_dst -c "SELECT count(*) FROM gdpr.consent_ledger")"
# The restored restriction is still enforced by the restored triggers.
err=$(psql -X -d dump_dst -c 'SET ROLE crm_gdpr_dump_app' -c "UPDATE crm.contacts SET notes = 'x' WHERE id = 3" 2>&1) \
  && fail "restriction not enforced after restore"
grep -q 'processing of subject "3" is restricted' <<<"$err" || fail "unexpected error: $err"
# And his row is hidden from the application's reads by the restored policy; the guard still holds.
[ "$(psql -X -At -d dump_dst -c 'SET ROLE crm_gdpr_dump_app' -c 'SELECT count(*) FROM crm.contacts WHERE id = 3' | tail -1)" = 0 ] ||
  fail "the restricted subject is read after restore"
[ "$(grep -c "^po|.*|gdpr_restriction|f|gdpr.restriction_visible(tableoid, ctid[,)].*|t" <<<"$after")" -ge 5 ] ||
  fail "the restriction's policies were not restored: $(grep '^po' <<<"$after")"
out=$(psql -X -d dump_dst -c 'DROP POLICY gdpr_restriction ON crm.contacts' 2>&1) && fail "the restored policy could be dropped"
grep -q 'cannot be dropped' <<<"$out" || fail "unexpected error: $out"
# Dumped armed (subject 3 restricted), restored armed: the diff above
# compared the policies' expressions.  Lifted, the restored trigger disarms
# them; dumped dormant, they are restored dormant, and still guarded.
q -d dump_dst -c "SELECT gdpr.lift_restriction('3')" >/dev/null
dormant=$(snapshot dump_dst | grep "^po|.*|gdpr_restriction|")
[ "$(grep -c "^po|.*|gdpr_restriction|f|true|t" <<<"$dormant")" = "$(grep -c . <<<"$dormant")" ] ||
  fail "nobody restricted after the restore, yet policies are armed: $dormant"
dump_into dump_dst dump_dst2
[ "$(snapshot dump_dst2 | grep "^po|.*|gdpr_restriction|")" = "$dormant" ] ||
  fail "the dormant policies were not restored dormant: $(snapshot dump_dst2 | grep "^po|.*|gdpr_restriction|")"
out=$(psql -X -d dump_dst2 -c 'ALTER POLICY gdpr_restriction ON crm.contacts USING (true)' 2>&1) &&
  fail "the restored dormant policy could be altered"
q -d dump_dst2 -c "SELECT gdpr.restrict_subject('3', 'again')" >/dev/null
[ "$(psql -X -At -d dump_dst2 -c 'SET ROLE crm_gdpr_dump_app' -c 'SELECT count(*) FROM crm.contacts WHERE id = 3' | tail -1)" = 0 ] ||
  fail "restricted after the restore of the dormant state, yet read"
dropdb dump_src; dropdb dump_dst; dropdb dump_dst2
q -c 'DROP OWNED BY crm_gdpr_dump_app' -c 'DROP ROLE crm_gdpr_dump_app' >/dev/null
echo "dump/restore ok"
