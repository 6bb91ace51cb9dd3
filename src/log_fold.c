/*
 * log_fold.c — the access log's one fold engine (log_fold.h).
 *
 * Identical reads, and identical write statements, become one log row: up
 * to a number of them (LOG_FOLD_MAX), with the union of their subjects.  The
 * three folds of the log (the read queue's take, the journal's take, a
 * writing transaction's fold) differ in what they read and write, not in
 * how they fold, which is done here:
 *
 * - a table of folds keyed by an identity, the bytes every record of a fold
 *   shares, built by the caller: hashed, and compared byte for byte so that
 *   a collision of hashes never folds two identities together.  An identity
 *   has one open fold at most; starting another (the first is full, or too
 *   old for the caller) closes the first, which keeps its place in the
 *   order of the folds;
 * - a fold's counts (records, rows, first and last time, whether every
 *   record counted its rows and named all its subjects);
 * - a fold's distinct subjects, in the order they came, with a hash set:
 *   searching a fold's list per subject was a tenth of the log writer;
 * - the folds in the order they started, or of their first time, and
 *   truncation of the latest (a rolled-back or written subtransaction's).
 *
 * A table's folds and buffers are kept when it is truncated or reset, for
 * the next folds to reuse: a log writer takes the queue many times a second
 * and a transaction may fold hundreds of thousands of statements, and fresh
 * memory every time cost more than the folding (pages faulted in, blocks
 * mapped and unmapped).  Nothing here is allocated per record but a
 * subject's bytes, once per fold.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "log_fold.h"

#define FIRST_BUCKETS 64
#define FIRST_SEEN 16

/* *buffer with room for need elements of size (at least doubled when it grows), in cxt. */
static void *
room_for(MemoryContext cxt, void *buffer, int *room, int need, Size size)
{
	int			old = *room;

	if (need <= old)
		return buffer;
	*room = Max(need, Max(old * 2, 16));
	if (buffer == NULL)
		return MemoryContextAllocZero(cxt, *room * size);
	buffer = repalloc(buffer, *room * size);
	memset((char *) buffer + old * size, 0, (*room - old) * size);
	return buffer;
}

LogFoldTable *
log_fold_table_create(MemoryContext cxt, int max_times, int max_subjects)
{
	LogFoldTable *t = MemoryContextAllocZero(cxt, sizeof(LogFoldTable));

	t->cxt = cxt;
	t->max_times = max_times;
	t->max_subjects = max_subjects;
	t->buckets = MemoryContextAlloc(cxt, sizeof(int) * FIRST_BUCKETS);
	memset(t->buckets, -1, sizeof(int) * FIRST_BUCKETS);
	t->bucket_mask = FIRST_BUCKETS - 1;
	return t;
}

/* Everything the table holds, for a backend that folds now and then. */
void
log_fold_table_free(LogFoldTable *t)
{
	for (int i = 0; i < t->room; i++)
	{
		LogFold    *f = &t->folds[i];

		if (f->identity)
			pfree(f->identity);
		if (f->subject_bytes)
			pfree(f->subject_bytes);
		if (f->subject_at)
			pfree(f->subject_at);
		if (f->seen)
			pfree(f->seen);
	}
	if (t->folds)
		pfree(t->folds);
	pfree(t->buckets);
	pfree(t);
}

/* --- the open folds, by identity ------------------------------------- */

static void
link_open(LogFoldTable *t, int i)
{
	int		   *head = &t->buckets[t->folds[i].hash & t->bucket_mask];

	t->folds[i].next = *head;
	t->folds[i].open = true;
	*head = i;
	t->nopen++;
}

static void
unlink_open(LogFoldTable *t, int i)
{
	int		   *p = &t->buckets[t->folds[i].hash & t->bucket_mask];

	while (*p != i)
		p = &t->folds[*p].next;
	*p = t->folds[i].next;
	t->folds[i].open = false;
	t->nopen--;
}

/* Twice the buckets once there are as many open folds as buckets. */
static void
grow_buckets(LogFoldTable *t)
{
	int			n = (t->bucket_mask + 1) * 2;

	pfree(t->buckets);
	t->buckets = MemoryContextAlloc(t->cxt, sizeof(int) * n);
	memset(t->buckets, -1, sizeof(int) * n);
	t->bucket_mask = n - 1;
	t->nopen = 0;
	for (int i = 0; i < t->nfolds; i++)
		if (t->folds[i].open)
			link_open(t, i);
}

/* An identity's hash, for log_fold_find_hashed() and log_fold_start_hashed(). */
uint32
log_fold_hash(const char *identity, int len)
{
	return hash_bytes((const unsigned char *) identity, len);
}

/* The open fold of this identity, or NULL. */
LogFold *
log_fold_find(LogFoldTable *t, const char *identity, int len)
{
	return log_fold_find_hashed(t, log_fold_hash(identity, len), identity, len);
}

/* The same, its hash known (a caller that may start a fold next hashes once). */
LogFold *
log_fold_find_hashed(LogFoldTable *t, uint32 hash, const char *identity, int len)
{
	for (int i = t->buckets[hash & t->bucket_mask]; i >= 0; i = t->folds[i].next)
	{
		LogFold    *f = &t->folds[i];

		if (f->hash == hash && f->identity_len == len && memcmp(f->identity, identity, len) == 0)
			return f;
	}
	return NULL;
}

/*
 * A new fold of this identity, empty, the last in order; the identity's open
 * fold (if any) is closed.  first is the caller's, kept as it is.
 */
LogFold *
log_fold_start(LogFoldTable *t, const char *identity, int len, const void *first)
{
	return log_fold_start_hashed(t, log_fold_hash(identity, len), identity, len, first);
}

/* The same, its hash known. */
LogFold *
log_fold_start_hashed(LogFoldTable *t, uint32 hash, const char *identity, int len, const void *first)
{
	LogFold    *open = log_fold_find_hashed(t, hash, identity, len);
	LogFold    *f;

	if (open)
		unlink_open(t, log_fold_index(t, open));
	t->folds = room_for(t->cxt, t->folds, &t->room, t->nfolds + 1, sizeof(LogFold));
	f = &t->folds[t->nfolds++];
	f->identity = room_for(t->cxt, f->identity, &f->identity_room, len, 1);
	memcpy(f->identity, identity, len);
	f->identity_len = len;
	f->hash = hash;
	f->first = first;
	log_fold_empty(f);
	if (t->nopen >= (int) t->bucket_mask + 1)
		grow_buckets(t);
	link_open(t, t->nfolds - 1);
	return f;
}

/* Forget the folds from the n-th on (their buffers stay for the next). */
void
log_fold_truncate(LogFoldTable *t, int n)
{
	for (int i = n; i < t->nfolds; i++)
		if (t->folds[i].open)
			unlink_open(t, i);
	t->nfolds = Min(n, t->nfolds);
}

/* --- a fold's counts ------------------------------------------------- */

/* No record yet (its identity and place stay). */
void
log_fold_empty(LogFold *f)
{
	f->first_at = f->last_at = 0;
	f->times = 0;
	f->rows = 0;
	f->rows_known = false;
	f->counted = true;
	if (f->nsubjects > 0)
		memset(f->seen, 0, sizeof(int) * (f->seen_mask + 1));
	f->nsubjects = 0;
	f->subject_len = 0;
}

/* Whether f takes times more records naming nsubjects subjects (distinct or not). */
bool
log_fold_fits(const LogFoldTable *t, const LogFold *f, int times, int nsubjects)
{
	return f->times + times <= t->max_times &&
		(t->max_subjects <= 0 || f->nsubjects + nsubjects <= t->max_subjects);
}

/* times more records (or a fold of them) from first_at to last_at. */
void
log_fold_count(LogFold *f, TimestampTz first_at, TimestampTz last_at, int times, int64 rows, bool rows_known,
			   bool counted)
{
	if (f->times == 0)
	{
		f->first_at = first_at;
		f->last_at = last_at;
	}
	f->first_at = Min(f->first_at, first_at);
	f->last_at = Max(f->last_at, last_at);
	f->times += times;
	if (rows_known)
	{
		f->rows += rows;
		f->rows_known = true;
	}
	f->counted = f->counted && counted;
}

/* --- a fold's subjects ----------------------------------------------- */

static int
subject_len(const LogFold *f, int k)
{
	return (k + 1 < f->nsubjects ? f->subject_at[k + 1] : f->subject_len) - f->subject_at[k] - 1;
}

/* The free entry of f's set for a subject of this hash, or the one holding it. */
static int *
seen_entry(const LogFold *f, uint32 hash, const char *s, int len)
{
	uint32		i = hash & f->seen_mask;

	for (; f->seen[i] != 0; i = (i + 1) & f->seen_mask)
	{
		int			k = f->seen[i] - 1;

		if (subject_len(f, k) == len && memcmp(f->subject_bytes + f->subject_at[k], s, len) == 0)
			break;
	}
	return &f->seen[i];
}

/* The set at least twice as large as the subjects, so that a search ends soon. */
static void
grow_seen(LogFoldTable *t, LogFold *f)
{
	int			size = f->seen ? (f->seen_mask + 1) * 2 : FIRST_SEEN;

	if (f->seen)
		pfree(f->seen);
	f->seen = MemoryContextAllocZero(t->cxt, sizeof(int) * size);
	f->seen_mask = size - 1;
	for (int k = 0; k < f->nsubjects; k++)
	{
		const char *s = f->subject_bytes + f->subject_at[k];
		int			len = subject_len(f, k);

		*seen_entry(f, hash_bytes((const unsigned char *) s, len), s, len) = k + 1;
	}
}

/* Subject s (len bytes) into f, unless f has it already. */
void
log_fold_add_subject(LogFoldTable *t, LogFold *f, const char *s, int len)
{
	int		   *entry;

	if (f->seen == NULL || 2 * (f->nsubjects + 1) > (int) f->seen_mask + 1)
		grow_seen(t, f);
	entry = seen_entry(f, hash_bytes((const unsigned char *) s, len), s, len);
	if (*entry != 0)
		return;
	f->subject_at = room_for(t->cxt, f->subject_at, &f->subject_at_room, f->nsubjects + 1, sizeof(int));
	f->subject_bytes = room_for(t->cxt, f->subject_bytes, &f->subject_room, f->subject_len + len + 1, 1);
	f->subject_at[f->nsubjects] = f->subject_len;
	memcpy(f->subject_bytes + f->subject_len, s, len);
	f->subject_bytes[f->subject_len + len] = '\0';
	f->subject_len += len + 1;
	*entry = ++f->nsubjects;
}

/* f's subjects, in the order they came, into out (nsubjects of them). */
void
log_fold_subjects(const LogFold *f, const char **out)
{
	for (int k = 0; k < f->nsubjects; k++)
		out[k] = f->subject_bytes + f->subject_at[k];
}

/* --- the folds in order ---------------------------------------------- */

static int
by_first_time(const void *a, const void *b)
{
	const LogFold *x = *(LogFold *const *) a;
	const LogFold *y = *(LogFold *const *) b;

	if (x->first_at != y->first_at)
		return x->first_at < y->first_at ? -1 : 1;
	return x < y ? -1 : x > y ? 1 : 0;	/* then in the order they started */
}

/* The folds in order of their first time (palloc'd here). */
LogFold **
log_fold_by_first_time(LogFoldTable *t)
{
	LogFold   **order = palloc(sizeof(LogFold *) * Max(t->nfolds, 1));

	for (int i = 0; i < t->nfolds; i++)
		order[i] = &t->folds[i];
	qsort(order, t->nfolds, sizeof(LogFold *), by_first_time);
	return order;
}
