/*
 * restriction_reads.c — restriction of processing stops reads (GDPR Art. 18).
 *
 * Every registered table (and its partitions and children) carries a
 * RESTRICTIVE row-level security policy gdpr_restriction, FOR SELECT, whose
 * expression is gdpr.restriction_visible(tableoid, ctid[, subject key])
 * (25_triggers.sql).  PostgreSQL evaluates it for every row a role other
 * than the table's owner reads.  This file answers it:
 *
 * - Once per scan (the state lives in the expression's fn_extra, in the
 *   query's memory): is anything to be hidden at all?  Not when the setting
 *   crm_gdpr.restriction_reads is off, for the extension's own statements,
 *   while no restriction is in force anywhere (restriction.c's per-backend
 *   cache: a function call per row and nothing more; it happens only until
 *   the last lift has disarmed the policy, which while nobody is restricted
 *   is USING (true) and calls nothing: restriction_dormant.c), for
 *   gdpr_admin, or when no subject of this table's subject table is
 *   restricted.
 * - A table whose rows hold their subject's key (the subject table, a table
 *   with a plain foreign key to it) passes that key: a row is hidden when
 *   its key is among the restricted subjects' ids, which each backend keeps
 *   per registered table until gdpr.restrictions changes.  No query per scan.
 * - A table reached through others passes none: at the scan's start the rows
 *   of the restricted subjects in the relation scanned are found, as the
 *   table's owner, with the query's own snapshot (the registry's way from the
 *   table to its subjects, gdpr._restricted_rows_sql, a plan kept per
 *   backend), and kept sorted by ctid.
 * - A hidden row is counted; when the query's memory goes (its end, or its
 *   abort), one RESTRICTED record per scan goes to the access log with the
 *   rows hidden and the subjects (gdpr.restriction_violations).  In a
 *   statement that writes (UPDATE, DELETE, MERGE: their WHERE reads with
 *   the SELECT policies), a restricted row is not silently skipped: the
 *   statement fails as the restriction trigger (restriction.c) makes it fail.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "crm_gdpr.h"
#include "read_hook.h"
#include "settings.h"

/* What a backend keeps of one registered table's restrictions, until gdpr.restrictions changes. */
typedef struct TableRestrictions
{
	Oid			registered_as;
	int			nids;
	char	  **ids;			/* restricted subjects of its subject table, sorted */
	bool		planned;
	SPIPlanPtr	rows_plan;		/* gdpr._restricted_rows_sql, prepared; NULL when none */
} TableRestrictions;

#define CACHED_TABLES 16
static TableRestrictions cache[CACHED_TABLES];
static int	ncached = 0;
static uint64 cache_generation = 0;
static MemoryContext cache_cxt = NULL;

/* The subjects a scan's RESTRICTED record names at most (the rows hidden are all counted). */
#define SUBJECTS_LOGGED 32

/* One row of a restricted subject in the relation scanned (the ctid way). */
typedef struct HiddenRow
{
	ItemPointerData tid;
	int			subject;		/* index in ReadFilter.subjects */
} HiddenRow;

/* What one scan's policy expression knows; in the query's memory. */
typedef struct ReadFilter
{
	Oid			relid;			/* the relation scanned (tableoid) */
	Oid			registered_as;	/* its registered table */
	bool		all_visible;	/* nothing to hide in this scan */
	bool		writing;		/* the statement is an UPDATE, DELETE or MERGE */
	bool		keyed;			/* the key way: the restricted ids, copied (the cache may go mid-query) */
	int			nids;
	char	  **ids;
	FmgrInfo	key_out;		/* the key's output function */
	int			nhidden;		/* the ctid way */
	HiddenRow  *hidden;			/* sorted by tid */
	char	  **subjects;
	/* what was hidden, for the log */
	int64		rows_hidden;
	int			nseen;
	char		seen[SUBJECTS_LOGGED][LOG_RECORD_SUBJECT_LEN];
	NameData	role;
	NameData	session_role;
	const char *table_name;		/* on a standby, named at the first hidden row (log_record.c) */
	MemoryContextCallback callback;
} ReadFilter;

static int
compare_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
compare_hidden(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) &((const HiddenRow *) a)->tid, (ItemPointer) &((const HiddenRow *) b)->tid);
}

/*
 * A change of a cached table (its triggers and policy are attached again
 * when its links change: gdpr.link_table) makes its plan stale; any
 * relcache invalidation of one of them forgets them all.
 */
static bool cache_stale = false;

static void
forget_changed_table(Datum arg, Oid relid)
{
	for (int i = 0; i < ncached && !cache_stale; i++)
		cache_stale = !OidIsValid(relid) || cache[i].registered_as == relid;
}

/* Forget every table's restrictions when gdpr.restrictions or a cached table changed since they were read. */
static void
check_cache(bool forget)
{
	uint64		generation = crm_gdpr_restrictions_generation();

	if (cache_cxt == NULL)
	{
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "crm_gdpr restriction reads", ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(forget_changed_table, (Datum) 0);
	}
	if (generation == cache_generation && !cache_stale && !forget)
		return;
	for (int i = 0; i < ncached; i++)
		if (cache[i].rows_plan)
			SPI_freeplan(cache[i].rows_plan);
	ncached = 0;
	MemoryContextReset(cache_cxt);
	cache_generation = generation;
	cache_stale = false;
}

/* The restricted subjects of reg's subject table, read as the extension's owner. */
static void
read_restricted_ids(Oid fn_oid, TableRestrictions *t)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1] = {ObjectIdGetDatum(t->registered_as)};
	OwnerContext ctx;

	crm_gdpr_enter_owner_context(fn_oid, &ctx);
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	crm_gdpr_spi_check(SPI_execute_with_args("SELECT x.subject_id FROM gdpr.restrictions x "
											 "JOIN gdpr.registered_tables r ON r.subject_table = x.subject_table "
											 "WHERE r.tbl = $1 AND x.lifted_at IS NULL",
											 1, argtypes, args, NULL, true, 0),
					   SPI_OK_SELECT, "looking up the restricted subjects");
	t->ids = MemoryContextAlloc(cache_cxt, sizeof(char *) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
		t->ids[t->nids++] = MemoryContextStrdup(cache_cxt, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	crm_gdpr_leave_owner_context(&ctx);
	qsort(t->ids, t->nids, sizeof(char *), compare_ids);
}

/* reg's entry in the backend's cache, read when missing. */
static TableRestrictions *
table_restrictions(Oid fn_oid, Oid reg)
{
	TableRestrictions *t;

	check_cache(false);
	for (int i = 0; i < ncached; i++)
		if (cache[i].registered_as == reg)
			return &cache[i];
	if (ncached == CACHED_TABLES)
		check_cache(true);		/* full: start again */
	t = &cache[ncached];
	memset(t, 0, sizeof(TableRestrictions));
	t->registered_as = reg;
	read_restricted_ids(fn_oid, t);
	ncached++;
	return t;
}

/*
 * The plan listing (tableoid, ctid, subject) of the restricted subjects' rows
 * of reg, kept for the backend; NULL when none is restricted.  Built and
 * prepared as the extension's owner (names resolved with its safe
 * search_path), run as the table's owner (privileges checked then).
 */
static SPIPlanPtr
rows_plan(Oid fn_oid, TableRestrictions *t)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1] = {ObjectIdGetDatum(t->registered_as)};
	OwnerContext ctx;
	char	   *sql = NULL;

	if (t->planned)
		return t->rows_plan;
	crm_gdpr_enter_owner_context(fn_oid, &ctx);
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	crm_gdpr_spi_check(SPI_execute_with_args("SELECT gdpr._restricted_rows_sql($1)", 1, argtypes, args, NULL, true, 1),
					   SPI_OK_SELECT, "building the query of the restricted rows");
	sql = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (sql)
	{
		t->rows_plan = SPI_prepare(sql, 0, NULL);
		if (t->rows_plan == NULL)
			elog(ERROR, "crm_gdpr: could not prepare the query of the restricted rows: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(t->rows_plan);
	}
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	crm_gdpr_leave_owner_context(&ctx);
	t->planned = true;
	return t->rows_plan;
}

/*
 * Run the plan as the owner of the relation scanned, read-only (so with the
 * query's own snapshot), keeping its rows that are in that relation.
 */
static void
find_hidden_rows(ReadFilter *f, SPIPlanPtr plan, MemoryContext cxt)
{
	OwnerContext ctx;

	crm_gdpr_enter_table_owner_context(f->relid, &ctx);
	PG_TRY();
	{
		crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
		crm_gdpr_spi_check(SPI_execute_plan(plan, NULL, NULL, true, 0), SPI_OK_SELECT,
						   "finding the restricted subjects' rows");
		f->hidden = MemoryContextAllocZero(cxt, sizeof(HiddenRow) * Max(SPI_processed, 1));
		f->subjects = MemoryContextAllocZero(cxt, sizeof(char *) * Max(SPI_processed, 1));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			if (DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull)) != f->relid)
				continue;
			ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tuple, desc, 2, &isnull)),
							&f->hidden[f->nhidden].tid);
			f->subjects[f->nhidden] = MemoryContextStrdup(cxt, SPI_getvalue(tuple, desc, 3));
			f->hidden[f->nhidden].subject = f->nhidden;
			f->nhidden++;
		}
		crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	}
	PG_FINALLY();
	{
		crm_gdpr_leave_table_owner_context(&ctx);
	}
	PG_END_TRY();
	qsort(f->hidden, f->nhidden, sizeof(HiddenRow), compare_hidden);
}

/*
 * A role calling the function by hand must not learn anything of a table it
 * cannot read (as a policy, it runs only for roles that can).  Asked only
 * when something is to be hidden: until then the answer is "visible" for
 * every row of every table, which tells nothing.
 */
static void
require_select(Oid relid)
{
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(relid, GetUserId(), ACL_SELECT, ACLMASK_ANY) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid))));
}

/* What a scan of relid hides; decided at its first row, cheaply when nothing is. */
static ReadFilter *
start_filter(FunctionCallInfo fcinfo, Oid relid, bool keyed)
{
	MemoryContext cxt = fcinfo->flinfo->fn_mcxt;
	Oid			fn_oid = fcinfo->flinfo->fn_oid;
	ReadFilter *f = MemoryContextAllocZero(cxt, sizeof(ReadFilter));
	TableRestrictions *t;

	f->relid = relid;
	fcinfo->flinfo->fn_extra = f;
	f->all_visible = crm_gdpr_restriction_reads == RESTRICTION_READS_OFF || crm_gdpr_in_owner_statement() ||
		!crm_gdpr_restrictions_in_force(fn_oid) || crm_gdpr_is_admin(GetUserId());
	if (f->all_visible)
		return f;
	require_select(relid);
	f->registered_as = crm_gdpr_registered_as(relid);
	f->writing = crm_gdpr_query_writes(cxt);
	t = table_restrictions(fn_oid, f->registered_as);
	if (t->nids == 0)
		f->all_visible = true;
	else if (keyed)
	{
		Oid			out;
		bool		varlena;

		getTypeOutputInfo(get_fn_expr_argtype(fcinfo->flinfo, 2), &out, &varlena);
		fmgr_info_cxt(out, &f->key_out, cxt);
		f->keyed = true;
		f->ids = MemoryContextAlloc(cxt, sizeof(char *) * t->nids);
		for (int i = 0; i < t->nids; i++)
			f->ids[f->nids++] = MemoryContextStrdup(cxt, t->ids[i]);
	}
	else
	{
		SPIPlanPtr	plan = rows_plan(fn_oid, t);

		if (plan)
			find_hidden_rows(f, plan, cxt);
		f->all_visible = f->nhidden == 0;
	}
	return f;
}

/* The record of what a scan hid. */
static void
record_hidden(ReadFilter *f, const char *detail)
{
	const char *subjects[SUBJECTS_LOGGED];

	for (int i = 0; i < f->nseen; i++)
		subjects[i] = f->seen[i];
	crm_gdpr_record_read_as(NameStr(f->role), NameStr(f->session_role), "RESTRICTED", f->registered_as,
							f->table_name, "", f->rows_hidden, f->nseen, subjects, detail);
}

/* When the query's memory goes (at its end, or its abort). */
static void
record_at_end(void *arg)
{
	record_hidden((ReadFilter *) arg, "{\"filtered\": true}");
}

/* Count a hidden row of subject; the first one arranges for the record. */
static void
note_hidden(ReadFilter *f, const char *subject)
{
	bool		known = false;

	if (f->rows_hidden++ == 0)
	{
		namestrcpy(&f->role, crm_gdpr_role_name(GetUserId(), 0));
		namestrcpy(&f->session_role, crm_gdpr_role_name(GetSessionUserId(), 1));
		f->table_name = RecoveryInProgress() ?
			MemoryContextStrdup(GetMemoryChunkContext(f), crm_gdpr_qualified_relname(f->registered_as)) : NULL;
		if (!f->writing)
		{
			f->callback.func = record_at_end;
			f->callback.arg = f;
			MemoryContextRegisterResetCallback(GetMemoryChunkContext(f), &f->callback);
		}
	}
	for (int i = 0; i < f->nseen && !known; i++)
		known = strcmp(f->seen[i], subject) == 0;
	if (!known && f->nseen < SUBJECTS_LOGGED)
		strlcpy(f->seen[f->nseen++], subject, LOG_RECORD_SUBJECT_LEN);
}

/* A restricted row in an UPDATE, DELETE or MERGE: refused, as the restriction trigger refuses it. */
static void
refuse_write(ReadFilter *f, const char *subject)
{
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"refused\": ");
	escape_json(&detail, "restricted (Art. 18)");
	appendStringInfoChar(&detail, '}');
	record_hidden(f, detail.data);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("processing of subject \"%s\" is restricted", subject),
			 errdetail("The statement touches his rows in %s; while restricted (Art. 18) they may only be stored.",
					   crm_gdpr_qualified_relname(f->relid)),
			 errhint("Ask a gdpr_admin, or lift the restriction with gdpr.lift_restriction().")));
}

/* The restricted subject a row belongs to, or NULL. */
static const char *
restricted_subject(ReadFilter *f, FunctionCallInfo fcinfo)
{
	if (f->keyed)
	{
		char	   *key;
		char	  **hit;

		if (PG_ARGISNULL(2))
			return NULL;
		key = OutputFunctionCall(&f->key_out, PG_GETARG_DATUM(2));
		hit = bsearch(&key, f->ids, f->nids, sizeof(char *), compare_ids);
		return hit ? *hit : NULL;
	}
	else
	{
		HiddenRow	row;
		HiddenRow  *hit;

		ItemPointerCopy((ItemPointer) PG_GETARG_POINTER(1), &row.tid);
		hit = bsearch(&row, f->hidden, f->nhidden, sizeof(HiddenRow), compare_hidden);
		return hit ? f->subjects[hit->subject] : NULL;
	}
}

/*
 * gdpr.restriction_visible(tableoid oid, ctid tid[, subject_key anyelement]):
 * the gdpr_restriction policy's expression.  Not STRICT: a NULL key is no
 * restricted subject's.
 */
bool		crm_gdpr_restriction_hid_row = false;

PG_FUNCTION_INFO_V1(gdpr_restriction_visible);
Datum
gdpr_restriction_visible(PG_FUNCTION_ARGS)
{
	ReadFilter *f = (ReadFilter *) fcinfo->flinfo->fn_extra;
	Oid			relid;
	const char *subject;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(true);
	relid = PG_GETARG_OID(0);
	if (f == NULL || f->relid != relid)
		f = start_filter(fcinfo, relid, PG_NARGS() > 2);
	if (f->all_visible)
		PG_RETURN_BOOL(true);
	subject = restricted_subject(f, fcinfo);
	if (subject == NULL)
		PG_RETURN_BOOL(true);
	note_hidden(f, subject);
	if (f->writing)
		refuse_write(f, subject);
	/* Not read: a condition that passes values on does not count it (read_count.c). */
	crm_gdpr_restriction_hid_row = true;
	PG_RETURN_BOOL(false);
}
