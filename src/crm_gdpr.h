/*
 * crm_gdpr.h — what the module's C files share.
 */
#ifndef CRM_GDPR_H
#define CRM_GDPR_H

#include "datatype/timestamp.h"

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
/* > 0 while gdpr._owner_exec/_owner_query run a statement as a table's owner. */
extern int	crm_gdpr_owner_exec_depth;

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

/* The access log's MAC (fingerprint || 32 bytes) and subject references. */
#define LOG_MAC_BYTES (KEY_FINGERPRINT_BYTES + 32)
extern bool crm_gdpr_log_mac(const unsigned char *msg, size_t len, const unsigned char *fingerprint,
							 unsigned char *out);
extern text *crm_gdpr_log_subject_ref(const char *id, size_t len);
extern void crm_gdpr_cache_log_refs(void);
extern void crm_gdpr_log_subject_refs(const char **ids, int n, Datum *refs);
extern text *crm_gdpr_log_subject_ref_under(const char *id, size_t len, const unsigned char *fingerprint);

/* The read queue (log_queue.c) and the hooks that fill it (read_hook.c). */
#define LOG_RECORD_COLUMNS 256
#define LOG_RECORD_SUBJECTS 8
#define LOG_RECORD_SUBJECT_LEN 40
/* Identical reads, and identical write statements, folded into one log row at most. */
#define LOG_FOLD_MAX 100
/*
 * A record on its way to the queue: its numbers, and strings borrowed from
 * the caller (never NULL, "" for none) until the queue copies them, cut to
 * the lengths below (LOG_RECORD_STRINGS in all).
 */
typedef struct LogRecord
{
	TimestampTz at;
	Oid			dbid;
	Oid			relid;
	int			pid;
	int			nsubjects;
	int64		rows;
	int64		query_id;
	const char *operation;		/* up to 11 bytes */
	const char *role;			/* names: NAMEDATALEN - 1 */
	const char *session_role;
	const char *appname;
	const char *client;			/* 47 */
	const char *purpose;		/* NAMEDATALEN - 1 */
	const char *detail;			/* a JSON object of 127 bytes at most, or "" */
	const char *columns;		/* LOG_RECORD_COLUMNS - 1 */
	const char *subjects[LOG_RECORD_SUBJECTS];	/* LOG_RECORD_SUBJECT_LEN - 1 each */
} LogRecord;

#define LOG_RECORD_STRINGS (12 + 4 * NAMEDATALEN + 48 + 128 + LOG_RECORD_COLUMNS + \
							LOG_RECORD_SUBJECTS * LOG_RECORD_SUBJECT_LEN)

extern void crm_gdpr_log_queue_init(bool preloading);
extern bool crm_gdpr_log_queue_ready(void);
extern void crm_gdpr_log_enqueue(const LogRecord *rec);
extern Datum crm_gdpr_name_array(char *joined, char separator);
extern char *crm_gdpr_qualified_relname(Oid relid);
extern void crm_gdpr_log_queue_count_server_log(void);
extern bool crm_gdpr_log_queue_busy(void);
extern void crm_gdpr_log_queue_set_writer(void);
extern void crm_gdpr_read_hook_init(bool preloading);
extern void crm_gdpr_fill_log_record(LogRecord *rec, const char *operation, Oid relid);
extern char *crm_gdpr_log_purpose(void);
extern const char *crm_gdpr_role_name(Oid roleid, int slot);
extern bool crm_gdpr_is_admin(Oid roleid);

/* The log writer (log_worker.c), and what it shares with the purge worker. */
extern void crm_gdpr_log_worker_init(bool preloading);
extern const char *crm_gdpr_worker_database(void);
extern void crm_gdpr_register_worker(const char *name, const char *function);
extern int64 crm_gdpr_run_int8(const char *sql, int nargs, Oid *types, Datum *values);
extern void crm_gdpr_begin_step(const char *activity);
extern void crm_gdpr_end_step(void);
extern bool crm_gdpr_extension_ready(bool *warned, const char *who);

/* Set in the extension's own workers: their reads are not logged. */
extern bool crm_gdpr_in_own_worker;

/* The write trigger names its triggers with this prefix (log_write.c). */
#define LOG_TRIGGER_PREFIX "gdpr_log_"
extern void crm_gdpr_log_write_init(void);
extern void crm_gdpr_restriction_init(void);

#endif							/* CRM_GDPR_H */
