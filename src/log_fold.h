/*
 * log_fold.h — the access log's one fold engine (log_fold.c).
 *
 * Three places fold identical records into one: the log writer's take of
 * the read queue (log_queue_take.c), its take of the journal of writes
 * (log_journal.c), and a writing transaction on its way to the journal
 * (log_write_fold.c).  Each reads its own input and writes its own output;
 * what they share is here: a table of folds keyed by an identity (the bytes
 * the folded records share), the counts of a fold, and the distinct set of
 * its subjects in the order they came.
 */
#ifndef CRM_GDPR_LOG_FOLD_H
#define CRM_GDPR_LOG_FOLD_H

#include "datatype/timestamp.h"

typedef struct LogFold
{
	/* The identity, copied: what every record of the fold shares. */
	char	   *identity;
	int			identity_len;
	int			identity_room;
	uint32		hash;
	bool		open;			/* in the table's hash: still takes records */
	int			next;			/* the next open fold of its hash chain, or -1 */
	const void *first;			/* the caller's: its first record */

	/* The counts. */
	TimestampTz first_at;
	TimestampTz last_at;
	int			times;			/* statements or reads folded */
	int64		rows;
	bool		rows_known;		/* some record counted its rows (a TRUNCATE does not) */
	bool		counted;		/* every record named all its subjects */

	/* The distinct subjects, in the order they came, each ending in a zero byte. */
	int			nsubjects;
	char	   *subject_bytes;
	int			subject_len;
	int			subject_room;
	int		   *subject_at;		/* where each starts in subject_bytes */
	int			subject_at_room;
	int		   *seen;			/* open addressing: 1 + index into subject_at, 0 empty */
	uint32		seen_mask;
} LogFold;

typedef struct LogFoldTable
{
	MemoryContext cxt;			/* where its folds and their buffers live */
	int			max_times;		/* records a fold takes at most */
	int			max_subjects;	/* distinct subjects a fold takes at most (0: no bound) */
	LogFold    *folds;			/* in the order they started; those past nfolds are spare */
	int			nfolds;
	int			room;
	int		   *buckets;		/* heads of the hash chains of the open folds, -1 empty */
	uint32		bucket_mask;
	int			nopen;
} LogFoldTable;

extern LogFoldTable *log_fold_table_create(MemoryContext cxt, int max_times, int max_subjects);
extern void log_fold_table_free(LogFoldTable *t);
extern LogFold *log_fold_find(LogFoldTable *t, const char *identity, int len);
extern LogFold *log_fold_start(LogFoldTable *t, const char *identity, int len, const void *first);
extern uint32 log_fold_hash(const char *identity, int len);
extern LogFold *log_fold_find_hashed(LogFoldTable *t, uint32 hash, const char *identity, int len);
extern LogFold *log_fold_start_hashed(LogFoldTable *t, uint32 hash, const char *identity, int len,
									  const void *first);
extern bool log_fold_fits(const LogFoldTable *t, const LogFold *f, int times, int nsubjects);
extern void log_fold_count(LogFold *f, TimestampTz first_at, TimestampTz last_at, int times, int64 rows,
						   bool rows_known, bool counted);
extern void log_fold_add_subject(LogFoldTable *t, LogFold *f, const char *s, int len);
extern void log_fold_empty(LogFold *f);
extern void log_fold_subjects(const LogFold *f, const char **out);
extern LogFold **log_fold_by_first_time(LogFoldTable *t);
extern void log_fold_truncate(LogFoldTable *t, int n);

/* Where f is in the order the folds started. */
#define log_fold_index(t, f) ((int) ((f) - (t)->folds))

#endif							/* CRM_GDPR_LOG_FOLD_H */
