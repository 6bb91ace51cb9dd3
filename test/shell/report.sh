#!/usr/bin/env bash
# The compliance report of the sample CRM, produced by an auditor and rendered
# by a real browser (headless Chromium): the picture is not blank, the DOM has
# every section and chart, the digest matches, and nothing is fetched.
source "$(dirname "$0")/lib.sh"
command -v chromium >/dev/null || fail "chromium is not installed (test/packages.txt; make deps)"
dir=$(mktemp -d /tmp/crm_gdpr_report.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fresh_db report 500
q -d report -c 'SET client_min_messages = warning' -f test/fixtures/registry.sql -f test/fixtures/registers.sql >/dev/null
q -d report -c "DROP ROLE IF EXISTS report_auditor" -c "CREATE ROLE report_auditor IN ROLE gdpr_auditor" >/dev/null
q -d report -c 'SET ROLE report_auditor' -c 'SELECT gdpr.compliance_report()' > "$dir/report.html" ||
  fail "the auditor cannot produce the report"
q -d report -c 'SET ROLE report_auditor' -c "SELECT gdpr.compliance_report('markdown')" > "$dir/report.md"
q -d report -c "DROP ROLE report_auditor" >/dev/null; dropdb report

browse() {  # browse ARGS...: headless Chromium on the report, its own profile, no network
  timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$dir/profile" \
    --proxy-server=127.0.0.1:9 "$@" "file://$dir/report.html" 2>"$dir/chromium.log"
}
browse --window-size=1100,4000 --screenshot="$dir/report.png" >/dev/null || fail "chromium: $(tail -3 "$dir/chromium.log")"
browse --dump-dom > "$dir/dom.html" || fail "chromium --dump-dom: $(tail -3 "$dir/chromium.log")"
[ -n "${REPORT_KEEP:-}" ] && cp "$dir/report.html" "$dir/report.png" "$dir/report.md" "$REPORT_KEEP/"

python3 - "$dir" <<'PY' || fail "the rendered report is wrong (above)"
import hashlib, re, struct, sys, zlib
d = sys.argv[1]
def pixels(path):
    """Distinct colours and the share of non-white pixels of an 8-bit RGB(A) PNG."""
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat, w = 8, b'', 0
    while pos < len(data):
        n, kind = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
        if kind == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', body[:10]); assert depth == 8 and ctype in (2, 6)
        elif kind == b'IDAT': idat += body
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, colours, ink = zlib.decompress(idat), w * bpp, bytearray(w * bpp), set(), 0
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            px = bytes(line[x:x + 3]); colours.add(px); ink += px != b'\xff\xff\xff'
        prev = line
    return len(colours), ink / (w * h)
n, ink = pixels(d + '/report.png')
print(f'png: {n} colours, {ink:.1%} non-white')
assert n >= 16 and ink >= 0.03, 'the picture is blank or nearly so'
dom = open(d + '/dom.html', encoding='utf-8').read()
for s in ['summary', 'register', 'processors', 'consent', 'retention', 'requests', 'breaches', 'dpia', 'access-log', 'quality']:
    assert f'<section id="{s}">' in dom, f'section {s} missing from the DOM'
assert dom.count('<svg') >= 4, 'charts missing'
assert re.search(r'<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>', dom), 'no date'
for word in ['Exemple SAS', 'DPA-2023-004', 'notified late', 'CNIL-2026-004211', 'invalid email', 'intact']:
    assert word in dom, f'{word!r} missing from the report'
for path in ['/report.html', '/report.md']:
    doc = open(d + path, encoding='utf-8').read()
    body, _, tail = doc.partition('<!-- sha256 -->\n')
    assert hashlib.sha256(body.encode()).hexdigest() in tail, f'{path}: digest does not match'
assert '## Data quality' in open(d + '/report.md', encoding='utf-8').read()
PY
if grep -qiE 'ERR_(PROXY|CONNECTION|NAME)' "$dir/chromium.log"; then fail "the report fetched something: $(grep -m1 -iE 'ERR_' "$dir/chromium.log")"; fi
echo "report ok"
