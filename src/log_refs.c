/*
 * log_refs.c — how the access log names a subject: a keyed hash of his id.
 *
 * The hash is the keyed BLAKE2b of gdpr.pseudonymise(id, 'access-log') under
 * the current master key (16 bytes).  Rows of 0.3 hold its first 8 bytes as
 * a bigint, the subject's key (subject_keys: 8 bytes a subject in a row
 * instead of 28 for the 22-character token); rows of 0.2 hold the token, the
 * subject's reference (subject_refs).  Both come from the same hash, so that
 * a token gives its key (crm_gdpr_log_ref_key).  gdpr.access_history()
 * recomputes both under every loaded key.  The log writer names every
 * subject of every read, so the keyed BLAKE2b state is kept ready (in locked
 * memory), and the log writer keeps a cache of hashes.  Both follow the
 * keys: a new key generation (a reload, or a key file changed on disk) or
 * another current key empties them.
 *
 * Why 64 bits are enough: two subjects share a key with odds n^2 / 2^65,
 * 2.7e-6 for 10^7 subjects in one CRM; a given person's key is another's
 * with odds n / 2^64, 5.4e-13.  A shared key would only add the other's rows
 * to an access_history (which reads them anyway under the same privilege).
 */
#include "postgres.h"

#include <sodium.h>

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "access_log.h"

/*
 * The log writer's cache of subjects' hashes under the current key: the
 * keyed BLAKE2b of a subject is a third of what a read costs the writer, and
 * a CRM reads its busy customers again and again.  Sets of two slots (a set
 * per hash of the identifier, the older entry goes), 8 MB, emptied when the keys
 * change; only the log writer has one (it sees the identifiers anyway, in
 * the read queue).  A hit is checked against the whole identifier: a key is
 * never another person's.
 */
#define REF_CACHE_SLOTS (1 << 17)
#define REF_CACHE_ID 39
typedef struct RefCacheEntry
{
	uint8		len;			/* of id; 0: empty */
	char		id[REF_CACHE_ID];
	unsigned char hash[PSEUDONYM_BYTES];
	char		pad[64 - 1 - REF_CACHE_ID - PSEUDONYM_BYTES];	/* one cache line each */
} RefCacheEntry;

static RefCacheEntry *ref_cache = NULL;
static bool ref_cache_enabled = false;
static unsigned char ref_cache_fingerprint[KEY_FINGERPRINT_BYTES];
static uint64 ref_cache_generation = 0;

static void subject_hash_under(const char *id, size_t len, const unsigned char *fingerprint,
							   unsigned char *hash);

void
crm_gdpr_cache_log_refs(void)
{
	ref_cache_enabled = true;
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

static bool
cache_holds(const RefCacheEntry *e, const char *id, size_t len)
{
	return e->len == len && memcmp(e->id, id, len) == 0;
}

/*
 * The hash of id from its set of two entries (set[0] the one used last), or
 * computed and put first, the older entry going.  Two ways rather than one
 * keep the subjects that collide in a set: a CRM of 100,000 people read at
 * random finds some 70 % of its hashes in a direct-mapped cache this size,
 * some 80 % in this one (simulated).
 */
static void
cached_hash(RefCacheEntry *set, const char *id, size_t len, const unsigned char *current, unsigned char *hash)
{
	RefCacheEntry swap;

	if (len > 0 && len <= REF_CACHE_ID)
	{
		if (cache_holds(&set[0], id, len))
		{
			memcpy(hash, set[0].hash, PSEUDONYM_BYTES);
			return;
		}
		if (cache_holds(&set[1], id, len))
		{
			memcpy(hash, set[1].hash, PSEUDONYM_BYTES);
			swap = set[0];
			set[0] = set[1];
			set[1] = swap;
			return;
		}
	}
	subject_hash_under(id, len, current, hash);
	if (len == 0 || len > REF_CACHE_ID)
		return;
	set[1] = set[0];
	set[0].len = len;
	memcpy(set[0].id, id, len);
	memcpy(set[0].hash, hash, PSEUDONYM_BYTES);
}

/*
 * The hashes of n subjects under the current key (PSEUDONYM_BYTES each,
 * into hashes); *keyed false when there is no key (unkeyed hashes).  The
 * cache is far larger than the processor's caches: each look-up is a trip
 * to memory, so all of them are started (prefetched) before the first is
 * read, and they overlap.
 */
static void
subject_hashes(const char **ids, int n, unsigned char *hashes, bool *keyed)
{
	const unsigned char *fps[1];
	const unsigned char *current = crm_gdpr_key_fingerprints(fps, 1) > 0 ? fps[0] : NULL;
	RefCacheEntry *cache;
	RefCacheEntry **entries;
	size_t	   *lens;

	*keyed = current != NULL;
	if (current == NULL || !ref_cache_enabled)
	{
		for (int i = 0; i < n; i++)
			subject_hash_under(ids[i], strlen(ids[i]), current, hashes + i * PSEUDONYM_BYTES);
		return;
	}
	cache = ref_cache_for(current);
	entries = palloc(sizeof(RefCacheEntry *) * Max(n, 1));
	lens = palloc(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		lens[i] = strlen(ids[i]);
		entries[i] = &cache[hash_bytes((const unsigned char *) ids[i], lens[i]) & (REF_CACHE_SLOTS - 2)];
#ifdef __GNUC__
		__builtin_prefetch(entries[i], 1);
		__builtin_prefetch(entries[i] + 1, 1);
#endif
	}
	for (int i = 0; i < n; i++)
		cached_hash(entries[i], ids[i], lens[i], current, hashes + i * PSEUDONYM_BYTES);
	pfree(entries);
	pfree(lens);
}

/* A reference: the hash as a token, marked "h:" when unkeyed. */
static text *
ref_of_hash(const unsigned char *hash, bool keyed)
{
	int			prefix = keyed ? 0 : 2;
	text	   *token = (text *) palloc(VARHDRSZ + prefix + PSEUDONYM_CHARS);

	memcpy(VARDATA(token), "h:", prefix);
	crm_gdpr_encode_token(hash, VARDATA(token) + prefix);
	SET_VARSIZE(token, VARHDRSZ + prefix + PSEUDONYM_CHARS);
	return token;
}

/* A key: the hash's first 8 bytes, big-endian (its hex is the hash's first 16 digits). */
static int64
key_of_hash(const unsigned char *hash)
{
	uint64		key = 0;

	for (int i = 0; i < 8; i++)
		key = (key << 8) | hash[i];
	return (int64) key;
}

/* The references of n subjects (text, for the 0.2 declarations of the take functions). */
void
crm_gdpr_log_subject_refs(const char **ids, int n, Datum *refs)
{
	unsigned char *hashes = palloc(PSEUDONYM_BYTES * Max(n, 1));
	bool		keyed;

	subject_hashes(ids, n, hashes, &keyed);
	for (int i = 0; i < n; i++)
		refs[i] = PointerGetDatum(ref_of_hash(hashes + i * PSEUDONYM_BYTES, keyed));
	pfree(hashes);
}

/* The keys of n subjects under the current key. */
void
crm_gdpr_log_subject_keys(const char **ids, int n, int64 *keys)
{
	unsigned char *hashes = palloc(PSEUDONYM_BYTES * Max(n, 1));
	bool		keyed;

	subject_hashes(ids, n, hashes, &keyed);
	for (int i = 0; i < n; i++)
		keys[i] = key_of_hash(hashes + i * PSEUDONYM_BYTES);
	pfree(hashes);
}

/*
 * The key of a reference (a token, "h:" and a token when unkeyed): its first
 * 11 characters hold the hash's first 66 bits.  False when ref is no token
 * (the journal of 0.2 held references: they become keys when moved).
 */
bool
crm_gdpr_log_ref_key(const char *ref, size_t len, int64 *key)
{
	uint64		bits = 0;

	if (len == 2 + PSEUDONYM_CHARS && memcmp(ref, "h:", 2) == 0)
		ref += 2, len -= 2;
	if (len != PSEUDONYM_CHARS)
		return false;
	for (int i = 0; i < 11; i++)
	{
		char		c = ref[i];
		int			v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 :
			c >= '0' && c <= '9' ? c - '0' + 52 : c == '-' ? 62 : c == '_' ? 63 : -1;

		if (v < 0)
			return false;
		bits = i < 10 ? (bits << 6) | v : (bits << 4) | (v >> 2);
	}
	*key = (int64) bits;
	return true;
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

/* A subject's key under the current key (unkeyed without one, as the reference). */
int64
crm_gdpr_log_subject_key(const char *id, size_t len)
{
	const unsigned char *fps[1];

	return crm_gdpr_log_subject_key_under(id, len, crm_gdpr_key_fingerprints(fps, 1) > 0 ? fps[0] : NULL);
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

/* The hash of a subject under the key named by fingerprint (NULL: unkeyed). */
static void
subject_hash_under(const char *id, size_t len, const unsigned char *fingerprint, unsigned char *hash)
{
	if (fingerprint != NULL)
	{
		crypto_generichash_state state;

		memcpy(&state, log_ref_keyed(fingerprint), sizeof(state));
		crypto_generichash_update(&state, (const unsigned char *) id, len);
		crypto_generichash_final(&state, hash, PSEUDONYM_BYTES);
		sodium_memzero(&state, sizeof(state));
	}
	else
		crypto_generichash(hash, PSEUDONYM_BYTES, (const unsigned char *) id, len, NULL, 0);
}

/* The reference under the key named by fingerprint (NULL: the unkeyed form). */
text *
crm_gdpr_log_subject_ref_under(const char *id, size_t len, const unsigned char *fingerprint)
{
	unsigned char hash[PSEUDONYM_BYTES];

	subject_hash_under(id, len, fingerprint, hash);
	return ref_of_hash(hash, fingerprint != NULL);
}

/* The key under the key named by fingerprint (NULL: the unkeyed form). */
int64
crm_gdpr_log_subject_key_under(const char *id, size_t len, const unsigned char *fingerprint)
{
	unsigned char hash[PSEUDONYM_BYTES];

	subject_hash_under(id, len, fingerprint, hash);
	return key_of_hash(hash);
}
