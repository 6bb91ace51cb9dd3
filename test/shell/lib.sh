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

# hostile_suite: what the hostile suites (security*.sh) share.  A check
# prints "ok ..." or, through bad, "FAIL: ID: what" (an attack that
# succeeded); hostile_verdict NAME ends the suite, exit 1 if any failed.
hostile_suite() {
  failures=()
  knowns=()
  ok() { echo "ok   $*"; }
  bad() { echo "FAIL: $1: $2"; failures+=("$1"); }
  # known ID WHAT: an attack that succeeds and is documented as not prevented
  # (doc/access-log.md, "Not logged"); printed, counted apart, not a failure.
  known() { echo "KNOWN: $1: $2"; knowns+=("$1"); }
  # as ROLE DB SQL...: run as ROLE (a new session each time); the last line is
  # "SQLSTATE=xxxxx" of the last statement (00000 when it succeeded).
  as() {
    local role=$1 db=$2; shift 2
    local args=() s
    for s in "$@"; do args+=(-c "$s"); done
    psql -X -q -At -U "$role" -d "$db" -v ON_ERROR_STOP=0 "${args[@]}" -c '\echo SQLSTATE=:SQLSTATE' 2>&1 || true
  }
  state_of() { sed -n 's/^SQLSTATE=//p' <<<"$1" | tail -n 1; }
  su() { q -d "$1" -c 'SET client_min_messages = warning' -c "$2"; }   # as the superuser, stop on error
  owner() { q -U crm_owner -d "$1" -c 'SET client_min_messages = warning' -c "$2"; }
  # refused ID WHAT SQLSTATE OUT: the statement was refused with SQLSTATE.
  refused() {
    [ "$(state_of "$4")" = "$3" ] && ok "$1: $2: refused ($3)" || bad "$1" "$2: not refused ($(state_of "$4"): $(head -c 300 <<<"$4"))"
  }
  # count SQL: a count (any one value), as the superuser, in database $db.
  count() { q -d "$db" -c "$1"; }
  # need_owner_ext DB ID: an attack through an extension of the owner's needs
  # test/fixtures/owner_ext in the server; without it the attack cannot run
  # and its check would pass for nothing: a failure of ID.
  need_owner_ext() {
    [ "$(q -d "$1" -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'owner_ext'")" = 1 ] \
      || bad "$2" "the fixture extension owner_ext is not installed in this server (test/run.sh installs it)"
  }
}
hostile_verdict() {
  echo
  if [ ${#failures[@]} -gt 0 ]; then
    echo "$1: ${#failures[@]} checks failed: $(printf '%s\n' "${failures[@]}" | sort | uniq -c |
      awk '{ c = $1; $1 = ""; sub(/^ /, ""); printf "%s%s x%s", sep, $0, c; sep = ", " }')"
    exit 1
  fi
  [ ${#knowns[@]} -eq 0 ] || echo "$1: ${#knowns[@]} known, documented limits: $(printf '%s ' "${knowns[@]}")"
  echo "$1 ok"
}

# hostile_crm DB: database DB with the sample CRM (200 contacts) owned by
# crm_owner and registered by the superuser, no retention policy (the purge
# would remove rows under the checks); roles crm_owner, plain, clerk, other
# (CREATEDB), adm (gdpr_admin), app (gdpr_app), aud (gdpr_auditor); adm may
# do anything on crm's tables, app read crm.contacts, clerk read, update and
# delete it.  Then log_flush, last_id and logged SINCE ROLE (the rows of
# crm.contacts the log says ROLE read since id SINCE, and their subjects).
hostile_crm() {
  db=$1
  q -d postgres -c 'SET client_min_messages = warning' -c "
    CREATE ROLE crm_owner LOGIN; CREATE ROLE plain LOGIN; CREATE ROLE clerk LOGIN;
    CREATE ROLE other LOGIN CREATEDB;" >/dev/null
  createdb "$db"
  q -d "$db" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' \
    -c "GRANT CREATE ON DATABASE $db TO crm_owner" \
    -c "CREATE ROLE adm LOGIN IN ROLE gdpr_admin; CREATE ROLE app LOGIN IN ROLE gdpr_app;
        CREATE ROLE aud LOGIN IN ROLE gdpr_auditor;" >/dev/null
  q -U crm_owner -d "$db" -c 'SET client_min_messages = warning' -f test/fixtures/crm.sql \
    -c 'SELECT crm.generate(200)' >/dev/null
  q -d "$db" -c 'SET client_min_messages = warning' -f test/fixtures/registry.sql \
    -c "DELETE FROM gdpr.retention_policies" >/dev/null
  q -U crm_owner -d "$db" -c "GRANT USAGE ON SCHEMA crm TO adm, app, plain, clerk" \
    -c "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO adm" \
    -c "GRANT SELECT ON crm.contacts TO app" \
    -c "GRANT SELECT, UPDATE, DELETE ON crm.contacts TO clerk" >/dev/null
  log_flush() { for _ in 1 2 3; do as adm $db "SELECT gdpr.flush_access_log()" >/dev/null; sleep 0.5; done; }
  last_id() { q -d $db -c "SELECT coalesce(max(id), 0) FROM gdpr.access_log"; }
  # no_read ID ROLE WHAT SQL: ROLE runs SQL (a query that returns no row of
  # crm.contacts), which must log no row read: not more than was read.
  no_read() {
    local since n
    since=$(last_id)
    as $2 $db "$4" >/dev/null
    log_flush
    n=$(logged $since $2 | cut -d' ' -f1)
    [ "$n" = 0 ] && ok "$1: $3 logs the rows it returns (0), not the rows it examined" \
      || bad "$1" "$3 logged $n rows read"
  }
  logged() {
    q -d $db -c "SELECT coalesce(sum(row_count), 0) || ' ' || (SELECT count(DISTINCT k) FROM gdpr.access_log l2, unnest(l2.subject_keys) k
                  WHERE l2.id > $1 AND l2.role_name = '$2' AND l2.operation = 'SELECT' AND l2.tbl = 'crm.contacts'::regclass)
                   FROM gdpr.access_log WHERE id > $1 AND role_name = '$2' AND operation = 'SELECT' AND tbl = 'crm.contacts'::regclass"
  }
}

# hostile_leaks ROUND: after hostile_crm, what the suites' leak checks share:
# total (contacts with an e-mail), smax (crm_gdpr.log_subjects_max: a record
# names at most that many), got_emails OUTPUT (the distinct e-mails a leak
# gave back), peek (a function of the attacker's own: each value it is given
# goes to the client), leak_setup (statements run before each check's: peek,
# and what a suite adds), wlogged, wcheck, writes, wait_sleeper and each_row
# (below), and check N ROLE LABEL SQL...: ROLE runs SQL; the e-mails it saw
# must be logged as rows read (SELECT) with their subjects.
hostile_leaks() {
  leak_round=$1
  total=$(q -d $db -c "SELECT count(*) FROM crm.contacts WHERE email IS NOT NULL")
  smax=$(q -d $db -c "SELECT gdpr.setting('log_subjects_max')")
  got_emails() { { grep -o '[a-z0-9._-]*@example\.[a-z]*' <<<"$1" || true; } | sort -u | wc -l; }
  peek='CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RAISE NOTICE $x$peek %$x$, t; RETURN true; END$$'
  leak_setup=("$peek")
  check() {
    local n=$1 role=$2 label=$3; shift 3
    local since out read
    since=$(last_id)
    out=$(as $role $db "${leak_setup[@]}" "$@")
    log_flush
    # leak_count: the function counting what the log shows (logged; a suite may name its own).
    read=$(got_emails "$out"); set -- $(${leak_count:-logged} $since $role)
    if [ "$read" -ge "$total" ] && { [ "$1" -lt "$read" ] || [ "$2" -lt "$(( read < smax ? read : smax ))" ]; }; then
      bad "$leak_round.$n" "$role saw $read e-mails with $label; the log counts $1 rows read, names $2 subjects"
    elif [ "$read" -lt "$total" ]; then
      bad "$leak_round.$n" "setup: $label showed $read e-mails, not $total: $(grep -v peek <<<"$out" | head -c 300)"
    else ok "$leak_round.$n: $label: logged ($read read, $1 rows, $2 subjects)"; fi
  }
  # wlogged SINCE ROLE: rows of crm.contacts the log counts as shown to ROLE
  # since id SINCE (reads, and failed writes, which count the rows they failed
  # on), and the distinct subjects it names.
  wlogged() {
    q -d $db -c "SELECT coalesce(sum(row_count), 0) || ' ' || (SELECT count(DISTINCT k) FROM gdpr.access_log l2, unnest(l2.subject_keys) k
                  WHERE l2.id > $1 AND l2.role_name = '$2' AND l2.tbl = 'crm.contacts'::regclass
                    AND (l2.operation = 'SELECT' OR l2.detail ? 'failed'))
                   FROM gdpr.access_log WHERE id > $1 AND role_name = '$2' AND tbl = 'crm.contacts'::regclass
                    AND (operation = 'SELECT' OR detail ? 'failed')"
  }
  # wcheck N ROLE LABEL SQL...: check, counting failed writes too.
  wcheck() { leak_count=wlogged check "$@"; }
  # writes SINCE: the write records (INSERT, UPDATE, DELETE, TRUNCATE) of
  # the notes tables (the trees of rounds 23 and 24) since id SINCE.
  writes() {
    q -d $db -c "SELECT count(*) FROM gdpr.access_log WHERE id > $1 AND operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
                   AND (table_name LIKE '%notes%' OR tbl::text LIKE '%notes%')"
  }
  # wait_sleeper ROLE: until a session of ROLE sleeps in pg_sleep (its
  # transaction open: a race's other side is in place).
  wait_sleeper() {
    for _ in $(seq 1 50); do
      [ "$(q -d $db -c "SELECT count(*) FROM pg_stat_activity WHERE usename = '$1' AND query LIKE '%pg_sleep%' AND state = 'active'")" -gt 0 ] && return 0
      sleep 0.1
    done
    return 1
  }
  # each_row STMT: a DO block running STMT (with %s for a contact's id) once
  # per contact, each in its own subtransaction, the error's message sent on
  # as a NOTICE.  EXECUTE: each statement planned for its own id.
  each_row() {
    echo "DO \$\$BEGIN FOR i IN 1..200 LOOP BEGIN EXECUTE format(\$q\$$1\$q\$, i, i); EXCEPTION WHEN others THEN RAISE NOTICE '%', SQLERRM; END; END LOOP; END\$\$"
  }
}
