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
#define SLOT_TAKING 4			/* a taker copies it out: its reader may no longer add to it */

/*
 * A record as it waits in the queue: its numbers, then its strings one after
 * the other, as long as they are.  A read by key takes some 150 bytes; its
 * strings at their longest (many columns, many subjects) some 15 kB.  The
 * taker copies length bytes of strings and folds records as they are: what
 * folding compares is the numbers and the strings before subjects_at.
 *
 * A record holds times reads of one backend, identical but for their
 * subjects, rows and times (log_queue.c adds a read to its backend's last
 * record while no taker has it): the head's at is the first one's time,
 * its rows and nsubjects their sums (a subject named by two reads is there
 * twice: the taker's fold keeps one).  At most READ_FOLD_TIMES reads and
 * READ_FOLD_SUBJECTS subjects, the bounds of a log row of reads: a record
 * always fits in a fold of its own.
 */
#define PACKED_HEAD offsetof(LogRecord, operation)	/* LogRecord's numbers, as they are */
typedef struct PackedRecord
{
	char		head[MAXALIGN(PACKED_HEAD)];
	TimestampTz last_at;		/* of its last read */
	int32		times;			/* reads in it */
	uint16		subjects_at;	/* where in strings the subjects start */
	uint16		length;			/* of strings, all of them */
	char		strings[FLEXIBLE_ARRAY_MEMBER];
} PackedRecord;

/*
 * A log row of reads folds 1,000 of them at most, naming 200 subjects at
 * most (log_queue_take.c says why).
 */
#define READ_FOLD_TIMES 1000
#define READ_FOLD_SUBJECTS 200

#define PACKED_SIZE(packed) MAXALIGN(offsetof(PackedRecord, strings) + (packed)->length)
#define PACKED_MAX_SIZE MAXALIGN(offsetof(PackedRecord, strings) + LOG_RECORD_STRINGS)
/*
 * The ring is made of slots of QUEUE_SLOT_BYTES; a record longer than one
 * runs on into the next slots (never round the ring's end), which are marked
 * SLOT_PART and freed with the first.  Small slots, not slots as long as the
 * longest record: every server process maps the ring's pages as it first
 * writes into them, and on a virtual machine a page fault costs tens of
 * microseconds.  With slots of 1.1 kB, a read by key left 1.1 kB behind it
 * (four reads a page), and new connections faulted in 18 MB in their first
 * second: the benchmark's reads by key went from 0.905 to 0.939 x plain with
 * slots of 256 bytes (doc/benchmarks.md, eleventh session).
 * A slot of 256 bytes holds a read by key, or a read of a few people, and a
 * backend's chunk of 16 slots is 4 kB.
 */
#define QUEUE_SLOT_BYTES 256
#define PACKED_SLOTS(packed) ((int) ((PACKED_SIZE(packed) + QUEUE_SLOT_BYTES - 1) / QUEUE_SLOT_BYTES))
#define MAX_RECORD_SLOTS ((int) ((PACKED_MAX_SIZE + QUEUE_SLOT_BYTES - 1) / QUEUE_SLOT_BYTES))
#define PACKED_FIELDS(packed) ((const LogRecord *) (packed)->head)

typedef struct LogQueue
{
	LWLock	   *lock;			/* among takers only */
	int			capacity;
	int			chunk;			/* slots a reader claims at a time */
	/*
	 * Readers touch head once per chunk (and their slots), so that a read
	 * costs no shared counter; what waits is counted from the slots' states
	 * when asked (gdpr.access_log_queue()).
	 */
	pg_atomic_uint64 head;		/* next slot to claim, modulo capacity */
	char		pad[PG_CACHE_LINE_SIZE];
	Latch	   *writer_latch;	/* the log writer's, when it runs */
	pg_atomic_uint64 written;
	pg_atomic_uint64 dropped;
	pg_atomic_uint64 server_logged;
	/*
	 * The slots' states apart from their records: a taker scans 64 kB of
	 * states, not every record.
	 */
	pg_atomic_uint32 *states;
	char	   *slots;			/* capacity * QUEUE_SLOT_BYTES: QUEUE_RECORD() */
} LogQueue;

/* The record that starts at slot k. */
#define QUEUE_RECORD(k) ((PackedRecord *) (crm_gdpr_queue->slots + (Size) (k) * QUEUE_SLOT_BYTES))

/* The queue, or NULL when the library was not preloaded. */
extern LogQueue *crm_gdpr_queue;

extern void crm_gdpr_unpack_record(LogRecord *to, const PackedRecord *from);
extern void crm_gdpr_log_queue_free(int k);
extern bool crm_gdpr_same_read(const PackedRecord *a, const PackedRecord *b);

/* log_queue_share.c: each database's share, the per-backend bound, the full-queue policy, drops */
extern Size crm_gdpr_log_share_bytes(void);
extern void crm_gdpr_log_share_init(void *at, bool fresh);
extern bool crm_gdpr_log_share_take(void);
extern void crm_gdpr_log_share_untake(int n);
extern void crm_gdpr_log_share_lost(void);
extern void crm_gdpr_log_share_too_long(void);
extern void crm_gdpr_log_share_taken(int n);
extern void crm_gdpr_log_share_set_writer(Latch *latch);
extern bool crm_gdpr_log_share_busy(void);

#endif							/* CRM_GDPR_LOG_QUEUE_H */
