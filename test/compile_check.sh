#!/usr/bin/env bash
# test/compile_check.sh MAJOR: compile every src/*.c against the server headers
# of PostgreSQL MAJOR (Debian's postgresql-server-dev-MAJOR binary package,
# unpacked, never installed), warnings as errors.  For a major whose server
# cannot be built here (test/pg_build.sh: postgresql-17's source is not served
# from this archive), this is what is left: the API checked, nothing run.
set -euo pipefail
major=${1:?usage: compile_check.sh MAJOR}
cd "$(dirname "$0")/.."
CACHE=${CRM_GDPR_CACHE:-$HOME/.cache/crm_gdpr}
case $major in 17) suite=trixie ;; 18) suite=sid ;; *) echo "no suite for $major" >&2; exit 2 ;; esac
dir=$CACHE/headers-$major
if [ ! -d "$dir/root/usr/include/postgresql/$major/server" ]; then
  uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
  rm -rf "$dir"; mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=$(dpkg --print-architecture)] $uri $suite main" > "$dir/sources.list"
  o=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/lists"
     -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
  apt-get "${o[@]}" -qq update
  (cd "$dir" && apt-get "${o[@]}" -qq download "postgresql-server-dev-$major" libpq-dev &&
   for d in ./*.deb; do dpkg-deb -x "$d" root; done)
  rm -rf "$dir/lists" "$dir/cache" "$dir"/*.deb
fi
inc=$dir/root/usr/include/postgresql
# The newer suite's headers assume its C library declares strlcpy (glibc
# 2.38); this machine's does not, so it is declared here.
printf '#include <stddef.h>\nextern size_t strlcpy(char *dst, const char *src, size_t siz);\n' > "$dir/strlcpy.h"
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" crm_gdpr.control)
rc=0
for f in src/*.c; do
  gcc -std=gnu99 -Wall -Wmissing-prototypes -Wpointer-arith -Wdeclaration-after-statement -Werror=vla \
      -Wendif-labels -Wmissing-format-attribute -Wimplicit-fallthrough=3 -Wcast-function-type -Wformat-security \
      -fno-strict-aliasing -fwrapv -O2 -fPIC -Werror -include "$dir/strlcpy.h" -include src/pg_compat.h -Isrc \
      -DCRM_GDPR_VERSION="\"$version\"" -I"$inc/$major/server" -I"$inc" -I"$inc/internal" -D_GNU_SOURCE \
      -c "$f" -o "$out/$(basename "$f" .c).o" || rc=1
done
grep -h '#define PG_VERSION_STR' "$inc/$major/server/pg_config.h" | sed 's/.*"\(.*\)"/compiled against: \1/'
exit $rc
