#!/usr/bin/env bash
# Installs the Debian packages listed in test/packages.txt (or the list given
# as argument: test/packages-deb.txt for the packaging test) that are missing.
# As root it runs apt-get; otherwise it prints the exact command and stops,
# because a build that silently lacks a package fails later and less clearly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
list=${1:-$here/packages.txt}
mapfile -t wanted < <(grep -v '^\s*#' "$list" | grep -v '^\s*$')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from another source than Debian's (it does on our
# machines): only when there is none at all are Debian's packages asked for.
command -v npm >/dev/null || missing+=(nodejs npm)
# The Node example of doc/applications.md needs its pg module (npm registry).
npm_deps() {
  [ -d "$here/../doc/examples/node_modules/pg" ] ||
    npm ci --prefix "$here/../doc/examples" --no-audit --no-fund --loglevel=error >/dev/null
}
[ ${#missing[@]} -eq 0 ] && { npm_deps; exit 0; }
if [ "$(id -u)" -eq 0 ]; then
  echo "crm_gdpr: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  npm_deps
else
  echo "crm_gdpr: missing Debian packages; run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
