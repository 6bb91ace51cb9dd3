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

#include "crm_gdpr.h"

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

#define PSEUDONYM_BYTES 16		/* 128 bits: 22 base64url characters */

/* Subkey ids and contexts of crypto_kdf_derive_from_key, one per use. */
#define KDF_CONTEXT "crmgdpr1"
#define SUBKEY_ENCRYPT 1
#define SUBKEY_PSEUDONYM 2
#define SUBKEY_WRAP 3
#define SUBKEY_LOG_MAC 4

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

static void forget_log_ref(void);

void
crm_gdpr_crypto_forget_derived(void)
{
	forget_log_ref();
	for (int i = 0; i < n_derived; i++)
	{
		sodium_free(derived[i].key);
		if (derived[i].domain)
			pfree(derived[i].domain);
	}
	n_derived = 0;
	next_evict = 0;
}

/* The subkey of one master key for subkey_id (and pseudonym domain). */
static const unsigned char *
derived_key(const unsigned char *master, const unsigned char *fingerprint, uint64 subkey_id,
			const char *domain)
{
	DerivedKey *d;
	unsigned char base[32];

	for (int i = 0; i < n_derived; i++)
	{
		d = &derived[i];
		if (d->subkey_id == subkey_id && memcmp(d->fingerprint, fingerprint, KEY_FINGERPRINT_BYTES) == 0 &&
			((domain == NULL && d->domain == NULL) ||
			 (domain && d->domain && strcmp(domain, d->domain) == 0)))
			return d->key;
	}
	if (n_derived < MAX_DERIVED)
		d = &derived[n_derived++];
	else
	{
		d = &derived[next_evict];
		next_evict = (next_evict + 1) % MAX_DERIVED;
		sodium_free(d->key);
		if (d->domain)
			pfree(d->domain);
	}
	d->key = sodium_malloc(32);
	if (d->key == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not allocate locked memory for a key")));
	memcpy(d->fingerprint, fingerprint, KEY_FINGERPRINT_BYTES);
	d->subkey_id = subkey_id;
	d->domain = domain ? MemoryContextStrdup(TopMemoryContext, domain) : NULL;
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

	return derived_key(master, *fingerprint, subkey_id, domain);
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
 * the key block buffered until the final: both ways hash two blocks.)
 */
typedef struct PseudonymCache
{
	uint64		key_generation;
	crypto_generichash_state keyed;
	int			domain_len;
	char		domain[FLEXIBLE_ARRAY_MEMBER];
} PseudonymCache;

static void
wipe_pseudonym_cache(void *arg)
{
	PseudonymCache *cache = (PseudonymCache *) arg;

	sodium_memzero(&cache->keyed, sizeof(cache->keyed));
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

		if (cache == NULL || cache->domain_len < len)
		{
			MemoryContextCallback *cb = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(MemoryContextCallback));

			cache = MemoryContextAllocZero(flinfo->fn_mcxt, offsetof(PseudonymCache, domain) + len + 1);
			cb->func = wipe_pseudonym_cache;
			cb->arg = cache;
			MemoryContextRegisterResetCallback(flinfo->fn_mcxt, cb);
			flinfo->fn_extra = cache;
		}
		crypto_generichash_init(&cache->keyed, key, 32, PSEUDONYM_BYTES);
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
#define PSEUDONYM_CHARS 22
static void
encode_token(const unsigned char *hash, char *out)
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

	memcpy(&state, &cache->keyed, sizeof(state));
	crypto_generichash_update(&state, (const unsigned char *) VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	crypto_generichash_final(&state, hash, sizeof(hash));
	sodium_memzero(&state, sizeof(state));
	encode_token(hash, VARDATA(token));
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
	master = crm_gdpr_key_by_fingerprint(p);
	if (master == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a subject key is wrapped by a master key that is not loaded"),
				 errhint("Name the former key file in crm_gdpr.retired_key_files.")));
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(dek, &dlen, NULL,
												   p + KEY_FINGERPRINT_BYTES + CT_NONCE_BYTES,
												   len - KEY_FINGERPRINT_BYTES - CT_NONCE_BYTES,
												   (const unsigned char *) VARDATA_ANY(ad), VARSIZE_ANY_EXHDR(ad),
												   p + KEY_FINGERPRINT_BYTES,
												   derived_key(master, p, SUBKEY_WRAP, NULL)) != 0)
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

PG_FUNCTION_INFO_V1(gdpr_new_wrapped_key);
Datum
gdpr_new_wrapped_key(PG_FUNCTION_ARGS)
{
	unsigned char *dek = sodium_malloc(DATA_KEY_BYTES);
	bytea	   *wrapped;

	crypto_aead_xchacha20poly1305_ietf_keygen(dek);
	wrapped = wrap_key(dek, PG_GETARG_TEXT_PP(0));
	sodium_free(dek);
	PG_RETURN_BYTEA_P(wrapped);
}

/* Wrap again under the current master key (rotation). */
PG_FUNCTION_INFO_V1(gdpr_rewrap_key);
Datum
gdpr_rewrap_key(PG_FUNCTION_ARGS)
{
	unsigned char *dek = sodium_malloc(DATA_KEY_BYTES);
	bytea	   *wrapped;

	unwrap_key(PG_GETARG_BYTEA_PP(0), PG_GETARG_TEXT_PP(1), dek);
	wrapped = wrap_key(dek, PG_GETARG_TEXT_PP(1));
	sodium_free(dek);
	PG_RETURN_BYTEA_P(wrapped);
}

/* (value, context, key_id, wrapped, ad): encrypt under a subject's data key. */
PG_FUNCTION_INFO_V1(gdpr_encrypt_with_subject_key);
Datum
gdpr_encrypt_with_subject_key(PG_FUNCTION_ARGS)
{
	int64		key_id = PG_GETARG_INT64(2);
	unsigned char *dek = sodium_malloc(DATA_KEY_BYTES);
	unsigned char prefix[CT_PREFIX_BYTES];
	unsigned char ref[KEY_FINGERPRINT_BYTES];
	bytea	   *out;

	for (int i = 0; i < KEY_FINGERPRINT_BYTES; i++)
		ref[i] = (unsigned char) (key_id >> (8 * (KEY_FINGERPRINT_BYTES - 1 - i)));
	unwrap_key(PG_GETARG_BYTEA_PP(3), PG_GETARG_TEXT_PP(4), dek);
	fill_prefix(prefix, CT_KIND_SUBJECT, ref);
	out = seal(prefix, dek, PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1));
	sodium_free(dek);
	PG_RETURN_BYTEA_P(out);
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
		const unsigned char *master = crm_gdpr_key_by_fingerprint(p + 4);

		if (master == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("ciphertext was encrypted with a master key that is not loaded"),
					 errhint("Name the former key file in crm_gdpr.retired_key_files.")));
		out = open_sealed(p, len, derived_key(master, p + 4, SUBKEY_ENCRYPT, NULL), context);
	}
	else
	{
		unsigned char *dek;

		if (PG_ARGISNULL(2))
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("subject key not supplied")));
		dek = sodium_malloc(DATA_KEY_BYTES);
		unwrap_key(PG_GETARG_BYTEA_PP(2), PG_GETARG_TEXT_PP(3), dek);
		out = open_sealed(p, len, dek, context);
		sodium_free(dek);
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

/* --- the access log ---------------------------------------------------- */

/*
 * MAC of msg under the access log's subkey of the master key named by
 * fingerprint (NULL: the current key), written as fingerprint || MAC into out
 * (LOG_MAC_BYTES).  False when that key is not loaded.
 */
bool
crm_gdpr_log_mac(const unsigned char *msg, size_t len, const unsigned char *fingerprint,
				 unsigned char *out)
{
	const unsigned char *fps[1];
	const unsigned char *master;

	if (fingerprint == NULL)
	{
		if (crm_gdpr_key_fingerprints(fps, 1) == 0)
			return false;
		fingerprint = fps[0];
	}
	master = crm_gdpr_key_by_fingerprint(fingerprint);
	if (master == NULL)
		return false;
	memcpy(out, fingerprint, KEY_FINGERPRINT_BYTES);
	crypto_generichash(out + KEY_FINGERPRINT_BYTES, LOG_MAC_BYTES - KEY_FINGERPRINT_BYTES, msg, len,
					   derived_key(master, fingerprint, SUBKEY_LOG_MAC, NULL), 32);
	return true;
}

/*
 * The log writer's cache of subjects' references under the current key:
 * the keyed BLAKE2b of a reference is a third of what a read costs the
 * writer, and a CRM reads its busy customers again and again.  Direct-mapped
 * (a slot per hash of the identifier, the last one in wins), 8 MB, emptied
 * when the keys change; only the log writer has one (it sees the
 * identifiers anyway, in the read queue).  A hit is checked against the
 * whole identifier: a reference is never another person's.
 */
#define REF_CACHE_SLOTS (1 << 17)
#define REF_CACHE_ID 39
typedef struct RefCacheEntry
{
	uint8		len;			/* of id; 0: empty */
	char		id[REF_CACHE_ID];
	char		token[PSEUDONYM_CHARS];
	char		pad[64 - 1 - REF_CACHE_ID - PSEUDONYM_CHARS];	/* one cache line each */
} RefCacheEntry;

static RefCacheEntry *ref_cache = NULL;
static bool ref_cache_enabled = false;
static unsigned char ref_cache_fingerprint[KEY_FINGERPRINT_BYTES];
static uint64 ref_cache_generation = 0;

void
crm_gdpr_cache_log_refs(void)
{
	ref_cache_enabled = true;
}

static text *
token_text(const char *token)
{
	text	   *t = (text *) palloc(VARHDRSZ + PSEUDONYM_CHARS);

	memcpy(VARDATA(t), token, PSEUDONYM_CHARS);
	SET_VARSIZE(t, VARHDRSZ + PSEUDONYM_CHARS);
	return t;
}

/* The cache, emptied if the current key is not the one it was filled under. */
static RefCacheEntry *
ref_cache_for(const unsigned char *current)
{
	uint64		generation = crm_gdpr_key_generation();

	if (ref_cache == NULL)
		ref_cache = (RefCacheEntry *) TYPEALIGN(64, MemoryContextAllocHuge(TopMemoryContext,
																		   sizeof(RefCacheEntry) * REF_CACHE_SLOTS + 64));
	if (ref_cache_generation != generation ||
		memcmp(ref_cache_fingerprint, current, KEY_FINGERPRINT_BYTES) != 0)
	{
		memset(ref_cache, 0, sizeof(RefCacheEntry) * REF_CACHE_SLOTS);
		memcpy(ref_cache_fingerprint, current, KEY_FINGERPRINT_BYTES);
		ref_cache_generation = generation;
	}
	return ref_cache;
}

static text *
cached_ref(RefCacheEntry *e, const char *id, size_t len, const unsigned char *current)
{
	text	   *ref;

	if (len == 0 || len > REF_CACHE_ID)
		return crm_gdpr_log_subject_ref_under(id, len, current);
	if (e->len == len && memcmp(e->id, id, len) == 0)
		return token_text(e->token);
	ref = crm_gdpr_log_subject_ref_under(id, len, current);
	Assert(VARSIZE(ref) == VARHDRSZ + PSEUDONYM_CHARS);
	e->len = len;
	memcpy(e->id, id, len);
	memcpy(e->token, VARDATA(ref), PSEUDONYM_CHARS);
	return ref;
}

/*
 * The references of n subjects, into refs.  The cache is far larger than the
 * processor's caches: each look-up is a trip to memory, so all of them are
 * started (prefetched) before the first is read, and they overlap.
 */
void
crm_gdpr_log_subject_refs(const char **ids, int n, Datum *refs)
{
	const unsigned char *fps[1];
	const unsigned char *current = crm_gdpr_key_fingerprints(fps, 1) > 0 ? fps[0] : NULL;
	RefCacheEntry *cache;
	RefCacheEntry **entries;
	size_t	   *lens;

	if (current == NULL || !ref_cache_enabled)
	{
		for (int i = 0; i < n; i++)
			refs[i] = PointerGetDatum(crm_gdpr_log_subject_ref_under(ids[i], strlen(ids[i]), current));
		return;
	}
	cache = ref_cache_for(current);
	entries = palloc(sizeof(RefCacheEntry *) * Max(n, 1));
	lens = palloc(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		lens[i] = strlen(ids[i]);
		entries[i] = &cache[hash_bytes((const unsigned char *) ids[i], lens[i]) & (REF_CACHE_SLOTS - 1)];
#ifdef __GNUC__
		__builtin_prefetch(entries[i], 1);
#endif
	}
	for (int i = 0; i < n; i++)
		refs[i] = PointerGetDatum(cached_ref(entries[i], ids[i], lens[i], current));
	pfree(entries);
	pfree(lens);
}

/*
 * A subject's reference in the access log: gdpr.pseudonymise(id,
 * 'access-log') under the current key.  Without a key, an unkeyed BLAKE2b
 * hash marked "h:": it keeps identifiers out of the log's text but anyone can
 * recompute it from a guessed identifier, which doc/access-log.md says.
 */
text *
crm_gdpr_log_subject_ref(const char *id, size_t len)
{
	const unsigned char *fps[1];

	return crm_gdpr_log_subject_ref_under(id, len, crm_gdpr_key_fingerprints(fps, 1) > 0 ? fps[0] : NULL);
}

/*
 * The BLAKE2b state keyed for the access log's pseudonyms under one master
 * key, in guarded memory: the log writer hashes one subject per read, and
 * starting from the keyed state saves the key lookups (a string compare per
 * derived key) and the keyed initialisation on each.  One entry: the log
 * names subjects under the current key; other keys (access_history after a
 * rotation) re-key it.
 */
static crypto_generichash_state *log_ref_state = NULL;
static unsigned char log_ref_fingerprint[KEY_FINGERPRINT_BYTES];
static uint64 log_ref_generation = 0;

static const crypto_generichash_state *
log_ref_keyed(const unsigned char *fingerprint)
{
	uint64		generation = crm_gdpr_key_generation();

	if (log_ref_state != NULL && log_ref_generation == generation &&
		memcmp(log_ref_fingerprint, fingerprint, KEY_FINGERPRINT_BYTES) == 0)
		return log_ref_state;
	if (log_ref_state == NULL)
	{
		log_ref_state = sodium_malloc(sizeof(crypto_generichash_state));
		if (log_ref_state == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not allocate locked memory for a key")));
	}
	log_ref_generation = 0;		/* invalid until keyed below */
	crypto_generichash_init(log_ref_state,
							derived_key(crm_gdpr_key_by_fingerprint(fingerprint), fingerprint, SUBKEY_PSEUDONYM,
										"access-log"), 32, PSEUDONYM_BYTES);
	memcpy(log_ref_fingerprint, fingerprint, KEY_FINGERPRINT_BYTES);
	log_ref_generation = generation;
	return log_ref_state;
}

static void
forget_log_ref(void)
{
	if (log_ref_state != NULL)
		sodium_memzero(log_ref_state, sizeof(crypto_generichash_state));
	log_ref_generation = 0;
}

/* The same under the key named by fingerprint (NULL: the unkeyed form). */
text *
crm_gdpr_log_subject_ref_under(const char *id, size_t len, const unsigned char *fingerprint)
{
	unsigned char hash[PSEUDONYM_BYTES];
	text	   *token;
	bool		keyed = fingerprint != NULL;
	int			prefix = keyed ? 0 : 2;

	if (keyed)
	{
		crypto_generichash_state state;

		memcpy(&state, log_ref_keyed(fingerprint), sizeof(state));
		crypto_generichash_update(&state, (const unsigned char *) id, len);
		crypto_generichash_final(&state, hash, sizeof(hash));
		sodium_memzero(&state, sizeof(state));
	}
	else
		crypto_generichash(hash, sizeof(hash), (const unsigned char *) id, len, NULL, 0);
	token = (text *) palloc(VARHDRSZ + prefix + PSEUDONYM_CHARS);
	memcpy(VARDATA(token), "h:", prefix);
	encode_token(hash, VARDATA(token) + prefix);
	SET_VARSIZE(token, VARHDRSZ + prefix + PSEUDONYM_CHARS);
	return token;
}
