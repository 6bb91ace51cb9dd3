/*
 * access_log.h — what the access log's C files share: the record of a read
 * or a logged event on its way to the queue (log_record.c fills it,
 * log_queue.c carries it), the log row's columns (log_row.c), the
 * journal's columns, the subjects' references and the rows' MAC (log_refs.c,
 * log_mac.c).
 */
#ifndef CRM_GDPR_ACCESS_LOG_H
#define CRM_GDPR_ACCESS_LOG_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/relcache.h"
#include "utils/tuplestore.h"

#include "keys.h"

/* The access log's MAC: fingerprint || 32 bytes (log_mac.c). */
#define LOG_MAC_BYTES (KEY_FINGERPRINT_BYTES + 32)
extern bool crm_gdpr_log_mac(const unsigned char *msg, size_t len, const unsigned char *fingerprint,
							 unsigned char *out);

/*
 * Subjects in the log (log_refs.c): keys (bigint, 0.3's subject_keys) and
 * references (keyed pseudonyms, 0.2's subject_refs), from the same hash.
 */
extern text *crm_gdpr_log_subject_ref(const char *id, size_t len);
extern text *crm_gdpr_log_subject_ref_under(const char *id, size_t len, const unsigned char *fingerprint);
extern int64 crm_gdpr_log_subject_key(const char *id, size_t len);
extern int64 crm_gdpr_log_subject_key_under(const char *id, size_t len, const unsigned char *fingerprint);
extern bool crm_gdpr_log_ref_key(const char *ref, size_t len, int64 *key);
extern void crm_gdpr_cache_log_refs(void);
extern void crm_gdpr_log_subject_refs(const char **ids, int n, Datum *refs);
extern void crm_gdpr_log_subject_keys(const char **ids, int n, int64 *keys);
extern Datum crm_gdpr_log_key_array(int64 *keys, int n);
extern void crm_gdpr_log_refs_forget(void);

/* The read queue's records (log_queue.c) and their limits. */
#define LOG_RECORD_COLUMNS 256
/*
 * A subject's key is cut to LOG_RECORD_SUBJECT_LEN - 1 bytes (as a write's).
 * A record's subjects take what room they need: up to LOG_RECORD_SUBJECT_BYTES
 * in all (a record then spans several queue slots, log_queue.c); a read
 * naming more is recorded with the first that fit and "subjects_truncated".
 */
#define LOG_RECORD_SUBJECT_LEN NAMEDATALEN
#define LOG_RECORD_SUBJECT_BYTES (14 * 1024)
/* Identical write statements folded into one log row at most (reads: log_queue_take.c). */
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
	const char *const *subjects;	/* nsubjects of them, LOG_RECORD_SUBJECT_LEN - 1 each */
	const char *table_name;		/* relid's qualified name when taken already, or NULL */
} LogRecord;

/*
 * A record's strings at their longest (its subjects may pass
 * LOG_RECORD_SUBJECT_BYTES by one: log_record.c stops after it, not before).
 */
#define LOG_RECORD_STRINGS (12 + 4 * NAMEDATALEN + 48 + 128 + LOG_RECORD_COLUMNS + LOG_RECORD_SUBJECT_BYTES + LOG_RECORD_SUBJECT_LEN)

/* log_queue.c: the shared-memory queue of reads */
extern void crm_gdpr_log_queue_init(bool preloading);
extern bool crm_gdpr_log_queue_ready(void);
extern void crm_gdpr_log_enqueue(const LogRecord *rec);
extern void crm_gdpr_log_queue_count_server_log(void);
extern bool crm_gdpr_log_queue_busy(void);
extern void crm_gdpr_log_queue_set_writer(void);
extern void crm_gdpr_log_queue_reserve(void);
extern void crm_gdpr_log_queue_discard(Oid dboid);

/* log_record.c: a record's common fields, and where it goes */
extern void crm_gdpr_fill_log_record(LogRecord *rec, const char *operation, Oid relid);
/* rel_cache.c: the registered table a partition or inheritance child belongs to (or relid) */
extern Oid	crm_gdpr_registered_as(Oid relid);
/* rel_cache.c: whether rel is registered (itself or by a parent), its subject key column ("" when unknown) */
extern const char *crm_gdpr_registered_subject_column(Relation rel);
extern void crm_gdpr_fill_log_record_as(LogRecord *rec, const char *operation, Oid relid, const char *role,
										const char *session_role);
extern void crm_gdpr_send_log_record(const LogRecord *rec);
extern char *crm_gdpr_log_purpose(void);
extern const char *crm_gdpr_role_name(Oid roleid, int slot);
/* log_record.c: the role a write is logged for (the caller of a SECURITY DEFINER function or of the extension's statement) */
extern const char *crm_gdpr_writer_name(void);
extern bool crm_gdpr_is_admin(Oid roleid);

/*
 * The columns of a log row, named once for both take functions
 * (gdpr._log_queue_take in log_queue_take.c, gdpr._log_journal_take in
 * log_journal.c): each fills a LogRow by name and returns the 17 columns its
 * SQL declaration lists, in that order (released declarations: the order
 * never changes).  log_row.c puts a row out.
 */
typedef enum LogColumn
{
	LOG_AT, LOG_LAST_AT, LOG_ROLE, LOG_SESSION_ROLE, LOG_APPNAME, LOG_CLIENT, LOG_PID, LOG_OPERATION,
	LOG_TBL, LOG_TABLE_NAME, LOG_COLUMNS,
	LOG_SUBJECT_REFS,			/* the subjects: keys (bigint[]) or references (text[], 0.2) */
	LOG_SUBJECTS, LOG_ROW_COUNT, LOG_QUERY_ID,
	LOG_PURPOSE, LOG_DETAIL, LOG_TIMES,
	LOG_COLUMN_COUNT
} LogColumn;

typedef struct LogRow
{
	Datum		value[LOG_COLUMN_COUNT];
	bool		null[LOG_COLUMN_COUNT];
} LogRow;

/* A column's value; NULL when isnull (value is then ignored). */
static inline void
log_row_set(LogRow *row, LogColumn column, Datum value, bool isnull)
{
	row->value[column] = isnull ? (Datum) 0 : value;
	row->null[column] = isnull;
}

extern void crm_gdpr_put_log_row(Tuplestorestate *store, TupleDesc desc, const LogRow *row,
								 const LogColumn *order, int ncolumns);
extern Datum crm_gdpr_name_array(char *joined, char separator);
extern bool crm_gdpr_log_takes_keys(TupleDesc desc, const LogColumn *order, int ncolumns);
extern char *crm_gdpr_qualified_relname(Oid relid);

/*
 * Lists (columns, subject references) in a journal row are joined with this
 * byte, which no name or reference holds (log_write.c writes them,
 * log_journal.c reads them).
 */
#define LOG_LIST_SEPARATOR '\x1f'
#define LOG_LIST_SEPARATOR_STR "\x1f"

/*
 * In a journal row, subjects written as they are (ids, not references) are
 * marked with this first byte: the log writer pseudonymises them
 * (log_journal.c).  Rows written before 0.3 hold references, unmarked.
 */
#define LOG_IDS_MARK '\x1e'

/* The write trigger names its triggers with this prefix (log_write.c). */
#define LOG_TRIGGER_PREFIX "gdpr_log_"
extern void crm_gdpr_log_write_init(void);

/*
 * The statement whose AFTER triggers fire now, as the executor hook of
 * read_hook.c sees it (ExecutorFinish): FINISHING_UNKNOWN outside that hook
 * (COPY, the library loaded in the middle of a statement), FINISHING_ONE
 * when the statement writes each table through one node at most,
 * FINISHING_SHARED when its data-modifying WITH clauses may write one table
 * twice: their rows then share one pair of transition tables and the
 * trigger's updated columns are the last node's only (log_write.c).
 */
typedef enum FinishingShape
{
	FINISHING_UNKNOWN, FINISHING_ONE, FINISHING_SHARED
} FinishingShape;
extern FinishingShape crm_gdpr_finishing;

/*
 * The columns of gdpr.access_log_journal (80_access_log.sql), in table
 * order: log_write_fold.c writes its rows, log_journal.c takes them.
 */
typedef enum JournalColumn
{
	J_AT, J_ROLE, J_SESSION_ROLE, J_APPNAME, J_CLIENT, J_PID, J_OPERATION, J_TBL, J_TABLE_NAME,
	J_COLUMNS, J_REFS, J_SUBJECTS, J_ROWS, J_QUERY_ID, J_PURPOSE,
	J_COUNT_0_2,				/* the journal of 0.2 ends here: a row is one statement */
	J_LAST_AT = J_COUNT_0_2, J_TIMES,
	J_RECORDS,					/* since 0.3: a row holds a transaction's records (log_journal_pack.c) */
	J_COUNT
} JournalColumn;

/* One logged write statement, as the trigger hands it to the fold (log_write_fold.c). */
typedef enum WriteString
{
	WS_ROLE, WS_SESSION_ROLE, WS_APPNAME, WS_CLIENT, WS_OPERATION, WS_TABLE_NAME, WS_COLUMNS, WS_PURPOSE,
	WS_STRINGS
} WriteString;

typedef struct WriteStatement
{
	Oid			relid;
	int64		query_id;
	const char *strings[WS_STRINGS];	/* NULL or "" for none */
	bool		truncate;		/* no rows counted */
	int64		rows;
	bool		counted;		/* all its subjects are named */
	int			nids;
	const char **ids;			/* its subjects' ids */
} WriteStatement;

/*
 * log_journal_pack.c: the records a transaction writes at once, packed into
 * one journal row (its column records).  strings: the statement's
 * WS_STRINGS strings, each ending in a zero byte; subjects: its subjects'
 * ids, each ending in a zero byte.
 */
typedef struct JournalRecord
{
	TimestampTz first_at;
	TimestampTz last_at;
	int			times;
	int64		rows;
	bool		rows_known;
	bool		counted;
	Oid			relid;
	int64		query_id;
	const char *strings;
	int			strings_len;
	int			nsubjects;
	const char *subjects;
	int			subjects_len;
} JournalRecord;

extern bytea *crm_gdpr_journal_pack(const JournalRecord *records, int n);
typedef struct JournalReader
{
	const char *next;
	const char *end;
	int			version;		/* 0 until read */
	bool		any;			/* a record was read */
	TimestampTz prev_at;		/* the last record's first_at */
	/* Version 2: the last two records' strings, whole, and where each of the last one's starts. */
	StringInfoData strings[2];
	int			current;
	int			offsets[WS_STRINGS];
} JournalReader;

extern void crm_gdpr_journal_reader(JournalReader *rd, bytea *packed);
extern bool crm_gdpr_journal_next(JournalReader *rd, JournalRecord *r);
extern void crm_gdpr_journal_reader_end(JournalReader *rd);
extern void crm_gdpr_journal_ids(const JournalRecord *r, const char **ids);
extern void crm_gdpr_journal_values(const JournalRecord *r, int32 pid, Datum *values, bool *nulls);

extern void crm_gdpr_write_fold_init(void);
extern void crm_gdpr_write_fold_add(const WriteStatement *st);
extern void crm_gdpr_write_fold_flush(void);
/* subxact_memory.c */
extern void crm_gdpr_release_empty_subxact_memory(void);

/*
 * log_journals.c: the journals of writes (JOURNALS tables since 0.3, one
 * table up to 0.2), the one a writing transaction inserts into, and how the
 * log writer empties each (truncated, or DELETE then VACUUM).
 */
#define JOURNALS 2
extern bool crm_gdpr_in_log_writer;
extern void crm_gdpr_journals_init(void);
extern int	crm_gdpr_journals(Oid *oids, bool *single);
extern const char *crm_gdpr_journal_name(int i, bool single);
extern int	crm_gdpr_journal_columns(void);
extern Relation crm_gdpr_journal_open_for_insert(void);
extern bool crm_gdpr_journal_truncates(Oid relid, int i, bool single, bool *truncating);
extern const char *crm_gdpr_journal_to_vacuum(void);

/* log_key_wait.c: the access log waits for its key, the CRM's writes do not */
extern char *crm_gdpr_log_key_problem(void);
extern bool crm_gdpr_log_key_ready(void);

/* log_losses.c: what was taken from the queue is counted when it is in */
extern void crm_gdpr_log_taken(int n);

#endif							/* CRM_GDPR_ACCESS_LOG_H */
