/*
 * read_subjects.c — the registered tables a query reads, and whose rows.
 *
 * At ExecutorStart the range table gives the registered tables read (SELECT
 * privilege checked) with their columns; the plan's scans give the subjects
 * named in their conditions ("WHERE id = 42", a parameter, "= ANY(...)"):
 * that reads subject 42 even when the key is not returned.  While the query
 * runs, a wrapper around its destination collects the subject keys it
 * returns (at most LOG_RECORD_SUBJECTS per table); read_count.c counts
 * the rows read and enforces crm_gdpr.max_rows_per_query.  All of it is speculative: what cannot be
 * known safely is left out, never an error in the reader.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "read_hook.h"
#include "settings.h"

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
 * The columns UPDATE or DELETE ... RETURNING returns of result relation rti,
 * or NULL (INSERT ... RETURNING gives back what it was given).
 */
static Bitmapset *
returned_columns(PlannedStmt *stmt, Index rti)
{
	ModifyTable *mt = (ModifyTable *) stmt->planTree;
	Bitmapset  *cols = NULL;
	ListCell   *rel,
			   *ret;

	if (stmt->commandType == CMD_INSERT || mt == NULL || !IsA(mt, ModifyTable) || mt->returningLists == NIL)
		return NULL;
	forboth(rel, mt->resultRelations, ret, mt->returningLists)
		if (lfirst_int(rel) == rti)
			pull_varattnos(lfirst(ret), rti, &cols);
	return cols;
}

/* The registered tables a query reads, without their subjects yet. */
static QueryReads *
registered_tables_read(QueryDesc *query)
{
	PlannedStmt *stmt = query->plannedstmt;
	QueryReads *reads = NULL;
	int			rti = 0;
	ListCell   *lc;

	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		const RelInfo *info;
		ReadRel    *r;

		Bitmapset  *returned = NULL;

		rti++;
		if (rte->rtekind != RTE_RELATION || !(rte_required_perms(stmt, rte) & ACL_SELECT))
			continue;
		/* The write is logged by the write trigger; what it returns is a read. */
		if (query->operation != CMD_SELECT && list_member_int(stmt->resultRelations, rti) &&
			(returned = returned_columns(stmt, rti)) == NULL)
			continue;
		info = crm_gdpr_rel_info(rte->relid);
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
		r->registered_as = info->registered_as;
		r->rti = rti;
		r->subject_attnum = info->subject_attnum;
		r->nsubjects = 0;
		r->rows = 0;
		r->returning = returned != NULL;
		crm_gdpr_cached_column_list(rte->relid, returned ? returned : rte_selected_cols(stmt, rte), r->columns);
		r->subject_resno = subject_result_column(stmt, rte->relid, info->subject_attnum);
	}
	return reads;
}

/* A subject of a read, once (at most LOG_RECORD_SUBJECTS). */
static void
add_read_subject(ReadRel *r, const char *id)
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
	add_read_subject(r, key_text(value, type));
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

/* --- the destination wrapper: subjects returned ------------------------- */

/* One record per registered table read, with the rows read from it. */
void
crm_gdpr_record_query(QueryReads *reads, const char *detail)
{
	reads->recorded = true;
	for (int i = 0; i < reads->nrels; i++)
		crm_gdpr_record_read_as(NameStr(reads->role), NameStr(reads->session_role), "SELECT",
								reads->rels[i].relid, reads->rels[i].columns, reads->rels[i].rows,
								reads->rels[i].nsubjects, reads->rels[i].subjects, detail);
}

static void
note_returned_subject(ReadRel *r, TupleTableSlot *slot)
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

	for (int i = 0; i < reads->nrels; i++)
		note_returned_subject(&reads->rels[i], slot);
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

bool
crm_gdpr_needs_wrapper(QueryReads *reads)
{
	for (int i = 0; i < reads->nrels; i++)
		if (reads->rels[i].subject_resno > 0)
			return true;
	return false;
}

/*
 * The registered tables a query reads, with the subjects its scans name and
 * its destination wrapper ready, or NULL when it reads none.
 */
QueryReads *
crm_gdpr_find_reads(QueryDesc *query)
{
	QueryReads *reads = registered_tables_read(query);
	ListCell   *lc;

	if (reads == NULL)
		return NULL;
	subjects_from_plan(query->plannedstmt->planTree, reads, query->params);
	foreach(lc, query->plannedstmt->subplans)
		subjects_from_plan(lfirst(lc), reads, query->params);
	reads->query = query;
	reads->estate = query->estate;
	/* Taken now: a read that fails is recorded when no catalog can be read. */
	namestrcpy(&reads->role, crm_gdpr_role_name(GetUserId(), 0));
	namestrcpy(&reads->session_role, crm_gdpr_role_name(GetSessionUserId(), 1));
	reads->wrapper.receiveSlot = wrapper_receive;
	reads->wrapper.rStartup = wrapper_startup;
	reads->wrapper.rShutdown = wrapper_shutdown;
	reads->wrapper.rDestroy = wrapper_destroy;
	reads->wrapper.mydest = DestNone;
	if (crm_gdpr_max_rows_per_query > 0 && !crm_gdpr_is_admin(GetUserId()))
		reads->limit = crm_gdpr_max_rows_per_query;
	return reads;
}
