/*
 * log_queue.c — the shared-memory queue of reads waiting to be logged.
 *
 * A reader never writes the log itself: it may be in a read-only or aborting
 * transaction, or on a standby, and a synchronous write per statement is what
 * makes pgaudit-like logging slow.  It claims slots sixteen at a time with one
 * atomic increment, copies its record into the next one and marks it ready:
 * no lock, so readers never wait for each other nor for the writer.  A read
 * that repeats the backend's last one (another person by the same
 * statement) is added to its record instead, while no taker has it: a
 * compare-and-swap of the record's state, the reader's or the taker's,
 * decides who has it.  One
 * taker at a time (a lightweight lock among takers) frees the ready slots of
 * its database.  The log writer
 * (log_writer.c), or gdpr.flush_access_log() in a database without it, takes
 * the records of its database and inserts them.  Who may fill how much of
 * the queue, and what a read does when its share is full, is
 * log_queue_share.c.
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
#include "log_queue.h"
#include "settings.h"

/*
 * A reader claims 16 slots at a time, the cache line of their states: with
 * one increment of head per read, the line of head and those of the states
 * went from core to core at every read of every backend (a fifth of a read by
 * key's cost in the log, at 2 backends on 2 cores).
 */
#define CHUNK_SLOTS 16

LogQueue   *crm_gdpr_queue = NULL;
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
	return add_size(states_offset() + PG_CACHE_LINE_SIZE, CACHELINEALIGN(mul_size(crm_gdpr_log_queue_size, sizeof(pg_atomic_uint32))));
}

static Size
share_offset(void)
{
	return add_size(add_size(records_offset(), mul_size(crm_gdpr_log_queue_size, QUEUE_SLOT_BYTES)), PG_CACHE_LINE_SIZE);
}

static Size
queue_bytes(void)
{
	return add_size(share_offset(), crm_gdpr_log_share_bytes());
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
	crm_gdpr_queue = ShmemInitStruct("crm_gdpr read queue", queue_bytes(), &found);
	if (!found)
	{
		memset(crm_gdpr_queue, 0, queue_bytes());
		crm_gdpr_queue->states = (pg_atomic_uint32 *) CACHELINEALIGN((char *) crm_gdpr_queue + states_offset());
		crm_gdpr_queue->slots = (char *) CACHELINEALIGN((char *) crm_gdpr_queue + records_offset());
		crm_gdpr_queue->lock = &(GetNamedLWLockTranche("crm_gdpr"))->lock;
		crm_gdpr_queue->capacity = crm_gdpr_log_queue_size;
		crm_gdpr_queue->chunk = Max(1, Min(CHUNK_SLOTS, crm_gdpr_log_queue_size / 2));
		pg_atomic_init_u64(&crm_gdpr_queue->head, 0);
		for (int i = 0; i < crm_gdpr_log_queue_size; i++)
			pg_atomic_init_u32(&crm_gdpr_queue->states[i], SLOT_FREE);
		pg_atomic_init_u64(&crm_gdpr_queue->written, 0);
		pg_atomic_init_u64(&crm_gdpr_queue->dropped, 0);
		pg_atomic_init_u64(&crm_gdpr_queue->server_logged, 0);
	}
	crm_gdpr_log_share_init((char *) crm_gdpr_queue + share_offset(), !found);
	LWLockRelease(AddinShmemInitLock);
}

void
crm_gdpr_log_queue_init(bool preloading)
{
	if (!preloading)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_shmem_startup;
}

bool
crm_gdpr_log_queue_ready(void)
{
	return crm_gdpr_queue != NULL;
}

/*
 * s, cut to size - 1 bytes (on a character boundary), and its terminator.
 * Measured once, here; an empty string (no application name, purpose,
 * detail...) costs no call.
 */
static inline char *
put_string(char *to, const char *s, int size)
{
	int			n;

	if (s[0] == '\0')
	{
		*to = '\0';
		return to + 1;
	}
	n = strnlen(s, size - 1);
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

/* Into to, which has room for PACKED_MAX_SIZE bytes. */
static void
pack_record(PackedRecord *to, const LogRecord *from)
{
	char	   *p = to->strings;
	int			n;

	memcpy(to->head, from, PACKED_HEAD);
	to->last_at = from->at;
	to->times = 1;
	p = put_string(p, from->operation, 12);
	p = put_string(p, from->role, NAMEDATALEN);
	p = put_string(p, from->session_role, NAMEDATALEN);
	p = put_string(p, from->appname, NAMEDATALEN);
	p = put_string(p, from->client, 48);
	p = put_string(p, from->purpose, NAMEDATALEN);
	p = put_string(p, strnlen(from->detail, 128) < 128 ? from->detail : "", 128);	/* JSON: whole or not at all */
	p = put_string(p, from->columns, LOG_RECORD_COLUMNS);
	to->subjects_at = p - to->strings;
	/* The callers stop at LOG_RECORD_SUBJECT_BYTES; this bound keeps to's room whatever they pass. */
	for (n = 0; n < from->nsubjects && p + LOG_RECORD_SUBJECT_LEN <= to->strings + LOG_RECORD_STRINGS; n++)
		p = put_string(p, from->subjects[n], LOG_RECORD_SUBJECT_LEN);
	((LogRecord *) to->head)->nsubjects = n;
	to->length = p - to->strings;
}

/* Everything but the subjects, which folding keeps apart: the strings stay in from. */
void
crm_gdpr_unpack_record(LogRecord *to, const PackedRecord *from)
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

/*
 * Claim the next chunk of slots (the log writer is woken by
 * log_queue_share.c).  What is left of the last one stays free: slots
 * claimed and never used need no count, the queue's figures are read from
 * the slots' states.
 */
static void
claim_chunk(void)
{
	chunk_next = pg_atomic_fetch_add_u64(&crm_gdpr_queue->head, crm_gdpr_queue->chunk);
	chunk_end = chunk_next + crm_gdpr_queue->chunk;
}

/*
 * A free slot, marked as being written, or -1.  A slot still taken (by a
 * record of another database, or a stale chunk claimed long ago) is
 * skipped: the shares (log_queue_share.c) keep the ring from filling, so a
 * free slot is near; after a whole ring of taken ones, -1.
 */
static int
claim_slot(void)
{
	for (int tried = 0; tried < crm_gdpr_queue->capacity; tried++)
	{
		uint32		expected = SLOT_FREE;
		int			k;

		if (chunk_next == chunk_end)
			claim_chunk();
		k = (chunk_next++) % crm_gdpr_queue->capacity;
		if (pg_atomic_compare_exchange_u32(&crm_gdpr_queue->states[k], &expected, SLOT_WRITING))
			return k;
	}
	return -1;
}

/*
 * Slots k to k + n - 1 marked as being written, all of them, or none (false:
 * one was taken; those marked before it are given back).
 */
static bool
mark_writing(int k, int n)
{
	for (int got = 0; got < n; got++)
	{
		uint32		expected = SLOT_FREE;

		if (!pg_atomic_compare_exchange_u32(&crm_gdpr_queue->states[k + got], &expected, SLOT_WRITING))
		{
			for (int i = 0; i < got; i++)
				pg_atomic_write_u32(&crm_gdpr_queue->states[k + i], SLOT_FREE);
			return false;
		}
	}
	return true;
}

/*
 * n consecutive free slots of the backend's chunk, marked as being written,
 * or -1 (too few left in it, round the ring's end, or one still taken).  A
 * read of a few people takes two or three slots: as a read by key, it
 * should cost no atomic increment of head.
 */
static int
claim_run_in_chunk(int n)
{
	int			k = chunk_next % crm_gdpr_queue->capacity;

	if (chunk_end - chunk_next < n || k + n > crm_gdpr_queue->capacity || !mark_writing(k, n))
		return -1;
	chunk_next += n;
	return k;
}

/*
 * n consecutive free slots for a record longer than one, marked as being
 * written, or -1.  From the backend's chunk when they are there; otherwise
 * claimed apart from it, with one atomic increment of head: a run that would
 * go round the end of the ring, or that meets a slot still taken, is given
 * up (its slots stay free) and tried once more.
 */
static int
claim_run(int n)
{
	int			k;

	if ((k = claim_run_in_chunk(n)) >= 0)
		return k;
	for (int attempt = 0; attempt < 2; attempt++)
	{
		k = pg_atomic_fetch_add_u64(&crm_gdpr_queue->head, n) % crm_gdpr_queue->capacity;
		if (k + n <= crm_gdpr_queue->capacity && mark_writing(k, n))
			return k;
	}
	return -1;
}

/* Room in this database's share for n slots; false: dropped and counted. */
static bool
take_room(int n)
{
	for (int i = 0; i < n; i++)
		if (!crm_gdpr_log_share_take())
		{
			crm_gdpr_log_share_untake(i);
			return false;
		}
	return true;
}

/*
 * Where a record is packed before it goes into the ring: its length says how
 * many slots it takes, and measuring its strings first would cost more than
 * copying a read by key's 150 bytes twice.  Static: a record may be queued
 * while a failed query's memory is being freed.
 */
typedef union PackedBuffer
{
	PackedRecord record;
	char		bytes[PACKED_MAX_SIZE];
	double		align;
} PackedBuffer;

static PackedBuffer packing;

/*
 * This backend's last record, while a read may still be added to it: its
 * slot and slots, and a copy of its identity (numbers and the strings
 * before its subjects) to compare the next read with, in this backend's
 * memory rather than in the ring's lines.
 */
static int	open_k = -1;
static int	open_slots;
static int	open_length;
static int	open_times;
static int	open_subjects;
static PackedBuffer open_identity;

/*
 * Whether a and b are reads that only their subjects, rows and times tell
 * apart (of one backend: the pid is theirs): what a log row of reads
 * folds (log_queue_take.c), and what a backend adds to its last record.
 */
bool
crm_gdpr_same_read(const PackedRecord *a, const PackedRecord *b)
{
	const LogRecord *x = PACKED_FIELDS(a);
	const LogRecord *y = PACKED_FIELDS(b);

	return x->dbid == y->dbid && x->relid == y->relid && x->pid == y->pid &&
		x->query_id == y->query_id && a->subjects_at == b->subjects_at &&
		memcmp(a->strings, b->strings, a->subjects_at) == 0;
}

/*
 * Add the read packed to this backend's last record, when it is its twin,
 * has room in its slots, and no taker has it yet.  A read by key that
 * repeats a statement then writes a dozen bytes into a line it wrote
 * already, not a new record of 150 bytes into lines another core read
 * last, and its log writer takes one record for dozens of reads.
 */
static bool
add_to_open(const PackedRecord *packed)
{
	PackedRecord *r;
	LogRecord  *nums;
	const LogRecord *add = PACKED_FIELDS(packed);
	int			bytes = packed->length - packed->subjects_at;
	uint32		expected = SLOT_READY;

	if (open_k < 0 || !crm_gdpr_same_read(&open_identity.record, packed) ||
		open_times >= READ_FOLD_TIMES || open_subjects + add->nsubjects > READ_FOLD_SUBJECTS)
		return false;
	r = QUEUE_RECORD(open_k);
	/* Its size may grow to its slots' bytes, never past them: they are freed by its length. */
	if (MAXALIGN(offsetof(PackedRecord, strings) + open_length + bytes) > (Size) open_slots * QUEUE_SLOT_BYTES ||
		!pg_atomic_compare_exchange_u32(&crm_gdpr_queue->states[open_k], &expected, SLOT_WRITING))
	{
		open_k = -1;			/* taken (or full): the next read makes a new record */
		return false;
	}
	nums = (LogRecord *) r->head;
	/*
	 * Taken and freed since, and claimed again for another backend's record
	 * that is ready too: not ours, left as it was.  (A record of this
	 * backend there would be its latest, open_k.)
	 */
	if (nums->pid != MyProcPid || r->times != open_times || r->length != open_length)
	{
		pg_atomic_write_u32(&crm_gdpr_queue->states[open_k], SLOT_READY);
		open_k = -1;
		return false;
	}
	memcpy(r->strings + r->length, packed->strings + packed->subjects_at, bytes);
	r->length = open_length += bytes;
	nums->nsubjects += add->nsubjects;
	nums->rows += add->rows;
	r->last_at = add->at;
	r->times = ++open_times;
	open_subjects += add->nsubjects;
	pg_write_barrier();
	pg_atomic_write_u32(&crm_gdpr_queue->states[open_k], SLOT_READY);
	return true;
}

/* The record just queued at slot k (n slots) is this backend's open one. */
static void
open_record(const PackedRecord *packed, int k, int n)
{
	open_k = k;
	open_slots = n;
	open_length = packed->length;
	open_times = 1;
	open_subjects = PACKED_FIELDS(packed)->nsubjects;
	memcpy(&open_identity.record, packed, offsetof(PackedRecord, strings) + packed->subjects_at);
}

void
crm_gdpr_log_enqueue(const LogRecord *rec)
{
	PackedRecord *packed = &packing.record;
	int			n;
	int			k;

	if (crm_gdpr_queue == NULL)
		return;
	pack_record(packed, rec);
	if (add_to_open(packed))
		return;
	n = PACKED_SLOTS(packed);
	Assert(n <= MAX_RECORD_SLOTS);
	if (n > crm_gdpr_queue->capacity / 4)
	{
		crm_gdpr_log_share_too_long();
		return;
	}
	if (!take_room(n))
		return;
	if ((k = (n == 1 ? claim_slot() : claim_run(n))) < 0)
	{
		crm_gdpr_log_share_untake(n - 1);
		crm_gdpr_log_share_lost();
		return;
	}
	memcpy(QUEUE_RECORD(k), packed, PACKED_SIZE(packed));
	open_record(packed, k, n);
	pg_write_barrier();
	for (int i = 1; i < n; i++)
		pg_atomic_write_u32(&crm_gdpr_queue->states[k + i], SLOT_PART);
	pg_atomic_write_u32(&crm_gdpr_queue->states[k], SLOT_READY);
}

/* Free the slots of the record in slot k: its first and the parts after it. */
void
crm_gdpr_log_queue_free(int k)
{
	int			n = PACKED_SLOTS(QUEUE_RECORD(k));

	for (int i = n - 1; i >= 0; i--)
		pg_atomic_write_u32(&crm_gdpr_queue->states[k + i], SLOT_FREE);
}

/*
 * Reads in the queue now: written or being written, not yet taken.  A
 * record being written counts one (it may be a new one, not filled in yet);
 * a ready one, its reads, read without a lock (a figure of the moment).
 */
static int
queued_now(void)
{
	int			n = 0;

	for (int k = 0; k < crm_gdpr_queue->capacity; k++)
	{
		uint32		state = pg_atomic_read_u32(&crm_gdpr_queue->states[k]);

		if (state == SLOT_READY || state == SLOT_TAKING)
		{
			pg_read_barrier();
			n += Max(QUEUE_RECORD(k)->times, 1);
		}
		else
			n += state == SLOT_WRITING;
	}
	return n;
}

/* Whether this database's share is a quarter full or more (its log writer then goes on). */
bool
crm_gdpr_log_queue_busy(void)
{
	return crm_gdpr_log_share_busy();
}

/*
 * A dropped database's records, freed by the launcher: nobody would ever
 * take them, and they would hold ring slots.  Counted as dropped.
 */
void
crm_gdpr_log_queue_discard(Oid dboid)
{
	int			n = 0;

	if (crm_gdpr_queue == NULL)
		return;
	LWLockAcquire(crm_gdpr_queue->lock, LW_EXCLUSIVE);
	for (int k = 0; k < crm_gdpr_queue->capacity; k++)
		if (pg_atomic_read_u32(&crm_gdpr_queue->states[k]) == SLOT_READY &&
			PACKED_FIELDS(QUEUE_RECORD(k))->dbid == dboid)
		{
			n += QUEUE_RECORD(k)->times;
			crm_gdpr_log_queue_free(k);
		}
	pg_atomic_fetch_add_u64(&crm_gdpr_queue->dropped, n);
	LWLockRelease(crm_gdpr_queue->lock);
}

void
crm_gdpr_log_queue_count_server_log(void)
{
	if (crm_gdpr_queue)
		pg_atomic_fetch_add_u64(&crm_gdpr_queue->server_logged, 1);
}

static void
forget_writer(int code, Datum arg)
{
	LWLockAcquire(crm_gdpr_queue->lock, LW_EXCLUSIVE);
	crm_gdpr_queue->writer_latch = NULL;
	LWLockRelease(crm_gdpr_queue->lock);
	crm_gdpr_log_share_set_writer(NULL);
}

void
crm_gdpr_log_queue_set_writer(void)
{
	if (crm_gdpr_queue == NULL)
		return;
	LWLockAcquire(crm_gdpr_queue->lock, LW_EXCLUSIVE);
	crm_gdpr_queue->writer_latch = MyLatch;
	LWLockRelease(crm_gdpr_queue->lock);
	crm_gdpr_log_share_set_writer(MyLatch);
	on_shmem_exit(forget_writer, (Datum) 0);
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
	if (crm_gdpr_queue == NULL)
	{
		memset(n, true, sizeof(n));
		v[0] = Int32GetDatum(0);
		n[0] = false;
	}
	else
	{
		queued = queued_now();
		v[0] = Int32GetDatum(crm_gdpr_queue->capacity);
		v[1] = Int32GetDatum(queued);
		/* Queued since start: what was written, what waits (one counter less per read). */
		v[2] = Int64GetDatum(pg_atomic_read_u64(&crm_gdpr_queue->written) + queued);
		v[3] = Int64GetDatum(pg_atomic_read_u64(&crm_gdpr_queue->written));
		v[4] = Int64GetDatum(pg_atomic_read_u64(&crm_gdpr_queue->dropped));
		v[5] = Int64GetDatum(pg_atomic_read_u64(&crm_gdpr_queue->server_logged));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, v, n)));
}
