/*
 * read_leaks.c — whether a condition or an expression hands a row's values
 * to a function that may pass them on (read_count.c then counts every row
 * it examines as read; security review rounds 19 and 20).
 *
 * A condition is not always a mere filter: one that calls set_config, a
 * NOTICE of the reader's own function or pg_notify with a column reads
 * every row it is evaluated on.  These functions say which: asked of a
 * scan's condition (its rejected rows are reads too), and of every
 * condition and expression of a write (its WHERE, a join's, its SET, a
 * MERGE action's, ON CONFLICT's), whose written rows the write trigger
 * alone would log, in a transaction a ROLLBACK takes away.
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "optimizer/optimizer.h"
#include "executor/executor.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "read_hook.h"

/*
 * Whether a function may pass the values it is given on: the leakproof ones
 * do not, nor the server's own that are not volatile (they compute, and by
 * their contract change nothing: date_trunc, to_char, format; an error they
 * raise is a failed read, read_hook.c); the server's volatile ones may
 * (set_config, pg_notify, query_to_xml, lo_from_bytea, advisory locks), and
 * so may any function of a role's own, but the gdpr_restriction policy's.
 */
static bool
may_pass_values_on_uncached(Oid func)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	Form_pg_proc proc;
	bool		may;

	if (!HeapTupleIsValid(tp))
		return true;
	proc = (Form_pg_proc) GETSTRUCT(tp);
	if (proc->proleakproof)
		may = false;
	else if (func < FirstNormalObjectId)
		may = proc->provolatile == PROVOLATILE_VOLATILE;
	else
		may = !(strcmp(NameStr(proc->proname), "restriction_visible") == 0 &&
				proc->pronamespace == get_namespace_oid("gdpr", true));
	ReleaseSysCache(tp);
	return may;
}

/*
 * The answers, by function: a write's SET and conditions are asked at every
 * statement (a catalog look-up a function was 1.8 k instructions of a
 * logged write transaction).  Forgotten whenever pg_proc changes (ALTER
 * FUNCTION ... LEAKPROOF, VOLATILE).
 */
#define MAY_PASS_SLOTS 256
typedef struct MayPassSlot
{
	Oid			func;			/* InvalidOid: empty */
	bool		may;
} MayPassSlot;
static MayPassSlot may_pass_cache[MAY_PASS_SLOTS];
static bool may_pass_callback_set = false;

static void
forget_may_pass(Datum arg, int cacheid, uint32 hashvalue)
{
	memset(may_pass_cache, 0, sizeof(may_pass_cache));
}

static bool
may_pass_values_on(Oid func, void *context)
{
	MayPassSlot *slot = &may_pass_cache[func % MAY_PASS_SLOTS];

	if (!may_pass_callback_set)
	{
		CacheRegisterSyscacheCallback(PROCOID, forget_may_pass, (Datum) 0);
		may_pass_callback_set = true;
	}
	if (slot->func != func || func == InvalidOid)
	{
		bool		may = may_pass_values_on_uncached(func);

		slot->func = func;
		slot->may = may;
	}
	return slot->may;
}

/*
 * Whether building a value of this type checks a domain's constraints: a
 * domain, or one among its elements, its fields, its range's bounds.  The
 * server's types (initdb's) hold no domain of anyone's.
 */
static bool
type_checks_domains(Oid type, int depth)
{
	bool		checks = false;

	if (type < FirstNormalObjectId)
		return false;
	if (depth > 8)
		return true;			/* too deep to tell: assume so */
	switch (get_typtype(type))
	{
		case TYPTYPE_DOMAIN:
			return true;
		case TYPTYPE_RANGE:
			return type_checks_domains(get_range_subtype(type), depth + 1);
		case TYPTYPE_MULTIRANGE:
			return type_checks_domains(get_multirange_range(type), depth + 1);
		case TYPTYPE_COMPOSITE:
			{
				TupleDesc	desc = lookup_rowtype_tupdesc_noerror(type, -1, true);

				if (desc == NULL)
					return true;
				for (int i = 0; i < desc->natts && !checks; i++)
					if (!TupleDescAttr(desc, i)->attisdropped)
						checks = type_checks_domains(TupleDescAttr(desc, i)->atttypid, depth + 1);
				ReleaseTupleDesc(desc);
				return checks;
			}
		default:
			return OidIsValid(get_element_type(type)) &&
				type_checks_domains(get_element_type(type), depth + 1);
	}
}

/*
 * Whether a node builds a value whose domains' CHECKs run on it without a
 * CoerceToDomain node in the plan (round 21): a cast through the type's input
 * (record_in, array_in, range_in: text::composite, text::domain[]), a
 * function of the server's that builds a value of a type given to it
 * (jsonb_populate_record(NULL::composite, ...)), the type input functions
 * called by name (domain_in(cstring, regtype, -1)), their type an argument.
 * A CHECK may call any function: the reader's own, set_config.
 */
static bool
builds_checked_domain(Node *node)
{
	if (IsA(node, CoerceViaIO))
		return type_checks_domains(((CoerceViaIO *) node)->resulttype, 0);
	if (IsA(node, FuncExpr))
	{
		FuncExpr   *f = (FuncExpr *) node;

		switch (f->funcid)
		{
			case F_DOMAIN_IN:
			case F_DOMAIN_RECV:
			case F_RECORD_IN:
			case F_RECORD_RECV:
			case F_ARRAY_IN:
			case F_ARRAY_RECV:
			case F_RANGE_IN:
			case F_RANGE_RECV:
			case F_MULTIRANGE_IN:
			case F_MULTIRANGE_RECV:
				return true;
			default:
				return type_checks_domains(f->funcresulttype, 0);
		}
	}
	return false;
}

/*
 * Whether an expression hands values of the rows it is evaluated on (Vars)
 * to a function that may pass them on; a domain's CHECK (any function),
 * also when a type's input runs it, or a subplan given such values counts as
 * one.
 */
static bool
passes_values_on(Node *node, void *context)
{
	/* Leaves call nothing: answered here, without the two generic walks (a write asks at every statement). */
	if (node == NULL || IsA(node, Var) || IsA(node, Const) || IsA(node, Param))
		return false;
	if (IsA(node, TargetEntry))
		return passes_values_on((Node *) ((TargetEntry *) node)->expr, context);
	if (IsA(node, SubPlan))
	{
		SubPlan    *sp = (SubPlan *) node;

		if (contain_var_clause((Node *) sp->args))
			return true;
		return passes_values_on(sp->testexpr, context);
	}
	/* Only the row's values count: asked last, it is rare that a function may pass values on. */
	if ((IsA(node, CoerceToDomain) || check_functions_in_node(node, may_pass_values_on, context) ||
		 builds_checked_domain(node)) &&
		contain_var_clause(node))
		return true;
	return expression_tree_walker(node, passes_values_on, context);
}

/* Whether INSERT ... ON CONFLICT DO UPDATE hands the existing row's values on (WHERE or SET). */
bool
crm_gdpr_on_conflict_passes_values_on(ModifyTable *mt)
{
	return mt->onConflictAction == ONCONFLICT_UPDATE &&
		(passes_values_on(mt->onConflictWhere, NULL) || passes_values_on((Node *) mt->onConflictSet, NULL));
}

/*
 * The conditions and expressions a plan node of a write evaluates itself
 * (not its children's): its qual, its projection (an UPDATE's SET is its
 * plan's), a join's conditions, a MERGE action's condition and SET, ON
 * CONFLICT's WHERE and SET.
 */
static bool
node_passes_values_on(Plan *plan)
{
	if (passes_values_on((Node *) plan->qual, NULL))
		return true;
	/* A ModifyTable's own target list is its RETURNING, a read of its own. */
	if (!IsA(plan, ModifyTable) && passes_values_on((Node *) plan->targetlist, NULL))
		return true;
	switch (nodeTag(plan))
	{
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			if (passes_values_on((Node *) ((Join *) plan)->joinqual, NULL))
				return true;
			if (IsA(plan, MergeJoin))
				return passes_values_on((Node *) ((MergeJoin *) plan)->mergeclauses, NULL);
			if (IsA(plan, HashJoin))
				return passes_values_on((Node *) ((HashJoin *) plan)->hashclauses, NULL);
			return false;
		case T_Result:
			return passes_values_on(((Result *) plan)->resconstantqual, NULL);
		case T_ModifyTable:
			{
				ModifyTable *mt = (ModifyTable *) plan;
				ListCell   *lc;

				foreach(lc, mt->mergeActionLists)
				{
					ListCell   *a;

					foreach(a, (List *) lfirst(lc))
					{
						MergeAction *action = (MergeAction *) lfirst(a);

						if (passes_values_on(action->qual, NULL) || passes_values_on((Node *) action->targetList, NULL))
							return true;
					}
				}
				return crm_gdpr_on_conflict_passes_values_on(mt);
			}
		default:
			return false;
	}
}

/* Whether any node of a plan has a condition that passes values on. */
static bool
find_passes_on(PlanState *node, void *context)
{
	if (node == NULL)
		return false;
	if (node_passes_values_on(node->plan))
		return true;
	return planstate_tree_walker(node, find_passes_on, context);
}

/*
 * Whether a write's own scan may read rows at all: only a condition that
 * passes values on makes its rows reads (the rest are the write trigger's).
 * Asked before a write's table is given a read, so that the common UPDATE
 * ... WHERE id = $1 costs a walk over its few nodes and nothing more.
 */
bool
crm_gdpr_plan_passes_values_on(PlanState *planstate)
{
	return find_passes_on(planstate, NULL);
}


/* Whether an expression (a condition, a target list) hands a row's values to a function that may pass them on. */
bool
crm_gdpr_expr_passes_values_on(Node *node)
{
	return passes_values_on(node, NULL);
}
