/*
 * log_write_fold.c — a transaction's logged writes, folded as they come, on
 * their way to the journal.
 *
 * The write trigger (log_write.c) hands each statement's record here.  A
 * transaction that runs the same statement many times (a CRM import, an ORM
 * saving row after row, a loop of single-row INSERTs, each in a savepoint or
 * not) keeps ONE record per identity (table, operation, columns, roles,
 * application, query, purpose) and subtransaction, with a count of
 * statements, their rows, the first and last statement's time and their
 * subjects' ids, bounded: a record holds at most LOG_FOLD_MAX statements and
 * a bounded set of ids, and a subtransaction at most OPEN_MAX records; past
 * either bound, records go to the journal at once.  Memory stays bounded and
 * the cost per statement constant, whatever their number (issue 24.1: one
 * record per statement made 400,000 INSERTs 24 x slower than plain, 1.3 GB).
 *
 * Subtransactions: a record belongs to the subtransaction its statements ran
 * in (a "level").  When that subtransaction commits, its records go to the
 * journal, inserted as part of it (so the insert is undone with it if it is
 * rolled back later with its parent); when it is rolled back, they are
 * dropped.  Records are written only while their own level is the current
 * subtransaction, so that each record lives and dies with its statements.
 * Only the innermost level is ever touched: no scan of the others.
 *
 * The subjects are written as they are (their ids, as the CRM table holds
 * them), marked so: the log writer computes the keyed pseudonyms when it
 * moves them (log_journal.c).  A write never needs the key (issue 24.5).
 * The journal is transient and only the extension's owner reads it.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "settings.h"

/* A subtransaction keeps at most this many open records (distinct statements). */
#define OPEN_MAX 64

/*
 * The journal's columns (80_access_log.sql): 15 up to 0.2, where a journal
 * row is one statement; 17 since 0.3 (last_at, times).  The library serves
 * both: with 15, nothing is folded.
 */
#define JOURNAL_COLUMNS_0_2 15
#define JOURNAL_COLUMNS 17

typedef struct PendingRecord
{
	uint32		hash;			/* of the identity (see identity_of()) */
	const char *identity;
	int			identity_len;
	Oid			relid;
	int64		query_id;
	const char *strings[WS_STRINGS];	/* into identity */
	TimestampTz at;
	TimestampTz last_at;
	int			times;
	int64		rows;
	bool		rows_known;
	bool		counted;		/* every statement named all its subjects */
	StringInfoData ids;			/* ids joined by LOG_LIST_SEPARATOR */
	int			nids;
	dlist_node	in_level;
} PendingRecord;

typedef struct Level
{
	SubTransactionId subid;
	int			nopen;
	dlist_head	records;
} Level;

/*
 * The transaction's records, in memory of the backend's that is reset when
 * the transaction ends (no context or table made per transaction: a write
 * transaction of two statements spent more on that than on folding).  A
 * level's records are few (OPEN_MAX at most, one or two for most
 * transactions): they are searched in a list, by hash then bytes.
 */
static MemoryContext pending_cxt = NULL;
static List *levels = NIL;		/* innermost last; NIL: nothing pending */
static bool used = false;		/* pending_cxt holds something of this transaction */
static StringInfoData scratch;

/*
 * What writing to the journal allocates (tuples, slots, heap_multi_insert's
 * arrays), reset after each write.  Not the subtransaction's memory: a
 * subtransaction's context that was ever allocated in survives until the
 * transaction ends (AtSubCommit_Memory keeps any that is not "empty"), 8 kB
 * per released savepoint.
 */
static MemoryContext write_cxt = NULL;

static void fold_xact_callback(XactEvent event, void *arg);
static void fold_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								  SubTransactionId parentSubid, void *arg);

void
crm_gdpr_write_fold_init(void)
{
	RegisterXactCallback(fold_xact_callback, NULL);
	RegisterSubXactCallback(fold_subxact_callback, NULL);
	crm_gdpr_journals_init();
}

static void
start_backend_state(void)
{
	MemoryContext old;

	pending_cxt = AllocSetContextCreate(TopMemoryContext, "crm_gdpr pending writes", ALLOCSET_DEFAULT_SIZES);
	write_cxt = AllocSetContextCreate(TopMemoryContext, "crm_gdpr journal writes", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(TopMemoryContext);
	initStringInfo(&scratch);
	MemoryContextSwitchTo(old);
}

/* --- the journal ------------------------------------------------------- */

/* One of the journals, chosen and locked by log_journals.c. */
static Relation
open_journal(void)
{
	Relation	rel = crm_gdpr_journal_open_for_insert();

	if (RelationGetDescr(rel)->natts != JOURNAL_COLUMNS && RelationGetDescr(rel)->natts != JOURNAL_COLUMNS_0_2)
		elog(ERROR, "gdpr.access_log_journal has %d columns, not %d", RelationGetDescr(rel)->natts, JOURNAL_COLUMNS);
	return rel;
}

static Datum
text_or_null(const char *value, bool *isnull)
{
	*isnull = (value == NULL || value[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(value);
}

/* A record as a journal row, in the column order of 80_access_log.sql. */
static HeapTuple
journal_tuple(TupleDesc desc, PendingRecord *r)
{
	Datum		values[JOURNAL_COLUMNS];
	bool		nulls[JOURNAL_COLUMNS];

	values[0] = TimestampTzGetDatum(r->at);
	nulls[0] = false;
	values[1] = text_or_null(r->strings[WS_ROLE], &nulls[1]);
	values[2] = text_or_null(r->strings[WS_SESSION_ROLE], &nulls[2]);
	values[3] = text_or_null(r->strings[WS_APPNAME], &nulls[3]);
	values[4] = text_or_null(r->strings[WS_CLIENT], &nulls[4]);
	values[5] = Int32GetDatum(MyProcPid);
	nulls[5] = false;
	values[6] = text_or_null(r->strings[WS_OPERATION], &nulls[6]);
	values[7] = ObjectIdGetDatum(r->relid);
	nulls[7] = false;
	values[8] = text_or_null(r->strings[WS_TABLE_NAME], &nulls[8]);
	values[9] = text_or_null(r->strings[WS_COLUMNS], &nulls[9]);
	/* The ids, marked as ids (not references): the log writer pseudonymises them. */
	values[10] = text_or_null(r->nids > 0 ? r->ids.data : NULL, &nulls[10]);
	values[11] = Int64GetDatum(r->nids);
	nulls[11] = !r->counted;
	values[12] = Int64GetDatum(r->rows);
	nulls[12] = !r->rows_known;
	values[13] = Int64GetDatum(r->query_id);
	nulls[13] = r->query_id == 0;
	values[14] = text_or_null(r->strings[WS_PURPOSE], &nulls[14]);
	values[15] = TimestampTzGetDatum(r->last_at);
	nulls[15] = r->times == 1;
	values[16] = Int32GetDatum(r->times);
	nulls[16] = false;
	return heap_form_tuple(desc, values, nulls);
}

/*
 * Records into the journal's heap directly (no executor, no index, no
 * trigger), in one call: one WAL record per page rather than per record.
 */
static void
write_records(PendingRecord **records, int n)
{
	Relation	rel;
	TupleTableSlot **slots;
	MemoryContext old;

	if (n == 0)
		return;
	old = MemoryContextSwitchTo(write_cxt);
	rel = open_journal();
	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (int i = 0; i < n; i++)
	{
		slots[i] = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
		ExecStoreHeapTuple(journal_tuple(RelationGetDescr(rel), records[i]), slots[i], true);
	}
	heap_multi_insert(rel, slots, n, GetCurrentCommandId(true), 0, NULL);
	for (int i = n - 1; i >= 0; i--)	/* the resource owner finds the last remembered first */
		ExecDropSingleTupleTableSlot(slots[i]);
	/* The lock stays until the transaction ends: the log writer's TRUNCATE waits for it (log_journals.c). */
	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextReset(write_cxt);
}

static void
forget_record(Level *level, PendingRecord *r)
{
	dlist_delete(&r->in_level);
	level->nopen--;
	pfree(r->ids.data);
	pfree((void *) r->identity);
	pfree(r);
}

/* Write (or, rolled back, drop) every record of the innermost level, and pop it. */
static void
close_level(bool write)
{
	Level	   *level = llast(levels);
	PendingRecord **records = MemoryContextAlloc(pending_cxt, sizeof(PendingRecord *) * Max(level->nopen, 1));
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, &level->records)
		records[n++] = dlist_container(PendingRecord, in_level, it.cur);
	if (write)
		write_records(records, n);
	for (int i = 0; i < n; i++)
		forget_record(level, records[i]);
	pfree(records);
	levels = list_delete_last(levels);
	pfree(level);
}

/* --- folding ----------------------------------------------------------- */

/*
 * The identity: what statements folded together share, as bytes (the
 * table, the query id, then the strings with their terminating zeros).
 */
#define IDENTITY_STRINGS (sizeof(Oid) + sizeof(int64))

static void
identity_of(const WriteStatement *st, StringInfo buf)
{
	resetStringInfo(buf);
	appendBinaryStringInfo(buf, (const char *) &st->relid, sizeof(st->relid));
	appendBinaryStringInfo(buf, (const char *) &st->query_id, sizeof(st->query_id));
	for (int i = 0; i < WS_STRINGS; i++)
		appendBinaryStringInfo(buf, st->strings[i] ? st->strings[i] : "", strlen(st->strings[i] ? st->strings[i] : "") + 1);
}

static Level *
current_level(SubTransactionId subid)
{
	Level	   *level;

	if (levels != NIL && ((Level *) llast(levels))->subid == subid)
		return llast(levels);
	level = MemoryContextAllocZero(pending_cxt, sizeof(Level));
	level->subid = subid;
	dlist_init(&level->records);
	levels = lappend(levels, level);
	return level;
}

/* No statement yet. */
static void
empty_record(PendingRecord *r)
{
	r->times = 0;
	r->rows = 0;
	r->rows_known = false;
	r->counted = true;
	r->nids = 0;
	resetStringInfo(&r->ids);
}

static PendingRecord *
find_record(Level *level, StringInfo identity, uint32 hash)
{
	dlist_iter	it;

	dlist_foreach(it, &level->records)
	{
		PendingRecord *r = dlist_container(PendingRecord, in_level, it.cur);

		if (r->hash == hash && r->identity_len == identity->len && memcmp(r->identity, identity->data, identity->len) == 0)
			return r;
	}
	return NULL;
}

static PendingRecord *
new_record(Level *level, const WriteStatement *st, StringInfo identity, uint32 hash)
{
	PendingRecord *r = palloc(sizeof(PendingRecord));
	char	   *copy = palloc(identity->len);
	const char *p;

	memcpy(copy, identity->data, identity->len);
	r->hash = hash;
	r->identity = copy;
	r->identity_len = identity->len;
	r->relid = st->relid;
	r->query_id = st->query_id;
	p = copy + IDENTITY_STRINGS;
	for (int i = 0; i < WS_STRINGS; i++)
	{
		r->strings[i] = p;
		p += strlen(p) + 1;
	}
	initStringInfo(&r->ids);
	empty_record(r);
	dlist_push_tail(&level->records, &r->in_level);
	level->nopen++;
	return r;
}

/* A full record goes to the journal now (its level is current), and starts again. */
static void
restart_record(PendingRecord *r)
{
	write_records(&r, 1);
	empty_record(r);
}

static void
fold_statement(PendingRecord *r, const WriteStatement *st, TimestampTz at)
{
	if (r->times == 0)
		r->at = r->last_at = at;
	r->at = Min(r->at, at);
	r->last_at = Max(r->last_at, at);
	r->times++;
	if (!st->truncate)
	{
		r->rows += st->rows;
		r->rows_known = true;
	}
	r->counted = r->counted && st->counted;
	for (int i = 0; i < st->nids; i++)
	{
		if (r->ids.len > 0)
			appendStringInfoChar(&r->ids, LOG_LIST_SEPARATOR);
		else
			appendStringInfoChar(&r->ids, LOG_IDS_MARK);
		appendStringInfoString(&r->ids, st->ids[i]);
	}
	r->nids += st->nids;
}

/* How many statements a record folds: none with the journal of 0.2. */
static int
fold_max(void)
{
	return crm_gdpr_journal_columns() == JOURNAL_COLUMNS ? LOG_FOLD_MAX : 1;
}

void
crm_gdpr_write_fold_add(const WriteStatement *st)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	TimestampTz at = GetCurrentStatementStartTimestamp();
	int			max_ids = Max(crm_gdpr_log_subjects_max, LOG_FOLD_MAX);
	uint32		hash;
	PendingRecord *r;
	Level	   *level;
	MemoryContext old;

	if (pending_cxt == NULL)
		start_backend_state();
	old = MemoryContextSwitchTo(pending_cxt);
	used = true;
	identity_of(st, &scratch);
	hash = hash_bytes((const unsigned char *) scratch.data, scratch.len);
	level = current_level(subid);
	r = find_record(level, &scratch, hash);
	if (r != NULL && r->times > 0 && (r->times >= fold_max() || r->nids + st->nids > max_ids))
		restart_record(r);
	if (r == NULL)
	{
		if (level->nopen >= OPEN_MAX)
		{
			/* Too many distinct statements: the level's records go now. */
			close_level(true);
			level = current_level(subid);
		}
		r = new_record(level, st, &scratch, hash);
	}
	fold_statement(r, st, at);
	MemoryContextSwitchTo(old);
}

/*
 * gdpr.flush_access_log() in a transaction: its records go to the journal
 * now, as part of the current subtransaction (a test or a script reads
 * them back).  Those of enclosing subtransactions go too: a manual flush in
 * a savepoint that is then rolled back takes them with it, as one record
 * per statement did before 0.3.
 */
void
crm_gdpr_write_fold_flush(void)
{
	while (levels != NIL)
		close_level(true);
}

static void
fold_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
	{
		while (levels != NIL)
			close_level(true);
	}
	else if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE ||
			  event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT) && used)
	{
		/* What an aborted transaction left goes at once. */
		levels = NIL;
		MemoryContextReset(pending_cxt);
		used = false;
	}
}

/*
 * A subtransaction that commits writes its records just before (still
 * current: the rows are its own); one rolled back drops them.
 */
static void
fold_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	static SubTransactionId written = InvalidSubTransactionId;

	if (event == SUBXACT_EVENT_COMMIT_SUB && mySubid == written)
		crm_gdpr_release_empty_subxact_memory();	/* subxact_memory.c */
	if (levels == NIL || ((Level *) llast(levels))->subid != mySubid)
		return;
	if (event == SUBXACT_EVENT_PRE_COMMIT_SUB)
	{
		close_level(true);
		written = mySubid;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		close_level(false);
}
