#!/usr/bin/env bash
# Released scripts never change: a release is what DBAs installed, and every
# later upgrade starts from exactly it.  Their digests are pinned here; a new
# release adds its lines (and nothing else changes).
source "$(dirname "$0")/lib.sh"
cd releases
sha256sum --quiet -c - <<'SUMS' || fail "a released script changed (releases/ is frozen)"
925aeef5011b52e4482021f97afe234b6d3452a5e5ab580b25b834265d545300  crm_gdpr--0.1.sql
342500bc7447681666b081a10e1f7f3bd62d133b57b854ebeda7b2bfab6fa9b8  crm_gdpr--0.2.sql
20fc7b4724428f42c83cee3cc994bb7b674ab9c07ee258728667742fc0f091aa  crm_gdpr--0.1--0.2.sql
SUMS
# Every file in releases/ is pinned above.
[ "$(ls | wc -l)" = 3 ] || fail "releases/ has a file whose digest is not pinned: $(ls)"
echo "releases unchanged"
