/*
 * read_hook.c — see every read of a registered table: the hooks.
 *
 * Executor hooks (as pgaudit does) find, in each query's range table, the
 * relations read (SELECT privilege checked) that carry the extension's log
 * triggers, i.e. the registered tables, with the columns read
 * (read_subjects.c, rel_cache.c), and count the rows read from them
 * (read_count.c).  At ExecutorEnd, or when the query fails after reading
 * rows, one record per table goes to the shared-memory queue
 * (log_record.c, log_queue.c): no write, no lock wait, nothing that fails
 * the reader.  COPY table TO is seen in the utility hook.  The hot path for
 * a query that reads no registered table is a cache lookup per relation.
 *
 * The records carry the subject keys of the rows read (read_count.c takes
 * them from the scans, read_subject_set.c keeps up to
 * crm_gdpr.log_subjects_max of them per table): that is how
 * gdpr.access_history() finds who read one person's row.  read_count.c
 * also enforces crm_gdpr.max_rows_per_query.
 *
 * Left out: a parallel worker's share of its leader's plan (a query that
 * reads a registered table has no workers, read_planner.c: its leader
 * reads and counts every row; what a function runs in a worker is logged
 * there), the extension's own queries (inside its SECURITY DEFINER
 * functions and triggers, which log EXPORT, ERASE... themselves) and its
 * workers, but not what those run nested (the owner's triggers, functions),
 * and range table entries that are not relations.
 *
 * gdpr.decrypt() calls of one top-level statement become one DECRYPT record
 * at its end.  "Top-level" is counted across ExecutorRun and ExecutorFinish:
 * the statements that AFTER triggers run (in ExecutorFinish) are nested too.
 * (Version-specific: the hooks' signatures are those of PostgreSQL 15.)
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_relation.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "crm_gdpr.h"
#include "access_log.h"
#include "read_hook.h"
#include "settings.h"

bool		crm_gdpr_in_own_worker = false;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static QueryReads *running = NULL;
static bool in_copy = false;
static int	exec_nesting = 0;		/* ExecutorRun and ExecutorFinish calls under way */
/*
 * Of those, the runs of a foreign key's own queries (under way in a context
 * with SECURITY_NOFORCE_RLS): what they run in turn, a BEFORE row trigger of
 * a cascade's table and the queries it makes, is not theirs.
 */
static int	fk_nesting = 0;
/* Utility statements under way, and the role that runs the innermost. */
static int	utility_nesting = 0;
static Oid	utility_runner = InvalidOid;

/*
 * Whether the query about to be planned, started or run is a foreign key's
 * (see fk_nesting).  From its planning on: the planner evaluates an
 * IMMUTABLE default of a cascade's SET DEFAULT, and ExecutorStart may call
 * functions too (security review round 26.1).
 */
int
crm_gdpr_foreign_key_begin(void)
{
	Oid			userid;
	int			sec_context;

	GetUserIdAndSecContext(&userid, &sec_context);
	if (!(sec_context & SECURITY_NOFORCE_RLS))
		return 0;
	fk_nesting++;
	return 1;
}

void
crm_gdpr_foreign_key_end(int fk)
{
	fk_nesting -= fk;
}

int
crm_gdpr_utility_nesting(void)
{
	return utility_nesting;
}

Oid
crm_gdpr_utility_runner(void)
{
	return utility_runner;
}
FinishingShape crm_gdpr_finishing = FINISHING_UNKNOWN;
static int64 pending_decrypts = 0;	/* gdpr.decrypt() calls of the running statement */
static char decrypt_role[NAMEDATALEN];

/* ExecutorRun and ExecutorFinish calls under way (owner_context.c). */
int
crm_gdpr_exec_nesting(void)
{
	return exec_nesting;
}

/* --- which queries ------------------------------------------------------ */

static Oid
extension_owner(void)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static Oid	owner = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (cached_lxid == MY_LOCAL_XID)
		return owner;
	owner = InvalidOid;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ, CStringGetDatum("crm_gdpr"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	cached_lxid = MY_LOCAL_XID;
	return owner;
}

bool
crm_gdpr_reads_are_logged(void)
{
	Oid			userid;
	int			sec_context;

	if (!crm_gdpr_log_reads || !crm_gdpr_log_queue_ready() || !IsTransactionState())
		return false;
	/*
	 * The extension's workers' own reads are not logged; what the purge
	 * worker's statements (run as a table's owner) fire is the owner's: a
	 * trigger, a function (security review round 21).
	 */
	if (crm_gdpr_in_own_worker &&
		!(crm_gdpr_owner_exec_depth > 0 && exec_nesting > crm_gdpr_owner_exec_level))
		return false;
	/*
	 * A parallel worker's share of its leader's plan reads no registered
	 * table (read_planner.c); the queries that a PARALLEL SAFE function runs
	 * there are reads of their own, logged from the worker.
	 */
	if (IsParallelWorker() && exec_nesting == 0)
		return false;
	GetUserIdAndSecContext(&userid, &sec_context);
	/*
	 * A foreign key's query (the only code that sets SECURITY_NOFORCE_RLS)
	 * returns nothing to anyone: the write that made it is logged.  Only
	 * that query: the context stays set for everything it runs, and a
	 * cascade fires the BEFORE row triggers of its table, which anyone may
	 * write for two temporary tables of his own (security review round
	 * 25.1: such a trigger read crm.contacts unlogged).  The
	 * extension's statements on CRM tables run as the tables' owners
	 * (gdpr._owner_exec) and are logged as what they do (EXPORT, PURGE...);
	 * its C triggers read as its owner in a security-restricted context.
	 * Nothing else is skipped: a SECURITY DEFINER function of anyone,
	 * superuser included, is logged.
	 */
	if ((sec_context & SECURITY_NOFORCE_RLS) && fk_nesting == 0)
		return false;
	/*
	 * Only the extension's statement itself: what it runs nested (a trigger,
	 * a function, a default of the owner's, fired by an erasure or a purge)
	 * reads as any query does (security review round 21: the owner's
	 * trigger copied the whole table unlogged during an erasure).
	 */
	if (crm_gdpr_owner_exec_depth > 0 && exec_nesting <= crm_gdpr_owner_exec_level)
		return false;
	if ((sec_context & SECURITY_RESTRICTED_OPERATION) && userid == extension_owner())
		return false;
	return true;
}

/* --- the running queries ------------------------------------------------ */

QueryReads *
crm_gdpr_running_reads(void)
{
	return running;
}

static void
unlink_reads(QueryReads *reads)
{
	QueryReads **p;

	if (!reads->linked)
		return;
	for (p = &running; *p; p = &(*p)->next)
		if (*p == reads)
		{
			*p = reads->next;
			break;
		}
	reads->linked = false;
}

/*
 * The executor's memory goes: after ExecutorEnd, or when the query failed.
 * Rows a failed query read may have left the server (streamed to the
 * client, or to a function that caught the error), and so may the row it
 * failed on: an error raised by a condition on the row names its values
 * ("invalid input syntax for type integer: \"<e-mail> <phone>\""), before
 * the row passes the quals and is counted (read_failing.c adds it).  So a
 * failed query's records go whatever it counted, 0 rows included, during
 * the abort, with the names
 * taken at its start (no catalog can be read here), and on a standby the
 * table's name too: the record goes to the server log as any other read
 * there.
 */
static void
query_memory_freed(void *arg)
{
	QueryReads *reads = (QueryReads *) arg;

	if (reads->linked && !reads->recorded)
	{
		crm_gdpr_add_failing_rows(reads);
		crm_gdpr_record_query(reads, "{\"failed\": true}");
	}
	unlink_reads(reads);
}

static QueryReads *
reads_of(QueryDesc *query)
{
	for (QueryReads *r = running; r; r = r->next)
		if (r->query == query)
			return r;
	return NULL;
}

static void
crm_gdpr_ExecutorStart(QueryDesc *query, int eflags)
{
	QueryReads *reads;
	int			fk = crm_gdpr_foreign_key_begin();

	PG_TRY();
	{
		if (prev_ExecutorStart)
			prev_ExecutorStart(query, eflags);
		else
			standard_ExecutorStart(query, eflags);
	}
	PG_FINALLY();
	{
		crm_gdpr_foreign_key_end(fk);
	}
	PG_END_TRY();
	if (!(eflags & EXEC_FLAG_EXPLAIN_ONLY))
		crm_gdpr_note_running_write(query);
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || in_copy || !crm_gdpr_reads_are_logged())
		return;
	reads = crm_gdpr_find_reads(query);
	if (reads == NULL)
		return;
	crm_gdpr_log_queue_reserve();	/* crm_gdpr.log_queue_full applies before any row is read */
	reads->next = running;
	reads->linked = true;
	running = reads;
	crm_gdpr_count_reads(reads, query->planstate);
	/* An error frees the executor's memory: the entry goes with it. */
	reads->freed.func = query_memory_freed;
	reads->freed.arg = reads;
	MemoryContextRegisterResetCallback(query->estate->es_query_cxt, &reads->freed);
}

static void
run_nested(EXECUTOR_RUN_PARAMS)
{
	int			fk = crm_gdpr_foreign_key_begin();

	exec_nesting++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(EXECUTOR_RUN_ARGS);
		else
			standard_ExecutorRun(EXECUTOR_RUN_ARGS);
	}
	PG_FINALLY();
	{
		exec_nesting--;
		crm_gdpr_foreign_key_end(fk);
	}
	PG_END_TRY();
}

/*
 * The rows under examination when an error comes are read (read_failing.c):
 * its callback is on the stack while a read runs.  An error leaves it there;
 * whoever catches the error restores the stack.
 */
static void
crm_gdpr_ExecutorRun(EXECUTOR_RUN_PARAMS)
{
	QueryReads *reads = running ? reads_of(query) : NULL;
	FailingWrite *w = crm_gdpr_failing_write_of(query->estate->es_query_cxt);
	ErrorContextCallback failing[2];
	ErrorContextCallback *outer = error_context_stack;

	if (reads)
	{
		failing[0].callback = crm_gdpr_note_failing_rows;
		failing[0].arg = reads;
		failing[0].previous = error_context_stack;
		error_context_stack = &failing[0];
	}
	if (w)
	{
		failing[1].callback = crm_gdpr_note_failing_write;
		failing[1].arg = w;
		failing[1].previous = error_context_stack;
		error_context_stack = &failing[1];
	}
	run_nested(EXECUTOR_RUN_ARGS);
	error_context_stack = outer;
}

/* AFTER triggers fire here: what they run is nested, not top-level. */
static void
crm_gdpr_ExecutorFinish(QueryDesc *query)
{
	FinishingShape outer = crm_gdpr_finishing;
	int			fk = crm_gdpr_foreign_key_begin();

	exec_nesting++;
	crm_gdpr_finishing = query->plannedstmt->hasModifyingCTE ? FINISHING_SHARED : FINISHING_ONE;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(query);
		else
			standard_ExecutorFinish(query);
	}
	PG_FINALLY();
	{
		exec_nesting--;
		crm_gdpr_foreign_key_end(fk);
		crm_gdpr_finishing = outer;
	}
	PG_END_TRY();
}

/*
 * gdpr.decrypt() calls this for each value: the calls of one top-level
 * statement become one DECRYPT record (rows = values decrypted), written at
 * its end, rather than one log row per value.
 */
PG_FUNCTION_INFO_V1(gdpr_note_decrypt);
Datum
gdpr_note_decrypt(PG_FUNCTION_ARGS)
{
	if (crm_gdpr_log_queue_ready() && !IsParallelWorker() && !crm_gdpr_in_own_worker)
	{
		if (pending_decrypts++ == 0)
			strlcpy(decrypt_role, GetUserNameFromId(GetOuterUserId(), false), NAMEDATALEN);
	}
	PG_RETURN_VOID();
}

static void
record_decrypts(void)
{
	LogRecord	rec;

	crm_gdpr_fill_log_record(&rec, "DECRYPT", InvalidOid);
	rec.role = decrypt_role;
	rec.rows = pending_decrypts;
	pending_decrypts = 0;
	crm_gdpr_send_log_record(&rec);
}

/*
 * A statement that fails never reaches its end, nor its DECRYPT record: its
 * count must not go into the next statement's.  It fails with the
 * transaction, or with a savepoint's subtransaction while nothing runs (a
 * statement inside a PL/pgSQL exception block is nested: the statement
 * around it goes on and records them).
 */
static void
forget_decrypts(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		pending_decrypts = 0;
}

static void
forget_subxact_decrypts(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && exec_nesting == 0)
		pending_decrypts = 0;
}

static void
crm_gdpr_ExecutorEnd(QueryDesc *query)
{
	QueryReads *reads = reads_of(query);

	if (reads)
	{
		crm_gdpr_record_query(reads, NULL);
		unlink_reads(reads);
	}
	crm_gdpr_note_write_ended(query->estate->es_query_cxt);
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(query);
	else
		standard_ExecutorEnd(query);
	if (exec_nesting == 0 && pending_decrypts > 0)
		record_decrypts();
}

/* The columns a COPY TO of a registered table reads; false when it is not registered. */
static bool
copied_columns(Oid relid, List *attlist, char *columns)
{
	Relation	rel = OidIsValid(relid) ? RelationIdGetRelation(relid) : NULL;
	bool		registered = false;

	columns[0] = '\0';
	if (!RelationIsValid(rel))
		return false;
	registered = crm_gdpr_registered_subject_column(rel) != NULL;
	if (registered)
	{
		Bitmapset  *cols = NULL;
		ListCell   *lc;

		foreach(lc, attlist)
			cols = bms_add_member(cols, attnameAttNum(rel, strVal(lfirst(lc)), false) -
								  FirstLowInvalidHeapAttributeNumber);
		crm_gdpr_column_list(rel, cols ? cols : bms_make_singleton(0 - FirstLowInvalidHeapAttributeNumber), columns);
	}
	RelationClose(rel);
	return registered;
}

/* COPY table TO does not go through the executor. */
static void
copy_to(CopyStmt *stmt, PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
		ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
		DestReceiver *dest, QueryCompletion *qc)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);
	char		columns[LOG_RECORD_COLUMNS];
	bool		registered = copied_columns(relid, stmt->attlist, columns);

	if (registered && crm_gdpr_max_rows_per_query > 0 && !crm_gdpr_is_admin(GetUserId()))
	{
		crm_gdpr_record_read("COPY", relid, columns, 0, 0, NULL, "crm_gdpr.max_rows_per_query: COPY TO");
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("COPY TO of a table of personal data is not allowed while crm_gdpr.max_rows_per_query is set"),
				 errdetail("A role that is not gdpr_admin may not export a registered table wholesale; the attempt is logged."),
				 errhint("Ask a gdpr_admin for the export.")));
	}
	in_copy = registered;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		in_copy = false;
	}
	PG_END_TRY();
	if (registered)
		crm_gdpr_record_read("COPY", relid, columns, qc ? (int64) qc->nprocessed : 0, 0, NULL, NULL);
}

static void
crm_gdpr_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *tree = pstmt->utilityStmt;
	Oid			outer_runner = utility_runner;

	/* Who runs it, for the DDL guard's event triggers (SECURITY DEFINER: they see their owner). */
	utility_runner = GetUserId();
	utility_nesting++;
	PG_TRY();
	{
		crm_gdpr_guard_tree(tree);
		if (IsA(tree, CopyStmt) && !((CopyStmt *) tree)->is_from && ((CopyStmt *) tree)->relation &&
			crm_gdpr_reads_are_logged())
			copy_to((CopyStmt *) tree, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
		{
			if (prev_ProcessUtility)
				prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
			else
				standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
			crm_gdpr_guard_tree_after(tree);
		}
	}
	PG_FINALLY();
	{
		utility_nesting--;
		utility_runner = outer_runner;
	}
	PG_END_TRY();
}

void
crm_gdpr_read_hook_init(bool preloading)
{
	if (!preloading)
		return;
	/*
	 * No EnableQueryId(): the module does not switch compute_query_id on
	 * (it would add "Query Identifier" to every EXPLAIN VERBOSE).  The log's
	 * query_id is recorded when the server computes one (compute_query_id =
	 * on, or auto with pg_stat_statements loaded), NULL otherwise.
	 */
	RegisterXactCallback(forget_decrypts, NULL);
	RegisterSubXactCallback(forget_subxact_decrypts, NULL);
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = crm_gdpr_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = crm_gdpr_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = crm_gdpr_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = crm_gdpr_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = crm_gdpr_ProcessUtility;
}
