#!/usr/bin/env bash
# `make test`: build, install into a private copy of the server, start a
# throwaway cluster with crm_gdpr preloaded, run every suite, and end with one
# line "N passed, N failed" summing them.  Exit status is non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
# PG=17 or PG=18 (make test PG=18): the suite runs on a server of that major,
# built from Debian's source package and cached (test/pg_build.sh); the
# default, 15, is the system's server.
# Where the server cannot be built (postgresql-17's source is not served from
# this archive), the code is compiled against that major's Debian headers
# (test/compile_check.sh) and the suites are counted as skipped, not passed.
if [ -n "${PG:-}" ] && [ "$PG" != 15 ]; then
  if ! PG_CONFIG=$(bash test/pg_build.sh "$PG"); then
    echo "== PostgreSQL $PG: no server could be built; compile check only, the suites do NOT run"
    if bash test/compile_check.sh "$PG"; then echo "1 passed, 0 failed, 1 skipped"; exit 0; fi
    echo "0 passed, 1 failed, 1 skipped"; exit 1
  fi
fi
# An absolute path, as the tests' PATH changes below.
PG_CONFIG=$(command -v "${PG_CONFIG:-pg_config}") || { echo "no pg_config"; echo "0 passed, 1 failed"; exit 1; }
export PG_CONFIG
source test/cluster.sh

top=${CRM_GDPR_TEST_DIR:-$(mktemp -d /tmp/crm_gdpr_test.XXXXXX)}
keep=${KEEP_CLUSTER:-0}
passed=0
failed=0
failures=()

finish() {
  cluster_stop
  [ "$keep" = 1 ] || [ "$failed" -gt 0 ] || rm -rf "$top"
}
trap finish EXIT

record() {  # record SUITE PASSED FAILED
  passed=$((passed + $2)); failed=$((failed + $3))
  [ "$3" -gt 0 ] && failures+=("$1: $3 failed")
  printf '%-10s %4d passed, %d failed\n' "$1:" "$2" "$3"
}

echo "== build against $($PG_CONFIG --version)"
# Every object again, with warnings as errors (see STRICT_CFLAGS in the Makefile).
rm -f crm_gdpr.so src/*.o
make -s WERROR=1 2>&1 | grep -Ev '^(gcc|clang)' || true
[ -f crm_gdpr.so ] || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
echo "== private install and cluster in $top"
cluster_install "$top" || { echo "0 passed, 1 failed"; exit 1; }
# The hostile suites' own trusted extension (test/fixtures/owner_ext): in the
# private copy only, never in a real install.
install -m 0644 test/fixtures/owner_ext/owner_ext* "$top/install$($PG_CONFIG --sharedir)/extension/" \
  || { echo "0 passed, 1 failed"; exit 1; }
cluster_start "$top" || { echo "0 passed, 1 failed"; exit 1; }
# Clients of the server's own major (pg_dump refuses a newer server), from
# the server's own bin directory, whose pg_config tells the tests where it is.
export PATH="$($PG_CONFIG --bindir):$PATH"

echo "== pg_regress (sql/, expected/) and isolation (test/isolation/specs/)"
out=$(make -s installcheck SUITES=regress 2>&1); echo "$out" | grep -E '^(test| |\+\+\+|ok|not ok|# )' || true
# A test that did not even reach "ok" (no expected file, crash) counts as failed.
# pg_regress prints "test x ... ok" up to 15, TAP-style "ok 1 - x" from 16.
ok=$(grep -cE '\.\.\. ok|^ok +[0-9]+ ' <<<"$out")
planned=$(( $(ls sql/*.sql 2>/dev/null | wc -l) + $(ls test/isolation/specs/*.spec 2>/dev/null | wc -l) ))
record regress "$ok" "$((planned - ok))"
for d in regression.diffs output_iso/regression.diffs; do [ -f "$d" ] && head -c 20000 "$d"; done

echo "== pgTAP (test/pgtap/*.sql)"
if ls test/pgtap/*.sql >/dev/null 2>&1; then
  createdb crm_gdpr_tap
  psql -q -X -d crm_gdpr_tap -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION crm_gdpr' \
       -f test/fixtures/crm.sql -c 'SELECT crm.generate(2000)' >/dev/null
  out=$(pg_prove -d crm_gdpr_tap test/pgtap/*.sql 2>&1); prove_rc=$?; echo "$out" | tail -n 40
  # Tests run, less those that failed, passed; failures count planned tests
  # that never ran; a file that died before its plan counts as one failure.
  total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' <<<"$out"); total=${total:-0}
  failed_run=$(grep -oE 'Tests: [0-9]+ Failed: [0-9]+' <<<"$out" | awk '{s+=$4} END{print s+0}')
  bad=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' <<<"$out" | awk '{split($2,a,"/"); s+=a[1]} END{print s+0}')
  bad=$((bad + $(grep -c 'No subtests run' <<<"$out")))
  [ "$total" -eq 0 ] && bad=$((bad + 1))
  total=$((total - failed_run)); dubious=0
  # A file that died without a countable failure still fails the suite.
  [ "$prove_rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  record pgtap "$total" "$bad"
fi

echo "== shell tests (test/shell/*.sh)"
sp=0; sf=0
for t in test/shell/*.sh; do
  [ -e "$t" ] && [ "$(basename "$t")" != lib.sh ] || continue
  if log=$(TEST_TOP="$top" CLUSTER_LOG_FILE="$CLUSTER_LOG" bash "$t" 2>&1); then sp=$((sp + 1)); echo "ok   $t"
  else sf=$((sf + 1)); echo "FAIL $t"; echo "$log" | tail -n 30 | sed 's/^/     /'; fi
done
record shell "$sp" "$sf"

echo "== TAP (test/tap/*.pl, PostgreSQL::Test::Cluster)"
if ls test/tap/*.pl >/dev/null 2>&1; then
  # The TAP clusters run from the private install; initdb refuses root, so
  # as root the tests run as the server's user from a copy of test/tap.
  mkdir -p "$top/tap/fixtures" && cp test/tap/*.pl "$top/tap/" && cp test/fixtures/crm.sql test/fixtures/registry.sql "$top/tap/fixtures/"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$top/tap"
  pgxs=$top/install$($PG_CONFIG --pkglibdir)/pgxs   # the copy: the server's user may not read the original
  out=$(cd "$top/tap" && cluster_as_owner env PATH="$CLUSTER_BIN:$PATH" TESTDIR="$top/tap" \
          CRM_GDPR_FIXTURES="$top/tap/fixtures" CRM_GDPR_KEY_FILE="$top/keys/test_master.key" CYCLES="${CYCLES:-3}" \
          PG_REGRESS="$pgxs/src/test/regress/pg_regress" prove -I "$pgxs/src/test/perl" ./*.pl 2>&1)
  prove_rc=$?
  echo "$out" | tail -n 25
  total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' <<<"$out"); total=${total:-0}
  failed_run=$(grep -oE 'Tests: [0-9]+ Failed: [0-9]+' <<<"$out" | awk '{s+=$4} END{print s+0}')
  bad=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' <<<"$out" | awk '{split($2,a,"/"); s+=a[1]} END{print s+0}')
  bad=$((bad + $(grep -c 'No subtests run' <<<"$out")))
  [ "$total" -eq 0 ] && bad=$((bad + 1))
  [ "$prove_rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  record tap "$((total - failed_run))" "$bad"
fi

echo
[ ${#failures[@]} -gt 0 ] && printf 'failures: %s\n' "${failures[*]}" && echo "cluster kept in $top (server log: $top/server.log)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
