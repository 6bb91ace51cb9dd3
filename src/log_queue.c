/*
 * log_queue.c — the shared-memory queue of reads waiting to be logged.
 *
 * A reader never writes the log itself: it may be in a read-only or aborting
 * transaction, or on a standby, and a synchronous write per statement is what
 * makes pgaudit-like logging slow.  It copies a fixed-size record into a slot
 * of this queue under a lightweight lock and goes on.  The log writer
 * (log_worker.c), or gdpr.flush_access_log() in a database without it, takes
 * the records of its database and inserts them.  When the queue is full the
 * record is dropped and counted: the reader is never blocked or failed.
 * What the queue holds is lost on a crash (doc/access-log.md).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
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
#include "utils/timestamp.h"

#include "crm_gdpr.h"

typedef struct QueueSlot
{
	bool		used;
	uint64		seq;
	LogRecord	rec;
} QueueSlot;

typedef struct LogQueue
{
	LWLock	   *lock;
	int			capacity;
	int			queued;
	int			next;			/* where to look for a free slot first */
	uint64		seq;
	Latch	   *writer_latch;	/* the log writer's, when it runs */
	pg_atomic_uint64 enqueued;
	pg_atomic_uint64 written;
	pg_atomic_uint64 dropped;
	pg_atomic_uint64 server_logged;
	QueueSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} LogQueue;

static int	queue_size = 4096;
static LogQueue *queue = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
queue_bytes(void)
{
	return add_size(offsetof(LogQueue, slots), mul_size(queue_size, sizeof(QueueSlot)));
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
		queue->lock = &(GetNamedLWLockTranche("crm_gdpr"))->lock;
		queue->capacity = queue_size;
		pg_atomic_init_u64(&queue->enqueued, 0);
		pg_atomic_init_u64(&queue->written, 0);
		pg_atomic_init_u64(&queue->dropped, 0);
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
							"Each takes about 1.3 kB of shared memory.",
							&queue_size, 4096, 16, 1024 * 1024, PGC_POSTMASTER, 0, NULL, NULL, NULL);
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

void
crm_gdpr_log_enqueue(const LogRecord *rec)
{
	bool		wake;
	Latch	   *latch;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->queued >= queue->capacity)
	{
		LWLockRelease(queue->lock);
		pg_atomic_fetch_add_u64(&queue->dropped, 1);
		return;
	}
	while (queue->slots[queue->next].used)
		queue->next = (queue->next + 1) % queue->capacity;
	queue->slots[queue->next].used = true;
	queue->slots[queue->next].seq = ++queue->seq;
	memcpy(&queue->slots[queue->next].rec, rec, sizeof(LogRecord));
	queue->next = (queue->next + 1) % queue->capacity;
	queue->queued++;
	/* Past half full, the writer should not wait for its next round. */
	wake = queue->queued == queue->capacity / 2;
	latch = queue->writer_latch;
	LWLockRelease(queue->lock);
	pg_atomic_fetch_add_u64(&queue->enqueued, 1);
	if (wake && latch)
		SetLatch(latch);
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

static int
by_seq(const void *a, const void *b)
{
	uint64		x = ((const QueueSlot *) a)->seq;
	uint64		y = ((const QueueSlot *) b)->seq;

	return x < y ? -1 : x > y;
}

static Datum
text_array(char values[][LOG_RECORD_SUBJECT_LEN], int n)
{
	Datum	   *items = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		items[i] = CStringGetTextDatum(values[i]);
	return PointerGetDatum(construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
name_array(const char *csv)
{
	char	   *copy = pstrdup(csv);
	List	   *names = NIL;
	Datum	   *items;
	ListCell   *lc;
	int			n = 0;

	for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ","))
		names = lappend(names, tok);
	items = palloc(sizeof(Datum) * Max(list_length(names), 1));
	foreach(lc, names)
		items[n++] = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc)));
	return PointerGetDatum(construct_array(items, n, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
}

static void
emit(Tuplestorestate *store, TupleDesc desc, LogRecord *r)
{
	Datum		v[14];
	bool		n[14];

	memset(n, 0, sizeof(n));
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
	v[8] = n[8] ? (Datum) 0 : name_array(r->columns);
	n[9] = r->nsubjects == 0;
	v[9] = n[9] ? (Datum) 0 : text_array(r->subjects, r->nsubjects);
	v[10] = Int64GetDatum(r->rows);
	v[11] = Int64GetDatum(r->query_id);
	n[11] = r->query_id == 0;
	v[12] = CStringGetTextDatum(r->purpose);
	n[12] = r->purpose[0] == '\0';
	n[13] = r->detail[0] == '\0';
	v[13] = n[13] ? (Datum) 0 : DirectFunctionCall1(jsonb_in, CStringGetDatum(r->detail));
	tuplestore_putvalues(store, desc, v, n);
}

/* Take (and remove) the queued records of this database, oldest first. */
PG_FUNCTION_INFO_V1(gdpr_log_queue_take);
Datum
gdpr_log_queue_take(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueSlot  *taken;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (queue == NULL)
		return (Datum) 0;
	taken = palloc(sizeof(QueueSlot) * queue->capacity);
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < queue->capacity && queue->queued > 0; i++)
	{
		if (!queue->slots[i].used || queue->slots[i].rec.dbid != MyDatabaseId)
			continue;
		memcpy(&taken[n++], &queue->slots[i], sizeof(QueueSlot));
		queue->slots[i].used = false;
		queue->queued--;
	}
	LWLockRelease(queue->lock);
	pg_atomic_fetch_add_u64(&queue->written, n);
	qsort(taken, n, sizeof(QueueSlot), by_seq);
	for (int i = 0; i < n; i++)
		emit(rsinfo->setResult, rsinfo->setDesc, &taken[i].rec);
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
		LWLockAcquire(queue->lock, LW_SHARED);
		queued = queue->queued;
		LWLockRelease(queue->lock);
		v[0] = Int32GetDatum(queue->capacity);
		v[1] = Int32GetDatum(queued);
		v[2] = Int64GetDatum(pg_atomic_read_u64(&queue->enqueued));
		v[3] = Int64GetDatum(pg_atomic_read_u64(&queue->written));
		v[4] = Int64GetDatum(pg_atomic_read_u64(&queue->dropped));
		v[5] = Int64GetDatum(pg_atomic_read_u64(&queue->server_logged));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, v, n)));
}
