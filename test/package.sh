#!/usr/bin/env bash
# `make package-test`: build the Debian package with Debian's own tooling
# (dpkg-buildpackage, pg_buildext), check that dpkg would install it on this
# system, unpack it over a private copy of the server (the system's server is
# left alone: other checkouts test against it), start a fresh cluster from
# that copy and run the demo against it.  Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash test/deps.sh >/dev/null && bash test/deps.sh test/packages-deb.txt || exit 1
top=$(mktemp -d /tmp/crm_gdpr_pkg.XXXXXX); chmod 755 "$top"
passed=0; failed=0
trap 'cd /; [ "$failed" -gt 0 ] || [ "${KEEP_PACKAGE:-0}" = 1 ] || rm -rf "$top"' EXIT
step() {  # step NAME COMMAND...: run one checked step
  local name=$1; shift
  if "$@" >"$top/$name.log" 2>&1; then passed=$((passed + 1)); echo "ok   $name"
  else failed=$((failed + 1)); echo "FAIL $name (log: $top/$name.log)"; tail -n 30 "$top/$name.log" | sed 's/^/     /'; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

# The tree as git sees it (tracked and new files, not ignored ones), so that
# build products of the checkout stay out of the package.
mkdir "$top/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$top/src" 2>/dev/null
build() { cd "$top/src" && pg_buildext checkcontrol && nice dpkg-buildpackage -us -uc -b; }
t0=$(date +%s)
step dpkg-buildpackage build
echo "     built in $(( $(date +%s) - t0 )) s: $(cd "$top" && ls ./*.deb 2>/dev/null | tr '\n' ' ')"
deb=$(ls "$top"/postgresql-15-crm-gdpr_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { failed=$((failed + 1)); echo "FAIL no postgresql-15-crm-gdpr .deb"; finish; }

# What the package holds: the module, the control file, every release.
contents() {
  local list; list=$(dpkg-deb -c "$deb")
  for f in lib/postgresql/15/lib/crm_gdpr.so share/postgresql/15/extension/crm_gdpr.control \
           share/postgresql/15/extension/crm_gdpr--0.1.sql share/postgresql/15/extension/crm_gdpr--0.2--0.3.sql; do
    grep -q "/usr/$f\$" <<<"$list" || { echo "missing /usr/$f"; return 1; }
  done
}
step contents contents
# dpkg's own check of the package's dependencies against this system.
step dpkg-dry-run dpkg --dry-run -i "$deb"

# A private server: the system's PostgreSQL 15 with the package unpacked into it.
server() {
  mkdir -p "$top/root/usr/lib/postgresql" "$top/root/usr/share/postgresql"
  cp -a /usr/lib/postgresql/15 "$top/root/usr/lib/postgresql/"
  cp -a /usr/share/postgresql/15 "$top/root/usr/share/postgresql/"
  dpkg-deb -x "$deb" "$top/root"
  test -f "$top/root/usr/lib/postgresql/15/lib/crm_gdpr.so"
}
step unpack server
step demo env CRM_GDPR_SERVER_BIN="$top/root/usr/lib/postgresql/15/bin" CONTACTS=2000 bash test/demo.sh
finish
