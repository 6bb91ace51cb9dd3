#!/usr/bin/env bash
# `make demo`: build, install into a private copy of the server, start a
# throwaway cluster with crm_gdpr preloaded, load the sample CRM and walk
# through test/demo/*.sql in order.  KEEP_CLUSTER=1 leaves the cluster
# running and prints how to connect to it.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_demo.XXXXXX)
keep=${KEEP_CLUSTER:-0}
trap '[ "$keep" = 1 ] || { cluster_stop; rm -rf "$top"; }' EXIT

if [ -n "${CRM_GDPR_SERVER_BIN:-}" ]; then
  # A server that already has crm_gdpr installed (test/package.sh: the .deb).
  CLUSTER_BIN=$CRM_GDPR_SERVER_BIN; export CLUSTER_BIN
else
  make -s 2>&1 | grep -Ev '^(gcc|clang)' || true
  cluster_install "$top"
fi
# The purge worker runs in the demo's database, and wakes every 2 seconds.
CLUSTER_WORKER_DB=crm cluster_start "$top" "crm_gdpr.purge_naptime = '2s'"
createdb crm
export PGDATABASE=crm
# Paused while the sample CRM loads; test/demo/40_retention.sql starts it.
psql -X -q -c 'ALTER SYSTEM SET crm_gdpr.enable_worker = off' -c 'SELECT pg_reload_conf()' >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
     -c "SELECT * FROM crm.generate(${CONTACTS:-10000})" >/dev/null
echo "A sample CRM with ${CONTACTS:-10000} contacts is loaded in database crm (schema crm)."
for f in test/demo/*.sql; do
  psql -X -v ON_ERROR_STOP=1 -P pager=off -f "$f"
done
if [ "$keep" = 1 ]; then
  echo
  echo "The cluster keeps running: psql -h $PGHOST -U postgres crm"
  echo "Stop it with: $CLUSTER_BIN/pg_ctl -D $CLUSTER_DATA stop"
fi
