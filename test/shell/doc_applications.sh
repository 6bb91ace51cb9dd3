#!/usr/bin/env bash
# doc/applications.md runs: its SQL blocks, top to bottom, as an application
# role (gdpr_app and gdpr_admin) on the sample CRM, where the one call shown
# failing fails with 22023 and nothing else fails; then its Python (psycopg)
# and Node (pg) examples, whose output is checked.
source "$(dirname "$0")/lib.sh"
fresh_db doc_apps 500
q -d doc_apps -f test/fixtures/registry.sql >/dev/null
q -d doc_apps -c "DROP ROLE IF EXISTS doc_app" -c "CREATE ROLE doc_app LOGIN IN ROLE gdpr_app, gdpr_admin" \
  -c "GRANT USAGE ON SCHEMA crm TO doc_app" -c "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO doc_app" >/dev/null

sql=$(awk '/^```sql$/ { on = 1; next } /^```$/ { on = 0 } on' doc/applications.md)
[ -n "$sql" ] || fail "no SQL found in doc/applications.md"
out=$(psql -X -q -v VERBOSITY=verbose -U doc_app -d doc_apps <<<"$sql" 2>&1)
[ "$(grep -c '^ERROR' <<<"$out")" = 1 ] && grep -q '^ERROR:  22023: unknown channel "fax"' <<<"$out" ||
  fail "doc/applications.md: $(grep -A2 '^ERROR' <<<"$out")"
grep -qx ' f' <<<"$out" || fail "may_process after the withdrawal is not false: $out"
grep -q 'erased' <<<"$out" || fail "the erasure did not happen: $out"

check() {  # check NAME JSON
  python3 - "$1" "$2" <<'PY' || fail "$1 example: $2"
import json, sys
out = json.loads(sys.argv[2])
assert out["ledger_id"] > 0 and out["may_process"] is True, out
assert out["refused"]["sqlstate"] == "22023" and 'unknown channel "fax"' in out["refused"]["message"], out
assert "web" in out["refused"]["hint"], out
PY
}
check python "$(PGUSER=doc_app PGDATABASE=doc_apps /usr/bin/python3 doc/examples/consent.py 45 2>&1)"
check node "$(PGUSER=doc_app PGDATABASE=doc_apps node doc/examples/consent.js 46 2>&1)"
[ "$(q -d doc_apps -c "SELECT count(*) FROM gdpr.consent_ledger WHERE subject_id IN ('45', '46') AND purpose = 'newsletter'")" = 2 ] ||
  fail "the examples' consents are not in the ledger"
dropdb doc_apps
q -c "DROP ROLE doc_app" >/dev/null
echo "applications guide ok"
