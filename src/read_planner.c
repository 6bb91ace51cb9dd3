/*
 * read_planner.c — queries that read registered tables are planned without
 * parallel workers (and the extension's own statements are checked for
 * rules: crm_gdpr_check_owner_query, owner_context.c).
 *
 * The read hook counts the rows a query reads, enforces
 * crm_gdpr.max_rows_per_query and collects the rows' subjects by wrapping
 * the scan nodes of the leader (read_count.c); a parallel worker runs its
 * own copy of the plan, which nobody wraps.  A parallel scan of a registered
 * table would let the workers read rows that are neither counted, limited
 * nor named (issue 18.5: with parallel_leader_participation = off, the whole
 * table under any limit).  So a planner hook plans every query that touches a
 * registered table (or one of its partitions or inheritance children,
 * whatever rel_cache.c says) as if it were not parallel-safe: every row is
 * then read in the backend that counts it.  Queries that touch no
 * registered table keep their parallel plans.
 *
 * "Not parallel-safe" is said by clearing CURSOR_OPT_PARALLEL_OK for that
 * call, which is how PostgreSQL itself plans cursors: no parallel path, and
 * no Gather added by debug_parallel_query (force_parallel_mode) either; no
 * setting is changed, so nothing needs restoring if planning fails.
 *
 * The range tables are those of the rewritten query (views and row-level
 * security policies are expanded by then), its subqueries, CTEs and
 * sublinks.  Only a function in FROM can bring a table in later (the
 * planner inlines a set-returning SQL function): such a query is planned
 * from a copy, and planned again without workers when its plan turns out
 * to be parallel over a registered table.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/cost.h"
#include "optimizer/planner.h"

#include "crm_gdpr.h"
#include "read_hook.h"

static planner_hook_type prev_planner = NULL;

typedef enum Touches
{
	TOUCHES_NONE,				/* no registered table */
	TOUCHES_MAYBE,				/* none yet, but a function in FROM may bring one */
	TOUCHES_REGISTERED
} Touches;

static bool
is_registered(Oid relid)
{
	const RelInfo *info = crm_gdpr_rel_info(relid);

	return info != NULL && info->registered;
}

/* Walks a query tree; *context is what it found so far. */
static bool
registered_in(Node *node, void *context)
{
	Touches    *touches = (Touches *) context;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		ListCell   *lc;

		foreach(lc, ((Query *) node)->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION && is_registered(rte->relid))
			{
				*touches = TOUCHES_REGISTERED;
				return true;	/* enough */
			}
			if (rte->rtekind == RTE_FUNCTION)
				*touches = TOUCHES_MAYBE;
		}
		return query_tree_walker((Query *) node, registered_in, context, 0);
	}
	return expression_tree_walker(node, registered_in, context);
}

/* Whether a plan made is parallel and reads a registered table. */
static bool
parallel_over_registered(PlannedStmt *stmt)
{
	ListCell   *lc;

	if (!stmt->parallelModeNeeded)
		return false;
	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && is_registered(rte->relid))
			return true;
	}
	return false;
}

static PlannedStmt *
plan(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	if (prev_planner)
		return prev_planner(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

/*
 * Whether this query could get a parallel plan that the read hook must
 * prevent: the planner's own cheap tests (a SELECT, parallel allowed by the
 * caller and by max_parallel_workers_per_gather), and not in the
 * extension's workers, whose reads are not logged.  Not whether reads are
 * logged now: a plan is cached and outlives crm_gdpr.log_reads, and the
 * read hook relies on it being serial.
 */
static bool
may_go_parallel(Query *parse, int cursorOptions)
{
	return (cursorOptions & CURSOR_OPT_PARALLEL_OK) != 0 && parse->commandType == CMD_SELECT &&
		max_parallel_workers_per_gather > 0 && !IsParallelWorker() && !crm_gdpr_in_own_worker;
}

static PlannedStmt *plan_serial_if_registered(Query *parse, const char *query_string, int cursorOptions,
											  ParamListInfo boundParams);

/* A foreign key's query counts as one from its planning on (read_hook.c, round 26.1). */
static PlannedStmt *
crm_gdpr_planner(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	int			fk = crm_gdpr_foreign_key_begin();
	PlannedStmt *volatile result = NULL;

	PG_TRY();
	{
		result = plan_serial_if_registered(parse, query_string, cursorOptions, boundParams);
	}
	PG_FINALLY();
	{
		crm_gdpr_foreign_key_end(fk);
	}
	PG_END_TRY();
	return result;
}

static PlannedStmt *
plan_serial_if_registered(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	Touches		touches = TOUCHES_NONE;
	Query	   *copy;
	PlannedStmt *result;

	crm_gdpr_check_owner_query(parse);
	if (!may_go_parallel(parse, cursorOptions))
		return plan(parse, query_string, cursorOptions, boundParams);
	registered_in((Node *) parse, &touches);
	if (touches == TOUCHES_REGISTERED)
		return plan(parse, query_string, cursorOptions & ~CURSOR_OPT_PARALLEL_OK, boundParams);
	if (touches == TOUCHES_NONE)
		return plan(parse, query_string, cursorOptions, boundParams);
	/* The planner changes the query it plans: a second plan needs a copy. */
	copy = copyObject(parse);
	result = plan(parse, query_string, cursorOptions, boundParams);
	if (parallel_over_registered(result))
		result = plan(copy, query_string, cursorOptions & ~CURSOR_OPT_PARALLEL_OK, boundParams);
	return result;
}

void
crm_gdpr_read_planner_init(bool preloading)
{
	if (!preloading)
		return;
	prev_planner = planner_hook;
	planner_hook = crm_gdpr_planner;
}
