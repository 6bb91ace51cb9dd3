# Shared by test/shell/*.sh: they run against the cluster test/run.sh started
# (PGHOST, PGPORT, PGUSER in the environment) and fail with a message.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
# wait_for SECONDS SQL: until SQL, in database crm (or $WAIT_DB), returns t.
wait_for() {
  for _ in $(seq 1 $(($1 * 5))); do [ "$(q -d "${WAIT_DB:-crm}" -c "$2" 2>/dev/null)" = t ] && return 0; sleep 0.2; done
  return 1
}
# A fresh database with the extension and the sample CRM of N contacts.
fresh_db() {
  local db=$1 n=${2:-200}
  dropdb --if-exists "$db"
  createdb "$db"
  q -d "$db" -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql -c "SELECT crm.generate($n)" >/dev/null
}
# own_cluster NAME SETTING...: the test's own cluster, in a fresh directory
# ($top), with these settings; stopped and removed when the test exits
# (kept with KEEP=1).  The caller has sourced test/cluster.sh.
own_cluster() {
  top=$(mktemp -d "/tmp/crm_gdpr_$1.XXXXXX"); shift
  CLUSTER_BIN=$TEST_TOP/install$(${PG_CONFIG:-pg_config} --bindir)
  trap 'cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"' EXIT
  cluster_start "$top" "$@"
}
