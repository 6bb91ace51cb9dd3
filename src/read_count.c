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
 * into the query's records.
 *
 * Rows read by parallel workers are not seen here (the leader's share is);
 * see doc/access-log.md.
 */
#include "postgres.h"

#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "executor/executor.h"

#include "read_hook.h"
#include "settings.h"

static void
refuse(QueryReads *reads)
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
				refuse(reads);
			return slot;
		}
	}
	elog(ERROR, "crm_gdpr: a counted plan node of no running query");
	return NULL;
}

static void
count_node(QueryReads *reads, PlanState *node, int rel)
{
	CountedNode *c;

	if (reads->ncounted % 8 == 0)
	{
		CountedNode *more = MemoryContextAlloc(reads->estate->es_query_cxt,
											   sizeof(CountedNode) * (reads->ncounted + 8));

		if (reads->ncounted)
			memcpy(more, reads->counted, sizeof(CountedNode) * reads->ncounted);
		reads->counted = more;
	}
	c = &reads->counted[reads->ncounted++];
	c->node = node;
	c->real = node->ExecProcNodeReal;
	c->rel = rel;
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

static bool
find_counted_nodes(PlanState *node, void *context)
{
	QueryReads *reads = (QueryReads *) context;
	Plan	   *plan;
	int			rel = -1;

	if (node == NULL)
		return false;
	plan = node->plan;
	if (IsA(plan, ModifyTable))
	{
		for (int i = 0; i < reads->nrels && rel < 0; i++)
			if (reads->rels[i].returning)
				rel = i;
	}
	else if (is_relation_scan(plan))
		rel = scanned_read(reads, (Scan *) plan, node->state);
	if (rel >= 0)
		count_node(reads, node, rel);
	return planstate_tree_walker(node, find_counted_nodes, context);
}

/* Count the rows a running query reads from its registered tables. */
void
crm_gdpr_count_reads(QueryReads *reads, PlanState *planstate)
{
	find_counted_nodes(planstate, reads);
}
