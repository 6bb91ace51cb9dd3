#!/usr/bin/env bash
# src/upgrade/0.3/50_registers.sql carries the registers' parts of src/sql
# word for word (upgrade.sh compares the result; this says which part drifted).
set -euo pipefail
cd "$(dirname "$0")/../.."
part=src/upgrade/0.3/50_registers.sql
for f in src/sql/82_register.sql src/sql/83_dpia.sql src/sql/84_breaches.sql src/sql/86_requests.sql \
         src/sql/87_quality.sql src/sql/88_report.sql; do
  python3 -c 'import sys; sys.exit(open(sys.argv[1]).read() not in open(sys.argv[2]).read())' "$f" "$part" ||
    { echo "FAIL: $part does not hold $f as it is: copy it again" >&2; exit 1; }
done
echo "registers upgrade part in step"
