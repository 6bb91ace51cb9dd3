#!/usr/bin/env bash
# Restoring a backup never resurrects an erased person: the ledger exported
# from the live database is imported into the restored one and replayed.
source "$(dirname "$0")/lib.sh"
fresh_db replay_live 300
q -d replay_live -f test/fixtures/registry.sql >/dev/null
q -d replay_live -c "CREATE TABLE crm.vault (id int PRIMARY KEY, contact_id bigint REFERENCES crm.contacts ON DELETE CASCADE, secret bytea)" \
  -c "SELECT gdpr.register_table('crm.vault')" \
  -c "INSERT INTO crm.vault VALUES (1, 9, gdpr.encrypt_for_subject('his diary', '9'))" >/dev/null
victims=$(q -d replay_live -c "SELECT string_agg(id::text, ' ') FROM (SELECT id FROM crm.contacts c
            WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) ORDER BY id LIMIT 2) v")
read -r a b <<<"$victims"
email_a=$(q -d replay_live -c "SELECT email FROM crm.contacts WHERE id = $a")

backup=$(mktemp /tmp/crm_gdpr_backup.XXXXXX)
pg_dump -Fc -d replay_live -f "$backup"
# After the backup: two erasures and one shredded key.
q -d replay_live -c "SELECT gdpr.erase_subject('$a')" -c "SELECT gdpr.erase_subject('$b')" \
  -c "SELECT gdpr.shred_subject('9')" >/dev/null
ledger=$(q -d replay_live -c "SELECT gdpr.export_erasure_ledger()")
grep -q "$email_a" <<<"$ledger" && fail "the ledger holds an e-mail in clear"
grep -q "\"$a\"" <<<"$ledger" && fail "the ledger holds a subject id in clear"

dropdb --if-exists replay_restored
createdb replay_restored
pg_restore -d replay_restored --exit-on-error "$backup"
rm -f "$backup"
[ "$(q -d replay_restored -c "SELECT count(*) FROM crm.contacts WHERE id IN ($a, $b)")" = 2 ] \
  || fail "the backup should hold both subjects"
[ "$(q -d replay_restored -c "SELECT gdpr.decrypt(secret) FROM crm.vault")" = "his diary" ] \
  || fail "the backup should still decrypt the vault"
imported=$(q -d replay_restored -c "SELECT gdpr.import_erasure_ledger('$ledger')")
[ "$imported" = 3 ] || fail "imported $imported ledger entries, expected 3"
replayed=$(q -d replay_restored -c "SELECT gdpr.replay_erasures()")
[ "$replayed" = 3 ] || fail "replayed $replayed, expected 3"
[ "$(q -d replay_restored -c "SELECT count(*) FROM crm.contacts WHERE id IN ($a, $b)")" = 0 ] \
  || fail "erased subjects came back with the backup"
[ "$(q -d replay_restored -c "SELECT gdpr.is_suppressed('$email_a')")" = t ] || fail "e-mail not suppressed"
err=$(psql -X -d replay_restored -c '\set VERBOSITY verbose' -c "SELECT gdpr.decrypt(secret) FROM crm.vault" 2>&1) \
  && fail "the shredded key came back with the backup"
grep -q GD001 <<<"$err" || fail "unexpected error: $err"
[ "$(q -d replay_restored -c "SELECT gdpr.replay_erasures()")" = 0 ] || fail "a second replay should do nothing"
[ "$(q -d replay_restored -c "SELECT gdpr.export_subject('$a') ->> 'kind'")" = erased ] \
  || fail "export of an erased subject should say so"
dropdb replay_live; dropdb replay_restored
echo "erasure replay ok"
