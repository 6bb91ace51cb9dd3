/*
 * read_hook.c — see every read of a registered table.
 *
 * Executor hooks (as pgaudit does) find, in each query's range table, the
 * relations read (SELECT privilege checked) that carry the extension's log
 * triggers, i.e. the registered tables, with the columns read.  At
 * ExecutorEnd the rows returned are known and one record per table goes to
 * the shared-memory queue (log_queue.c): no write, no lock wait, nothing that
 * fails the reader.  COPY table TO is seen in the utility hook.  The hot path
 * for a query that reads no registered table is a relcache lookup and a scan
 * of its triggers per relation.
 *
 * The records carry, when the query returns it, the subject key column of
 * the table read (at most LOG_RECORD_SUBJECTS values per query): that is how
 * gdpr.access_history() finds who read one person's row.  A destination
 * wrapper collects them; the same wrapper enforces crm_gdpr.max_rows_per_query.
 *
 * Left out, as pgaudit learned: parallel workers (the leader logs the query),
 * the extension's own queries (inside its SECURITY DEFINER functions and
 * triggers, which log EXPORT, ERASE... themselves) and its workers, and range
 * table entries that are not relations.  On a hot standby nothing can be
 * written: each record goes to the server log instead, as one line
 * "crm_gdpr read: {json}".
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_relation.h"
#include "parser/parsetree.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/queryjumble.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "crm_gdpr.h"

static bool log_reads = true;
static char *purpose = NULL;
static int	max_rows_per_query = 0;
static int	mass_read_rows = 10000;
static char *mass_read_window = NULL;
static char *access_log_keep = NULL;

bool		crm_gdpr_in_own_worker = false;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* One registered table a query reads. */
typedef struct ReadRel
{
	Oid			relid;
	Index		rti;			/* its range table index */
	AttrNumber	subject_attnum; /* its subject key column, or 0 */
	AttrNumber	subject_resno;	/* result column with its subject key, or 0 */
	int			nsubjects;
	char		columns[LOG_RECORD_COLUMNS];
	char		subjects[LOG_RECORD_SUBJECTS][LOG_RECORD_SUBJECT_LEN];
} ReadRel;

/* What one running query reads; lives in its executor memory. */
typedef struct QueryReads
{
	DestReceiver wrapper;		/* first: the executor calls it as a DestReceiver */
	DestReceiver *inner;
	QueryDesc  *query;
	struct QueryReads *next;
	bool		linked;
	int64		limit;			/* crm_gdpr.max_rows_per_query for this reader, or 0 */
	int64		sent;
	int			nrels;
	ReadRel		rels[FLEXIBLE_ARRAY_MEMBER];
} QueryReads;

static QueryReads *running = NULL;
static bool in_copy = false;
static int	exec_nesting = 0;
static int64 pending_decrypts = 0;	/* gdpr.decrypt() calls of the running statement */
static char decrypt_role[NAMEDATALEN];

/* --- settings --------------------------------------------------------- */

static void
define_settings(void)
{
	DefineCustomBoolVariable("crm_gdpr.log_reads", "Whether reads of registered tables are logged.",
							 "Needs crm_gdpr in shared_preload_libraries.",
							 &log_reads, true, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.purpose", "The purpose the application declares for what it does now.",
							   "Recorded with each access in gdpr.access_log.",
							   &purpose, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.max_rows_per_query",
							"Rows of a registered table one query may return to a role that is not gdpr_admin (0: no limit).",
							NULL, &max_rows_per_query, 0, 0, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.mass_read_rows",
							"Rows of personal data a role may read within crm_gdpr.mass_read_window before gdpr.mass_read_alarms lists it.",
							NULL, &mass_read_rows, 10000, 1, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.mass_read_window", "The window of gdpr.mass_read_alarms (an interval).",
							   NULL, &mass_read_window, "1 hour", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.access_log_keep", "How long the access log keeps its rows (an interval).",
							   "Whole months older than that are dropped by the log writer.",
							   &access_log_keep, "5 years", PGC_SUSET, 0, NULL, NULL, NULL);
}

/* The value of a crm_gdpr.* setting, for SQL that runs without preloading. */
PG_FUNCTION_INFO_V1(gdpr_setting);
Datum
gdpr_setting(PG_FUNCTION_ARGS)
{
	char	   *name = psprintf("crm_gdpr.%s", text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_TEXT_P(cstring_to_text(GetConfigOptionByName(name, NULL, false)));
}

char *
crm_gdpr_log_purpose(void)
{
	return purpose ? purpose : "";
}

bool
crm_gdpr_is_admin(Oid roleid)
{
	Oid			admin = get_role_oid("gdpr_admin", true);

	return superuser_arg(roleid) || (OidIsValid(admin) && has_privs_of_role(roleid, admin));
}

/* --- which queries, which tables --------------------------------------- */

static Oid
extension_owner(void)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static Oid	owner = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (cached_lxid == MyProc->lxid)
		return owner;
	owner = InvalidOid;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ, CStringGetDatum("crm_gdpr"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	cached_lxid = MyProc->lxid;
	return owner;
}

static bool
reads_are_logged(void)
{
	Oid			userid;
	int			sec_context;

	if (!log_reads || !crm_gdpr_log_queue_ready() || IsParallelWorker() || crm_gdpr_in_own_worker ||
		!IsTransactionState())
		return false;
	GetUserIdAndSecContext(&userid, &sec_context);
	/*
	 * A foreign key check (the only code that sets SECURITY_NOFORCE_RLS)
	 * returns nothing to anyone: the write that made it is logged.  The
	 * extension's statements on CRM tables run as the tables' owners
	 * (gdpr._owner_exec) and are logged as what they do (EXPORT, PURGE...);
	 * its C triggers read as its owner in a security-restricted context.
	 * Nothing else is skipped: a SECURITY DEFINER function of anyone,
	 * superuser included, is logged.
	 */
	if (sec_context & SECURITY_NOFORCE_RLS)
		return false;
	if (crm_gdpr_owner_exec_depth > 0)
		return false;
	if ((sec_context & SECURITY_RESTRICTED_OPERATION) && userid == extension_owner())
		return false;
	return true;
}

/*
 * Whether rel is registered (it has the extension's log triggers), and if so
 * its subject key column ("" when unknown).
 */
static const char *
registered_subject_column(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	if (trigdesc == NULL)
		return NULL;
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (strcmp(t->tgname, LOG_TRIGGER_PREFIX "insert") == 0)
			return t->tgnargs > 0 ? t->tgargs[0] : "";
	}
	return NULL;
}

static void
column_list(Relation rel, Bitmapset *selected, char *out)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, selected);
	size_t		used = 0;

	out[0] = '\0';
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped ||
			!(whole_row || bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, selected)))
			continue;
		if (used + strlen(name) + 5 >= LOG_RECORD_COLUMNS)
		{
			strcpy(out + used, used ? ",..." : "...");
			return;
		}
		used += sprintf(out + used, "%s%s", used ? "," : "", name);
	}
}

static AttrNumber
subject_result_column(PlannedStmt *stmt, Oid relid, AttrNumber attnum)
{
	ListCell   *lc;

	if (attnum == 0 || stmt->planTree == NULL)
		return 0;
	foreach(lc, stmt->planTree->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!tle->resjunk && tle->resorigtbl == relid && tle->resorigcol == attnum)
			return tle->resno;
	}
	return 0;
}

/*
 * The column list of the last few (table, selected columns) pairs: a CRM runs
 * the same queries again and again.  Any relcache invalidation (a rename)
 * empties it.
 */
#define COLUMN_CACHE 16
typedef struct ColumnListEntry
{
	Oid			relid;
	Bitmapset  *selected;		/* in TopMemoryContext */
	char		columns[LOG_RECORD_COLUMNS];
} ColumnListEntry;

/*
 * Whether a relation is registered, and its subject key column, for the last
 * few relations queried: the hot path of a read then opens nothing.
 * register_table and unregister_table add and drop triggers, which
 * invalidate the relation: the same callback as the column lists empties it.
 */
#define REL_CACHE 64
typedef struct RelInfo
{
	Oid			relid;
	bool		registered;
	AttrNumber	subject_attnum; /* 0 when unknown */
} RelInfo;

static RelInfo rel_cache[REL_CACHE];
static int	rel_cache_next = 0;

static ColumnListEntry column_cache[COLUMN_CACHE];
static int	column_cache_next = 0;
static bool column_cache_callback = false;

static void
forget_column_lists(Datum arg, Oid relid)
{
	for (int i = 0; i < COLUMN_CACHE; i++)
		column_cache[i].relid = InvalidOid;
	for (int i = 0; i < REL_CACHE; i++)
		rel_cache[i].relid = InvalidOid;
}

static void
column_cache_init(void)
{
	if (!column_cache_callback)
	{
		CacheRegisterRelcacheCallback(forget_column_lists, (Datum) 0);
		column_cache_callback = true;
	}
}

static void
cached_column_list(Oid relid, Bitmapset *selected, char *out)
{
	ColumnListEntry *e;
	MemoryContext old;
	Relation	rel;

	for (int i = 0; i < COLUMN_CACHE; i++)
		if (column_cache[i].relid == relid && bms_equal(column_cache[i].selected, selected))
		{
			strlcpy(out, column_cache[i].columns, LOG_RECORD_COLUMNS);
			return;
		}
	rel = RelationIdGetRelation(relid);
	column_list(rel, selected, out);
	RelationClose(rel);
	e = &column_cache[column_cache_next];
	column_cache_next = (column_cache_next + 1) % COLUMN_CACHE;
	bms_free(e->selected);
	old = MemoryContextSwitchTo(TopMemoryContext);
	e->selected = bms_copy(selected);
	MemoryContextSwitchTo(old);
	e->relid = relid;
	strlcpy(e->columns, out, LOG_RECORD_COLUMNS);
}

static const RelInfo *
rel_info(Oid relid)
{
	RelInfo    *e;
	Relation	rel;
	const char *subject_column;

	for (int i = 0; i < REL_CACHE; i++)
		if (rel_cache[i].relid == relid)
			return &rel_cache[i];
	rel = RelationIdGetRelation(relid);
	if (!RelationIsValid(rel))
		return NULL;
	e = &rel_cache[rel_cache_next];
	rel_cache_next = (rel_cache_next + 1) % REL_CACHE;
	subject_column = registered_subject_column(rel);
	e->relid = relid;
	e->registered = subject_column != NULL;
	e->subject_attnum = subject_column && subject_column[0] ? attnameAttNum(rel, subject_column, false) : 0;
	RelationClose(rel);
	return e;
}

/* The registered tables a query reads, or NULL. */
static QueryReads *
find_reads(QueryDesc *query)
{
	PlannedStmt *stmt = query->plannedstmt;
	QueryReads *reads = NULL;
	int			rti = 0;
	ListCell   *lc;

	column_cache_init();
	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		const RelInfo *info;
		ReadRel    *r;

		rti++;
		if (rte->rtekind != RTE_RELATION || !(rte->requiredPerms & ACL_SELECT))
			continue;
		if (query->operation != CMD_SELECT && list_member_int(stmt->resultRelations, rti))
			continue;			/* the write is logged by the write trigger */
		info = rel_info(rte->relid);
		if (info == NULL || !info->registered)
			continue;
		if (reads == NULL)
		{
			/* Not zeroed: a ReadRel is 600 bytes, most of them for strings. */
			reads = MemoryContextAlloc(query->estate->es_query_cxt,
									   offsetof(QueryReads, rels) + sizeof(ReadRel) * list_length(stmt->rtable));
			memset(reads, 0, offsetof(QueryReads, rels));
		}
		r = &reads->rels[reads->nrels++];
		r->relid = rte->relid;
		r->rti = rti;
		r->subject_attnum = info->subject_attnum;
		r->nsubjects = 0;
		cached_column_list(rte->relid, rte->selectedCols, r->columns);
		r->subject_resno = subject_result_column(stmt, rte->relid, info->subject_attnum);
	}
	return reads;
}

/*
 * Subjects named in the conditions of the scans: "WHERE id = 42" (or a
 * parameter, or "= ANY('{...}')") reads subject 42 even when it does not
 * return the key.
 */
static void
add_subject(ReadRel *r, const char *id)
{
	if (r->nsubjects >= LOG_RECORD_SUBJECTS)
		return;
	for (int i = 0; i < r->nsubjects; i++)
		if (strncmp(r->subjects[i], id, LOG_RECORD_SUBJECT_LEN - 1) == 0)
			return;
	strlcpy(r->subjects[r->nsubjects++], id, LOG_RECORD_SUBJECT_LEN);
}

/* A subject key as text; the output function of the last key type is kept. */
static char *
key_text(Datum value, Oid type)
{
	static Oid	known_type = InvalidOid;
	static FmgrInfo output;
	Oid			typoutput;
	bool		varlena;

	if (type != known_type)
	{
		getTypeOutputInfo(type, &typoutput, &varlena);
		fmgr_info_cxt(typoutput, &output, TopMemoryContext);
		known_type = type;
	}
	return OutputFunctionCall(&output, value);
}

static void
add_subject_datum(ReadRel *r, Datum value, Oid type)
{
	add_subject(r, key_text(value, type));
}

/* The constant or parameter compared with the subject column, if any. */
static void
subjects_from_value(ReadRel *r, Node *value, bool is_array, ParamListInfo params)
{
	Datum		datum;
	Oid			type;

	if (IsA(value, RelabelType))
		value = (Node *) ((RelabelType *) value)->arg;
	if (IsA(value, Const) && !((Const *) value)->constisnull)
	{
		datum = ((Const *) value)->constvalue;
		type = ((Const *) value)->consttype;
	}
	else if (IsA(value, Param) && ((Param *) value)->paramkind == PARAM_EXTERN && params &&
			 ((Param *) value)->paramid > 0 && ((Param *) value)->paramid <= params->numParams)
	{
		ParamExternData workspace;
		ParamExternData *p;

		/*
		 * PL/pgSQL hands its variables over on request (paramFetch); once it
		 * runs a statement with a generic plan, that is where "WHERE id = i"
		 * finds i.  Speculative: a value it cannot give safely is skipped,
		 * never an error in the reader.
		 */
		if (params->paramFetch != NULL)
			p = params->paramFetch(params, ((Param *) value)->paramid, true, &workspace);
		else
			p = &params->params[((Param *) value)->paramid - 1];
		if (p == NULL || p->isnull || !OidIsValid(p->ptype))
			return;
		datum = p->value;
		type = p->ptype;
	}
	else
		return;
	if (is_array)
	{
		ArrayType  *array = DatumGetArrayTypeP(datum);
		int16		typlen;
		bool		typbyval;
		char		typalign;
		Datum	   *items;
		bool	   *nulls;
		int			n;

		get_typlenbyvalalign(ARR_ELEMTYPE(array), &typlen, &typbyval, &typalign);
		deconstruct_array(array, ARR_ELEMTYPE(array), typlen, typbyval, typalign, &items, &nulls, &n);
		for (int i = 0; i < n; i++)
			if (!nulls[i])
				add_subject_datum(r, items[i], ARR_ELEMTYPE(array));
	}
	else
		add_subject_datum(r, datum, type);
}

static bool
is_subject_var(Node *node, ReadRel *r)
{
	if (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node && IsA(node, Var) && ((Var *) node)->varno == r->rti &&
		((Var *) node)->varattno == r->subject_attnum;
}

/* Whether an operator is "=", for the last few operators asked about. */
static bool
is_equality(Oid opno)
{
	static Oid	known[8];
	static bool equality[8];
	static int	next = 0;
	char	   *name;

	for (int i = 0; i < 8; i++)
		if (known[i] == opno)
			return equality[i];
	name = get_opname(opno);
	known[next] = opno;
	equality[next] = name != NULL && strcmp(name, "=") == 0;
	next = (next + 1) % 8;
	return name != NULL && strcmp(name, "=") == 0;
}

static void
subjects_from_quals(ReadRel *r, List *quals, ParamListInfo params)
{
	ListCell   *lc;

	foreach(lc, quals)
	{
		Node	   *qual = lfirst(lc);
		List	   *args;
		Oid			opno;
		bool		is_array = IsA(qual, ScalarArrayOpExpr);

		if (IsA(qual, OpExpr))
		{
			args = ((OpExpr *) qual)->args;
			opno = ((OpExpr *) qual)->opno;
		}
		else if (is_array && ((ScalarArrayOpExpr *) qual)->useOr)
		{
			args = ((ScalarArrayOpExpr *) qual)->args;
			opno = ((ScalarArrayOpExpr *) qual)->opno;
		}
		else
			continue;
		if (list_length(args) != 2 || !is_equality(opno))
			continue;
		if (is_subject_var(linitial(args), r))
			subjects_from_value(r, lsecond(args), is_array, params);
		else if (!is_array && is_subject_var(lsecond(args), r))
			subjects_from_value(r, linitial(args), false, params);
	}
}

static void
subjects_from_plan(Plan *plan, QueryReads *reads, ParamListInfo params)
{
	ListCell   *lc;

	if (plan == NULL)
		return;
	for (int i = 0; i < reads->nrels; i++)
	{
		ReadRel    *r = &reads->rels[i];

		if (r->subject_attnum == 0)
			continue;
		if ((IsA(plan, SeqScan) || IsA(plan, IndexScan) || IsA(plan, BitmapHeapScan)) &&
			((Scan *) plan)->scanrelid == r->rti)
		{
			subjects_from_quals(r, plan->qual, params);
			if (IsA(plan, IndexScan))
				subjects_from_quals(r, ((IndexScan *) plan)->indexqualorig, params);
			if (IsA(plan, BitmapHeapScan))
				subjects_from_quals(r, ((BitmapHeapScan *) plan)->bitmapqualorig, params);
		}
	}
	subjects_from_plan(plan->lefttree, reads, params);
	subjects_from_plan(plan->righttree, reads, params);
	if (IsA(plan, Append))
		foreach(lc, ((Append *) plan)->appendplans)
			subjects_from_plan(lfirst(lc), reads, params);
	if (IsA(plan, SubqueryScan))
		subjects_from_plan(((SubqueryScan *) plan)->subplan, reads, params);
}

/* --- records ------------------------------------------------------------ */

/* inet_client_addr(), once per backend ("" for a Unix socket). */
static const char *
client_address(void)
{
	static char addr[48] = "";
	static bool known = false;

	if (!known)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		inet;

		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		inet = inet_client_addr(fcinfo);
		if (!fcinfo->isnull)
			strlcpy(addr, DatumGetCString(DirectFunctionCall1(inet_out, inet)), sizeof(addr));
		known = true;
	}
	return addr;
}

/*
 * Role names, cached: a read costs a copy, not two catalog lookups.  Any
 * change to pg_authid (a rename) empties the cache.
 */
#define ROLE_SLOTS 3
static Oid	cached_role[ROLE_SLOTS] = {InvalidOid, InvalidOid, InvalidOid};
static NameData cached_role_name[ROLE_SLOTS];
static bool role_callback_registered = false;

static void
forget_role_names(Datum arg, int cacheid, uint32 hashvalue)
{
	for (int i = 0; i < ROLE_SLOTS; i++)
		cached_role[i] = InvalidOid;
}

/*
 * A role's name, remembered per slot (the current user, the session user,
 * the writer of a logged write): the log names the same roles statement
 * after statement.
 */
const char *
crm_gdpr_role_name(Oid roleid, int slot)
{
	if (!role_callback_registered)
	{
		CacheRegisterSyscacheCallback(AUTHOID, forget_role_names, (Datum) 0);
		role_callback_registered = true;
	}
	if (cached_role[slot] != roleid)
	{
		namestrcpy(&cached_role_name[slot], GetUserNameFromId(roleid, false));
		cached_role[slot] = roleid;
	}
	return NameStr(cached_role_name[slot]);
}

void
crm_gdpr_fill_log_record(LogRecord *rec, const char *operation, Oid relid)
{
	/*
	 * The statement's start: no clock read per query.  It is never older than
	 * the start of the (still running) transaction, which is what the seal's
	 * horizon relies on.
	 */
	rec->at = GetCurrentStatementStartTimestamp();
	rec->dbid = MyDatabaseId;
	rec->relid = relid;
	rec->pid = MyProcPid;
	rec->nsubjects = 0;
	rec->rows = 0;
	rec->query_id = pgstat_get_my_query_id();
	rec->operation = operation;
	rec->role = crm_gdpr_role_name(GetUserId(), 0);
	rec->session_role = crm_gdpr_role_name(GetSessionUserId(), 1);
	rec->appname = application_name ? application_name : "";
	rec->client = client_address();
	rec->purpose = crm_gdpr_log_purpose();
	rec->detail = "";
	rec->columns = "";
}

/* On a standby nothing is written: the server log keeps the record. */
static void
log_to_server_log(const LogRecord *rec)
{
	StringInfoData buf;
	char	   *table_name;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"at\": \"%s\", \"operation\": ", timestamptz_to_str(rec->at));
	escape_json(&buf, rec->operation);
	appendStringInfoString(&buf, ", \"role\": ");
	escape_json(&buf, rec->role);
	appendStringInfoString(&buf, ", \"session_user\": ");
	escape_json(&buf, rec->session_role);
	appendStringInfoString(&buf, ", \"application_name\": ");
	escape_json(&buf, rec->appname);
	appendStringInfoString(&buf, ", \"table\": ");
	table_name = crm_gdpr_qualified_relname(rec->relid);
	escape_json(&buf, table_name ? table_name : "");
	appendStringInfoString(&buf, ", \"columns\": ");
	escape_json(&buf, rec->columns);
	appendStringInfo(&buf, ", \"rows\": " INT64_FORMAT ", \"subjects\": %d, \"purpose\": ", rec->rows, rec->nsubjects);
	escape_json(&buf, rec->purpose);
	if (rec->detail[0])
		appendStringInfo(&buf, ", \"detail\": %s", rec->detail);
	appendStringInfoChar(&buf, '}');
	ereport(LOG, (errmsg("crm_gdpr read: %s", buf.data), errhidestmt(true)));
	crm_gdpr_log_queue_count_server_log();
	pfree(buf.data);
}

static void
record_read(const char *operation, Oid relid, const char *columns, int64 rows,
			int nsubjects, char subjects[][LOG_RECORD_SUBJECT_LEN], const char *refused)
{
	LogRecord	rec;

	crm_gdpr_fill_log_record(&rec, operation, relid);
	rec.rows = rows;
	rec.columns = columns;
	rec.nsubjects = nsubjects;
	for (int i = 0; i < nsubjects; i++)
		rec.subjects[i] = subjects[i];
	if (refused)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"refused\": ");
		escape_json(&buf, refused);
		appendStringInfoChar(&buf, '}');
		rec.detail = buf.data;
	}
	if (RecoveryInProgress())
		log_to_server_log(&rec);
	else
		crm_gdpr_log_enqueue(&rec);
}

static void
record_query(QueryReads *reads, int64 rows, const char *refused)
{
	for (int i = 0; i < reads->nrels; i++)
		record_read("SELECT", reads->rels[i].relid, reads->rels[i].columns, rows,
					reads->rels[i].nsubjects, reads->rels[i].subjects, refused);
}

/*
 * gdpr._log_event() where nothing can be written (a standby, a read-only
 * transaction): the event takes the readers' way, through the queue (or the
 * server log on a standby).  The role is the caller of the extension's
 * function.  A detail too long for the record is left out.
 */
PG_FUNCTION_INFO_V1(gdpr_log_enqueue);
Datum
gdpr_log_enqueue(PG_FUNCTION_ARGS)
{
	LogRecord	rec;

	crm_gdpr_fill_log_record(&rec, text_to_cstring(PG_GETARG_TEXT_PP(0)),
							 PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1));
	rec.role = GetUserNameFromId(GetOuterUserId(), false);
	if (!PG_ARGISNULL(2))
	{
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(2);
		Datum	   *items;
		bool	   *nulls;
		int			n;

		deconstruct_array(ids, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
		for (int i = 0; i < n && rec.nsubjects < LOG_RECORD_SUBJECTS; i++)
			if (!nulls[i])
				rec.subjects[rec.nsubjects++] = TextDatumGetCString(items[i]);
	}
	rec.rows = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3);
	if (!PG_ARGISNULL(4))
		rec.detail = text_to_cstring(PG_GETARG_TEXT_PP(4));	/* left out by the queue if too long */
	if (RecoveryInProgress())
		log_to_server_log(&rec);
	else
		crm_gdpr_log_enqueue(&rec);
	PG_RETURN_VOID();
}

/* --- the destination wrapper: subjects returned, row limit -------------- */

static void
note_subject(ReadRel *r, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		value;

	if (r->subject_resno == 0 || r->nsubjects >= LOG_RECORD_SUBJECTS)
		return;
	value = slot_getattr(slot, r->subject_resno, &isnull);
	if (isnull)
		return;
	add_subject_datum(r, value, TupleDescAttr(slot->tts_tupleDescriptor, r->subject_resno - 1)->atttypid);
}

static bool
wrapper_receive(TupleTableSlot *slot, DestReceiver *self)
{
	QueryReads *reads = (QueryReads *) self;

	if (reads->limit > 0 && ++reads->sent > reads->limit)
	{
		char		why[96];

		snprintf(why, sizeof(why), "crm_gdpr.max_rows_per_query = " INT64_FORMAT, reads->limit);
		record_query(reads, reads->sent, why);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("query returns more than " INT64_FORMAT " rows of personal data", reads->limit),
				 errdetail("crm_gdpr.max_rows_per_query limits what a role that is not gdpr_admin reads at once; the attempt is logged."),
				 errhint("Narrow the query, or ask a gdpr_admin for the export.")));
	}
	for (int i = 0; i < reads->nrels; i++)
		note_subject(&reads->rels[i], slot);
	return reads->inner->receiveSlot(slot, reads->inner);
}

static void
wrapper_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	QueryReads *reads = (QueryReads *) self;

	reads->inner->rStartup(reads->inner, operation, typeinfo);
}

static void
wrapper_shutdown(DestReceiver *self)
{
	QueryReads *reads = (QueryReads *) self;

	reads->inner->rShutdown(reads->inner);
}

static void
wrapper_destroy(DestReceiver *self)
{
}

static bool
needs_wrapper(QueryReads *reads)
{
	if (reads->limit > 0)
		return true;
	for (int i = 0; i < reads->nrels; i++)
		if (reads->rels[i].subject_resno > 0)
			return true;
	return false;
}

/* --- hooks --------------------------------------------------------------- */

static void
unlink_reads(void *arg)
{
	QueryReads *reads = (QueryReads *) arg;
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
	MemoryContextCallback *cb;

	if (prev_ExecutorStart)
		prev_ExecutorStart(query, eflags);
	else
		standard_ExecutorStart(query, eflags);
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || in_copy || !reads_are_logged())
		return;
	reads = find_reads(query);
	if (reads == NULL)
		return;
	subjects_from_plan(query->plannedstmt->planTree, reads, query->params);
	{
		ListCell   *lc;

		foreach(lc, query->plannedstmt->subplans)
			subjects_from_plan(lfirst(lc), reads, query->params);
	}
	reads->query = query;
	reads->wrapper.receiveSlot = wrapper_receive;
	reads->wrapper.rStartup = wrapper_startup;
	reads->wrapper.rShutdown = wrapper_shutdown;
	reads->wrapper.rDestroy = wrapper_destroy;
	reads->wrapper.mydest = DestNone;
	if (max_rows_per_query > 0 && !crm_gdpr_is_admin(GetUserId()))
		reads->limit = max_rows_per_query;
	reads->next = running;
	reads->linked = true;
	running = reads;
	/* An error frees the executor's memory: the entry goes with it. */
	cb = MemoryContextAlloc(query->estate->es_query_cxt, sizeof(MemoryContextCallback));
	cb->func = unlink_reads;
	cb->arg = reads;
	MemoryContextRegisterResetCallback(query->estate->es_query_cxt, cb);
}

static void
crm_gdpr_ExecutorRun(QueryDesc *query, ScanDirection direction, uint64 count, bool execute_once)
{
	QueryReads *reads = reads_of(query);
	bool		wrap = reads && needs_wrapper(reads) && query->dest != &reads->wrapper;

	/* Portals set the destination before each run: wrap it for this run. */
	if (wrap)
	{
		reads->inner = query->dest;
		query->dest = &reads->wrapper;
	}
	exec_nesting++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(query, direction, count, execute_once);
		else
			standard_ExecutorRun(query, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		exec_nesting--;
		if (wrap)
			query->dest = reads->inner;
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
	if (RecoveryInProgress())
		log_to_server_log(&rec);
	else
		crm_gdpr_log_enqueue(&rec);
}

static void
crm_gdpr_ExecutorEnd(QueryDesc *query)
{
	QueryReads *reads = reads_of(query);

	if (reads)
	{
		record_query(reads, (int64) query->estate->es_processed, NULL);
		unlink_reads(reads);
	}
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(query);
	else
		standard_ExecutorEnd(query);
	if (exec_nesting == 0 && pending_decrypts > 0)
		record_decrypts();
}

/* COPY table TO does not go through the executor. */
static void
copy_to(CopyStmt *stmt, PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
		ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
		DestReceiver *dest, QueryCompletion *qc)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);
	Relation	rel = OidIsValid(relid) ? RelationIdGetRelation(relid) : NULL;
	char		columns[LOG_RECORD_COLUMNS] = "";
	bool		registered = false;

	if (RelationIsValid(rel))
	{
		registered = registered_subject_column(rel) != NULL;
		if (registered)
		{
			Bitmapset  *cols = NULL;
			ListCell   *lc;

			foreach(lc, stmt->attlist)
				cols = bms_add_member(cols, attnameAttNum(rel, strVal(lfirst(lc)), false) -
									  FirstLowInvalidHeapAttributeNumber);
			column_list(rel, cols ? cols : bms_make_singleton(0 - FirstLowInvalidHeapAttributeNumber), columns);
		}
		RelationClose(rel);
	}
	if (registered && max_rows_per_query > 0 && !crm_gdpr_is_admin(GetUserId()))
	{
		record_read("COPY", relid, columns, 0, 0, NULL, "crm_gdpr.max_rows_per_query: COPY TO");
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
		record_read("COPY", relid, columns, qc ? (int64) qc->nprocessed : 0, 0, NULL, NULL);
}

static void
crm_gdpr_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *tree = pstmt->utilityStmt;

	if (IsA(tree, CopyStmt) && !((CopyStmt *) tree)->is_from && ((CopyStmt *) tree)->relation &&
		reads_are_logged())
	{
		copy_to((CopyStmt *) tree, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		return;
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
crm_gdpr_read_hook_init(bool preloading)
{
	define_settings();
	if (!preloading)
		return;
	EnableQueryId();
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = crm_gdpr_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = crm_gdpr_ExecutorRun;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = crm_gdpr_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = crm_gdpr_ProcessUtility;
}
