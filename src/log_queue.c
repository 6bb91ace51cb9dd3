/*
 * log_queue.c — the shared-memory queue of reads waiting to be logged.
 *
 * A reader never writes the log itself: it may be in a read-only or aborting
 * transaction, or on a standby, and a synchronous write per statement is what
 * makes pgaudit-like logging slow.  It claims slots sixteen at a time with one
 * atomic increment, copies its record into the next one and marks it ready:
 * no lock, so readers never wait for each other nor for the writer.  One
 * taker at a time (a lightweight lock among takers) frees the ready slots of
 * its database.  The log writer
 * (log_worker.c), or gdpr.flush_access_log() in a database without it, takes
 * the records of its database and inserts them.  When the queue is full the
 * record is dropped and counted: the reader is never blocked or failed.
 * What the queue holds is lost on a crash (doc/access-log.md).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "crm_gdpr.h"

#define SLOT_FREE 0
#define SLOT_WRITING 1
#define SLOT_READY 2

/*
 * A record as it waits in the queue: its numbers, then its strings one after
 * the other.  A read by key fills 150 bytes of it, not the 1 kB its longest
 * strings may take: the cache lines that go from the reader's core to the
 * writer's are what a read costs the two of them.  The reader copies its
 * strings straight from where they are (LogRecord only points to them).  The
 * taker copies length bytes of strings and folds records as they are: what
 * folding compares is the numbers and the strings before subjects_at.
 */
#define PACKED_HEAD offsetof(LogRecord, operation)	/* LogRecord's numbers, as they are */
typedef struct PackedRecord
{
	char		head[MAXALIGN(PACKED_HEAD)];
	uint16		subjects_at;	/* where in strings the subjects start */
	uint16		length;			/* of strings, all of them */
	char		strings[LOG_RECORD_STRINGS];
} PackedRecord;

#define PACKED_SIZE(packed) MAXALIGN(offsetof(PackedRecord, strings) + (packed)->length)
#define PACKED_FIELDS(packed) ((const LogRecord *) (packed)->head)

typedef struct LogQueue
{
	LWLock	   *lock;			/* among takers only */
	int			capacity;
	int			chunk;			/* slots a reader claims at a time */
	/*
	 * Readers touch head once per chunk (and their slots): what waits is
	 * about head - written - dropped - abandoned (claimed slots not yet used
	 * are counted as waiting), so that a read costs no shared counter.
	 */
	pg_atomic_uint64 head;		/* next slot to claim, modulo capacity */
	char		pad[PG_CACHE_LINE_SIZE];
	Latch	   *writer_latch;	/* the log writer's, when it runs */
	pg_atomic_uint64 written;
	pg_atomic_uint64 dropped;
	pg_atomic_uint64 abandoned; /* claimed slots a reader gave up unused */
	pg_atomic_uint64 server_logged;
	/*
	 * The slots' states apart from their records: a taker scans 64 kB of
	 * states, not every record.
	 */
	pg_atomic_uint32 *states;
	PackedRecord *records;
} LogQueue;

/*
 * A reader claims 16 slots at a time, the cache line of their states: with
 * one increment of head per read, the line of head and those of the states
 * went from core to core at every read of every backend (a fifth of a read by
 * key's cost in the log, at 2 backends on 2 cores).
 */
#define CHUNK_SLOTS 16

static int	queue_size = 16384;
static LogQueue *queue = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
states_offset(void)
{
	return CACHELINEALIGN(sizeof(LogQueue));
}

static Size
records_offset(void)
{
	/* A line of slack: the states start on a line of their own. */
	return add_size(states_offset() + PG_CACHE_LINE_SIZE, CACHELINEALIGN(mul_size(queue_size, sizeof(pg_atomic_uint32))));
}

static Size
queue_bytes(void)
{
	return add_size(add_size(records_offset(), mul_size(queue_size, sizeof(PackedRecord))), PG_CACHE_LINE_SIZE);
}

static void
queue_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(queue_bytes());
	RequestNamedLWLockTranche("crm_gdpr", 1);
}

static void
queue_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("crm_gdpr read queue", queue_bytes(), &found);
	if (!found)
	{
		memset(queue, 0, queue_bytes());
		queue->states = (pg_atomic_uint32 *) CACHELINEALIGN((char *) queue + states_offset());
		queue->records = (PackedRecord *) CACHELINEALIGN((char *) queue + records_offset());
		queue->lock = &(GetNamedLWLockTranche("crm_gdpr"))->lock;
		queue->capacity = queue_size;
		queue->chunk = Max(1, Min(CHUNK_SLOTS, queue_size / 2));
		pg_atomic_init_u64(&queue->head, 0);
		for (int i = 0; i < queue_size; i++)
			pg_atomic_init_u32(&queue->states[i], SLOT_FREE);
		pg_atomic_init_u64(&queue->written, 0);
		pg_atomic_init_u64(&queue->dropped, 0);
		pg_atomic_init_u64(&queue->abandoned, 0);
		pg_atomic_init_u64(&queue->server_logged, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
crm_gdpr_log_queue_init(bool preloading)
{
	if (!preloading)
		return;
	DefineCustomIntVariable("crm_gdpr.log_queue_size", "Reads the shared-memory queue holds before it drops them.",
							"Each takes about 1 kB of shared memory.",
							&queue_size, 16384, 16, 1024 * 1024, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_shmem_startup;
}

bool
crm_gdpr_log_queue_ready(void)
{
	return queue != NULL;
}

/* s, cut to size - 1 bytes (on a character boundary), and its terminator. */
static char *
put_string(char *to, const char *s, int size)
{
	int			n = strnlen(s, size - 1);

	if (n == size - 1 && s[n] != '\0')
		n = pg_mbcliplen(s, n, n);
	memcpy(to, s, n);
	to[n] = '\0';
	return to + n + 1;
}

static const char *
next_string(const char *from)
{
	return from + strlen(from) + 1;
}

static void
pack_record(PackedRecord *to, const LogRecord *from)
{
	char	   *p = to->strings;

	memcpy(to->head, from, PACKED_HEAD);
	p = put_string(p, from->operation, 12);
	p = put_string(p, from->role, NAMEDATALEN);
	p = put_string(p, from->session_role, NAMEDATALEN);
	p = put_string(p, from->appname, NAMEDATALEN);
	p = put_string(p, from->client, 48);
	p = put_string(p, from->purpose, NAMEDATALEN);
	p = put_string(p, strlen(from->detail) < 128 ? from->detail : "", 128);	/* JSON: whole or not at all */
	p = put_string(p, from->columns, LOG_RECORD_COLUMNS);
	to->subjects_at = p - to->strings;
	for (int i = 0; i < from->nsubjects; i++)
		p = put_string(p, from->subjects[i], LOG_RECORD_SUBJECT_LEN);
	to->length = p - to->strings;
}

/* Everything but the subjects, which folding keeps apart: the strings stay in from. */
static void
unpack_record(LogRecord *to, const PackedRecord *from)
{
	const char *p = from->strings;

	memcpy(to, from->head, PACKED_HEAD);
	to->operation = p;
	to->role = p = next_string(p);
	to->session_role = p = next_string(p);
	to->appname = p = next_string(p);
	to->client = p = next_string(p);
	to->purpose = p = next_string(p);
	to->detail = p = next_string(p);
	to->columns = next_string(p);
	to->nsubjects = 0;
}

/* The slots this backend claimed and has not used yet: [next, end). */
static uint64 chunk_next = 0;
static uint64 chunk_end = 0;

static void
abandon_chunk(int code, Datum arg)
{
	if (queue != NULL && chunk_next < chunk_end)
		pg_atomic_fetch_add_u64(&queue->abandoned, chunk_end - chunk_next);
	chunk_next = chunk_end = 0;
}

/*
 * Claim the next chunk of slots.  A quarter full (unused claimed slots
 * included): the writer should not wait for its next round.  Setting a latch
 * that is already set costs a read, so every claim past that mark sets it.
 */
static void
claim_chunk(void)
{
	static bool exit_registered = false;
	Latch	   *latch;

	if (!exit_registered)
	{
		before_shmem_exit(abandon_chunk, (Datum) 0);
		exit_registered = true;
	}
	abandon_chunk(0, (Datum) 0);
	chunk_next = pg_atomic_fetch_add_u64(&queue->head, queue->chunk);
	chunk_end = chunk_next + queue->chunk;
	if ((int64) (chunk_end - pg_atomic_read_u64(&queue->written) - pg_atomic_read_u64(&queue->dropped) -
				 pg_atomic_read_u64(&queue->abandoned)) >= queue->capacity / 4 &&
		(latch = queue->writer_latch) != NULL)
		SetLatch(latch);
}

/* A free slot of this backend's chunk, marked as being written, or -1. */
static int
claim_slot(void)
{
	bool		fresh = false;

	for (;;)
	{
		uint32		expected = SLOT_FREE;
		int			k;

		if (chunk_next == chunk_end)
		{
			claim_chunk();
			fresh = true;
		}
		k = (chunk_next++) % queue->capacity;
		if (pg_atomic_compare_exchange_u32(&queue->states[k], &expected, SLOT_WRITING))
			return k;
		/*
		 * Taken: the queue is full, or the chunk is stale (claimed long ago,
		 * the ring has come round since).  A fresh one tells which.
		 */
		if (fresh)
		{
			pg_atomic_fetch_add_u64(&queue->dropped, 1);
			return -1;
		}
		pg_atomic_fetch_add_u64(&queue->abandoned, 1);
		abandon_chunk(0, (Datum) 0);
	}
}

void
crm_gdpr_log_enqueue(const LogRecord *rec)
{
	int			k;

	if (queue == NULL || (k = claim_slot()) < 0)
		return;
	pack_record(&queue->records[k], rec);
	pg_write_barrier();
	pg_atomic_write_u32(&queue->states[k], SLOT_READY);
}

/* Slots claimed and not yet written, dropped nor abandoned (an upper bound). */
static int64
waiting(void)
{
	uint64		written = pg_atomic_read_u64(&queue->written);
	uint64		dropped = pg_atomic_read_u64(&queue->dropped);
	uint64		abandoned = pg_atomic_read_u64(&queue->abandoned);

	return Max((int64) (pg_atomic_read_u64(&queue->head) - written - dropped - abandoned), 0);
}

/* Records in the queue now: written or being written, not yet taken. */
static int
queued_now(void)
{
	int			n = 0;

	for (int k = 0; k < queue->capacity; k++)
		n += pg_atomic_read_u32(&queue->states[k]) != SLOT_FREE;
	return n;
}

/* Whether the queue is about a quarter full or more (the writer then goes on). */
bool
crm_gdpr_log_queue_busy(void)
{
	return queue != NULL && waiting() >= queue->capacity / 4;
}

void
crm_gdpr_log_queue_count_server_log(void)
{
	if (queue)
		pg_atomic_fetch_add_u64(&queue->server_logged, 1);
}

static void
forget_writer(int code, Datum arg)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->writer_latch = NULL;
	LWLockRelease(queue->lock);
}

void
crm_gdpr_log_queue_set_writer(void)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->writer_latch = MyLatch;
	LWLockRelease(queue->lock);
	on_shmem_exit(forget_writer, (Datum) 0);
}


/* The subjects' keyed pseudonyms (the log never holds their identifiers). */
static Datum
subject_refs(const char **values, int n)
{
	Datum	   *items = palloc(sizeof(Datum) * Max(n, 1));

	crm_gdpr_log_subject_refs(values, n, items);
	return PointerGetDatum(construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* schema.table of relid, quoted as needed, or NULL when it no longer exists. */
char *
crm_gdpr_qualified_relname(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	return relname ? quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname) : NULL;
}

/* A list of column names joined by separator (changed in place) as name[]. */
Datum
crm_gdpr_name_array(char *joined, char separator)
{
	List	   *names = NIL;
	Datum	   *items;
	ListCell   *lc;
	int			n = 0;
	char	   *next;

	for (char *name = joined; name != NULL && *name; name = next)
	{
		next = strchr(name, separator);
		if (next)
			*next++ = '\0';
		names = lappend(names, name);
	}
	items = palloc(sizeof(Datum) * Max(list_length(names), 1));
	foreach(lc, names)
		items[n++] = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc)));
	return PointerGetDatum(construct_array(items, n, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
}

/*
 * Identical reads (same backend, roles, application, table, columns, query,
 * purpose) taken together are folded into one row, up to LOG_FOLD_MAX of them,
 * with the union of their subjects: at thousands of reads a second the log
 * grows by a few rows per writer round, and every person read is still named.
 */
#define FOLD_SUBJECTS 200
#define FOLD_LOOKBACK 64

typedef struct Fold
{
	const PackedRecord *first;	/* in the taken copy */
	TimestampTz first_at;
	TimestampTz last_at;
	int			times;
	int64		rows;
	int			nsubjects;
	int			capacity;
	const char **subjects;		/* into the taken copy; grows as needed */
} Fold;

/*
 * The subjects of all folds of a take, to keep each fold's distinct: an open
 * addressing set of (fold, subject), twice as large as the subjects taken.
 * (A search of the fold's list per subject was a tenth of the writer.)
 */
typedef struct SeenSubject
{
	const char *subject;		/* NULL: an empty entry */
	uint32		hash;
	int			fold;
} SeenSubject;

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
	Fold	   *folds;
	int			room;			/* of slots, taken and folds */
	SeenSubject *seen;			/* the set of subjects per fold */
	int			seen_room;
	uint32		seen_mask;
} TakeBuffers;

static TakeBuffers bufs;

static void
reset_seen(int subjects)
{
	int			size = 64;

	while (size < 2 * subjects)
		size *= 2;
	if (size > bufs.seen_room)
	{
		if (bufs.seen)
			pfree(bufs.seen);
		bufs.seen = MemoryContextAlloc(TopMemoryContext, sizeof(SeenSubject) * size);
		bufs.seen_room = size;
	}
	memset(bufs.seen, 0, sizeof(SeenSubject) * size);
	bufs.seen_mask = size - 1;
}

/* Whether fold already has subject s; adds it otherwise. */
static bool
seen_before(int fold, const char *s, size_t len)
{
	SeenSubject *seen = bufs.seen;
	uint32		hash = hash_bytes((const unsigned char *) s, len);
	uint32		i = (hash ^ ((uint32) fold * 0x9E3779B9)) & bufs.seen_mask;

	for (; seen[i].subject != NULL; i = (i + 1) & bufs.seen_mask)
		if (seen[i].hash == hash && seen[i].fold == fold && strcmp(seen[i].subject, s) == 0)
			return true;
	seen[i].subject = s;
	seen[i].hash = hash;
	seen[i].fold = fold;
	return false;
}

/*
 * Same database, table, backend, query, and strings but the subjects.  The
 * numbers first: the reads of other connections differ in pid at once, and
 * the strings are compared only where they are likely the same (hashing them
 * first cost more than this compare).
 */
static bool
same_read(const Fold *f, const PackedRecord *r)
{
	const LogRecord *a = PACKED_FIELDS(f->first);
	const LogRecord *b = PACKED_FIELDS(r);

	return a->pid == b->pid && a->relid == b->relid && a->query_id == b->query_id && a->dbid == b->dbid &&
		f->first->subjects_at == r->subjects_at &&
		memcmp(f->first->strings, r->strings, r->subjects_at) == 0;
}

static void
fold_subjects(Fold *f, int fold, const PackedRecord *r)
{
	const char *s = r->strings + r->subjects_at;

	for (int i = 0; i < PACKED_FIELDS(r)->nsubjects; i++)
	{
		size_t		len = strlen(s);

		if (!seen_before(fold, s, len))
		{
			if (f->nsubjects == f->capacity)
			{
				f->capacity = Max(8, f->capacity * 2);
				f->subjects = f->subjects ? repalloc(f->subjects, f->capacity * sizeof(char *)) :
					palloc(f->capacity * sizeof(char *));
			}
			f->subjects[f->nsubjects++] = s;
		}
		s += len + 1;
	}
}

/* Fold the records (oldest first) into folds; returns how many. */
static int
fold_records(const PackedRecord **taken, int n, Fold *folds)
{
	int			nfolds = 0;
	int			subjects = 0;

	for (int i = 0; i < n; i++)
		subjects += PACKED_FIELDS(taken[i])->nsubjects;
	reset_seen(subjects);
	for (int i = 0; i < n; i++)
	{
		const PackedRecord *r = taken[i];
		const LogRecord *nums = PACKED_FIELDS(r);
		Fold	   *f = NULL;

		for (int k = nfolds - 1; k >= 0 && k >= nfolds - FOLD_LOOKBACK; k--)
			if (folds[k].times < LOG_FOLD_MAX && folds[k].nsubjects + nums->nsubjects <= FOLD_SUBJECTS &&
				same_read(&folds[k], r))
			{
				f = &folds[k];
				break;
			}
		if (f == NULL)
		{
			f = &folds[nfolds++];
			memset(f, 0, sizeof(Fold));
			f->first = r;
			f->first_at = f->last_at = nums->at;
		}
		f->times++;
		f->rows += nums->rows;
		f->last_at = Max(f->last_at, nums->at);
		f->first_at = Min(f->first_at, nums->at);
		fold_subjects(f, f - folds, r);
	}
	return nfolds;
}

static void
emit(Tuplestorestate *store, TupleDesc desc, Fold *f, LogRecord *r)
{
	Datum		v[17];
	bool		n[17];
	char	   *table_name = NULL;

	unpack_record(r, f->first);
	r->at = f->first_at;
	memset(n, 0, sizeof(n));
	if (OidIsValid(r->relid))
	{
		/* A table dropped since it was read: nothing left to name. */
		table_name = crm_gdpr_qualified_relname(r->relid);
		if (table_name == NULL)
			return;
		v[16] = CStringGetTextDatum(table_name);
	}
	n[16] = table_name == NULL;
	v[0] = TimestampTzGetDatum(r->at);
	v[1] = DirectFunctionCall1(namein, CStringGetDatum(r->role));
	v[2] = DirectFunctionCall1(namein, CStringGetDatum(r->session_role));
	v[3] = CStringGetTextDatum(r->appname);
	n[3] = r->appname[0] == '\0';
	n[4] = r->client[0] == '\0';
	v[4] = n[4] ? (Datum) 0 : DirectFunctionCall1(inet_in, CStringGetDatum(r->client));
	v[5] = Int32GetDatum(r->pid);
	v[6] = CStringGetTextDatum(r->operation);
	v[7] = ObjectIdGetDatum(r->relid);
	n[8] = r->columns[0] == '\0';
	v[8] = n[8] ? (Datum) 0 : crm_gdpr_name_array(pstrdup(r->columns), ',');
	n[9] = f->nsubjects == 0;
	v[9] = n[9] ? (Datum) 0 : subject_refs(f->subjects, f->nsubjects);
	v[10] = Int64GetDatum(f->rows);
	v[11] = Int64GetDatum(r->query_id);
	n[11] = r->query_id == 0;
	v[12] = CStringGetTextDatum(r->purpose);
	n[12] = r->purpose[0] == '\0';
	n[13] = r->detail[0] == '\0';
	v[13] = n[13] ? (Datum) 0 : DirectFunctionCall1(jsonb_in, CStringGetDatum(r->detail));
	v[14] = TimestampTzGetDatum(f->last_at);
	n[14] = f->times == 1;
	v[15] = Int32GetDatum(f->times);
	tuplestore_putvalues(store, desc, v, n);
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
		pfree(bufs.folds);
	}
	if (bufs.seen)
		pfree(bufs.seen);
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
		bufs.folds = MemoryContextAlloc(TopMemoryContext, sizeof(Fold) * n);
	}
	else
	{
		bufs.slots = repalloc(bufs.slots, sizeof(int) * n);
		bufs.taken = repalloc(bufs.taken, sizeof(PackedRecord *) * n);
		bufs.folds = repalloc(bufs.folds, sizeof(Fold) * n);
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
 * end to end into bufs.copy.  Returns how many; bufs.taken points to them.
 */
static int
copy_ready(void)
{
	Size		used = 0;
	int			first = pg_atomic_read_u64(&queue->head) % queue->capacity;
	int			n = 0;

	/* From the oldest claimed slot round the ring (no division per slot). */
	for (int i = 0, k = first; i < queue->capacity; i++, k = (k + 1 == queue->capacity) ? 0 : k + 1)
	{
		const PackedRecord *r = &queue->records[k];

		if (pg_atomic_read_u32(&queue->states[k]) != SLOT_READY)
			continue;
		pg_read_barrier();
		if (PACKED_FIELDS(r)->dbid != MyDatabaseId)
			continue;
		reserve_records(n + 1);
		reserve_bytes(used + sizeof(PackedRecord));
		memcpy(bufs.copy + used, r, PACKED_SIZE(r));
		bufs.slots[n++] = k;
		/* An offset for now: copy may still move. */
		bufs.taken[n - 1] = (const PackedRecord *) used;
		used += PACKED_SIZE(r);
	}
	/* The copies are done before any slot is handed back: one barrier for all. */
	pg_memory_barrier();
	for (int i = 0; i < n; i++)
		pg_atomic_write_u32(&queue->states[bufs.slots[i]], SLOT_FREE);
	pg_atomic_fetch_add_u64(&queue->written, n);
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
	int			nfolds;

	InitMaterializedSRF(fcinfo, 0);
	if (queue == NULL)
		return (Datum) 0;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	n = copy_ready();
	LWLockRelease(queue->lock);
	nfolds = fold_records(bufs.taken, n, bufs.folds);
	scratch = palloc(sizeof(LogRecord));
	for (int i = 0; i < nfolds; i++)
		emit(rsinfo->setResult, rsinfo->setDesc, &bufs.folds[i], scratch);
	if (!crm_gdpr_in_own_worker)
		release_buffers();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(gdpr_log_queue_stats);
Datum
gdpr_log_queue_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		v[6];
	bool		n[6] = {0};
	int			queued = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (queue == NULL)
	{
		memset(n, true, sizeof(n));
		v[0] = Int32GetDatum(0);
		n[0] = false;
	}
	else
	{
		queued = queued_now();
		v[0] = Int32GetDatum(queue->capacity);
		v[1] = Int32GetDatum(queued);
		/* Queued since start: what was written, what waits (one counter less per read). */
		v[2] = Int64GetDatum(pg_atomic_read_u64(&queue->written) + queued);
		v[3] = Int64GetDatum(pg_atomic_read_u64(&queue->written));
		v[4] = Int64GetDatum(pg_atomic_read_u64(&queue->dropped));
		v[5] = Int64GetDatum(pg_atomic_read_u64(&queue->server_logged));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, v, n)));
}
