#!/usr/bin/env bash
# Issue 24.5: a missing or unreadable key file does not make writes to
# registered tables fail.  The writing transaction stores its subjects' ids in
# the journal and only the log writer needs the key: without it, it waits
# (the journal grows), says why in gdpr.access_log_status and in the server
# log (a WARNING at most once a minute), and catches up when the key is back,
# with the right pseudonyms.  Its own cluster (the log writer in database crm).
source "$(dirname "$0")/lib.sh"
source test/cluster.sh
top=$(mktemp -d /tmp/crm_gdpr_keywait.XXXXXX)
CLUSTER_BIN=$TEST_TOP/install$(pg_config --bindir)
cleanup() { cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$top"; }
trap cleanup EXIT
cluster_start "$top" "crm_gdpr.database = 'crm'" "crm_gdpr.log_flush_interval = '200ms'" \
  "crm_gdpr.log_seal_interval = '1s'" "crm_gdpr.enable_worker = off"
createdb crm
q -d crm -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/crm.sql \
  -c "SELECT crm.generate(100)" -f test/fixtures/registry.sql >/dev/null
wait_for 30 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'crm_gdpr log writer')" || fail "no log writer"
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
key=$top/keys/test_master.key
c=$(q -d crm -c "SELECT min(id) FROM crm.contacts")
write() {  # write APP CONTACT: a CRM transaction (update a contact, add an interaction), in a new session
  PGAPPNAME=$1 q -d crm -c "BEGIN" \
    -c "UPDATE crm.contacts SET phone = '+33 1 23 45 67 $(printf %02d $(($2 % 100)))' WHERE id = $2" \
    -c "INSERT INTO crm.interactions (contact_id, kind, summary, occurred_at) VALUES ($2, 'call', 'key wait', now())" \
    -c "COMMIT"
}
logged() { q -d crm -c "SELECT coalesce(sum(times), 0) FROM gdpr.access_log WHERE application_name = '$1' AND operation <> 'SELECT'"; }

# The key is there: written and moved.
write with_key "$c" || fail "a write with the key failed"
wait_for 10 "SELECT journal_rows = 0 FROM gdpr.access_log_status" || fail "the journal was not moved with the key"
[ "$(logged with_key)" = 2 ] || fail "with the key: $(logged with_key) statements logged, not 2"

# The key file is removed: writes go on, in new sessions, before and after a reload
# (five writing transactions: five rows in the journals, each with its two records).
as_owner mv "$key" "$key.away"
for i in 1 2 3; do write keyless $((c + i)) 2>"$top/err" || fail "a write failed without the key file: $(cat "$top/err")"; done
q -d crm -c 'SELECT pg_reload_conf()' >/dev/null; sleep 0.3
for i in 4 5; do write keyless $((c + i)) 2>"$top/err" || fail "a write failed after a reload without the key file: $(cat "$top/err")"; done
PGAPPNAME=keyless q -d crm -c "SELECT email FROM crm.contacts WHERE id = $((c + 6))" >/dev/null || fail "a read failed without the key file"
ok_wait=$(wait_for 5 "SELECT key_problem LIKE '%does not exist%' AND journal_rows >= 5 AND journal_oldest IS NOT NULL
                        FROM gdpr.access_log_status" && echo y || echo n)
[ "$ok_wait" = y ] || fail "the status does not say the log waits for its key: $(q -d crm -c 'SELECT key_problem, journal_rows, journal_oldest FROM gdpr.access_log_status')"
[ "$(logged keyless)" = 0 ] || fail "rows were moved without the key"
sleep 2
n=$(grep -c 'the access log waits for its key' "$top/server.log" || true)
[ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "the server log says $n times that the log waits for its key (once a minute at most, and at least once)"

# A key file of the wrong mode: still waiting, writes still go on.
as_owner sh -c "cp '$key.away' '$key'; chmod 644 '$key'"
write keyless $((c + 7)) 2>"$top/err" || fail "a write failed with a key file of mode 0644: $(cat "$top/err")"
wait_for 5 "SELECT key_problem LIKE '%readable or writable by group or others%' FROM gdpr.access_log_status" ||
  fail "the status does not say why: $(q -d crm -c 'SELECT key_problem FROM gdpr.access_log_status')"

# The key is back: the writer catches up, with the pseudonyms of the key.
as_owner chmod 600 "$key"
wait_for 15 "SELECT journal_rows = 0 AND key_problem IS NULL FROM gdpr.access_log_status" ||
  fail "the log writer did not catch up: $(q -d crm -c 'SELECT key_problem, journal_rows FROM gdpr.access_log_status')"
wait_for 5 "SELECT EXISTS (SELECT FROM gdpr.access_log WHERE application_name = 'keyless' AND operation = 'SELECT')" ||
  fail "the read made without the key was not written"
[ "$(logged keyless)" = 12 ] || fail "after the key came back: $(logged keyless) statements logged, not 12"
want=$(q -d crm -c "SELECT array_agg(r ORDER BY r) FROM (SELECT gdpr._log_subject_key(i::text) r
                      FROM unnest(ARRAY[$c + 1, $c + 2, $c + 3, $c + 4, $c + 5, $c + 7]) i) x")
have=$(q -d crm -c "SELECT array_agg(DISTINCT r ORDER BY r) FROM gdpr.access_log, unnest(subject_keys) r
                      WHERE application_name = 'keyless' AND operation = 'UPDATE'")
[ "$have" = "$want" ] || fail "the subjects written without the key: $have, want the keys $want"
grep -q 'the master key can be read again' "$top/server.log" || fail "the server log does not say the key is back"
wait_for 10 "SELECT ok FROM gdpr.verify_access_log()" || fail "verify: $(q -d crm -c 'SELECT * FROM gdpr.verify_access_log()')"
echo "log key wait ok"
