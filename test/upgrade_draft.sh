#!/usr/bin/env bash
# make upgrade-draft: which objects of the install script differ from the last
# released one (added, removed, changed), to write src/upgrade/<version>/ from.
# It lists; it writes no SQL: the upgrade is written and reviewed by hand.
set -euo pipefail
python3 - "$1" "$2" <<'PY'
import re, sys
def objects(path):
    text = open(path).read()
    heads = re.compile(r'^(CREATE (?:OR REPLACE )?(?:FUNCTION|VIEW|TABLE|INDEX|UNIQUE INDEX|TRIGGER|EVENT TRIGGER|TYPE|SEQUENCE|ROLE)\s+[^\s(]+(?:\([^)]*\))?)',
                       re.M)
    found = {}
    marks = [(m.start(), re.sub(r'\s+', ' ', m.group(1).replace('OR REPLACE ', ''))) for m in heads.finditer(text)]
    for i, (pos, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        body = '\n'.join(l for l in text[pos:end].splitlines() if not l.lstrip().startswith('--'))
        found[name] = re.sub(r'\s+', ' ', body).strip()
    grants = set(re.sub(r'\s+', ' ', g) for g in re.findall(r'^(?:GRANT|REVOKE)[^;]*;', text, re.M))
    return found, grants
old, old_g = objects(sys.argv[1])
new, new_g = objects(sys.argv[2])
for name in sorted(set(old) | set(new)):
    if name not in old: print('added    ', name)
    elif name not in new: print('removed  ', name)
    elif old[name] != new[name]: print('changed  ', name)
for g in sorted(new_g - old_g): print('grant+   ', g[:160])
for g in sorted(old_g - new_g): print('grant-   ', g[:160])
PY
