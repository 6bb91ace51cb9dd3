#!/usr/bin/env bash
# doc/reference.md documents every public function, view, table, setting and
# role of the extension: anything the extension adds without a line there fails.
source "$(dirname "$0")/lib.sh"
dropdb --if-exists doc_check; createdb doc_check
q -d doc_check -c 'CREATE EXTENSION crm_gdpr'
missing=()
while IFS= read -r name; do
  grep -qF "$name" doc/reference.md || missing+=("$name")
done < <(q -d doc_check <<'SQL'
SELECT 'gdpr.' || proname FROM pg_proc WHERE pronamespace = 'gdpr'::regnamespace AND proname !~ '^_'
UNION SELECT 'gdpr.' || relname FROM pg_class
 WHERE relnamespace = 'gdpr'::regnamespace AND relkind IN ('v', 'r', 'p') AND relname <> 'column_snapshot'
UNION SELECT name FROM pg_settings WHERE name LIKE 'crm_gdpr.%'
UNION SELECT rolname FROM pg_roles WHERE rolname LIKE 'gdpr\_%'
ORDER BY 1;
SQL
)
dropdb doc_check
[ ${#missing[@]} -eq 0 ] || fail "not in doc/reference.md: ${missing[*]}"
echo "reference complete"
