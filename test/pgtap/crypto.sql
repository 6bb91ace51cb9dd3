-- Pseudonymisation, encryption, subject keys and masking, under the committed
-- TEST key (test/fixtures/test_master.key).  The known answers were computed
-- outside the extension from the documented construction (doc/crypto.md).
BEGIN;
SELECT plan(44);

-- Known answers.
SELECT is(gdpr.pseudonymise('helene.martin@example.fr'), '8u2oiq4YCxBsbBWCc2IfaQ', 'known answer, default domain');
SELECT is(gdpr.pseudonymise('helene.martin@example.fr', 'crm.contacts.email'), 'usAVo6OkkXF-a5JFimtC1g',
          'known answer, another domain');
SELECT is(gdpr.pseudonymise('Zoé Ŝtrañge ✓'), '7aBFzXTYGvyi_s1a21xKyg', 'known answer, multibyte text');
SELECT is(gdpr.pseudonymise('x'), gdpr.pseudonymise('x'), 'deterministic');
SELECT isnt(gdpr.pseudonymise('x', 'a'), gdpr.pseudonymise('x', 'b'), 'different across domains');
SELECT is(gdpr.pseudonymise(NULL), NULL, 'NULL in, NULL out');
SELECT ok(gdpr.pseudonymise('') ~ '^[A-Za-z0-9_-]{22}$', 'a 22-character base64url token');
SELECT is((SELECT count(DISTINCT gdpr.pseudonymise(email)) FROM crm.contacts), (SELECT count(DISTINCT email) FROM crm.contacts),
          'no collision over the sample CRM');

-- Encryption round trips.
SELECT is(gdpr.decrypt(gdpr.encrypt('secret')), 'secret', 'round trip');
SELECT is(gdpr.decrypt(gdpr.encrypt('')), '', 'empty string');
SELECT is(gdpr.decrypt(gdpr.encrypt('Émile Zoé Łukasz 日本 ✓', 'crm.contacts.notes'), 'crm.contacts.notes'),
          'Émile Zoé Łukasz 日本 ✓', 'multibyte text with a context');
SELECT is(md5(gdpr.decrypt(gdpr.encrypt(repeat('é', 500000)))), md5(repeat('é', 500000)), '1 MB of text');
SELECT isnt(gdpr.encrypt('same'), gdpr.encrypt('same'), 'a random nonce: the same text encrypts differently');
SELECT is(length(gdpr.encrypt('')), 52, 'header 36 bytes, tag 16 bytes');
SELECT is(gdpr.encrypt(NULL), NULL, 'NULL in, NULL out');
SELECT is(gdpr.ciphertext_key(gdpr.encrypt('x')), (SELECT fingerprint FROM gdpr.key_status() WHERE is_current),
          'a ciphertext names its key by fingerprint');

-- Bad ciphertexts: each a clear error.
SELECT throws_ok($$SELECT gdpr.decrypt(gdpr.encrypt('secret', 'crm.contacts.notes'), 'crm.orders.iban')$$,
                 'XX001', 'ciphertext could not be authenticated', 'wrong context (moved to another column)');
SELECT throws_ok($$SELECT gdpr.decrypt(set_byte(c, 39, get_byte(c, 39) # 1)) FROM gdpr.encrypt('secret') c$$,
                 'XX001', NULL, 'tampered ciphertext (one bit flipped)');
SELECT throws_ok($$SELECT gdpr.decrypt(substr(gdpr.encrypt('a longer secret value'), 1, 60))$$,
                 'XX001', NULL, 'truncated ciphertext');
SELECT throws_ok($$SELECT gdpr.decrypt('\x0102'::bytea)$$, '22P03', 'value is not a crm_gdpr ciphertext',
                 'not a ciphertext');
SELECT throws_ok($$SELECT gdpr.decrypt(set_byte(c, 4, get_byte(c, 4) # 1)) FROM gdpr.encrypt('x') c$$,
                 '55000', 'ciphertext was encrypted with a master key that is not loaded', 'unknown key version');
SELECT throws_ok($$SELECT gdpr.decrypt(overlay(gdpr.encrypt('x') placing '\x09'::bytea from 3 for 1))$$,
                 '22P03', NULL, 'unknown format version');

-- Per-subject keys and crypto-shredding.
SELECT gdpr.register_subject_table('crm.contacts', 'id');
SELECT gdpr.encrypt_for_subject('his secret', '7') AS c7 \gset
SELECT gdpr.encrypt_for_subject('another', '7') AS c7b \gset
SELECT gdpr.encrypt_for_subject('hers', '8') AS c8 \gset
SELECT is(gdpr.decrypt(:'c7'), 'his secret', 'a subject-key ciphertext decrypts');
SELECT is(gdpr._ciphertext_subject_key(:'c7'), gdpr._ciphertext_subject_key(:'c7b'), 'one key per subject');
SELECT isnt(gdpr._ciphertext_subject_key(:'c7'), gdpr._ciphertext_subject_key(:'c8'), 'another subject, another key');
SELECT ok((SELECT bool_and(subject_ref !~ '^[0-9]+$') FROM gdpr.subject_keys), 'keys name subjects by pseudonym');
SELECT ok((SELECT bool_and(length(wrapped) = 80) FROM gdpr.subject_keys), 'keys are stored wrapped (80 bytes)');
SELECT throws_ok($$SELECT gdpr.encrypt_for_subject('x', '999999')$$, 'P0002', NULL, 'an unknown subject');
SELECT lives_ok($$SELECT gdpr.shred_subject('7')$$, 'shred his key');
SELECT throws_ok(format('SELECT gdpr.decrypt(%L::bytea)', :'c7'), 'GD001', 'the data key of this subject was shredded',
                 'his ciphertexts no longer decrypt, with SQLSTATE GD001');
SELECT is(gdpr.decrypt(:'c8'), 'hers', 'others still decrypt');
SELECT throws_ok($$SELECT gdpr.shred_subject('7')$$, '42704', NULL, 'shredding twice');

-- Rotation: a column made with the old key is re-encrypted in batches.
CREATE TABLE crm.secrets (id int PRIMARY KEY, v bytea);
INSERT INTO crm.secrets SELECT i, gdpr.encrypt('value ' || i, 'crm.secrets.v') FROM generate_series(1, 25) i;
SELECT is(gdpr.rotate_key('crm.secrets', 'v', 'crm.secrets.v', 10), 0::bigint,
          'nothing to rotate when every value uses the current key');
SELECT throws_ok($$SELECT gdpr.rotate_key('crm.secrets', 'id', '', 10)$$, '42804', NULL, 'only bytea columns');
SELECT throws_ok($$SELECT gdpr.rotate_key('crm.secrets', 'v', '', 0)$$, '22023', NULL, 'a positive batch size');

-- Masking and generalisation.
SELECT is(gdpr.mask_email('hélène.martin@example.fr'), 'h************@example.fr', 'mask_email keeps the domain');
SELECT is(gdpr.mask_phone('+33 6 12 34 56 78'), '+** * ** ** ** 78', 'mask_phone keeps the last two digits');
SELECT is(gdpr.mask('Françoise', 2, 1), 'Fr******e', 'mask counts characters, not bytes');
SELECT is(gdpr.mask('Zoé', 2, 2), '***', 'too short to hide anything: hidden whole');
SELECT throws_ok($$SELECT gdpr.mask('x', -1, 0)$$, '22023', NULL, 'negative lengths');
SELECT is(gdpr.generalise('2024-05-17 13:45:00+00'::timestamptz, 'month'), date_trunc('month', '2024-05-17 13:45:00+00'::timestamptz),
          'generalise to the month');
SELECT throws_ok($$SELECT gdpr.generalise(now(), 'minute')$$, '22023', NULL, 'unknown unit');
SELECT is(gdpr.age_band((current_date - interval '34 years 2 days')::date), '30-39', 'age band of width 10');
SELECT is(ARRAY[gdpr.generalise_postcode('75002'), gdpr.generalise_postcode('20090'), gdpr.generalise_postcode('20200'),
                gdpr.generalise_postcode('97411'), gdpr.generalise_postcode('SW1A')],
          ARRAY['75', '2A', '2B', '974', NULL], 'postcodes to departments (Corsica, overseas), NULL when not French');

SELECT * FROM finish();
ROLLBACK;
