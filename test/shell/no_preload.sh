#!/usr/bin/env bash
# Without shared_preload_libraries the extension installs and its SQL parts
# work; a feature that needs preloading fails with a clear error and a hint.
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_nopreload.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(${PG_CONFIG:-pg_config} --bindir)
trap 'cluster_stop; rm -rf "$top"' EXIT
cluster_start "$top" "shared_preload_libraries = ''"
q -c 'CREATE EXTENSION crm_gdpr'
[ "$(q -c 'SELECT gdpr.preloaded()')" = f ] || fail "preloaded() should be false"
q -c "SELECT gdpr.define_purpose('billing', 'Billing', 'contract')" >/dev/null
err=$(psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c '\set VERBOSITY verbose' \
        -c "SELECT gdpr._require_preload('the purge worker')" 2>&1) && fail "require_preload did not fail"
grep -q '55000' <<<"$err" || fail "wrong SQLSTATE: $err"
grep -q 'HINT:  Add crm_gdpr to shared_preload_libraries' <<<"$err" || fail "no hint: $err"
echo "no-preload ok"
