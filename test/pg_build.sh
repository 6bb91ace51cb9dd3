#!/usr/bin/env bash
# test/pg_build.sh MAJOR: print the pg_config of a PostgreSQL MAJOR server built
# from Debian's source package, building it first if it is not cached.
#
# Debian 12 ships PostgreSQL 15 only; `make test PG=17` and `PG=18` need a
# newer server.  Debian's source packages postgresql-17 (trixie) and
# postgresql-18 (sid) come from the same archive as the system's packages,
# through a private apt configuration (its own sources list, lists and cache
# under $CACHE/apt) so that the system's apt state is never touched.  The
# server is built once into $CACHE/pg-<version> with only what the suite needs
# (TAP support, no ICU, no readline), with pgTAP from the same suite,
# and reused as long as that directory holds a completed build.
#
# Everything goes to stderr except the last line: the path of pg_config.
set -euo pipefail
# Called from `make test PG=...`, this script inherits make's MAKELEVEL: the
# PostgreSQL build below would take itself for a sub-make and skip generating
# its headers (utils/errcodes.h missing: seen on a machine without a cached
# build).  Its makes are top-level ones.
unset MAKELEVEL MAKEFLAGS MFLAGS MAKEOVERRIDES
major=${1:?usage: pg_build.sh MAJOR}
CACHE=${CRM_GDPR_CACHE:-$HOME/.cache/crm_gdpr}
here=$(cd "$(dirname "$0")" && pwd)

case $major in
  15) command -v pg_config; exit 0 ;;        # the system's server (test/deps.sh)
  17) suite=trixie ;;
  18) suite=sid ;;
  *) echo "pg_build.sh: no recipe for PostgreSQL $major (15, 17, 18)" >&2; exit 2 ;;
esac

# A completed build leaves a stamp naming its recipe; any cached build of
# this major and recipe will do (the archive's version may be newer today).
# Bump RECIPE when the configure options change, so that old builds are redone.
RECIPE=2   # 2: --with-libxml (the fixtures use xpath, as Debian's server allows)
cached() { grep -l "^recipe $RECIPE\$" "$CACHE"/pg-"$major".*/.crm_gdpr_built 2>/dev/null | sort -V | tail -n 1; }
if stamp=$(cached) && [ -n "$stamp" ]; then
  echo "$(dirname "$stamp")/bin/pg_config"; exit 0
fi

log() { echo "pg_build: $*" >&2; }
t0=$(date +%s)

# Build dependencies (Debian 12 packages); only root can install them.
need=(dpkg-dev gcc make perl bison flex libipc-run-perl zlib1g-dev libxml2-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { log "missing packages: ${missing[*]} (sudo apt-get install them)"; exit 1; }
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The private apt configuration: the archive the system already uses (first
# URIs of its Debian sources), the suite's source index only.
apt_dir=$CACHE/apt
archive() {  # archive security|main: the system's archive URI of that kind
  { sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1=="deb" {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) print $i}' /etc/apt/sources.list 2>/dev/null
  } | if [ "$1" = security ]; then grep security; else grep -v security; fi | head -n 1
}
uri=$(archive main || true); sec=$(archive security || true)
[ -n "$uri" ] || { log "cannot find the system's Debian archive in /etc/apt"; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# use_suite SUITE: point apt_opts at SUITE's own sources list, lists and
# cache (one set per suite: apt would pick the highest version among suites,
# and a listed version is not always served), its index fetched once a run.
# A stable point release may be served from the security archive only, so
# that one comes first for a stable suite; with a second argument "main", the
# suite's main archive alone, for a mirror that lists a security version it
# does not serve (apt takes the highest version listed).  (On 2026-12-01 this
# machine's mirror served postgresql-17's files from neither: 404.)
use_suite() {
  local s=$1 d=$apt_dir/$1${2:+-$2}
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  { [ "$s" = sid ] || [ -z "$sec" ] || [ -n "${2:-}" ] || echo "deb-src [signed-by=$keyring] $sec $s-security main"
    echo "deb-src [signed-by=$keyring] $uri $s main"; } > "$d/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache"
            -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root)
  [ -e "$d/fetched.$$" ] && return 0
  log "fetching the $s source index"
  rm -f "$d"/fetched.*
  apt-get "${apt_opts[@]}" -qq update >&2 && touch "$d/fetched.$$"
}

# fetch PACKAGE SUITE...: download the source package from the first suite
# that serves it into $CACHE/src/PACKAGE, unpack it without Debian's patches
# (they move install paths to Debian's layout: the upstream source is what we
# test) and print the unpacked directory.
fetch() {
  local pkg=$1 dir=$CACHE/src/$1 s; shift
  for s in "$@"; do
    for only in "" main; do
      [ -z "$only" ] || [ "$s" != sid ] || continue   # sid has no security archive
      rm -rf "$dir"; mkdir -p "$dir"
      use_suite "$s" $only || continue
      if (cd "$dir" && apt-get "${apt_opts[@]}" -qq --download-only source "$pkg" >&2 &&
          dpkg-source --skip-patches -x ./*.dsc unpacked >/dev/null); then
        echo "$dir/unpacked"; return 0
      fi
      log "$pkg: not served from $s${only:+ (its main archive alone)}"
    done
  done
  return 1
}

src=$(fetch "postgresql-$major" "$suite") || { log "cannot fetch the source of postgresql-$major from $suite"; exit 1; }
version=$(sed -n '1s/^[^(]*(\([0-9.]*\).*/\1/p' "$src/debian/changelog")
prefix=$CACHE/pg-$version
if grep -qx "recipe $RECIPE" "$prefix/.server_built" 2>/dev/null; then
  log "PostgreSQL $version already built in $prefix"
else
log "building PostgreSQL $version into $prefix (nice, make -j2)"
rm -rf "$prefix"
(
  cd "$src"
  exec >"$CACHE/build-$major.log" 2>&1
  nice ./configure --prefix="$prefix" --enable-tap-tests --with-libxml --without-icu --without-readline \
       --enable-debug CFLAGS='-O2' &&
  nice make -j2 && make install &&
  # PGXS's installcheck needs the isolation tester, TAP tests the Perl modules.
  nice make -C src/test/isolation install && make -C src/test/perl install
) || { log "build failed: tail of $CACHE/build-$major.log"; tail -n 30 "$CACHE/build-$major.log" >&2; exit 1; }
printf 'recipe %s\nserver built in %s s\n' "$RECIPE" "$(( $(date +%s) - t0 ))" > "$prefix/.server_built"
log "PostgreSQL $version built in $(( $(date +%s) - t0 )) s"
fi

# pgTAP is SQL only (Architecture: all): its binary package for this major,
# from the same suite, unpacked into the server's extension directory.  (Its
# source package is not served from this archive: seen on 2026-11-30.)
log "installing pgTAP for $version"
tapdir=$CACHE/src/pgtap; rm -rf "$tapdir"; mkdir -p "$tapdir"
bin=$apt_dir/$suite-bin; mkdir -p "$bin/lists/partial" "$bin/cache/archives/partial"
echo "deb [signed-by=$keyring arch=$(dpkg --print-architecture)] $uri $suite main" > "$bin/sources.list"
bin_opts=(-o "Dir::Etc::SourceList=$bin/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$bin/lists" -o "Dir::Cache=$bin/cache"
          -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
(apt-get "${bin_opts[@]}" -qq update && cd "$tapdir" &&
 apt-get "${bin_opts[@]}" -qq download "postgresql-$major-pgtap" && dpkg-deb -x ./*.deb root &&
 cp "root/usr/share/postgresql/$major/extension/"pgtap* "$($prefix/bin/pg_config --sharedir)/extension/") >&2 ||
  { log "cannot install postgresql-$major-pgtap from $suite"; exit 1; }
rm -rf "$bin/lists" "$bin/cache"   # the binary index of a suite is large

rm -rf "$CACHE/src/postgresql-$major" "$CACHE/src/pgtap"
printf 'recipe %s\nbuilt %s in %s s\n' "$RECIPE" "$(date -u +%FT%TZ)" "$(( $(date +%s) - t0 ))" > "$prefix/.crm_gdpr_built"
log "PostgreSQL $version built in $(( $(date +%s) - t0 )) s"
echo "$prefix/bin/pg_config"
