/*
 * log_queue_take.c — the log writer takes the queued reads as log rows.
 *
 * gdpr._log_queue_take() copies the ready records of its database out of
 * the queue (log_queue.c) and hands their slots back at once, then folds
 * identical reads into one row each (log_fold.c), with the union of their
 * subjects named by their keys (log_refs.c).  Its buffers are kept from one take to
 * the next in the log writer.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "crm_gdpr.h"
#include "log_fold.h"
#include "log_queue.h"

/*
 * The subjects' keys (their references for a 0.2 declaration): keyed hashes,
 * the log never holds their identifiers.
 */
static Datum
subject_set(const LogFold *f, bool keys)
{
	const char **ids = palloc(sizeof(char *) * f->nsubjects);

	log_fold_subjects(f, ids);
	if (keys)
	{
		int64	   *k = palloc(sizeof(int64) * f->nsubjects);

		crm_gdpr_log_subject_keys(ids, f->nsubjects, k);
		return crm_gdpr_log_key_array(k, f->nsubjects);
	}
	else
	{
		Datum	   *items = palloc(sizeof(Datum) * f->nsubjects);

		crm_gdpr_log_subject_refs(ids, f->nsubjects, items);
		return PointerGetDatum(construct_array(items, f->nsubjects, TEXTOID, -1, false, TYPALIGN_INT));
	}
}

/*
 * Identical reads (same backend, roles, application, table, columns, query,
 * purpose) taken together are folded into one row (log_fold.c), up to
 * READ_FOLD_TIMES of them and READ_FOLD_SUBJECTS subjects, with the union of their
 * subjects: at thousands of reads a second the log grows by a few rows per
 * writer round, and every person read is still named.  The bounds size the
 * row (issue 24.7): a row's own columns take some 400 bytes, shared by its
 * reads; 200 keys (1.6 kB) keep four rows to a page.  A read naming one
 * person costs some 10 bytes (100 reads a row, before: 16 of them for the
 * row's columns); reads naming no one fold by the thousand.  A read folds into
 * one of the FOLD_LOOKBACK latest folds only: that bounded the search before
 * the engine had a hash, and is kept so that the rows stay what they were.
 */
#define FOLD_LOOKBACK 64

/*
 * The taker's buffers, kept from one take to the next: allocated anew in
 * every call, they were fresh pages for the kernel to fault in and zero,
 * several a take (glibc maps large blocks and unmaps them when freed).
 */
typedef struct TakeBuffers
{
	char	   *copy;			/* the records taken, end to end */
	Size		copy_size;
	int		   *slots;			/* their slots, to free them */
	const PackedRecord **taken; /* where each one starts in copy */
	int			room;			/* of slots and taken */
	LogFoldTable *folds;
	StringInfoData identity;	/* scratch */
} TakeBuffers;

static TakeBuffers bufs;

/*
 * What identical reads share: database, table, backend, query, and the
 * strings before the subjects (roles, application, client, operation,
 * columns, purpose, detail).
 */
static void
read_identity(const PackedRecord *r, StringInfo buf)
{
	const LogRecord *nums = PACKED_FIELDS(r);

	resetStringInfo(buf);
	appendBinaryStringInfo(buf, (const char *) &nums->dbid, sizeof(nums->dbid));
	appendBinaryStringInfo(buf, (const char *) &nums->relid, sizeof(nums->relid));
	appendBinaryStringInfo(buf, (const char *) &nums->pid, sizeof(nums->pid));
	appendBinaryStringInfo(buf, (const char *) &nums->query_id, sizeof(nums->query_id));
	appendBinaryStringInfo(buf, r->strings, r->subjects_at);
}

/*
 * The last identities folded (a record of each and the fold it went to,
 * by index: the folds array may move), most recent first.
 */
#define FOLD_MEMO 4
typedef struct FoldMemo
{
	const PackedRecord *r;
	int			fold;
} FoldMemo;

/* The fold of r's identity among the memo's (moved first), or NULL. */
static LogFold *
memo_find(FoldMemo *memo, LogFoldTable *t, const PackedRecord *r)
{
	for (int m = 0; m < FOLD_MEMO && memo[m].r != NULL; m++)
		if (crm_gdpr_same_read(memo[m].r, r))
		{
			FoldMemo	hit = memo[m];

			memmove(&memo[1], &memo[0], sizeof(FoldMemo) * m);
			memo[0] = hit;
			return &t->folds[hit.fold];
		}
	return NULL;
}

/* Add n subjects, from s on, to f; returns where the next one starts. */
static const char *
add_subjects(LogFold *f, const char *s, int n)
{
	for (int k = 0; k < n; k++)
	{
		size_t		len = strlen(s);

		log_fold_add_subject(bufs.folds, f, s, len);
		s += len + 1;
	}
	return s;
}

/*
 * A record's reads that fit in f, when it can be cut between two reads: a
 * backend's repeated reads by key (each named one person and returned one
 * row: nothing else tells its reads apart) complete f, so that a row
 * still holds 1,000 reads or 200 people as when each read was a record.
 * The first reads that fit are counted in f, over the record's whole time
 * (their own times are not kept); 0 when it cannot be cut.
 */
static int
reads_that_fit(const LogFoldTable *t, const LogFold *f, const PackedRecord *r)
{
	const LogRecord *nums = PACKED_FIELDS(r);

	if (nums->nsubjects != r->times || nums->rows != r->times)
		return 0;
	return Max(0, Min(t->max_times - f->times, t->max_subjects - f->nsubjects));
}

/* Fold the records (oldest first) into bufs.folds. */
static void
fold_records(const PackedRecord **taken, int n)
{
	LogFoldTable *t = bufs.folds;
	FoldMemo	memo[FOLD_MEMO] = {{0}};

	log_fold_truncate(t, 0);
	for (int i = 0; i < n; i++)
	{
		const PackedRecord *r = taken[i];
		const LogRecord *nums = PACKED_FIELDS(r);
		const char *s = r->strings + r->subjects_at;
		LogFold    *f = memo_find(memo, t, r);	/* if found, memo[0] */
		bool		known = f != NULL;
		int			times = r->times;
		int64		rows = nums->rows;
		int			nsubjects = nums->nsubjects;

		if (!known)
		{
			read_identity(r, &bufs.identity);
			f = log_fold_find_hashed(t, log_fold_hash(bufs.identity.data, bufs.identity.len),
									 bufs.identity.data, bufs.identity.len);
			/* A new identity for the memo: the oldest one goes. */
			memmove(&memo[1], &memo[0], sizeof(FoldMemo) * (FOLD_MEMO - 1));
			memo[0].r = r;
		}
		if (f != NULL && log_fold_index(t, f) < t->nfolds - FOLD_LOOKBACK)
			f = NULL;
		if (f != NULL && !log_fold_fits(t, f, times, nsubjects))
		{
			int			k = reads_that_fit(t, f, r);

			if (k > 0)
			{
				log_fold_count(f, nums->at, r->last_at, k, k, true, true);
				s = add_subjects(f, s, k);
				times -= k;
				rows -= k;
				nsubjects -= k;
			}
			f = NULL;
		}
		if (f == NULL)
		{
			if (known)
				read_identity(r, &bufs.identity);
			f = log_fold_start_hashed(t, log_fold_hash(bufs.identity.data, bufs.identity.len),
									  bufs.identity.data, bufs.identity.len, r);
		}
		/*
		 * The memo names the open fold of each identity: the latest started
		 * for it (starting one closes the one before, log_fold.c).
		 */
		memo[0].fold = log_fold_index(t, f);
		log_fold_count(f, nums->at, r->last_at, times, rows, true, true);
		add_subjects(f, s, nsubjects);
	}
}

/* What gdpr._log_queue_take() returns (80_access_log.sql), in this order. */
static const LogColumn queue_take_columns[] = {
	LOG_AT, LOG_ROLE, LOG_SESSION_ROLE, LOG_APPNAME, LOG_CLIENT, LOG_PID, LOG_OPERATION, LOG_TBL, LOG_COLUMNS,
	LOG_SUBJECT_REFS, LOG_ROW_COUNT, LOG_QUERY_ID, LOG_PURPOSE, LOG_DETAIL, LOG_LAST_AT, LOG_TIMES, LOG_TABLE_NAME
};

static void
put_read_fold(Tuplestorestate *store, TupleDesc desc, const LogFold *f, LogRecord *r, bool keys)
{
	LogRow		row;
	char	   *table_name = NULL;

	crm_gdpr_unpack_record(r, f->first);
	r->at = f->first_at;
	if (OidIsValid(r->relid))
	{
		/* A table dropped since it was read: nothing left to name. */
		table_name = crm_gdpr_qualified_relname(r->relid);
		if (table_name == NULL)
			return;
	}
	log_row_set(&row, LOG_TABLE_NAME, table_name ? CStringGetTextDatum(table_name) : (Datum) 0, table_name == NULL);
	log_row_set(&row, LOG_AT, TimestampTzGetDatum(r->at), false);
	log_row_set(&row, LOG_ROLE, DirectFunctionCall1(namein, CStringGetDatum(r->role)), false);
	log_row_set(&row, LOG_SESSION_ROLE, DirectFunctionCall1(namein, CStringGetDatum(r->session_role)), false);
	log_row_set(&row, LOG_APPNAME, CStringGetTextDatum(r->appname), r->appname[0] == '\0');
	log_row_set(&row, LOG_CLIENT, r->client[0] ? DirectFunctionCall1(inet_in, CStringGetDatum(r->client)) : (Datum) 0,
				r->client[0] == '\0');
	log_row_set(&row, LOG_PID, Int32GetDatum(r->pid), false);
	log_row_set(&row, LOG_OPERATION, CStringGetTextDatum(r->operation), false);
	log_row_set(&row, LOG_TBL, ObjectIdGetDatum(r->relid), false);
	log_row_set(&row, LOG_COLUMNS, r->columns[0] ? crm_gdpr_name_array(pstrdup(r->columns), LOG_LIST_SEPARATOR) : (Datum) 0,
				r->columns[0] == '\0');
	log_row_set(&row, LOG_SUBJECT_REFS, f->nsubjects ? subject_set(f, keys) : (Datum) 0, f->nsubjects == 0);
	log_row_set(&row, LOG_ROW_COUNT, Int64GetDatum(f->rows), false);
	log_row_set(&row, LOG_QUERY_ID, Int64GetDatum(r->query_id), r->query_id == 0);
	log_row_set(&row, LOG_PURPOSE, CStringGetTextDatum(r->purpose), r->purpose[0] == '\0');
	log_row_set(&row, LOG_DETAIL, r->detail[0] ? DirectFunctionCall1(jsonb_in, CStringGetDatum(r->detail)) : (Datum) 0,
				r->detail[0] == '\0');
	log_row_set(&row, LOG_LAST_AT, TimestampTzGetDatum(f->last_at), f->times == 1);
	log_row_set(&row, LOG_TIMES, Int32GetDatum(f->times), false);
	crm_gdpr_put_log_row(store, desc, &row, queue_take_columns, lengthof(queue_take_columns));
}

/* A backend that flushes the log now and then does not keep them. */
static void
release_buffers(void)
{
	if (bufs.copy)
		pfree(bufs.copy);
	if (bufs.room > 0)
	{
		pfree(bufs.slots);
		pfree(bufs.taken);
	}
	if (bufs.folds)
	{
		log_fold_table_free(bufs.folds);
		pfree(bufs.identity.data);
	}
	memset(&bufs, 0, sizeof(bufs));
}

static void
reserve_records(int n)
{
	if (n <= bufs.room)
		return;
	n = Max(n, Max(bufs.room * 2, 256));
	if (bufs.room == 0)
	{
		bufs.slots = MemoryContextAlloc(TopMemoryContext, sizeof(int) * n);
		bufs.taken = MemoryContextAlloc(TopMemoryContext, sizeof(PackedRecord *) * n);
	}
	else
	{
		bufs.slots = repalloc(bufs.slots, sizeof(int) * n);
		bufs.taken = repalloc(bufs.taken, sizeof(PackedRecord *) * n);
	}
	bufs.room = n;
}

static void
reserve_bytes(Size size)
{
	if (size <= bufs.copy_size)
		return;
	size = Max(size, Max(bufs.copy_size * 2, 256 * 1024));
	bufs.copy = bufs.copy ? repalloc(bufs.copy, size) : MemoryContextAlloc(TopMemoryContext, size);
	bufs.copy_size = size;
}

/*
 * Copy the ready records of this database, from the oldest claimed slot on,
 * end to end into bufs.copy.  Returns how many; bufs.taken points to them;
 * *nslots says how many slots they took.
 */
static int
copy_ready(int *nslots)
{
	Size		used = 0;
	int			first = pg_atomic_read_u64(&crm_gdpr_queue->head) % crm_gdpr_queue->capacity;
	int			n = 0;
	int			reads = 0;

	/* From the oldest claimed slot round the ring (no division per slot). */
	for (int i = 0, k = first; i < crm_gdpr_queue->capacity; i++, k = (k + 1 == crm_gdpr_queue->capacity) ? 0 : k + 1)
	{
		const PackedRecord *r = QUEUE_RECORD(k);
		uint32		expected = SLOT_READY;

		if (pg_atomic_read_u32(&crm_gdpr_queue->states[k]) != SLOT_READY)
			continue;
		pg_read_barrier();
		/*
		 * Its database cannot change while it is ready (only a taker frees
		 * it); its reader may be adding a read to it: then it is left for
		 * the next take.  Once it is SLOT_TAKING, its reader leaves it be.
		 */
		if (PACKED_FIELDS(r)->dbid != MyDatabaseId ||
			!pg_atomic_compare_exchange_u32(&crm_gdpr_queue->states[k], &expected, SLOT_TAKING))
			continue;
		reads += r->times;
		reserve_records(n + 1);
		reserve_bytes(used + PACKED_SIZE(r));
		memcpy(bufs.copy + used, r, PACKED_SIZE(r));
		bufs.slots[n++] = k;
		/* An offset for now: copy may still move. */
		bufs.taken[n - 1] = (const PackedRecord *) used;
		used += PACKED_SIZE(r);
	}
	/* The copies are done before any slot is handed back: one barrier for all. */
	pg_memory_barrier();
	*nslots = 0;
	for (int i = 0; i < n; i++)
	{
		*nslots += PACKED_SLOTS(QUEUE_RECORD(bufs.slots[i]));
		crm_gdpr_log_queue_free(bufs.slots[i]);
	}
	crm_gdpr_log_taken(reads);	/* written when the taking transaction commits: log_losses.c */
	for (int i = 0; i < n; i++)
		bufs.taken[i] = (const PackedRecord *) (bufs.copy + (Size) bufs.taken[i]);
	return n;
}

/* Take (and remove) the queued records of this database, folded, oldest first. */
PG_FUNCTION_INFO_V1(gdpr_log_queue_take);
Datum
gdpr_log_queue_take(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LogRecord  *scratch;
	int			n;
	int			nslots;
	bool		keys;

	InitMaterializedSRF(fcinfo, 0);
	if (crm_gdpr_queue == NULL)
		return (Datum) 0;
	LWLockAcquire(crm_gdpr_queue->lock, LW_EXCLUSIVE);
	n = copy_ready(&nslots);
	LWLockRelease(crm_gdpr_queue->lock);
	crm_gdpr_log_share_taken(nslots);
	if (bufs.folds == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		bufs.folds = log_fold_table_create(TopMemoryContext, READ_FOLD_TIMES, READ_FOLD_SUBJECTS);
		initStringInfo(&bufs.identity);
		MemoryContextSwitchTo(old);
	}
	fold_records(bufs.taken, n);
	scratch = palloc(sizeof(LogRecord));
	keys = crm_gdpr_log_takes_keys(rsinfo->setDesc, queue_take_columns, lengthof(queue_take_columns));
	/* In the order the folds started: that of their first reads in the queue. */
	for (int i = 0; i < bufs.folds->nfolds; i++)
		put_read_fold(rsinfo->setResult, rsinfo->setDesc, &bufs.folds->folds[i], scratch, keys);
	if (!crm_gdpr_in_own_worker)
		release_buffers();
	return (Datum) 0;
}

