#!/usr/bin/env bash
# META.json (the PGXN distribution's metadata) against PGXN Meta Spec 1.0.0:
# required keys and their types, semantic versions, a known licence and
# release status, prerequisites' phases and relations, and the facts it
# repeats from the tree (control file, default version, extension name).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 - <<'PY'
import json, re, sys
m = json.load(open("META.json"))
errors = []
def need(cond, msg):
    if not cond: errors.append(msg)
semver = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z-]+)?$")
for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    need(key in m, f"missing required key {key}")
need(m.get("meta-spec", {}).get("version") == "1.0.0", "meta-spec.version must be 1.0.0")
need(re.fullmatch(r"[^/\\\s]{2,}", m.get("name", "")) is not None, "name: 2+ characters, no slash, backslash or space")
need(semver.match(m.get("version", "")) is not None, "version is not a semantic version")
need(m.get("release_status", "stable") in ("stable", "testing", "unstable"), "bad release_status")
licences = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd", "gfdl_1_2",
            "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1",
            "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source", "restricted",
            "unrestricted", "unknown"}
lic = m.get("license")
need(lic in licences or isinstance(lic, (list, dict)), f"unknown licence {lic!r}")
need(isinstance(m.get("maintainer"), (str, list)), "maintainer: string or list")
provides = m.get("provides", {})
need(isinstance(provides, dict) and provides, "provides: a non-empty object")
for ext, p in provides.items():
    for key in ("file", "version"):
        need(key in p, f"provides.{ext} lacks {key}")
    need(semver.match(p.get("version", "")) is not None, f"provides.{ext}.version is not semantic")
    for key in ("file", "docfile"):
        if key in p:
            try: open(p[key]).close()
            except OSError: errors.append(f"provides.{ext}.{key}: {p[key]} does not exist")
for phase, rels in m.get("prereqs", {}).items():
    need(phase in ("configure", "build", "test", "runtime", "develop"), f"prereqs: unknown phase {phase}")
    for rel, mods in rels.items():
        need(rel in ("requires", "recommends", "suggests", "conflicts"), f"prereqs.{phase}: unknown relation {rel}")
        for mod, ver in mods.items():
            need(semver.match(ver) is not None or ver == "0", f"prereqs.{phase}.{rel}.{mod}: bad version {ver}")
# What META.json repeats from the tree must agree with it.
control = open("crm_gdpr.control").read()
default = re.search(r"default_version\s*=\s*'([^']*)'", control).group(1)
need(m.get("name") == "crm_gdpr" and "crm_gdpr" in provides, "name and provides must be crm_gdpr")
need(m.get("version", "").startswith(default + ".") or m.get("version") == default,
     f"version {m.get('version')} does not match default_version {default}")
need(provides.get("crm_gdpr", {}).get("version") == m.get("version"), "provides.crm_gdpr.version differs from version")
comment = re.search(r"comment\s*=\s*'([^']*)'", control).group(1)
need(m.get("abstract") == comment, "abstract differs from the control file's comment")
if errors:
    print("\n".join(errors)); sys.exit(1)
print("META.json ok")
PY
