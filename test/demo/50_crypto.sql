-- Demo: pseudonymisation, encryption, masking, crypto-shredding.
\set QUIET on
\pset footer off
\set VERBOSITY default
\set SHOW_CONTEXT never
\echo
\echo '=== Pseudonymisation and encryption (libsodium) =============================='
\echo 'The master key is in a file outside the database (crm_gdpr.key_file); SQL sees only its fingerprint:'
SELECT * FROM gdpr.key_status();
\echo
\echo 'Keyed pseudonyms: the same e-mail gives the same token (joins still work), another domain another one.'
SELECT email, gdpr.pseudonymise(email) AS pseudonym, gdpr.pseudonymise(email, 'analytics') AS for_analytics,
       gdpr.mask_email(email) AS masked, gdpr.mask_phone(phone) AS phone, gdpr.age_band(birth_date) AS age,
       gdpr.generalise_postcode(postcode) AS department
  FROM crm.contacts ORDER BY id LIMIT 5;
\echo
\echo 'Authenticated encryption bound to its column: a ciphertext moved elsewhere does not decrypt.'
SELECT gdpr.encrypt(notes, 'crm.contacts.notes') AS ciphertext FROM crm.contacts WHERE notes IS NOT NULL
 ORDER BY id LIMIT 1 \gset
SELECT left(:'ciphertext', 60) || '...' AS ciphertext, gdpr.decrypt(:'ciphertext', 'crm.contacts.notes') AS decrypted;
\set ON_ERROR_STOP off
SELECT gdpr.decrypt(:'ciphertext', 'crm.orders.iban');
\set ON_ERROR_STOP on
\echo
\echo 'Crypto-shredding: a value encrypted under the subject''s own key dies with the key.'
SELECT min(id) AS patient FROM crm.contacts \gset
SELECT gdpr.encrypt_for_subject('diagnostic: allergie aux arachides', :'patient') AS medical \gset
SELECT gdpr.decrypt(:'medical') AS before_shredding;
SELECT gdpr.shred_subject(:'patient') \g /dev/null
\set ON_ERROR_STOP off
SELECT gdpr.decrypt(:'medical') AS after_shredding;
\set ON_ERROR_STOP on
