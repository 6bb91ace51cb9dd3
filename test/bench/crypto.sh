#!/usr/bin/env bash
# make bench-crypto: pseudonymise and encrypt one text column of SCALE rows,
# against a bare scan and pgcrypto's hmac-sha256, raw aes and pgp_sym_encrypt,
# all measured in this run on this machine (best of 3).
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-1000000}
PGP_ROWS=${PGP_ROWS:-20000}
bench_start
psql -X -q <<SQL
CREATE EXTENSION crm_gdpr;
CREATE EXTENSION pgcrypto;
CREATE TABLE emails AS
  SELECT format('contact.%s@example.fr', i) AS email FROM generate_series(1, $SCALE) i;
CREATE TABLE emails_pgp AS SELECT email FROM emails LIMIT $PGP_ROWS;
VACUUM ANALYZE emails, emails_pgp;
SELECT count(length(email)) FROM emails;  -- warm the cache
SQL
bare=$(bench_ms "SELECT count(length(email)) FROM emails")
md5=$(bench_ms "SELECT count(octet_length(md5(email))) FROM emails")
hmac=$(bench_ms "SELECT count(octet_length(public.hmac(email, 'a 32-byte secret key for hmac!!!', 'sha256'))) FROM emails")
pseudo=$(bench_ms "SELECT count(octet_length(gdpr.pseudonymise(email))) FROM emails")
aes=$(bench_ms "SELECT count(octet_length(public.encrypt(convert_to(email, 'UTF8'), '\\x000102030405060708090a0b0c0d0e0f'::bytea, 'aes'))) FROM emails")
enc=$(bench_ms "SELECT count(octet_length(gdpr.encrypt(email, 'emails.email'))) FROM emails")
dec=$(bench_ms "SELECT count(octet_length(gdpr.decrypt(c, 'emails.email'))) FROM (SELECT gdpr.encrypt(email, 'emails.email') AS c FROM emails) x")
pgp=$(bench_ms "SELECT count(octet_length(public.pgp_sym_encrypt(email, 'a passphrase'))) FROM emails_pgp" 1)

pgp_rate=$(awk -v n="$PGP_ROWS" -v ms="$pgp" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
enc_rate=$(awk -v n="$SCALE" -v ms="$enc" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
r_pseudo=$(ratio "$(awk -v a="$pseudo" -v b="$bare" 'BEGIN{print a-b}')" "$(awk -v a="$hmac" -v b="$bare" 'BEGIN{print a-b}')")
r_enc=$(ratio "$enc" "$aes")
r_pgp=$(ratio "$enc_rate" "$pgp_rate")

echo "crypto benchmark: $SCALE e-mail addresses, $(nproc) cores, $(date -u +%Y-%m-%d)"
bench_header
bench_row "bare scan count(length(email))" "-" "$bare ms" "-" "-"
bench_row "md5 (reference)" "-" "$md5 ms" "-" "-"
bench_row "pseudonymise: time added over the scan" "$(awk -v a="$pseudo" -v b="$bare" 'BEGIN{print a-b}') ms" \
  "$(awk -v a="$hmac" -v b="$bare" 'BEGIN{print a-b}') ms" "$r_pseudo" "<= 0.50 x hmac-sha256 ($(verdict "$r_pseudo" 0.5))"
bench_row "encrypt (XChaCha20-Poly1305) vs raw aes" "$enc ms" "$aes ms" "$r_enc" "<= 1.00 x ($(verdict "$r_enc" 1.0))"
bench_row "encrypt rows/s vs pgp_sym_encrypt rows/s" "$enc_rate/s" "$pgp_rate/s" "$r_pgp" ">= 100 x ($(verdict "$r_pgp" 100 ge))"
bench_row "decrypt (with encrypt) total" "$dec ms" "-" "-" "-"
