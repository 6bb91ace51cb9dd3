/*
 * log_refs.c — how the access log names a subject: a keyed pseudonym.
 *
 * A subject's reference is gdpr.pseudonymise(id, 'access-log') under the
 * current master key; gdpr.access_history() recomputes it under every loaded
 * key.  The log writer names every subject of every read, so the keyed
 * BLAKE2b state is kept ready (in locked memory), and the log writer keeps a
 * cache of references.  Both follow the keys: a new key generation (a
 * reload, or a key file changed on disk) or another current key empties them.
 */
#include "postgres.h"

#include <sodium.h>

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "access_log.h"

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
	const unsigned char *master;

	if (log_ref_state != NULL && log_ref_generation == generation &&
		memcmp(log_ref_fingerprint, fingerprint, KEY_FINGERPRINT_BYTES) == 0)
		return log_ref_state;
	master = crm_gdpr_loaded_key(fingerprint, "the access log's references are asked for under a master key that is not loaded");
	if (log_ref_state == NULL)
		log_ref_state = crm_gdpr_locked_alloc(sizeof(crypto_generichash_state));
	log_ref_generation = 0;		/* invalid until keyed below */
	crypto_generichash_init(log_ref_state,
							crm_gdpr_derived_key(master, fingerprint, SUBKEY_PSEUDONYM, "access-log"),
							32, PSEUDONYM_BYTES);
	memcpy(log_ref_fingerprint, fingerprint, KEY_FINGERPRINT_BYTES);
	log_ref_generation = generation;
	return log_ref_state;
}

/* The master keys changed: the keyed state is wiped (crypto.c calls this). */
void
crm_gdpr_log_refs_forget(void)
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
	crm_gdpr_encode_token(hash, VARDATA(token) + prefix);
	SET_VARSIZE(token, VARHDRSZ + prefix + PSEUDONYM_CHARS);
	return token;
}
