/*
 * log_write_fold.c — a transaction's logged writes, folded as they come, on
 * their way to the journal.
 *
 * The write trigger (log_write.c) hands each statement's record here.  A
 * transaction that runs the same statement many times (a CRM import, an ORM
 * saving row after row, a loop of single-row INSERTs, each in a savepoint or
 * not) keeps ONE record (a fold, log_fold.c) per identity (table,
 * operation, columns, roles, application, query, purpose) and
 * subtransaction, with a count of statements, their rows, the first and last
 * statement's time and their subjects' ids, each once, bounded: a record
 * holds at most LOG_FOLD_MAX statements and a bounded set of ids, and a
 * subtransaction at most OPEN_MAX records; past either bound, records go
 * to the journal at once.  Memory stays bounded and the cost per statement
 * constant, whatever their number (issue 24.1: one record per statement
 * made 400,000 INSERTs 24 x slower than plain, 1.3 GB).
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
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "log_fold.h"
#include "settings.h"

/* A subtransaction keeps at most this many open records (distinct statements). */
#define OPEN_MAX 64

/*
 * A record is a fold (log_fold.c) of the transaction's one table, whose
 * identity starts with the subtransaction's id: a statement folds only with
 * those of its own level.  Only the innermost level takes statements, and
 * the levels within it are written or dropped before it takes more: its
 * records are the last folds of the table, from first_fold on.
 */
typedef struct Level
{
	SubTransactionId subid;
	int			first_fold;
} Level;

/*
 * The transaction's records, in memory of the backend's that is reset when
 * the transaction ends (no memory context made per transaction: a write
 * transaction of two statements spent more on that than on folding).
 */
static MemoryContext pending_cxt = NULL;
/*
 * The folds, in a context of their own kept from one transaction to the
 * next while it stays small: a table made per transaction, and its first
 * buffers, cost a two-statement transaction more than folding them.
 */
static MemoryContext fold_cxt = NULL;
static LogFoldTable *pending = NULL;	/* in fold_cxt, made at the first statement */
#define FOLD_KEEP_BYTES (256 * 1024)
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
	fold_cxt = AllocSetContextCreate(TopMemoryContext, "crm_gdpr write folds", ALLOCSET_DEFAULT_SIZES);
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

	/*
	 * The journal's columns (JournalColumn): J_COUNT_0_2 up to 0.2, where a
	 * journal row is one statement; J_COUNT since 0.3, where a row holds the
	 * records written at once.  The library serves both: with the journal of
	 * 0.2, nothing is folded.
	 */
	if (RelationGetDescr(rel)->natts != J_COUNT && RelationGetDescr(rel)->natts != J_COUNT_0_2)
		elog(ERROR, "gdpr.access_log_journal has %d columns, not %d", RelationGetDescr(rel)->natts, J_COUNT);
	return rel;
}

/*
 * The identity: what statements folded together share, as bytes (the
 * subtransaction, the table, the query id, then the strings with their
 * terminating zeros).
 */
typedef struct IdentityNumbers
{
	SubTransactionId subid;
	Oid			relid;
	int64		query_id;
} IdentityNumbers;

static void
statement_identity(const WriteStatement *st, SubTransactionId subid, StringInfo buf)
{
	IdentityNumbers nums;
	int			lens[WS_STRINGS];
	int			total = sizeof(nums);
	char	   *p;

	memset(&nums, 0, sizeof(nums));
	nums.subid = subid;
	nums.relid = st->relid;
	nums.query_id = st->query_id;
	/* Sized once, then copied: this runs for every statement written. */
	for (int i = 0; i < WS_STRINGS; i++)
		total += (lens[i] = st->strings[i] ? strlen(st->strings[i]) : 0) + 1;
	resetStringInfo(buf);
	enlargeStringInfo(buf, total);
	p = buf->data;
	memcpy(p, &nums, sizeof(nums));
	p += sizeof(nums);
	for (int i = 0; i < WS_STRINGS; i++)
	{
		if (lens[i] > 0)
			memcpy(p, st->strings[i], lens[i]);
		p[lens[i]] = '\0';
		p += lens[i] + 1;
	}
	buf->len = total;
	buf->data[total] = '\0';
}

/* A record as the journal takes it (log_journal_pack.c): pointers into the fold. */
static void
journal_record(const LogFold *f, JournalRecord *r)
{
	IdentityNumbers nums;

	memcpy(&nums, f->identity, sizeof(nums));
	r->first_at = f->first_at;
	r->last_at = f->last_at;
	r->times = f->times;
	r->rows = f->rows;
	r->rows_known = f->rows_known;
	r->counted = f->counted;
	r->relid = nums.relid;
	r->query_id = nums.query_id;
	r->strings = f->identity + sizeof(nums);
	r->strings_len = f->identity_len - sizeof(nums);
	r->nsubjects = f->nsubjects;
	r->subjects = f->subject_bytes;
	r->subjects_len = f->nsubjects > 0 ? f->subject_len : 0;
}

/*
 * heap_form_tuple() for a row whose columns are NULL but for n of them
 * (atts, in column order): heap_form_tuple() walks every column twice, and
 * the journal row, three columns of eighteen, is formed at every commit
 * of a writing transaction (1.7 k instructions of it).  The layout is
 * heap_form_tuple()'s but that a varlena keeps the header it has.
 */
static HeapTuple
sparse_tuple(TupleDesc desc, const int *atts, const Datum *values, int n)
{
	Size		hoff = MAXALIGN(SizeofHeapTupleHeader + BITMAPLEN(desc->natts));
	Size		len = 0;
	HeapTuple	tuple;
	HeapTupleHeader td;
	char	   *data;
	uint16		infomask = HEAP_HASNULL;

	Assert(n < desc->natts);
	for (int k = 0; k < n; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, atts[k]);

		len = att_align_datum(len, att->attalign, att->attlen, values[k]);
		len = att_addlength_datum(len, att->attlen, values[k]);
	}
	tuple = (HeapTuple) palloc0(HEAPTUPLESIZE + hoff + len);
	tuple->t_len = hoff + len;
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	tuple->t_data = td = (HeapTupleHeader) ((char *) tuple + HEAPTUPLESIZE);
	HeapTupleHeaderSetDatumLength(td, hoff + len);
	HeapTupleHeaderSetTypeId(td, desc->tdtypeid);
	HeapTupleHeaderSetTypMod(td, desc->tdtypmod);
	ItemPointerSetInvalid(&td->t_ctid);
	HeapTupleHeaderSetNatts(td, desc->natts);
	td->t_hoff = hoff;
	data = (char *) td + hoff;
	len = 0;
	for (int k = 0; k < n; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, atts[k]);
		Size		size;

		Assert(!att->attisdropped && (k == 0 || atts[k] > atts[k - 1]));
		td->t_bits[atts[k] >> 3] |= 1 << (atts[k] & 7);
		len = att_align_datum(len, att->attalign, att->attlen, values[k]);
		size = att_addlength_datum(0, att->attlen, values[k]);
		if (att->attbyval)
			store_att_byval(data + len, values[k], att->attlen);
		else
			memcpy(data + len, DatumGetPointer(values[k]), size);
		if (att->attlen < 0)
		{
			Assert(!VARATT_IS_EXTERNAL(DatumGetPointer(values[k])));
			infomask |= HEAP_HASVARWIDTH;
		}
		len += size;
	}
	td->t_infomask = infomask;
	return tuple;
}

/*
 * The records written at once as ONE journal row (since 0.3): its first
 * time, the backend, and the records packed (log_journal_pack.c).
 */
static HeapTuple
packed_tuple(TupleDesc desc, const LogFold *records, int n)
{
	static const int atts[3] = {J_AT, J_PID, J_RECORDS};
	Datum		values[3];
	JournalRecord *packed = palloc(sizeof(JournalRecord) * n);
	TimestampTz first = DT_NOEND;

	for (int i = 0; i < n; i++)
	{
		journal_record(&records[i], &packed[i]);
		first = Min(first, records[i].first_at);
	}
	values[0] = TimestampTzGetDatum(first);
	values[1] = Int32GetDatum(MyProcPid);
	values[2] = PointerGetDatum(crm_gdpr_journal_pack(packed, n));
	return sparse_tuple(desc, atts, values, 3);
}

/*
 * A record as a row of the journal of 0.2 (one statement a row: nothing is
 * folded with it): the columns a packed record is read back into
 * (log_journal_pack.c), the fold's ids being laid out as a packed record's.
 */
static HeapTuple
statement_tuple(TupleDesc desc, const LogFold *f)
{
	Datum		values[J_COUNT];
	bool		nulls[J_COUNT];
	JournalRecord r;

	journal_record(f, &r);
	crm_gdpr_journal_values(&r, MyProcPid, values, nulls);
	return heap_form_tuple(desc, values, nulls);
}

/*
 * Records into the journal's heap directly (no executor, no index, no
 * trigger): one row for them all, or with the journal of 0.2 one row each.
 */
static void
write_records(const LogFold *records, int n)
{
	Relation	rel;
	TupleDesc	desc;
	MemoryContext old;
	CommandId	cid;

	if (n == 0)
		return;
	old = MemoryContextSwitchTo(write_cxt);
	rel = open_journal();
	desc = RelationGetDescr(rel);
	cid = GetCurrentCommandId(true);
	if (desc->natts == J_COUNT)
		heap_insert(rel, packed_tuple(desc, records, n), cid, 0, NULL);
	else
		for (int i = 0; i < n; i++)
			heap_insert(rel, statement_tuple(desc, &records[i]), cid, 0, NULL);
	/* The lock stays until the transaction ends: the log writer's TRUNCATE waits for it (log_journals.c). */
	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextReset(write_cxt);
}

/* Write (or, rolled back, drop) every record of the innermost level, and pop it. */
static void
close_level(bool write)
{
	Level	   *level = llast(levels);

	if (write)
		write_records(&pending->folds[level->first_fold], pending->nfolds - level->first_fold);
	log_fold_truncate(pending, level->first_fold);
	levels = list_delete_last(levels);
	pfree(level);
}

/* --- folding ----------------------------------------------------------- */

static Level *
current_level(SubTransactionId subid)
{
	Level	   *level;

	if (levels != NIL && ((Level *) llast(levels))->subid == subid)
		return llast(levels);
	level = MemoryContextAllocZero(pending_cxt, sizeof(Level));
	level->subid = subid;
	level->first_fold = pending->nfolds;
	levels = lappend(levels, level);
	return level;
}

/* How many statements a record folds: none with the journal of 0.2. */
static int
fold_max(void)
{
	return crm_gdpr_journal_columns() == J_COUNT ? LOG_FOLD_MAX : 1;
}

/*
 * The hashes of the last identities folded.  A transaction's statements are
 * mostly those of the transactions before it (the same prepared statements,
 * role and application), so comparing the identity with a few recent ones
 * finds the hash that hashing its hundred-odd bytes again would give (a
 * mismatch differs in the first bytes: the table, the query id).
 */
#define HASH_MEMO 4

typedef struct HashMemo
{
	char	   *identity;		/* in TopMemoryContext */
	int			len;			/* 0: empty */
	int			room;
	uint32		hash;
} HashMemo;

static HashMemo hash_memo[HASH_MEMO];
static int	hash_memo_next = 0;

static uint32
identity_hash(const char *identity, int len)
{
	HashMemo   *m;

	for (int i = 0; i < HASH_MEMO; i++)
		if (hash_memo[i].len == len && memcmp(hash_memo[i].identity, identity, len) == 0)
			return hash_memo[i].hash;
	m = &hash_memo[hash_memo_next];
	hash_memo_next = (hash_memo_next + 1) % HASH_MEMO;
	if (m->room < len)
	{
		if (m->identity)
			pfree(m->identity);
		m->identity = MemoryContextAlloc(TopMemoryContext, len);
		m->room = len;
	}
	memcpy(m->identity, identity, len);
	m->len = len;
	m->hash = log_fold_hash(identity, len);
	return m->hash;
}

void
crm_gdpr_write_fold_add(const WriteStatement *st)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	TimestampTz at = GetCurrentStatementStartTimestamp();
	LogFold    *f;
	Level	   *level;
	uint32		hash;
	MemoryContext old;

	if (pending_cxt == NULL)
		start_backend_state();
	old = MemoryContextSwitchTo(pending_cxt);
	used = true;
	if (pending == NULL)
		pending = log_fold_table_create(fold_cxt, LOG_FOLD_MAX, 0);
	pending->max_subjects = Max(crm_gdpr_log_subjects_max, LOG_FOLD_MAX);
	statement_identity(st, subid, &scratch);
	hash = identity_hash(scratch.data, scratch.len);
	level = current_level(subid);
	f = log_fold_find_hashed(pending, hash, scratch.data, scratch.len);
	if (f != NULL && f->times > 0 && (f->times >= fold_max() || !log_fold_fits(pending, f, 1, st->nids)))
	{
		/* A full record goes to the journal now (its level is current), and starts again. */
		write_records(f, 1);
		log_fold_empty(f);
	}
	if (f == NULL)
	{
		if (pending->nfolds - level->first_fold >= OPEN_MAX)
		{
			/* Too many distinct statements: the level's records go now. */
			close_level(true);
			level = current_level(subid);
		}
		f = log_fold_start_hashed(pending, hash, scratch.data, scratch.len, NULL);
	}
	log_fold_count(f, at, at, 1, st->rows, !st->truncate, st->counted);
	for (int i = 0; i < st->nids; i++)
		log_fold_add_subject(pending, f, st->ids[i], strlen(st->ids[i]));
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
		if (pending != NULL && MemoryContextMemAllocated(fold_cxt, true) <= FOLD_KEEP_BYTES)
			log_fold_truncate(pending, 0);
		else
		{
			pending = NULL;
			MemoryContextReset(fold_cxt);
		}
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
