/*
 * log_journals.c — the journals of writes: which tables, which one a writing
 * transaction inserts into, and how the log writer empties one for good.
 *
 * A journal emptied by DELETE keeps its dead rows until VACUUM may remove
 * them, and VACUUM may not while any snapshot could still see them: a
 * REPEATABLE READ transaction held 150 s at 1,000 writes/s grew the single
 * journal of 0.2 from 2.3 to 50 MB, and the log writer's DELETE and VACUUM,
 * scanning all of it every second, from 11 to 65 ticks of CPU per 10 s
 * (issue 24.4).  TRUNCATE gives the space back whatever snapshot is held.
 * Since 0.3 there are JOURNALS tables (gdpr.access_log_journal_1, _2):
 *
 * - a writing transaction inserts into the one it used last, unless someone
 *   waits for or holds a lock that excludes it there (the log writer, about
 *   to truncate it): it then takes another, without waiting.  Its ROW
 *   EXCLUSIVE lock is kept until it ends (log_write_fold.c), so that the log
 *   writer's ACCESS EXCLUSIVE lock waits for its commit.  The oids are
 *   cached per backend and forgotten on any invalidation of a journal.
 * - the log writer, when one has grown past TRUNCATE_PAGES, locks it ACCESS
 *   EXCLUSIVE, waiting LOCK_WAIT_MS at most (writers go to the other one
 *   meanwhile), reads its rows and truncates it, in the transaction that
 *   moves them into the log.  The other journals, and one it could not lock
 *   in time (a transaction that wrote into it and has not ended), are
 *   emptied by DELETE as before, their dead rows vacuumed after the round
 *   (log_writer.c) and truncated a later round.  A row is thus either moved
 *   by a committed round or still in a journal: never lost, never twice.
 *
 * TRUNCATE is not MVCC-safe: a transaction whose snapshot is older than the
 * truncation sees the journal empty.  Harmless here: only the log writer
 * reads the journals to move them (gdpr.flush_access_log() too, but by
 * DELETE, which waits for the truncation), and a row a snapshot no longer
 * sees was moved into the log by the round that truncated it.
 *
 * Up to 0.2 there is one journal, gdpr.access_log_journal (a table): the
 * library serves it as it is (DELETE and VACUUM) until the extension is
 * updated.  Since 0.3 that name is a view of the journals.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "access_log.h"

/* The journals of 0.3, in schema gdpr; the table of 0.2 is journal_0_2. */
static const char *const journal_names[JOURNALS] = {"access_log_journal_1", "access_log_journal_2"};
static const char journal_0_2[] = "access_log_journal";

/*
 * A journal of more pages than this is truncated rather than emptied by
 * DELETE: VACUUM keeps a journal a few pages long while no old snapshot
 * stops it, and truncating then would only churn the catalog (each TRUNCATE
 * updates three pg_class rows).
 */
#define TRUNCATE_PAGES 32
/* How long the log writer waits for the transactions writing into a journal to end. */
#define LOCK_WAIT_MS 200

/* The writers' cache: the journals' oids (none known: 0), their columns, the one used last. */
static Oid	writer_journals[JOURNALS];
static int	writer_njournals = 0;
static int	writer_columns = 0;
static int	writer_last = 0;

/* Set in the log writer's process (log_writer.c): only it truncates. */
bool		crm_gdpr_in_log_writer = false;

/* The journals the last take emptied by DELETE: log_writer.c vacuums them. */
static bool deleted[JOURNALS];
static bool deleted_0_2 = false;

/*
 * The journals of this database: JOURNALS oids since 0.3, and *single set
 * false; the table of 0.2 alone, and *single set true; none (0) when the
 * extension is not there.
 */
int
crm_gdpr_journals(Oid *oids, bool *single)
{
	Oid			gdpr = get_namespace_oid("gdpr", true);
	Oid			old;

	*single = false;
	if (!OidIsValid(gdpr))
		return 0;
	for (int i = 0; i < JOURNALS; i++)
	{
		oids[i] = get_relname_relid(journal_names[i], gdpr);
		if (!OidIsValid(oids[i]))
			break;
		if (i == JOURNALS - 1)
			return JOURNALS;
	}
	old = get_relname_relid(journal_0_2, gdpr);
	if (!OidIsValid(old) || get_rel_relkind(old) != RELKIND_RELATION)
		return 0;
	oids[0] = old;
	*single = true;
	return 1;
}

const char *
crm_gdpr_journal_name(int i, bool single)
{
	return single ? journal_0_2 : journal_names[i];
}

static void
forget_journals(Datum arg, Oid relid)
{
	for (int i = 0; i < writer_njournals; i++)
		if (!OidIsValid(relid) || relid == writer_journals[i])
		{
			writer_njournals = 0;
			return;
		}
}

void
crm_gdpr_journals_init(void)
{
	CacheRegisterRelcacheCallback(forget_journals, (Datum) 0);
}

static int
columns_of(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	int			columns = 0;

	if (HeapTupleIsValid(tuple))
	{
		columns = ((Form_pg_class) GETSTRUCT(tuple))->relnatts;
		ReleaseSysCache(tuple);
	}
	return columns;
}

/*
 * The journals' oids, looked up once per invalidation; their number.  The
 * cache is filled only after the catalog has been read: reading it takes
 * locks, which take in invalidations, and the log writer's TRUNCATE of a
 * journal sends one that empties the cache (forget_journals).  Filled first,
 * it was found empty again at once, and the CRM's commit failed.  A
 * journal's oid does not change when it is truncated.
 */
static int
writer_look_up(void)
{
	bool		single;
	Oid			oids[JOURNALS];
	int			n;
	int			columns;

	if (writer_njournals > 0)
		return writer_njournals;
	n = crm_gdpr_journals(oids, &single);
	columns = n > 0 ? columns_of(oids[0]) : 0;
	if (n > 0)
	{
		memcpy(writer_journals, oids, sizeof(Oid) * n);
		writer_columns = columns;
		writer_njournals = n;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("gdpr.access_log_journal does not exist: the writes of this transaction cannot be logged"),
				 errhint("Was the extension crm_gdpr dropped in this transaction?")));
	return n;
}

/* The journals' number of columns (they have the same), without a lock. */
int
crm_gdpr_journal_columns(void)
{
	writer_look_up();
	return writer_columns;
}

/*
 * The journal a writing transaction inserts into, opened with ROW EXCLUSIVE
 * lock: the one it used last if that lock is granted at once, else the first
 * other one where it is, else (all excluded: an extension update) the one
 * used last, waiting.  The caller keeps the lock until the transaction ends.
 * A lock granted takes in invalidations, which may forget the cache: the
 * oids are copied first.
 */
Relation
crm_gdpr_journal_open_for_insert(void)
{
	int			n = writer_look_up();
	Oid			oids[JOURNALS];

	for (int i = 0; i < n; i++)
		oids[i] = writer_journals[i];
	for (int k = 0; k < n; k++)
	{
		int			i = (writer_last + k) % n;

		if (ConditionalLockRelationOid(oids[i], RowExclusiveLock))
		{
			writer_last = i;
			return table_open(oids[i], NoLock);
		}
	}
	return table_open(oids[writer_last % n], RowExclusiveLock);
}

/*
 * ACCESS EXCLUSIVE lock on a journal within LOCK_WAIT_MS, or false (nothing
 * held).  The wait is a subtransaction's, so that lock_timeout's error ends
 * it alone; the lock granted stays with the transaction.
 */
static bool
lock_in_time(Oid relid)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			saved = LockTimeout;
	volatile bool locked = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		/* lock_timeout for this wait alone (a GUC set here would last the transaction). */
		LockTimeout = LOCK_WAIT_MS;
		LockRelationOid(relid, AccessExclusiveLock);
		LockTimeout = saved;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *error;

		LockTimeout = saved;
		MemoryContextSwitchTo(cxt);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(error);
		FreeErrorData(error);
		locked = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return locked;
}

static BlockNumber
pages_of(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	BlockNumber pages = RelationGetNumberOfBlocks(rel);

	table_close(rel, AccessShareLock);
	return pages;
}

/*
 * How the take empties journal i of oids: true to read and truncate it (it
 * is then locked ACCESS EXCLUSIVE), false to DELETE its rows.  Only the log
 * writer truncates, one journal a round (the writers need another), one that
 * has grown.  *truncating says whether one was chosen already this round.
 */
bool
crm_gdpr_journal_truncates(Oid relid, int i, bool single, bool *truncating)
{
	if (single)
	{
		deleted_0_2 = true;
		return false;
	}
	if (crm_gdpr_in_log_writer && !*truncating && pages_of(relid) > TRUNCATE_PAGES && lock_in_time(relid))
	{
		*truncating = true;
		deleted[i] = false;
		return true;
	}
	deleted[i] = true;
	return false;
}

/* The journals emptied by DELETE since the last call: names in schema gdpr, NULL after the last. */
const char *
crm_gdpr_journal_to_vacuum(void)
{
	if (deleted_0_2)
	{
		deleted_0_2 = false;
		return journal_0_2;
	}
	for (int i = 0; i < JOURNALS; i++)
		if (deleted[i])
		{
			deleted[i] = false;
			return journal_names[i];
		}
	return NULL;
}

/*
 * gdpr.access_log_journals(): the rows waiting in the journals and the
 * oldest one's time, for gdpr.access_log_status.  Each journal's lock is
 * released as soon as it is counted, not at the end of the transaction: a
 * monitoring session left idle in a transaction would otherwise keep the log
 * writer from truncating any journal for as long.  (In a snapshot older than
 * a truncation, what was truncated is not counted: it was moved.)
 */
PG_FUNCTION_INFO_V1(gdpr_log_journal_status);
Datum
gdpr_log_journal_status(PG_FUNCTION_ARGS)
{
	Oid			oids[JOURNALS];
	bool		single;
	int			n = crm_gdpr_journals(oids, &single);
	int64		rows = 0;
	TimestampTz oldest = DT_NOEND;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "gdpr.access_log_journals() must return a record");
	for (int i = 0; i < n; i++)
	{
		Relation	rel = table_open(oids[i], AccessShareLock);
		TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
		TupleTableSlot *slot = table_slot_create(rel, NULL);

		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		at = slot_getattr(slot, 1, &isnull);

			rows++;
			if (!isnull)
				oldest = Min(oldest, DatumGetTimestampTz(at));
		}
		ExecDropSingleTupleTableSlot(slot);
		table_endscan(scan);
		table_close(rel, AccessShareLock);
	}
	values[0] = Int64GetDatum(rows);
	values[1] = TimestampTzGetDatum(oldest);
	nulls[1] = rows == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
