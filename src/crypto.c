/*
 * crypto.c — pseudonymisation, authenticated encryption and per-subject keys.
 *
 * Ciphertext layout (all versions start with the same 4 bytes):
 *   "GD" | version (1) | kind (1) | key reference (8) | nonce (24) | AEAD output
 * kind 'M': encrypted under a subkey of the master key named by its
 * fingerprint; kind 'S': under a subject's data key, named by its id in
 * gdpr.subject_keys.  The 12-byte prefix and the caller's context are the
 * associated data, so a ciphertext moved to another column (another context)
 * or relabelled with another key fails to authenticate.
 *
 * Per-row costs are what the benchmark measures: derived keys are cached per
 * backend and nonces come from a buffer refilled by one getrandom call per
 * 170 encryptions.
 */
#include "postgres.h"

#include <sodium.h>

#include "fmgr.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/array.h"
#include "catalog/pg_type.h"

#include "access_log.h"
#include "keys.h"

#define CT_MAGIC0 'G'
#define CT_MAGIC1 'D'
#define CT_VERSION 1
#define CT_KIND_MASTER 'M'
#define CT_KIND_SUBJECT 'S'
#define CT_PREFIX_BYTES (4 + KEY_FINGERPRINT_BYTES)
#define CT_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define CT_HEADER_BYTES (CT_PREFIX_BYTES + CT_NONCE_BYTES)
#define CT_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define DATA_KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES

/* The context of crypto_kdf_derive_from_key; subkey ids (one per use) in keys.h. */
#define KDF_CONTEXT "crmgdpr1"

/* --- derived keys, cached per backend in guarded memory ---------------- */

typedef struct DerivedKey
{
	unsigned char fingerprint[KEY_FINGERPRINT_BYTES];
	uint64		subkey_id;
	char	   *domain;			/* pseudonym domain, or NULL */
	unsigned char *key;			/* sodium_malloc'd */
} DerivedKey;

#define MAX_DERIVED 16
static DerivedKey derived[MAX_DERIVED];
static int	n_derived = 0;
static int	next_evict = 0;

/* Locked memory (sodium_malloc: guarded, never swapped, wiped when freed). */
void *
crm_gdpr_locked_alloc(size_t size)
{
	void	   *p = sodium_malloc(size);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not allocate locked memory for a key"),
				 errhint("The server's user may lock too little memory (ulimit -l).")));
	return p;
}

static void
free_derived(DerivedKey *d)
{
	sodium_free(d->key);
	d->key = NULL;
	if (d->domain)
		pfree(d->domain);
	d->domain = NULL;
}

void
crm_gdpr_crypto_forget_derived(void)
{
	crm_gdpr_log_refs_forget();
	for (int i = 0; i < n_derived; i++)
		free_derived(&derived[i]);
	n_derived = 0;
	next_evict = 0;
}

/*
 * The subkey of one master key for subkey_id (and pseudonym domain).  What
 * can fail (the allocations) comes before a slot is touched: an error never
 * leaves a slot naming freed memory.
 */
const unsigned char *
crm_gdpr_derived_key(const unsigned char *master, const unsigned char *fingerprint, uint64 subkey_id,
					 const char *domain)
{
	DerivedKey *d;
	unsigned char base[32];
	unsigned char *key;
	char	   *domain_copy;

	for (int i = 0; i < n_derived; i++)
	{
		d = &derived[i];
		if (d->subkey_id == subkey_id && memcmp(d->fingerprint, fingerprint, KEY_FINGERPRINT_BYTES) == 0 &&
			((domain == NULL && d->domain == NULL) ||
			 (domain && d->domain && strcmp(domain, d->domain) == 0)))
			return d->key;
	}
	if (master == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a key is derived from a master key that is not loaded")));
	key = crm_gdpr_locked_alloc(32);
	domain_copy = domain ? MemoryContextStrdup(TopMemoryContext, domain) : NULL;
	if (n_derived < MAX_DERIVED)
		d = &derived[n_derived++];
	else
	{
		d = &derived[next_evict];
		next_evict = (next_evict + 1) % MAX_DERIVED;
		free_derived(d);
	}
	d->key = key;
	d->domain = domain_copy;
	memcpy(d->fingerprint, fingerprint, KEY_FINGERPRINT_BYTES);
	d->subkey_id = subkey_id;
	crm_gdpr_derive_subkey(base, subkey_id, KDF_CONTEXT, master);
	if (domain)
		crypto_generichash(d->key, 32, (const unsigned char *) domain, strlen(domain), base, sizeof(base));
	else
		memcpy(d->key, base, 32);
	sodium_memzero(base, sizeof(base));
	return d->key;
}

static const unsigned char *
current_subkey(uint64 subkey_id, const char *domain, const unsigned char **fingerprint)
{
	const unsigned char *master = crm_gdpr_current_key(fingerprint);

	return crm_gdpr_derived_key(master, *fingerprint, subkey_id, domain);
}

/* --- nonces ------------------------------------------------------------ */

static unsigned char nonce_pool[CT_NONCE_BYTES * 170];
static size_t nonce_pos = sizeof(nonce_pool);

static void
next_nonce(unsigned char *nonce)
{
	if (nonce_pos + CT_NONCE_BYTES > sizeof(nonce_pool))
	{
		randombytes_buf(nonce_pool, sizeof(nonce_pool));
		nonce_pos = 0;
	}
	memcpy(nonce, nonce_pool + nonce_pos, CT_NONCE_BYTES);
	sodium_memzero(nonce_pool + nonce_pos, CT_NONCE_BYTES);
	nonce_pos += CT_NONCE_BYTES;
}

/* --- pseudonymise ------------------------------------------------------ */

/*
 * Per call site (fn_extra): the BLAKE2b state already keyed with the domain's
 * key, so that a row costs one copy of the state and the hash of its value
 * rather than a key lookup and the keyed initialisation.  (libsodium keeps
 * the key block buffered until the final: both ways hash two blocks.)  The
 * keyed state is key material: it lives in locked memory, freed (and so
 * wiped) when the call site's memory goes, error or not.
 */
typedef struct PseudonymCache
{
	uint64		key_generation;
	crypto_generichash_state *keyed;	/* locked memory, or NULL */
	int			domain_len;
	char		domain[FLEXIBLE_ARRAY_MEMBER];
} PseudonymCache;

static void
free_pseudonym_cache(void *arg)
{
	PseudonymCache *cache = (PseudonymCache *) arg;

	if (cache->keyed)
		sodium_free(cache->keyed);
	cache->keyed = NULL;
}

/* A cache for domains of up to len bytes, its locked state taken over from old if any. */
static PseudonymCache *
new_pseudonym_cache(FmgrInfo *flinfo, PseudonymCache *old, int len)
{
	MemoryContextCallback *cb = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(MemoryContextCallback));
	PseudonymCache *cache = MemoryContextAllocZero(flinfo->fn_mcxt, offsetof(PseudonymCache, domain) + len + 1);

	cb->func = free_pseudonym_cache;
	cb->arg = cache;
	MemoryContextRegisterResetCallback(flinfo->fn_mcxt, cb);
	if (old)
	{
		cache->keyed = old->keyed;
		old->keyed = NULL;
	}
	flinfo->fn_extra = cache;
	if (cache->keyed == NULL)
		cache->keyed = crm_gdpr_locked_alloc(sizeof(crypto_generichash_state));
	return cache;
}

static PseudonymCache *
pseudonym_cache(FmgrInfo *flinfo, text *domain)
{
	PseudonymCache *cache = (PseudonymCache *) flinfo->fn_extra;
	int			len = VARSIZE_ANY_EXHDR(domain);
	uint64		generation = crm_gdpr_key_generation();

	if (cache == NULL || cache->key_generation != generation || cache->domain_len != len ||
		memcmp(cache->domain, VARDATA_ANY(domain), len) != 0)
	{
		char	   *name = text_to_cstring(domain);
		const unsigned char *fp;
		const unsigned char *key = current_subkey(SUBKEY_PSEUDONYM, name, &fp);

		if (cache == NULL || cache->domain_len < len || cache->keyed == NULL)
			cache = new_pseudonym_cache(flinfo, cache, len);
		cache->key_generation = 0;	/* invalid until keyed below */
		crypto_generichash_init(cache->keyed, key, 32, PSEUDONYM_BYTES);
		memcpy(cache->domain, name, len);
		cache->domain_len = len;
		cache->key_generation = generation;
		pfree(name);
	}
	return cache;
}

/*
 * base64url without padding of the 16-byte hash into 22 characters.  A
 * lookup table rather than sodium_bin2base64: the token is public, so it
 * needs no constant-time encoding, and this runs once per row.
 */
void
crm_gdpr_encode_token(const unsigned char *hash, char *out)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	int			o = 0;

	for (int i = 0; i < 15; i += 3)
	{
		uint32		v = (hash[i] << 16) | (hash[i + 1] << 8) | hash[i + 2];

		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	out[o++] = alphabet[hash[15] >> 2];
	out[o++] = alphabet[(hash[15] & 3) << 4];
}

PG_FUNCTION_INFO_V1(gdpr_pseudonymise);
Datum
gdpr_pseudonymise(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);
	PseudonymCache *cache = pseudonym_cache(fcinfo->flinfo, PG_GETARG_TEXT_PP(1));
	crypto_generichash_state state;
	unsigned char hash[PSEUDONYM_BYTES];
	text	   *token = (text *) palloc(VARHDRSZ + PSEUDONYM_CHARS);

	memcpy(&state, cache->keyed, sizeof(state));
	crypto_generichash_update(&state, (const unsigned char *) VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	crypto_generichash_final(&state, hash, sizeof(hash));
	sodium_memzero(&state, sizeof(state));
	crm_gdpr_encode_token(hash, VARDATA(token));
	SET_VARSIZE(token, VARHDRSZ + PSEUDONYM_CHARS);
	PG_RETURN_TEXT_P(token);
}

/* --- encryption -------------------------------------------------------- */

static void
check_plaintext_size(size_t len)
{
	if (len > MaxAllocSize - VARHDRSZ - CT_HEADER_BYTES - CT_TAG_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value of %zu bytes is too large to encrypt", len)));
}

/* Encrypt value under key into a new bytea with the given 12-byte prefix. */
static bytea *
seal(const unsigned char *prefix, const unsigned char *key, text *value, text *context)
{
	size_t		mlen = VARSIZE_ANY_EXHDR(value);
	size_t		ctx_len = VARSIZE_ANY_EXHDR(context);
	bytea	   *out;
	unsigned char *p;
	unsigned char *ad;
	unsigned long long clen;

	check_plaintext_size(mlen);
	out = (bytea *) palloc(VARHDRSZ + CT_HEADER_BYTES + mlen + CT_TAG_BYTES);
	p = (unsigned char *) VARDATA(out);
	memcpy(p, prefix, CT_PREFIX_BYTES);
	next_nonce(p + CT_PREFIX_BYTES);
	ad = palloc(CT_PREFIX_BYTES + ctx_len);
	memcpy(ad, prefix, CT_PREFIX_BYTES);
	memcpy(ad + CT_PREFIX_BYTES, VARDATA_ANY(context), ctx_len);
	crypto_aead_xchacha20poly1305_ietf_encrypt(p + CT_HEADER_BYTES, &clen,
											   (const unsigned char *) VARDATA_ANY(value), mlen,
											   ad, CT_PREFIX_BYTES + ctx_len, NULL,
											   p + CT_PREFIX_BYTES, key);
	pfree(ad);
	SET_VARSIZE(out, VARHDRSZ + CT_HEADER_BYTES + clen);
	return out;
}

static void
fill_prefix(unsigned char *prefix, char kind, const unsigned char *ref)
{
	prefix[0] = CT_MAGIC0;
	prefix[1] = CT_MAGIC1;
	prefix[2] = CT_VERSION;
	prefix[3] = kind;
	memcpy(prefix + 4, ref, KEY_FINGERPRINT_BYTES);
}

PG_FUNCTION_INFO_V1(gdpr_encrypt);
Datum
gdpr_encrypt(PG_FUNCTION_ARGS)
{
	const unsigned char *fp;
	const unsigned char *key = current_subkey(SUBKEY_ENCRYPT, NULL, &fp);
	unsigned char prefix[CT_PREFIX_BYTES];

	fill_prefix(prefix, CT_KIND_MASTER, fp);
	PG_RETURN_BYTEA_P(seal(prefix, key, PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1)));
}

/* Check a ciphertext's framing; 22P03 when it is not one of ours. */
static const unsigned char *
ciphertext_bytes(bytea *ct, size_t *len)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(ct);

	*len = VARSIZE_ANY_EXHDR(ct);
	if (*len < CT_HEADER_BYTES + CT_TAG_BYTES || p[0] != CT_MAGIC0 || p[1] != CT_MAGIC1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("value is not a crm_gdpr ciphertext"),
				 errdetail("It is too short or lacks the crm_gdpr header.")));
	if (p[2] != CT_VERSION || (p[3] != CT_KIND_MASTER && p[3] != CT_KIND_SUBJECT))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("unsupported crm_gdpr ciphertext version %d, kind %d", p[2], p[3])));
	return p;
}

static text *
open_sealed(const unsigned char *p, size_t len, const unsigned char *key, text *context)
{
	size_t		ctx_len = VARSIZE_ANY_EXHDR(context);
	unsigned char *ad = palloc(CT_PREFIX_BYTES + ctx_len);
	text	   *out = (text *) palloc(VARHDRSZ + len);
	unsigned long long mlen;
	int			rc;

	memcpy(ad, p, CT_PREFIX_BYTES);
	memcpy(ad + CT_PREFIX_BYTES, VARDATA_ANY(context), ctx_len);
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) VARDATA(out), &mlen, NULL,
													p + CT_HEADER_BYTES, len - CT_HEADER_BYTES,
													ad, CT_PREFIX_BYTES + ctx_len,
													p + CT_PREFIX_BYTES, key);
	pfree(ad);
	if (rc != 0)
	{
		pfree(out);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("ciphertext could not be authenticated"),
				 errdetail("It was altered or truncated, or it is decrypted with another context than it was encrypted with.")));
	}
	SET_VARSIZE(out, VARHDRSZ + mlen);
	return out;
}

/* --- per-subject data keys, wrapped by the master key ------------------ */

/* wrapped = fingerprint (8) | nonce (24) | AEAD(data key), AD = ad */
static void
unwrap_key(bytea *wrapped, text *ad, unsigned char *dek)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(wrapped);
	size_t		len = VARSIZE_ANY_EXHDR(wrapped);
	const unsigned char *master;
	unsigned long long dlen;

	if (len != KEY_FINGERPRINT_BYTES + CT_NONCE_BYTES + DATA_KEY_BYTES + CT_TAG_BYTES)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("a wrapped subject key is damaged")));
	master = crm_gdpr_loaded_key(p, "a subject key is wrapped by a master key that is not loaded");
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(dek, &dlen, NULL,
												   p + KEY_FINGERPRINT_BYTES + CT_NONCE_BYTES,
												   len - KEY_FINGERPRINT_BYTES - CT_NONCE_BYTES,
												   (const unsigned char *) VARDATA_ANY(ad), VARSIZE_ANY_EXHDR(ad),
												   p + KEY_FINGERPRINT_BYTES,
												   crm_gdpr_derived_key(master, p, SUBKEY_WRAP, NULL)) != 0)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("a wrapped subject key could not be authenticated")));
}

static bytea *
wrap_key(const unsigned char *dek, text *ad)
{
	const unsigned char *fp;
	const unsigned char *wk = current_subkey(SUBKEY_WRAP, NULL, &fp);
	size_t		len = KEY_FINGERPRINT_BYTES + CT_NONCE_BYTES + DATA_KEY_BYTES + CT_TAG_BYTES;
	bytea	   *out = (bytea *) palloc(VARHDRSZ + len);
	unsigned char *p = (unsigned char *) VARDATA(out);

	memcpy(p, fp, KEY_FINGERPRINT_BYTES);
	next_nonce(p + KEY_FINGERPRINT_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(p + KEY_FINGERPRINT_BYTES + CT_NONCE_BYTES, NULL,
											   dek, DATA_KEY_BYTES,
											   (const unsigned char *) VARDATA_ANY(ad), VARSIZE_ANY_EXHDR(ad),
											   NULL, p + KEY_FINGERPRINT_BYTES, wk);
	SET_VARSIZE(out, VARHDRSZ + len);
	return out;
}

/*
 * A subject's data key lives in locked memory for one use: made anew
 * (wrapped NULL) or unwrapped, handed to use(), then freed (and so wiped) on
 * every path, an error in unwrap_key() or use() included.
 */
typedef void *(*DataKeyUse) (const unsigned char *dek, FunctionCallInfo fcinfo);

static void *
with_data_key(bytea *wrapped, text *ad, DataKeyUse use, FunctionCallInfo fcinfo)
{
	unsigned char *volatile dek = crm_gdpr_locked_alloc(DATA_KEY_BYTES);
	void	   *volatile result = NULL;

	PG_TRY();
	{
		if (wrapped)
			unwrap_key(wrapped, ad, dek);
		else
			crypto_aead_xchacha20poly1305_ietf_keygen(dek);
		result = use(dek, fcinfo);
	}
	PG_FINALLY();
	{
		sodium_free(dek);
	}
	PG_END_TRY();
	return result;
}

/* (ad): a new data key, wrapped. */
static void *
wrap_new_key(const unsigned char *dek, FunctionCallInfo fcinfo)
{
	return wrap_key(dek, PG_GETARG_TEXT_PP(0));
}

PG_FUNCTION_INFO_V1(gdpr_new_wrapped_key);
Datum
gdpr_new_wrapped_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(with_data_key(NULL, NULL, wrap_new_key, fcinfo));
}

/* (wrapped, ad): the same data key wrapped under the current master key. */
static void *
wrap_again(const unsigned char *dek, FunctionCallInfo fcinfo)
{
	return wrap_key(dek, PG_GETARG_TEXT_PP(1));
}

/* Wrap again under the current master key (rotation). */
PG_FUNCTION_INFO_V1(gdpr_rewrap_key);
Datum
gdpr_rewrap_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(with_data_key(PG_GETARG_BYTEA_PP(0), PG_GETARG_TEXT_PP(1), wrap_again, fcinfo));
}

/* (value, context, key_id, ...): value sealed under the data key. */
static void *
seal_under_subject_key(const unsigned char *dek, FunctionCallInfo fcinfo)
{
	int64		key_id = PG_GETARG_INT64(2);
	unsigned char prefix[CT_PREFIX_BYTES];
	unsigned char ref[KEY_FINGERPRINT_BYTES];

	for (int i = 0; i < KEY_FINGERPRINT_BYTES; i++)
		ref[i] = (unsigned char) (key_id >> (8 * (KEY_FINGERPRINT_BYTES - 1 - i)));
	fill_prefix(prefix, CT_KIND_SUBJECT, ref);
	return seal(prefix, dek, PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1));
}

/* (value, context, key_id, wrapped, ad): encrypt under a subject's data key. */
PG_FUNCTION_INFO_V1(gdpr_encrypt_with_subject_key);
Datum
gdpr_encrypt_with_subject_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(with_data_key(PG_GETARG_BYTEA_PP(3), PG_GETARG_TEXT_PP(4), seal_under_subject_key, fcinfo));
}

/* The subject key id of a ciphertext, or NULL for a master-key one. */
PG_FUNCTION_INFO_V1(gdpr_ciphertext_subject_key);
Datum
gdpr_ciphertext_subject_key(PG_FUNCTION_ARGS)
{
	size_t		len;
	const unsigned char *p = ciphertext_bytes(PG_GETARG_BYTEA_PP(0), &len);
	int64		id = 0;

	if (p[3] != CT_KIND_SUBJECT)
		PG_RETURN_NULL();
	for (int i = 0; i < KEY_FINGERPRINT_BYTES; i++)
		id = (id << 8) | p[4 + i];
	PG_RETURN_INT64(id);
}

/* The fingerprint (hex) of the master key of a ciphertext, NULL for a subject one. */
PG_FUNCTION_INFO_V1(gdpr_ciphertext_key);
Datum
gdpr_ciphertext_key(PG_FUNCTION_ARGS)
{
	size_t		len;
	const unsigned char *p = ciphertext_bytes(PG_GETARG_BYTEA_PP(0), &len);
	char		hex[2 * KEY_FINGERPRINT_BYTES + 1];

	if (p[3] != CT_KIND_MASTER)
		PG_RETURN_NULL();
	sodium_bin2hex(hex, sizeof(hex), p + 4, KEY_FINGERPRINT_BYTES);
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/* (ciphertext, context, ...): the value a ciphertext under the data key seals. */
static void *
open_under_subject_key(const unsigned char *dek, FunctionCallInfo fcinfo)
{
	size_t		len;
	const unsigned char *p = ciphertext_bytes(PG_GETARG_BYTEA_PP(0), &len);

	return open_sealed(p, len, dek, PG_GETARG_TEXT_PP(1));
}

/* (ciphertext, context, wrapped, ad): decrypt; wrapped and ad for subject keys. */
PG_FUNCTION_INFO_V1(gdpr_decrypt_raw);
Datum
gdpr_decrypt_raw(PG_FUNCTION_ARGS)
{
	size_t		len;
	const unsigned char *p = ciphertext_bytes(PG_GETARG_BYTEA_PP(0), &len);
	text	   *context = PG_GETARG_TEXT_PP(1);
	text	   *out;

	if (p[3] == CT_KIND_MASTER)
	{
		const unsigned char *master = crm_gdpr_loaded_key(p + 4, "ciphertext was encrypted with a master key that is not loaded");

		out = open_sealed(p, len, crm_gdpr_derived_key(master, p + 4, SUBKEY_ENCRYPT, NULL), context);
	}
	else
	{
		if (PG_ARGISNULL(2))
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("subject key not supplied")));
		out = with_data_key(PG_GETARG_BYTEA_PP(2), PG_GETARG_TEXT_PP(3), open_under_subject_key, fcinfo);
	}
	PG_RETURN_TEXT_P(out);
}

/* Fingerprints of the loaded master keys, current first. */
PG_FUNCTION_INFO_V1(gdpr_key_fingerprints);
Datum
gdpr_key_fingerprints(PG_FUNCTION_ARGS)
{
	const unsigned char *fps[16];
	int			n = crm_gdpr_key_fingerprints(fps, 16);
	Datum	   *items = palloc(sizeof(Datum) * Max(n, 1));
	char		hex[2 * KEY_FINGERPRINT_BYTES + 1];

	for (int i = 0; i < n; i++)
	{
		sodium_bin2hex(hex, sizeof(hex), fps[i], KEY_FINGERPRINT_BYTES);
		items[i] = CStringGetTextDatum(hex);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT));
}
