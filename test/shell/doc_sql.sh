#!/usr/bin/env bash
# The SQL of the guides runs, so that they cannot rot: README.md's tour in a
# database that has the sample CRM and not yet the extension; the examples of
# doc/consent.md and doc/access-log.md on the sample CRM with its registry.
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
run doc_sql doc/consent.md doc/access-log.md
dropdb doc_sql
echo "guides' SQL ok"
