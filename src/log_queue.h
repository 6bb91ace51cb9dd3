/*
 * log_queue.h — the read queue's layout in shared memory, shared by the
 * queue (log_queue.c: readers put records in) and its taker
 * (log_queue_take.c: the log writer takes them out, folded into log rows).
 */
#ifndef CRM_GDPR_LOG_QUEUE_H
#define CRM_GDPR_LOG_QUEUE_H

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "access_log.h"

#define SLOT_FREE 0
#define SLOT_WRITING 1
#define SLOT_READY 2
#define SLOT_PART 3				/* the second and later slots of a record that spans several */

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
/*
 * A record whose subjects do not fit in one slot runs on into the next
 * slots of the ring (never round its end): its strings go on past the first
 * slot's, the other slots are marked SLOT_PART and freed with the first.
 */
#define PACKED_SLOTS(packed) ((int) ((PACKED_SIZE(packed) + sizeof(PackedRecord) - 1) / sizeof(PackedRecord)))
#define MAX_RECORD_SLOTS 16
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

/* The queue, or NULL when the library was not preloaded. */
extern LogQueue *crm_gdpr_queue;

extern void crm_gdpr_unpack_record(LogRecord *to, const PackedRecord *from);
extern void crm_gdpr_log_queue_free(int k);

/* log_queue_share.c: each database's share, the per-backend bound, the full-queue policy, drops */
extern Size crm_gdpr_log_share_bytes(void);
extern void crm_gdpr_log_share_init(void *at, bool fresh);
extern bool crm_gdpr_log_share_take(void);
extern void crm_gdpr_log_share_untake(int n);
extern void crm_gdpr_log_share_lost(void);
extern void crm_gdpr_log_share_taken(int n);
extern void crm_gdpr_log_share_set_writer(Latch *latch);
extern bool crm_gdpr_log_share_busy(void);

#endif							/* CRM_GDPR_LOG_QUEUE_H */
