# Sourced by test/run.sh and test/demo.sh: a throwaway PostgreSQL cluster that
# runs from a private copy of the server with crm_gdpr installed into it.
#
# Why a private copy: `make test` then needs no write access to /usr, and two
# checkouts (or a test next to a demo) never see each other's build.  PostgreSQL
# finds its share and lib directories relative to its binaries, so a copy of
# /usr/lib/postgresql/15 and /usr/share/postgresql/15 is a working server.
# initdb refuses to run as root; as root the server runs as user postgres.

CLUSTER_PG_CONFIG=${PG_CONFIG:-pg_config}

# cluster_install TOP: copy the server to TOP/install and install crm_gdpr there.
cluster_install() {
  local top=$1 bindir sharedir
  bindir=$($CLUSTER_PG_CONFIG --bindir)
  sharedir=$($CLUSTER_PG_CONFIG --sharedir)
  rm -rf "$top/install"
  mkdir -p "$top/install$(dirname "$bindir")" "$top/install$(dirname "$sharedir")"
  cp -a "$(dirname "$bindir")/." "$top/install$(dirname "$bindir")/"
  cp -a "$sharedir/." "$top/install$sharedir/"
  make -s install DESTDIR="$top/install" >/dev/null
  CLUSTER_BIN="$top/install$bindir"
  export CLUSTER_BIN
}

# Run a server-side command as the cluster's owner.
cluster_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# cluster_start TOP [extra postgresql.conf lines...]: initdb, configure, start.
# CLUSTER_INITDB_OPTS: more initdb options (a test that needs small WAL segments).
cluster_start() {
  local top=$1; shift
  CLUSTER_DATA="$top/data"
  CLUSTER_SOCK="$top/sock"
  mkdir -p "$CLUSTER_SOCK" "$top/keys"
  # The committed TEST keys (never use them for real data): the key files must
  # belong to the server's user with mode 0600, which git cannot keep.
  install -m 0600 test/fixtures/test_master.key test/fixtures/test_old.key "$top/keys/"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$top"
  cluster_as_owner "$CLUSTER_BIN/initdb" -D "$CLUSTER_DATA" -U postgres -A trust \
      --locale=C.UTF-8 -E UTF8 ${CLUSTER_INITDB_OPTS:-} >"$top/initdb.log" 2>&1 \
    || { cat "$top/initdb.log"; return 1; }
  {
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$CLUSTER_SOCK'"
    echo "shared_preload_libraries = 'crm_gdpr'"
    echo "max_prepared_transactions = 10"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    echo "crm_gdpr.key_file = '$top/keys/test_master.key'"
    echo "crm_gdpr.database = '${CLUSTER_WORKER_DB:-postgres}'"
    for line in "$@"; do echo "$line"; done
  } | cluster_as_owner tee -a "$CLUSTER_DATA/postgresql.conf" >/dev/null
  cluster_as_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -l "$top/server.log" -w start >/dev/null \
    || { cat "$top/server.log"; return 1; }
  export PGHOST="$CLUSTER_SOCK" PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
  export CLUSTER_DATA CLUSTER_SOCK CLUSTER_LOG="$top/server.log"
}

cluster_stop() {
  [ -n "${CLUSTER_DATA:-}" ] && [ -f "$CLUSTER_DATA/postmaster.pid" ] &&
    cluster_as_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -m fast -w stop >/dev/null 2>&1
  return 0
}
