/*
 * keys.c — the master key and the keys derived from it.
 *
 * GDPR Art. 4(5): pseudonymised data stays pseudonymous only while the
 * information that re-identifies (the key) is kept apart.  The master key
 * therefore lives in a file outside the database (crm_gdpr.key_file), is read
 * by each backend when first needed, held in guarded, locked memory
 * (sodium_malloc), and never reaches SQL, a table, a log line or an error.
 * Older keys named in crm_gdpr.retired_key_files still decrypt, so that keys
 * can rotate; ciphertexts name their key by a fingerprint.
 */
#include "postgres.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/varlena.h"

#include "keys.h"
#include "settings.h"

#define MASTER_KEY_BYTES crypto_kdf_KEYBYTES	/* 32 */
#define MAX_KEYS 8				/* the current key and up to 7 retired ones */

typedef struct LoadedKey
{
	unsigned char *key;			/* sodium_malloc'd, read-only once loaded */
	unsigned char fingerprint[KEY_FINGERPRINT_BYTES];
	char		path[MAXPGPATH];
	struct stat file;			/* the file as it was read */
} LoadedKey;

static LoadedKey keys[MAX_KEYS];
static int	n_keys = 0;
static bool keys_stale = true;
static uint64 key_generation = 0;	/* bumped at each load: caches compare it */
/* The fingerprint of the current key this process used last, once it used one. */
static unsigned char last_current[KEY_FINGERPRINT_BYTES];
static bool last_current_known = false;

/* crm_gdpr.key_file or crm_gdpr.retired_key_files changed (guc.c). */
void
crm_gdpr_keys_changed(void)
{
	keys_stale = true;
}

static void
forget_keys(void)
{
	for (int i = 0; i < n_keys; i++)
		sodium_free(keys[i].key);	/* sodium_free wipes before freeing */
	n_keys = 0;
	crm_gdpr_crypto_forget_derived();
}

static void
refuse_key_file(const char *path, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("crm_gdpr key file \"%s\" is refused: %s", path, why),
			 errhint("The file must hold 64 hexadecimal characters, be owned by the server's user and have mode 0600 or 0400 (make keygen writes one).")));
}

/* Read and check one key file into guarded memory. */
static void
load_key_file(const char *path, LoadedKey *out)
{
	struct stat st;
	char		hex[2 * MASTER_KEY_BYTES + 2];
	ssize_t		len;
	int			fd;
	size_t		bin_len = 0;

	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		refuse_key_file(path, errno == ENOENT ? "it does not exist" : "it cannot be opened");
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		refuse_key_file(path, "it is not a regular file");
	}
	if (st.st_uid != geteuid())
	{
		close(fd);
		refuse_key_file(path, "it is not owned by the server's user");
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		close(fd);
		refuse_key_file(path, "it is readable or writable by group or others");
	}
	len = read(fd, hex, sizeof(hex));
	close(fd);
	if (len == 2 * MASTER_KEY_BYTES + 1 && hex[len - 1] == '\n')
		len--;
	if (len != 2 * MASTER_KEY_BYTES)
	{
		sodium_memzero(hex, sizeof(hex));
		refuse_key_file(path, "it does not hold exactly 64 hexadecimal characters");
	}

	out->key = sodium_malloc(MASTER_KEY_BYTES);
	if (out->key == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not allocate locked memory for a key")));
	if (sodium_hex2bin(out->key, MASTER_KEY_BYTES, hex, len, NULL, &bin_len, NULL) != 0 ||
		bin_len != MASTER_KEY_BYTES)
	{
		sodium_memzero(hex, sizeof(hex));
		sodium_free(out->key);
		refuse_key_file(path, "it does not hold exactly 64 hexadecimal characters");
	}
	sodium_memzero(hex, sizeof(hex));
	/* The fingerprint names the key in ciphertexts without revealing it. */
	crypto_generichash(out->fingerprint, KEY_FINGERPRINT_BYTES,
					   (const unsigned char *) "crm_gdpr key fingerprint", 24,
					   out->key, MASTER_KEY_BYTES);
	sodium_mprotect_readonly(out->key);
	strlcpy(out->path, path, sizeof(out->path));
	out->file = st;
}

static void
load_keys(void)
{
	forget_keys();
	key_generation++;
	if (crm_gdpr_key_file == NULL || crm_gdpr_key_file[0] == '\0')
		return;
	load_key_file(crm_gdpr_key_file, &keys[0]);
	n_keys = 1;
	if (crm_gdpr_retired_key_files && crm_gdpr_retired_key_files[0] != '\0')
	{
		char	   *list = pstrdup(crm_gdpr_retired_key_files);
		List	   *paths;
		ListCell   *lc;

		if (!SplitDirectoriesString(list, ',', &paths))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("crm_gdpr.retired_key_files is not a valid list of files")));
		foreach(lc, paths)
		{
			if (n_keys == MAX_KEYS)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIG_FILE_ERROR),
						 errmsg("crm_gdpr.retired_key_files names more than %d files", MAX_KEYS - 1)));
			load_key_file((char *) lfirst(lc), &keys[n_keys]);
			n_keys++;
		}
	}
}

/*
 * Whether a loaded key's file is still the file that was read: a key file
 * replaced without a reload must not leave this process on the former key
 * while new processes load the new one (the log writer would then MAC and
 * seal under a key that nobody else has).
 */
static bool
same_file(const struct stat *a, const struct stat *b)
{
	if (a->st_dev != b->st_dev || a->st_ino != b->st_ino || a->st_size != b->st_size ||
		a->st_mtime != b->st_mtime || a->st_ctime != b->st_ctime)
		return false;
#if defined(__linux__)
	/* A file rewritten within the same second: the nanoseconds differ. */
	if (a->st_mtim.tv_nsec != b->st_mtim.tv_nsec || a->st_ctim.tv_nsec != b->st_ctim.tv_nsec)
		return false;
#endif
	return true;
}

static bool
key_files_unchanged(void)
{
	for (int i = 0; i < n_keys; i++)
	{
		struct stat st;

		if (stat(keys[i].path, &st) != 0 || !same_file(&st, &keys[i].file))
			return false;
	}
	return true;
}

/*
 * Keys loaded: when the current one is not the one this process used last,
 * the server log says so.  Compared with the last key used, not with what
 * was loaded just before: a file written over in place may be read while
 * half written, refused, then read whole a moment later, and that change
 * must be told too.
 */
static void
note_current_key(void)
{
	if (n_keys == 0)
		return;
	if (last_current_known && memcmp(last_current, keys[0].fingerprint, KEY_FINGERPRINT_BYTES) != 0)
	{
		char		hex[2 * KEY_FINGERPRINT_BYTES + 1];

		sodium_bin2hex(hex, sizeof(hex), keys[0].fingerprint, KEY_FINGERPRINT_BYTES);
		ereport(LOG,
				(errmsg("crm_gdpr: key file \"%s\" changed: the current master key is now %s", keys[0].path, hex),
				 errhint("Keep the former key file and name it in crm_gdpr.retired_key_files, then reload: what it encrypted, MACed and sealed needs it.")));
	}
	memcpy(last_current, keys[0].fingerprint, KEY_FINGERPRINT_BYTES);
	last_current_known = true;
}

/*
 * Once per statement (a transaction's statement start, or a worker's step)
 * the key files are looked at again; a changed file is read again, and if
 * the current key's fingerprint changed, the server log says so.
 */
static void
check_key_files(void)
{
	static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
	static TimestampTz checked_at = 0;

	if (MyProc == NULL || (checked_lxid == MY_LOCAL_XID && checked_at == GetCurrentStatementStartTimestamp()))
		return;
	checked_lxid = MY_LOCAL_XID;
	checked_at = GetCurrentStatementStartTimestamp();
	if (key_files_unchanged())
		return;
	keys_stale = true;
	load_keys();
	keys_stale = false;
	note_current_key();
}

static void
ensure_keys(void)
{
	/* A failed load stays stale, so that every call reports the problem. */
	if (keys_stale)
	{
		load_keys();
		keys_stale = false;
		note_current_key();
	}
	else
		check_key_files();
}

const unsigned char *
crm_gdpr_current_key(const unsigned char **fingerprint)
{
	ensure_keys();
	if (n_keys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no crm_gdpr master key is configured"),
				 errhint("Set crm_gdpr.key_file to a key file (make keygen writes one) and reload the configuration.")));
	if (fingerprint)
		*fingerprint = keys[0].fingerprint;
	return keys[0].key;
}

uint64
crm_gdpr_key_generation(void)
{
	ensure_keys();
	return key_generation;
}

const unsigned char *
crm_gdpr_key_by_fingerprint(const unsigned char *fingerprint)
{
	ensure_keys();
	for (int i = 0; i < n_keys; i++)
		if (sodium_memcmp(keys[i].fingerprint, fingerprint, KEY_FINGERPRINT_BYTES) == 0)
			return keys[i].key;
	return NULL;
}

/* The key named by fingerprint; 55000 with why (what needs it) when it is not loaded. */
const unsigned char *
crm_gdpr_loaded_key(const unsigned char *fingerprint, const char *why)
{
	const unsigned char *key = crm_gdpr_key_by_fingerprint(fingerprint);

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s", why),
				 errhint("Name the former key file in crm_gdpr.retired_key_files.")));
	return key;
}

/* Derive a 32-byte subkey of the current master key for one use. */
void
crm_gdpr_derive_subkey(unsigned char *subkey, uint64 subkey_id, const char *context,
					   const unsigned char *master)
{
	crypto_kdf_derive_from_key(subkey, 32, subkey_id, context, master);
}

/* The fingerprints of the loaded keys, current first (for gdpr.key_status). */
int
crm_gdpr_key_fingerprints(const unsigned char **fps, int max)
{
	int			n;

	ensure_keys();
	n = Min(n_keys, max);
	for (int i = 0; i < n; i++)
		fps[i] = keys[i].fingerprint;
	return n;
}
