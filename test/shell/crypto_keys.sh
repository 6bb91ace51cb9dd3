#!/usr/bin/env bash
# Key files: each bad one is refused clearly; rotation to a new key keeps old
# ciphertexts readable and re-encrypts them; no key material reaches the log.
source "$(dirname "$0")/lib.sh"
keys="$TEST_TOP/keys"
db=crypto_keys
dropdb --if-exists $db; createdb $db
q -d $db -c 'CREATE EXTENSION crm_gdpr'
set_key() {  # set_key FILE [RETIRED]: point the server at a key file and reload
  q -d $db -c "ALTER SYSTEM SET crm_gdpr.key_file = '$1'" -c "ALTER SYSTEM SET crm_gdpr.retired_key_files = '${2:-}'" \
    -c 'SELECT pg_reload_conf()' >/dev/null
  sleep 0.3
}
expect_refusal() {  # expect_refusal WHAT PATTERN
  local err
  err=$(psql -X -d $db -v VERBOSITY=verbose -c '\set VERBOSITY verbose' -c "SELECT gdpr.pseudonymise('x')" 2>&1) \
    && fail "$1: pseudonymise worked"
  grep -q "$2" <<<"$err" || fail "$1: unexpected error: $err"
}
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# Bad key files.
set_key "$keys/missing.key";   expect_refusal "missing file" 'F0000.*does not exist'
as_owner sh -c "printf 'abc' > '$keys/short.key'; chmod 600 '$keys/short.key'"
set_key "$keys/short.key";     expect_refusal "wrong size" 'does not hold exactly 64 hexadecimal'
as_owner sh -c "cp '$keys/test_master.key' '$keys/open.key'; chmod 644 '$keys/open.key'"
set_key "$keys/open.key";      expect_refusal "too permissive" 'readable or writable by group or others'
as_owner sh -c "cp '$keys/test_master.key' '$keys/locked.key'; chmod 000 '$keys/locked.key'"
if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test ! -r "$keys/locked.key"; then
  set_key "$keys/locked.key";  expect_refusal "unreadable" 'cannot be opened'
fi
if [ "$(id -u)" -eq 0 ]; then
  cp "$keys/test_master.key" "$keys/root.key"; chmod 644 "$keys/root.key"  # readable, so the owner is what is refused
  set_key "$keys/root.key";    expect_refusal "not owned by the server" 'not owned by the server'
fi
set_key "";                    expect_refusal "no key" 'no crm_gdpr master key is configured'
err=$(psql -X -d $db -c "SELECT gdpr.pseudonymise('x')" 2>&1) || true
grep -q 'HINT:  Set crm_gdpr.key_file' <<<"$err" || fail "no hint without a key: $err"

# Rotation: encrypt under the old key, then make the new key current.
set_key "$keys/test_old.key"
q -d $db -c "CREATE TABLE secrets (id int PRIMARY KEY, v bytea)" \
  -c "INSERT INTO secrets SELECT i, gdpr.encrypt('value ' || i, 'secrets.v') FROM generate_series(1, 25) i" >/dev/null
old=$(q -d $db -c "SELECT fingerprint FROM gdpr.key_status() WHERE is_current")
set_key "$keys/test_master.key" "$keys/test_old.key"
[ "$(q -d $db -c "SELECT count(*) FROM gdpr.key_status()")" = 2 ] || fail "retired key not loaded"
[ "$(q -d $db -c "SELECT gdpr.decrypt(v, 'secrets.v') FROM secrets WHERE id = 7")" = "value 7" ] \
  || fail "old ciphertexts must still decrypt"
n1=$(q -d $db -c "SELECT gdpr.rotate_key('secrets', 'v', 'secrets.v', 10)")
n2=$(q -d $db -c "SELECT gdpr.rotate_key('secrets', 'v', 'secrets.v', 10)")
n3=$(q -d $db -c "SELECT gdpr.rotate_key('secrets', 'v', 'secrets.v', 10)")
n4=$(q -d $db -c "SELECT gdpr.rotate_key('secrets', 'v', 'secrets.v', 10)")
[ "$n1 $n2 $n3 $n4" = "10 10 5 0" ] || fail "rotation batches: $n1 $n2 $n3 $n4"
[ "$(q -d $db -c "SELECT count(*) FROM secrets WHERE gdpr.ciphertext_key(v) = '$old'")" = 0 ] || fail "old key left"
set_key "$keys/test_master.key"
[ "$(q -d $db -c "SELECT string_agg(gdpr.decrypt(v, 'secrets.v'), ',' ORDER BY id) FROM secrets WHERE id <= 3")" \
  = "value 1,value 2,value 3" ] || fail "rotated values must decrypt without the old key"

# Nothing of any key in the server log.
for k in "$keys"/test_master.key "$keys"/test_old.key; do
  hex=$(head -c 64 "$k")
  grep -qi "${hex:0:16}" "$CLUSTER_LOG_FILE" && fail "key material in the server log"
done
dropdb $db
echo "crypto keys ok"
