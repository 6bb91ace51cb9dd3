/*
 * read_failing.c — the rows under examination when a read fails.
 *
 * An error raised while a scan examines a row can carry that row's values
 * to the reader: "invalid input syntax for type integer: \"<e-mail>
 * <phone>\"" from (email || ' ' || phone)::int in a condition or the select
 * list.  The row is never passed on, so read_count.c never counts it, and
 * by the time the failed query's memory is freed (read_hook.c), its buffer
 * may be gone.  So while a read runs, an error context callback is on the
 * stack: at every message reported (the error among them), it takes the
 * scan tuple of each counted node that is inside its ExecProcNode — the
 * row not counted yet — as this query's failing rows, replacing those of
 * the message before.  When the query fails, they are added to what it
 * read; when it ends well, they are forgotten (a NOTICE does not end a
 * query, and the rows it came with are counted as any other when passed
 * on).  Nothing here reads the catalog: the key's type is known from the
 * query's start (read_count.c prepares the sets).
 *
 * A failed UPDATE, DELETE, MERGE or upsert of a registered table is logged too
 * (read_hook.c): its own table's scan is not counted (its trigger logs what
 * it writes), so at each message the write's plan is searched for the scans
 * of that table holding a row — the one its condition failed on, or the
 * one being written when a constraint, a trigger or a cast failed ("Failing
 * row contains (...)") — and the failed write names their subjects.
 *
 * A partitioned table's partitions are result relations of their own, each
 * with its key column where it lies.
 *
 * INSERT ... ON CONFLICT DO UPDATE is such a write too: its existing row,
 * which no scan holds, is in its ON CONFLICT state (a partitioned target's,
 * in that of the partition the row was routed to).
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "nodes/primnodes.h"
#include "utils/rel.h"
#include "utils/elog.h"

#include "read_hook.h"

/* The failing rows of rel forgotten (another message came). */
static void
forget_failing(ReadRel *r)
{
	r->failing_rows = 0;
	if (r->failing)
		crm_gdpr_subject_set_clear(r->failing);
}

/* One counted node's row under examination, as a failing row of its table. */
static void
note_failing_row(QueryReads *reads, CountedNode *c)
{
	ReadRel    *r = &reads->rels[c->rel];
	TupleTableSlot *row;

	if (c->node == NULL || c->key == KEY_RETURNING)
		return;					/* ON CONFLICT's row; a write's (logged as a failed write) */
	row = ((ScanState *) c->node)->ss_ScanTupleSlot;
	if (row == NULL || TupIsNull(row))
		return;
	r->failing_rows++;
	if (c->key == KEY_NONE)
		return;
	if (r->failing == NULL)
	{
		r->failing = MemoryContextAlloc(reads->estate->es_query_cxt, sizeof(SubjectSet));
		if (crm_gdpr_subject_set_prepared(&r->subjects))
			crm_gdpr_subject_set_init_like(r->failing, &r->subjects, reads->estate->es_query_cxt);
		else
			crm_gdpr_subject_set_init(r->failing, reads->estate->es_query_cxt);
	}
	if (crm_gdpr_subject_set_prepared(r->failing))
		crm_gdpr_note_subject(r->failing, c);
	else
		r->failing->truncated = true;	/* its key's type unknown: not read while an error is reported */
}

/*
 * The error context callback of a running read (arg: its QueryReads):
 * called for every message reported while the executor runs it.
 */
void
crm_gdpr_note_failing_rows(void *arg)
{
	QueryReads *reads = (QueryReads *) arg;

	if (!reads->linked || reads->recorded || geterrcode() == ERRCODE_OUT_OF_MEMORY)
		return;
	for (int i = 0; i < reads->nrels; i++)
		forget_failing(&reads->rels[i]);
	for (int i = 0; i < reads->ncounted; i++)
		if (reads->counted[i].running)
			note_failing_row(reads, &reads->counted[i]);
}

/* The query failed: its failing rows are rows it read. */
void
crm_gdpr_add_failing_rows(QueryReads *reads)
{
	for (int i = 0; i < reads->nrels; i++)
	{
		ReadRel    *r = &reads->rels[i];

		r->rows += r->failing_rows;
		if (r->failing)
			crm_gdpr_subject_set_merge(&r->subjects, r->failing);
		r->failing_rows = 0;
	}
}

/*
 * At a write's start (read_hook.c), for a registered table: each result
 * relation's key column (a partition's may lie elsewhere than its root's),
 * and the key's type known now, so that no catalog is read while an error is
 * reported.
 */
void
crm_gdpr_failing_write_init(FailingWrite *f, QueryDesc *query)
{
	List	   *results = query->plannedstmt->resultRelations;
	EState	   *estate = query->estate;
	ListCell   *lc;

	f->planstate = query->planstate;
	f->rows = 0;
	f->nresults = 0;
	crm_gdpr_subject_set_init(&f->subjects, estate->es_query_cxt);
	if (list_length(results) <= FAILING_WRITE_INLINE)
	{
		f->rtis = f->first_rtis;
		f->key_attnums = f->first_key_attnums;
	}
	else
	{
		f->rtis = MemoryContextAlloc(estate->es_query_cxt, sizeof(Index) * list_length(results));
		f->key_attnums = MemoryContextAlloc(estate->es_query_cxt, sizeof(AttrNumber) * list_length(results));
	}
	foreach(lc, results)
	{
		Index		rti = lfirst_int(lc);
		ResultRelInfo *rri = estate->es_result_relations ? estate->es_result_relations[rti - 1] : NULL;
		const RelInfo *info = rri ? crm_gdpr_rel_info(RelationGetRelid(rri->ri_RelationDesc)) : NULL;

		f->rtis[f->nresults] = rti;
		f->key_attnums[f->nresults] = info && info->registered ? info->subject_attnum : 0;
		if (f->key_attnums[f->nresults] > 0)
			crm_gdpr_subject_set_prepare(&f->subjects, RelationGetDescr(rri->ri_RelationDesc),
										 f->key_attnums[f->nresults]);
		f->nresults++;
	}
}

/* The subject key column of the written relation a scan reads; -1 when it reads none. */
static AttrNumber
written_key(const FailingWrite *f, Scan *scan)
{
	for (int i = 0; i < f->nresults; i++)
		if (f->rtis[i] == scan->scanrelid)
			return f->key_attnums[i];
	return -1;
}

/* A row of the written table under examination, its key at attnum key (0: none known). */
static void
note_examined(FailingWrite *f, TupleTableSlot *row, AttrNumber key)
{
	f->rows++;
	if (key > 0 && crm_gdpr_subject_set_prepared(&f->subjects))
		crm_gdpr_subject_set_add(&f->subjects, row, key);
	else
		f->subjects.truncated = true;
}

/*
 * The root's key column where a partition has it: by name, as PostgreSQL
 * maps a routed row (the descriptors are in the relcache: no catalog read).
 */
static AttrNumber
partition_key(ResultRelInfo *root, ResultRelInfo *part, AttrNumber key)
{
	TupleDesc	desc = RelationGetDescr(part->ri_RelationDesc);
	const char *name;

	if (key <= 0)
		return 0;
	name = NameStr(TupleDescAttr(RelationGetDescr(root->ri_RelationDesc), key - 1)->attname);
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped && strcmp(NameStr(TupleDescAttr(desc, i)->attname), name) == 0)
			return i + 1;
	return 0;
}

/*
 * INSERT ... ON CONFLICT DO UPDATE's existing row, while its WHERE or SET is
 * evaluated or its update made (the server clears the slot after each).  A
 * partitioned target's is in the ON CONFLICT state of the partition the row
 * was routed to (the executor's routing result relations), in that
 * partition's column order.
 */
static void
note_existing_row(FailingWrite *f, ModifyTableState *mt)
{
	ResultRelInfo *rri = mt->resultRelInfo;
	TupleTableSlot *row;
	AttrNumber	key;
	ListCell   *lc;

	if (((ModifyTable *) mt->ps.plan)->onConflictAction != ONCONFLICT_UPDATE || rri == NULL)
		return;
	key = f->nresults > 0 && f->rtis[0] == rri->ri_RangeTableIndex ? f->key_attnums[0] : 0;
	if (rri->ri_RelationDesc->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		foreach(lc, mt->ps.state->es_tuple_routing_result_relations)
		{
			ResultRelInfo *part = (ResultRelInfo *) lfirst(lc);

			if (part->ri_RootResultRelInfo == mt->rootResultRelInfo && part->ri_onConflict != NULL &&
				(row = part->ri_onConflict->oc_Existing) != NULL && !TupIsNull(row))
				note_examined(f, row, partition_key(rri, part, key));
		}
		return;
	}
	if (rri->ri_onConflict != NULL && (row = rri->ri_onConflict->oc_Existing) != NULL && !TupIsNull(row))
		note_examined(f, row, key);
}

static bool
is_scan_of(Plan *plan, Index rti)
{
	return plan != NULL && nodeTag(plan) >= T_SeqScan && nodeTag(plan) <= T_CustomScan &&
		((Scan *) plan)->scanrelid == rti;
}

/*
 * Where a plan node's output rows hold column attno of the written table
 * rti (1-based, as its target list numbers them), or 0: through the nodes
 * that pass rows on as they are (Hash, Sort, Material, a join's side) down
 * to the table's scan.  Only the plan is read.
 */
static AttrNumber
key_position(Plan *plan, Index rti, AttrNumber attno, int depth)
{
	AttrNumber	outer;
	AttrNumber	inner;
	ListCell   *lc;

	if (plan == NULL || attno <= 0 || depth > 32)
		return 0;
	/* Each child's position once: asked per target entry, it was exponential in the plan's depth. */
	outer = key_position(outerPlan(plan), rti, attno, depth + 1);
	inner = key_position(innerPlan(plan), rti, attno, depth + 1);
	foreach(lc, plan->targetlist)
	{
		TargetEntry *te = lfirst_node(TargetEntry, lc);
		Var		   *v = (Var *) te->expr;

		if (v == NULL || !IsA(v, Var))
			continue;
		if ((v->varno == rti && v->varattno == attno && is_scan_of(plan, rti)) ||
			(v->varno == OUTER_VAR && outer > 0 && v->varattno == outer) ||
			(v->varno == INNER_VAR && inner > 0 && v->varattno == inner))
			return te->resno;
	}
	return 0;
}

/*
 * One side of a join whose row the join is evaluating (its condition, or
 * the new values of an UPDATE or MERGE): a row of the written table when
 * that side carries its key.  A Hash, Sort or Material under the join read
 * the table's scan to its end before: no scan holds that row any more.  A
 * side that is the scan itself is left to find_write_scans.
 */
static void
note_join_side(FailingWrite *f, Plan *side, TupleTableSlot *row)
{
	if (side == NULL || row == NULL || TupIsNull(row))
		return;
	for (int i = 0; i < f->nresults; i++)
	{
		AttrNumber	pos;

		if (!is_scan_of(side, f->rtis[i]) && f->key_attnums[i] > 0 &&
			(pos = key_position(side, f->rtis[i], f->key_attnums[i], 0)) > 0 &&
			pos <= row->tts_tupleDescriptor->natts)
			note_examined(f, row, pos);
	}
}

static void
note_join_rows(FailingWrite *f, PlanState *node)
{
	ExprContext *econtext = node->ps_ExprContext;

	if (econtext == NULL || !(IsA(node, NestLoopState) || IsA(node, MergeJoinState) || IsA(node, HashJoinState)))
		return;
	note_join_side(f, outerPlan(node->plan), econtext->ecxt_outertuple);
	note_join_side(f, innerPlan(node->plan), econtext->ecxt_innertuple);
}

/* A scan of the written table holding a row: that row is under examination. */
static bool
find_write_scans(PlanState *node, void *arg)
{
	FailingWrite *f = (FailingWrite *) arg;
	TupleTableSlot *row;
	AttrNumber	key;

	if (node == NULL)
		return false;
	if (IsA(node, ModifyTableState))
		note_existing_row(f, (ModifyTableState *) node);
	note_join_rows(f, node);
	if (nodeTag(node->plan) >= T_SeqScan && nodeTag(node->plan) <= T_CustomScan &&
		((Scan *) node->plan)->scanrelid > 0 && (key = written_key(f, (Scan *) node->plan)) >= 0 &&
		(row = ((ScanState *) node)->ss_ScanTupleSlot) != NULL && !TupIsNull(row))
		note_examined(f, row, IsA(node->plan, IndexOnlyScan) || IsA(node->plan, ForeignScan) ||
					  IsA(node->plan, CustomScan) ? 0 : key);
	return planstate_tree_walker(node, find_write_scans, arg);
}

/* The error context callback of a running write (arg: its FailingWrite). */
void
crm_gdpr_note_failing_write(void *arg)
{
	FailingWrite *f = (FailingWrite *) arg;

	if (geterrcode() == ERRCODE_OUT_OF_MEMORY)
		return;
	f->rows = 0;
	crm_gdpr_subject_set_clear(&f->subjects);
	find_write_scans(f->planstate, f);
}
