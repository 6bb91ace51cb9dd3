/*
 * keys.h — master keys (keys.c) and the keys derived from them (crypto.c).
 */
#ifndef CRM_GDPR_KEYS_H
#define CRM_GDPR_KEYS_H

/* Fingerprints name master keys in ciphertexts, MACs and seals. */
#define KEY_FINGERPRINT_BYTES 8

/* keys.c: the master keys of crm_gdpr.key_file and crm_gdpr.retired_key_files */
extern void crm_gdpr_keys_changed(void);
extern const unsigned char *crm_gdpr_current_key(const unsigned char **fingerprint);
extern const unsigned char *crm_gdpr_key_by_fingerprint(const unsigned char *fingerprint);
extern const unsigned char *crm_gdpr_loaded_key(const unsigned char *fingerprint, const char *why);
extern uint64 crm_gdpr_key_generation(void);
extern void crm_gdpr_derive_subkey(unsigned char *subkey, uint64 subkey_id, const char *context,
								   const unsigned char *master);
extern int	crm_gdpr_key_fingerprints(const unsigned char **fps, int max);

/* crypto.c: subkeys of a master key, one per use, cached per backend */
#define SUBKEY_ENCRYPT 1
#define SUBKEY_PSEUDONYM 2
#define SUBKEY_WRAP 3
#define SUBKEY_LOG_MAC 4
extern const unsigned char *crm_gdpr_derived_key(const unsigned char *master, const unsigned char *fingerprint,
												 uint64 subkey_id, const char *domain);
extern void crm_gdpr_crypto_forget_derived(void);

/* A pseudonym: 16 bytes of keyed BLAKE2b, written as 22 base64url characters. */
#define PSEUDONYM_BYTES 16
#define PSEUDONYM_CHARS 22
extern void crm_gdpr_encode_token(const unsigned char *hash, char *out);

/* locked (sodium_malloc'd) memory, or an ERROR */
extern void *crm_gdpr_locked_alloc(size_t size);

#endif							/* CRM_GDPR_KEYS_H */
