#!/usr/bin/env bash
# The SQL of the guides runs, so that they cannot rot: README.md's tour in a
# database that has the sample CRM and not yet the extension; the examples of
# doc/consent.md, doc/access-log.md, doc/crypto.md and doc/retention.md on the
# sample CRM with its registry (in that order: the purge comes last).
# (doc/auditors.md and doc/applications.md have tests of their own.)
source "$(dirname "$0")/lib.sh"
blocks() { awk '/^```sql$/ { on = 1; next } /^```$/ { on = 0 } on' "$@"; }
run() {  # run DB FILE...
  local out
  out=$( { echo 'SET client_min_messages = warning;'; blocks "${@:2}"; } |
         psql -X -q -v ON_ERROR_STOP=1 -d "$1" 2>&1 >/dev/null) || fail "${*:2}: $out"
}
dropdb --if-exists doc_sql; createdb doc_sql
q -d doc_sql -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql -c 'SELECT crm.generate(300)' >/dev/null
[ -n "$(blocks README.md)" ] || fail "no SQL in README.md"
run doc_sql README.md
[ "$(q -d doc_sql -c "SELECT count(*) FROM gdpr.access_history('42')")" -gt 0 ] || fail "README's tour logged nothing"
dropdb doc_sql
fresh_db doc_sql 300
q -d doc_sql -f test/fixtures/registry.sql >/dev/null
run doc_sql doc/consent.md doc/access-log.md doc/crypto.md doc/retention.md
# What retention.md says happened: a purge removed rows, the held customer is still there.
[ "$(q -d doc_sql -c "SELECT count(*) FROM gdpr.purge_history WHERE NOT dry_run AND status = 'done' AND rows > 0")" -gt 0 ] ||
  fail "retention.md: the purge removed nothing"
[ "$(q -d doc_sql -c "SELECT count(*) FROM crm.contacts c JOIN gdpr.holds_in_force h ON h.subject_id = c.id::text")" = 1 ] ||
  fail "retention.md: the held customer was purged"
[ "$(q -d doc_sql -c "SELECT count(*) FROM crm.orders WHERE iban IS NOT NULL AND iban_enc IS NULL")" = 0 ] ||
  fail "crypto.md: IBANs left unencrypted"
dropdb doc_sql
echo "guides' SQL ok"
