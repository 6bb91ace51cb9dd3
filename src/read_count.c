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
 * Every row is read here, in the backend that runs the query: a query that
 * touches a registered table is planned without parallel workers
 * (read_planner.c), whose copies of the plan nobody would wrap.
 */
#include "postgres.h"

#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "executor/executor.h"
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

/* The subject of the row a counted node just passed on. */
static void
note_subject(ReadRel *r, CountedNode *c)
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
				crm_gdpr_subject_set_add(&r->subjects, row, c->links[i].key_attnum);
				named = true;
			}
		if (!named && c->links_indirect)
			r->subjects.truncated = true;	/* perhaps someone's through another table */
		return;
	}
	if (c->key == KEY_SCAN)
		row = ((ScanState *) c->node)->ss_ScanTupleSlot;
	else if (c->key == KEY_RETURNING)
		row = returned_row((ModifyTableState *) c->node, &attnum);
	if (row == NULL || TupIsNull(row))
		r->subjects.truncated = true;	/* a row of someone the log cannot name */
	else
		crm_gdpr_subject_set_add(&r->subjects, row, attnum);
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
			slot = c->real(node);
			if (TupIsNull(slot))
				return slot;
			r = &reads->rels[c->rel];
			if (++r->rows > reads->limit && reads->limit > 0 && !reads->recorded)
				refuse_past_row_limit(reads);
			if (c->key != KEY_NONE && !r->subjects.truncated)
				note_subject(r, c);
			return slot;
		}
	}
	elog(ERROR, "crm_gdpr: a counted plan node of no running query");
	return NULL;
}

static void
count_node(QueryReads *reads, PlanState *node, int rel, KeySource key, AttrNumber key_attnum, const RelInfo *info)
{
	CountedNode *c;

	if (reads->ncounted == 0)
		reads->counted = reads->first;
	else if (reads->ncounted >= lengthof(reads->first) && reads->ncounted % 8 == lengthof(reads->first) % 8)
	{
		/* Full (the first few in QueryReads itself, then 8 more at a time). */
		CountedNode *more = MemoryContextAlloc(reads->estate->es_query_cxt,
											   sizeof(CountedNode) * (reads->ncounted + 8));

		memcpy(more, reads->counted, sizeof(CountedNode) * reads->ncounted);
		reads->counted = more;
	}
	c = &reads->counted[reads->ncounted++];
	c->node = node;
	c->real = node->ExecProcNodeReal;
	c->rel = rel;
	c->key = key;
	c->key_attnum = key_attnum;
	c->nlinks = 0;
	c->links_indirect = info && info->links_indirect;
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

	for (int i = 0; i < reads->nrels; i++)
		if (!reads->rels[i].returning && reads->rels[i].rti == scan->scanrelid)
			return i;
	if (list_member_int(estate->es_plannedstmt->resultRelations, scan->scanrelid))
		return -1;				/* a write's own scan: the write trigger logs it */
	rte = exec_rt_fetch(scan->scanrelid, estate);
	if (rte->rtekind != RTE_RELATION || (info = crm_gdpr_rel_info(rte->relid)) == NULL || !info->registered)
		return -1;
	for (int i = 0; i < reads->nrels; i++)
		if (!reads->rels[i].returning && reads->rels[i].registered_as == info->registered_as)
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
	return planstate_tree_walker(node, find_counted_nodes, context);
}

/* Count the rows a running query reads from its registered tables. */
void
crm_gdpr_count_reads(QueryReads *reads, PlanState *planstate)
{
	find_counted_nodes(planstate, reads);
}
