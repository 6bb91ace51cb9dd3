/*
 * read_count.c — the rows a query reads from registered tables, and the row
 * guard (crm_gdpr.max_rows_per_query).
 *
 * What a query returns says little of what it read: an aggregate returns one
 * row for the whole table, INSERT ... SELECT returns none, a cursor returns
 * its rows over several FETCHes.  So the rows counted are those that the
 * scan nodes of a registered table pass on (the rows that meet their
 * conditions), and for UPDATE/DELETE ... RETURNING the rows returned.  At
 * ExecutorStart, once the plan's nodes exist, each such node's ExecProcNode
 * is replaced by one that calls it and counts: no allocation per row, a
 * short search of this query's few counted nodes.  The guard refuses the
 * row after the limit, whatever the query does with it; the count goes
 * into the query's records.  The same wrapper takes each row's subject key
 * (from the scan tuple, before any projection: the key need not be in the
 * query's output) into the read's subject set (read_subject_set.c).
 *
 * A condition is not always a mere filter: one that hands a row's values to
 * a function that may pass them on (set_config, a NOTICE of the reader's own
 * function, pg_notify) reads every row it examines, and those it rejects
 * are never passed on, nor written by an UPDATE, DELETE or MERGE.  So when
 * a scan's condition has such a function over the table's columns, the rows
 * it rejects are counted too (its ExprState's evalfunc is wrapped; rows the
 * gdpr_restriction policy hid are not) (round 19).
 *
 * A write's own scan is left to the write trigger, but when a condition or
 * an expression of the write (its WHERE, a join's condition, its SET, a
 * MERGE action's condition or SET, ON CONFLICT's WHERE or SET) has such a
 * function: the write trigger's record is in the writing transaction, and a
 * ROLLBACK, a failed statement or a caught error takes it away while the
 * values are gone already.  Then every row of the written table examined is
 * a read of its own (queued, as any read): the rows the scan passes on, those
 * its condition rejected, and the existing rows INSERT ... ON CONFLICT DO
 * UPDATE examined without any scan (its WHERE's or SET's ExprState wrapped)
 * (round 20).  Which conditions pass values on: read_leaks.c.
 *
 * Every row is read here, in the backend that runs the query: a query that
 * touches a registered table is planned without parallel workers
 * (read_planner.c), whose copies of the plan nobody would wrap.
 */
#include "postgres.h"

#include "access/attmap.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "executor/executor.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "read_hook.h"
#include "settings.h"

static void
refuse_past_row_limit(QueryReads *reads)
{
	char		why[96];

	snprintf(why, sizeof(why), "{\"refused\": \"crm_gdpr.max_rows_per_query = " INT64_FORMAT "\"}", reads->limit);
	crm_gdpr_record_query(reads, why);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("query reads more than " INT64_FORMAT " rows of personal data", reads->limit),
			 errdetail("crm_gdpr.max_rows_per_query limits what a role that is not gdpr_admin reads at once; the attempt is logged."),
			 errhint("Narrow the query, or ask a gdpr_admin for the export.")));
}

/*
 * The row UPDATE/DELETE ... RETURNING just returned, as its result
 * relation holds it (RETURNING is evaluated over it), with the column of
 * that relation's subject key; NULL when it cannot be told.
 */
static TupleTableSlot *
returned_row(ModifyTableState *mt, AttrNumber *attnum)
{
	ResultRelInfo *rri = mt->resultRelInfo + (mt->mt_nrels > 1 ? mt->mt_lastResultIndex : 0);
	const RelInfo *info;

	if (rri->ri_projectReturning == NULL || rri->ri_projectReturning->pi_exprContext == NULL ||
		(info = crm_gdpr_rel_info(RelationGetRelid(rri->ri_RelationDesc))) == NULL || info->subject_attnum <= 0)
		return NULL;
	*attnum = info->subject_attnum;
	return rri->ri_projectReturning->pi_exprContext->ecxt_scantuple;
}

/* Whether the row's type column holds the link's type value (text or varchar). */
static bool
link_applies(TupleTableSlot *row, const SubjectLink *l)
{
	bool		isnull;
	Datum		value;
	struct varlena *v;
	bool		same;

	if (l->type_attnum == 0)
		return true;
	value = slot_getattr(row, l->type_attnum, &isnull);
	if (isnull)
		return false;
	v = (struct varlena *) DatumGetPointer(value);
	if (VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v))
		v = pg_detoast_datum_packed(v);
	same = VARSIZE_ANY_EXHDR(v) == l->type_len && memcmp(VARDATA_ANY(v), l->type_value, l->type_len) == 0;
	if (v != (struct varlena *) DatumGetPointer(value))
		pfree(v);
	return same;
}

/* The subject of the row a counted node just passed on (or is examining), into set. */
void
crm_gdpr_note_subject(SubjectSet *set, const CountedNode *c)
{
	TupleTableSlot *row = NULL;
	AttrNumber	attnum = c->key_attnum;

	if (c->key == KEY_LINKS)
	{
		bool		named = false;

		row = ((ScanState *) c->node)->ss_ScanTupleSlot;
		for (int i = 0; i < c->nlinks && !TupIsNull(row); i++)
			if (link_applies(row, &c->links[i]))
			{
				crm_gdpr_subject_set_add(set, row, c->links[i].key_attnum);
				named = true;
			}
		if (!named && c->links_indirect)
			set->truncated = true;	/* perhaps someone's through another table */
		return;
	}
	if (c->key == KEY_SCAN)
		row = ((ScanState *) c->node)->ss_ScanTupleSlot;
	else if (c->key == KEY_RETURNING)
		row = returned_row((ModifyTableState *) c->node, &attnum);
	if (row == NULL || TupIsNull(row))
		set->truncated = true;	/* a row of someone the log cannot name */
	else
		crm_gdpr_subject_set_add(set, row, attnum);
}

static TupleTableSlot *
counting_exec(PlanState *node)
{
	for (QueryReads *reads = crm_gdpr_running_reads(); reads; reads = reads->next)
	{
		if (reads->estate != node->state)
			continue;
		for (int i = 0; i < reads->ncounted; i++)
		{
			CountedNode *c = &reads->counted[i];
			TupleTableSlot *slot;
			ReadRel    *r;

			if (c->node != node)
				continue;
			c->running = true;
			slot = c->real(node);
			c->running = false;
			if (TupIsNull(slot))
				return slot;
			r = &reads->rels[c->rel];
			if (++r->rows > reads->limit && reads->limit > 0 && !reads->recorded)
				refuse_past_row_limit(reads);
			if (c->key != KEY_NONE && !r->subjects.truncated)
				crm_gdpr_note_subject(&r->subjects, c);
			return slot;
		}
	}
	elog(ERROR, "crm_gdpr: a counted plan node of no running query");
	return NULL;
}

/* The counted node whose condition is state. */
static CountedNode *
counted_qual(ExprState *state, QueryReads **of)
{
	for (QueryReads *reads = crm_gdpr_running_reads(); reads; reads = reads->next)
		for (int i = 0; i < reads->ncounted; i++)
			if (reads->counted[i].qual == state)
			{
				*of = reads;
				return &reads->counted[i];
			}
	elog(ERROR, "crm_gdpr: a counted condition of no running query");
	return NULL;
}

/*
 * A scan's condition that passes values on: evaluated, then the row it
 * rejected counted as read (one it accepts is counted when the node passes
 * it on, or written).  The server's first call of an expression replaces its
 * evalfunc (ExecInterpExprStillValid): it is wrapped again then.
 */
static Datum
counting_qual(ExprState *state, ExprContext *econtext, bool *isnull)
{
	QueryReads *reads;
	CountedNode *c = counted_qual(state, &reads);
	Datum		result;
	ReadRel    *r;

	crm_gdpr_restriction_hid_row = false;
	result = c->real_qual(state, econtext, isnull);
	if (state->evalfunc != counting_qual)
	{
		c->real_qual = state->evalfunc;
		state->evalfunc = counting_qual;
	}
	if (!c->count_all && ((!*isnull && DatumGetBool(result)) || crm_gdpr_restriction_hid_row))
		return result;
	r = &reads->rels[c->rel];
	if (c->count_all)
	{
		/* ON CONFLICT's existing row (a partition's, when the target is partitioned). */
		const RelInfo *info;

		if (++r->rows > reads->limit && reads->limit > 0 && !reads->recorded)
			refuse_past_row_limit(reads);
		if (r->subjects.truncated)
			return result;
		if (econtext->ecxt_scantuple == NULL || TupIsNull(econtext->ecxt_scantuple) ||
			(info = crm_gdpr_rel_info(econtext->ecxt_scantuple->tts_tableOid)) == NULL ||
			info->subject_attnum <= 0)
			r->subjects.truncated = true;
		else
			crm_gdpr_subject_set_add(&r->subjects, econtext->ecxt_scantuple, info->subject_attnum);
		return result;
	}
	if (++r->rows > reads->limit && reads->limit > 0 && !reads->recorded)
		refuse_past_row_limit(reads);
	if (c->key != KEY_NONE && !r->subjects.truncated)
		crm_gdpr_note_subject(&r->subjects, c);
	return result;
}

/* A new counted node of reads (the first few in QueryReads itself, then 8 more at a time). */
static CountedNode *
new_counted(QueryReads *reads)
{
	if (reads->ncounted == 0)
		reads->counted = reads->first;
	else if (reads->ncounted >= lengthof(reads->first) && reads->ncounted % 8 == lengthof(reads->first) % 8)
	{
		CountedNode *more = MemoryContextAlloc(reads->estate->es_query_cxt,
											   sizeof(CountedNode) * (reads->ncounted + 8));

		memcpy(more, reads->counted, sizeof(CountedNode) * reads->ncounted);
		reads->counted = more;
	}
	return &reads->counted[reads->ncounted++];
}

static void
count_node(QueryReads *reads, PlanState *node, int rel, KeySource key, AttrNumber key_attnum, const RelInfo *info)
{
	CountedNode *c;

	c = new_counted(reads);
	c->node = node;
	c->real = node->ExecProcNodeReal;
	c->rel = rel;
	c->key = key;
	c->key_attnum = key_attnum;
	c->nlinks = 0;
	c->links_indirect = info && info->links_indirect;
	/* A write's own table is read only when the write passes values on (read_subjects.c): every row of it. */
	c->count_all = false;
	c->qual = NULL;
	c->real_qual = NULL;
	c->running = false;
	/* Its key's type known now: a failing row's subject is taken while the error is reported. */
	if (key == KEY_SCAN || (key == KEY_LINKS && info->nlinks > 0))
		crm_gdpr_subject_set_prepare(&reads->rels[rel].subjects,
									 ((ScanState *) node)->ss_ScanTupleSlot->tts_tupleDescriptor,
									 key == KEY_SCAN ? key_attnum : info->links[0].key_attnum);
	if (node->qual && !IsA(node->plan, ModifyTable) && crm_gdpr_expr_passes_values_on((Node *) node->plan->qual))
	{
		c->qual = node->qual;
		c->real_qual = node->qual->evalfunc;
		node->qual->evalfunc = counting_qual;
	}
	if (key == KEY_LINKS)
	{
		/* A copy: the cached entry may be forgotten while the query runs. */
		c->links = MemoryContextAlloc(reads->estate->es_query_cxt, sizeof(SubjectLink) * info->nlinks);
		memcpy(c->links, info->links, sizeof(SubjectLink) * info->nlinks);
		c->nlinks = info->nlinks;
	}
	node->ExecProcNodeReal = counting_exec;
}

/* A scan of a relation: a node that reads its rows (not a bitmap index scan). */
static bool
is_relation_scan(Plan *plan)
{
	return nodeTag(plan) >= T_SeqScan && nodeTag(plan) <= T_CustomScan && !IsA(plan, BitmapIndexScan) &&
		((Scan *) plan)->scanrelid > 0;
}

/*
 * The read table whose rows a scan reads: the one it scans, or for a
 * partition or inheritance child that the query reads through its parent
 * (the child has a range table entry of its own, without privileges to
 * check), the parent's; -1 for none.
 */
static int
scanned_read(QueryReads *reads, Scan *scan, EState *estate)
{
	const RelInfo *info;
	RangeTblEntry *rte;

	bool		write;

	for (int i = 0; i < reads->nrels; i++)
		if (!reads->rels[i].returning && reads->rels[i].rti == scan->scanrelid)
			return i;
	/* A write's own scan: read only when the write passes values on (its write_scan read). */
	write = list_member_int(estate->es_plannedstmt->resultRelations, scan->scanrelid);
	rte = exec_rt_fetch(scan->scanrelid, estate);
	if (rte->rtekind != RTE_RELATION || (info = crm_gdpr_rel_info(rte->relid)) == NULL || !info->registered)
		return -1;
	for (int i = 0; i < reads->nrels; i++)
		if (!reads->rels[i].returning && reads->rels[i].write_scan == write &&
			reads->rels[i].registered_as == info->registered_as)
			return i;
	return -1;
}

/*
 * Where a scan's rows have their subject key: the scan tuple (the table's
 * row, before the query's projection; an index-only scan's holds the index
 * columns, the key among them or not); foreign and custom scans lay their
 * tuples out as they like.
 */
static KeySource
scan_key(Scan *scan, const RelInfo *info, AttrNumber *attnum)
{
	ListCell   *lc;

	*attnum = 0;
	if (info == NULL || (info->subject_attnum <= 0 && info->nlinks == 0))
		return KEY_NONE;
	if (IsA(scan, ForeignScan) || IsA(scan, CustomScan) || info->links_partial ||
		(info->subject_attnum <= 0 && IsA(scan, IndexOnlyScan)))
		return KEY_UNKNOWN;
	if (info->subject_attnum <= 0)
		return KEY_LINKS;
	if (!IsA(scan, IndexOnlyScan))
	{
		*attnum = info->subject_attnum;
		return KEY_SCAN;
	}
	foreach(lc, ((IndexOnlyScan *) scan)->indextlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!tle->resjunk && IsA(tle->expr, Var) && ((Var *) tle->expr)->varattno == info->subject_attnum)
		{
			*attnum = tle->resno;
			return KEY_SCAN;
		}
	}
	return KEY_UNKNOWN;
}

/*
 * INSERT ... ON CONFLICT DO UPDATE whose WHERE or SET hands the existing
 * row's values on: no scan reads that row, the ExprState evaluated first on
 * it (the WHERE, else the SET's projection) counts it, whatever it decides.
 * A partition whose columns lie as its root's shares the root's ExprStates
 * (ExecInitPartitionInfo); one laid out otherwise would get states of its
 * own, never wrapped: refused.
 */
static void
count_on_conflict(QueryReads *reads, ModifyTableState *mt)
{
	ModifyTable *plan = (ModifyTable *) mt->ps.plan;
	ResultRelInfo *rri = mt->resultRelInfo;
	Relation	target = rri->ri_RelationDesc;
	OnConflictSetState *oc = rri->ri_onConflict;
	Index		rti = linitial_int(plan->resultRelations);
	ExprState  *state;
	CountedNode *c;
	int			rel = -1;

	/* A write_scan read, or a plain one when the INSERT is in a WITH of a SELECT. */
	for (int i = 0; i < reads->nrels && rel < 0; i++)
		if (!reads->rels[i].returning && reads->rels[i].rti == rti)
			rel = i;
	if (rel < 0)
		return;					/* not a registered table, or none of its columns read */
	if (oc == NULL || (state = oc->oc_WhereClause ? oc->oc_WhereClause : &oc->oc_ProjInfo->pi_state) == NULL)
		elog(ERROR, "crm_gdpr: INSERT ... ON CONFLICT DO UPDATE without its state");
	if (target->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		List	   *parts = find_all_inheritors(RelationGetRelid(target), NoLock, NULL);
		ListCell   *lc;

		foreach(lc, parts)
		{
			Relation	part;
			AttrMap    *map;

			if (lfirst_oid(lc) == RelationGetRelid(target))
				continue;
			part = table_open(lfirst_oid(lc), AccessShareLock);
			map = part->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? NULL :
				attrmap_by_name_if_req(RelationGetDescr(part), RelationGetDescr(target));
			table_close(part, AccessShareLock);
			if (map != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("INSERT ... ON CONFLICT DO UPDATE that hands the existing row to a function is not supported on \"%s\"",
								RelationGetRelationName(target)),
						 errdetail("Partition \"%s\" of this table of personal data has its columns in another order: the rows it examines could not be logged as read.",
								   get_rel_name(lfirst_oid(lc))),
						 errhint("Use functions that are leakproof or the server's own non-volatile ones in ON CONFLICT's WHERE and SET.")));
		}
	}
	c = new_counted(reads);
	memset(c, 0, sizeof(CountedNode));
	c->node = NULL;				/* no node of its own: counting_exec never finds it */
	c->rel = rel;
	c->key = KEY_UNKNOWN;
	c->count_all = true;
	c->qual = state;
	c->real_qual = state->evalfunc;
	state->evalfunc = counting_qual;
}

static bool
find_counted_nodes(PlanState *node, void *context)
{
	QueryReads *reads = (QueryReads *) context;
	Plan	   *plan;
	int			rel = -1;
	KeySource	key = KEY_NONE;
	AttrNumber	key_attnum = 0;
	const RelInfo *info = NULL;

	if (node == NULL)
		return false;
	plan = node->plan;
	if (IsA(plan, ModifyTable))
	{
		for (int i = 0; i < reads->nrels && rel < 0; i++)
			if (reads->rels[i].returning)
				rel = i;
		key = KEY_RETURNING;
	}
	else if (is_relation_scan(plan) && (rel = scanned_read(reads, (Scan *) plan, node->state)) >= 0)
	{
		info = crm_gdpr_rel_info(exec_rt_fetch(((Scan *) plan)->scanrelid, node->state)->relid);
		key = scan_key((Scan *) plan, info, &key_attnum);
	}
	if (rel >= 0)
		count_node(reads, node, rel, key, key_attnum, info);
	if (IsA(plan, ModifyTable) && crm_gdpr_on_conflict_passes_values_on((ModifyTable *) plan))
		count_on_conflict(reads, (ModifyTableState *) node);
	return planstate_tree_walker(node, find_counted_nodes, context);
}

/* Count the rows a running query reads from its registered tables. */
void
crm_gdpr_count_reads(QueryReads *reads, PlanState *planstate)
{
	find_counted_nodes(planstate, reads);
}
