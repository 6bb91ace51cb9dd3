#!/usr/bin/env bash
# `make installcheck`'s pgTAP part: the files of test/pgtap against the
# running server (PGHOST, PGPORT, PGUSER as for pg_regress), in a database of
# their own, created with the fixtures as `make test` does and dropped after.
# Needs pg_prove and the pgtap extension; the server must preload crm_gdpr
# with a key file (doc/install.md, "Testing an installed build").
set -uo pipefail
cd "$(dirname "$0")/.."
db=${PGTAP_DATABASE:-crm_gdpr_installcheck_pgtap}
command -v pg_prove >/dev/null || { echo "pg_prove not found: install pgTAP's client (libtap-parser-sourcehandler-pgtap-perl)" >&2; exit 1; }
echo "+++ pgTAP install-check (test/pgtap, database $db) +++"
dropdb --if-exists "$db" 2>/dev/null
createdb "$db" || exit 1
psql -q -X -d "$db" -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION pgtap' \
     -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql -c 'SELECT crm.generate(2000)' >/dev/null || exit 1
pg_prove -d "$db" test/pgtap/*.sql; rc=$?
[ "$rc" -eq 0 ] && dropdb "$db"
exit $rc
