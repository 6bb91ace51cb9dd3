#!/usr/bin/env bash
# The SQL of doc/auditors.md runs, as a member of gdpr_auditor, on the sample
# CRM with its registry: the guide cannot rot, and the role can read it all.
source "$(dirname "$0")/lib.sh"
fresh_db doc_auditors 500
q -d doc_auditors -f test/fixtures/registry.sql >/dev/null
q -d doc_auditors -c "SELECT gdpr.erase_subject(min(id)::text) FROM crm.contacts" -c "SELECT * FROM gdpr.purge()" \
  -c "DROP ROLE IF EXISTS doc_auditor" -c "CREATE ROLE doc_auditor IN ROLE gdpr_auditor" >/dev/null
sql=$(awk '/^```sql$/ { on = 1; next } /^```$/ { on = 0 } on' doc/auditors.md)
[ -n "$sql" ] || fail "no SQL found in doc/auditors.md"
out=$( { echo 'SET ROLE doc_auditor;'; echo "$sql"; } | psql -X -q -v ON_ERROR_STOP=1 -d doc_auditors 2>&1) \
  || fail "doc/auditors.md: $(grep -m1 -A2 ERROR <<<"$out")"
q -d doc_auditors -c "DROP ROLE doc_auditor" >/dev/null 2>&1 || true
dropdb doc_auditors
echo "auditors guide ok"
