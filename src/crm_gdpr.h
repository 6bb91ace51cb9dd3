/*
 * crm_gdpr.h — what the module's C files share.
 */
#ifndef CRM_GDPR_H
#define CRM_GDPR_H

/* Whether the library was loaded through shared_preload_libraries. */
extern bool crm_gdpr_preloaded(void);

/* Raise a clear error, with a hint, when a feature needs preloading. */
extern void crm_gdpr_require_preload(const char *feature);


/* Run SPI as the owner of a trigger function (see owner_context.c). */
typedef struct OwnerContext
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nest_level;
} OwnerContext;

extern void crm_gdpr_enter_owner_context(Oid fn_oid, OwnerContext *ctx);
extern void crm_gdpr_leave_owner_context(OwnerContext *ctx);

/* Keys (keys.c).  Fingerprints name keys in ciphertexts. */
#define KEY_FINGERPRINT_BYTES 8
extern void crm_gdpr_keys_init(void);
extern const unsigned char *crm_gdpr_current_key(const unsigned char **fingerprint);
extern const unsigned char *crm_gdpr_key_by_fingerprint(const unsigned char *fingerprint);
extern bool crm_gdpr_key_is_current(const unsigned char *fingerprint);
extern uint64 crm_gdpr_key_generation(void);
extern void crm_gdpr_derive_subkey(unsigned char *subkey, uint64 subkey_id, const char *context,
								   const unsigned char *master);
extern int	crm_gdpr_key_fingerprints(const unsigned char **fps, int max);

/* The purge worker (worker.c): GUCs, and the worker itself when preloading. */
extern void crm_gdpr_worker_init(bool preloading);

/* Crypto (crypto.c): drop keys derived from a master key that changed. */
extern void crm_gdpr_crypto_forget_derived(void);

#endif							/* CRM_GDPR_H */
