/*
 * tree_guard_after.c — what the tree guard checks once PostgreSQL has run
 * the statement (security review rounds 23 and 24).
 *
 * tree_guard.c looks before the statement, at the tables its names stand
 * for then.  PostgreSQL looks the names up again under its own locks, and a
 * rename committed in between (in a session that held the tables) makes
 * them stand for other tables.  So the outcome is checked as well, on the
 * tables the statement really moved, under the locks it holds:
 *   - joins: a table that joined a registered tree (one without the
 *     extension's triggers yet, gdpr._on_new_child) must be empty, not
 *     temporary nor foreign, with no parent outside the tree; a registered
 *     table gets no parent that is not registered (gdpr._check_tree_edges,
 *     on the table the command altered as PostgreSQL resolved it);
 *   - leaves: a table the statement took out of a registered tree still
 *     carries the log's triggers and is locked by the statement: it must be
 *     empty (gdpr._on_tree_left, which then takes its triggers and policy
 *     away, and after the statement for when event triggers did not run);
 *   - drops: a table of a registered tree dropped holding rows (DROP TABLE,
 *     SCHEMA ... CASCADE, OWNED BY, EXTENSION, a type's CASCADE) is noted
 *     as PostgreSQL deletes it (object access hook), with every registered
 *     table it belongs to (a child may have two); the statement fails at its
 *     end while one of them is still there;
 *   - a temporary table created under a registered one without saying
 *     TEMP (in schema pg_temp, or with pg_temp first in search_path).
 * The triggers and session ends that drop temporary tables or empty them
 * (ON COMMIT) never run here: temporary tables never join (above).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "crm_gdpr.h"
#include "pg_compat.h"
#include "read_hook.h"
#include "tree_guard.h"

/* A member of a registered tree dropped holding rows by the statement running. */
typedef struct DroppedMember
{
	Oid			relid;
	List	   *roots;			/* the registered tables it belonged to */
	char	   *name;
	bool		not_owner;		/* not looked at: dropped by a role that does not own it */
} DroppedMember;

static object_access_hook_type prev_object_access = NULL;
static List *dropped_members = NIL;	/* of DroppedMember, in TopTransactionContext */

/* The registered tables relid belongs to through its ancestors, at any depth. */
static List *
registered_roots(Oid relid, int depth)
{
	List	   *roots = NIL;
	ListCell   *lc;

	if (depth > 32)
		return NIL;
	foreach(lc, tree_parents_of(relid))
	{
		Oid			parent = lfirst_oid(lc);

		if (tree_is_registered(parent) && crm_gdpr_registered_as(parent) == parent)
			roots = list_append_unique_oid(roots, parent);
		roots = list_concat_unique_oid(roots, registered_roots(parent, depth + 1));
	}
	return roots;
}

/*
 * Called by the object access hook as PostgreSQL deletes a table: one
 * registered through an ancestor is noted with whether it holds rows (the
 * statement holds its lock: the writes in progress are over).  Nothing is
 * refused here: the registered tables may be going too.
 */
static void
note_drop(Oid relid)
{
	MemoryContext old;
	DroppedMember *d;
	RowsSeen	seen;

	if (!tree_registered_through_ancestor(relid) || (seen = tree_holds_rows(relid, NoLock)) == ROWS_NONE)
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	d = palloc(sizeof(DroppedMember));
	d->relid = relid;
	d->roots = registered_roots(relid, 0);
	d->name = get_rel_name(relid);
	d->not_owner = seen == ROWS_NOT_OWNER;
	dropped_members = lappend(dropped_members, d);
	MemoryContextSwitchTo(old);
}

static void
tree_guard_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == RelationRelationId && subId == 0 && IsTransactionState())
	{
		char		kind = get_rel_relkind(objectId);

		if (kind == RELKIND_RELATION || kind == RELKIND_PARTITIONED_TABLE || kind == RELKIND_FOREIGN_TABLE)
			note_drop(objectId);
	}
}

static void
forget_dropped(XactEvent event, void *arg)
{
	dropped_members = NIL;		/* its memory goes with the transaction */
}

static void
check_dropped(List *dropped)
{
	ListCell   *lc;

	foreach(lc, dropped)
	{
		DroppedMember *d = lfirst(lc);
		ListCell   *rc;

		/* Still there: its drop was rolled back (a subtransaction that failed). */
		if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(d->relid)))
			continue;
		foreach(rc, d->roots)
		{
			Oid			root = lfirst_oid(rc);

			if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(root)))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 d->not_owner ?
						 errmsg("%s of registered table %s can be dropped only by its owner, once empty",
								d->name, get_rel_name(root)) :
						 errmsg("%s of registered table %s cannot be dropped while it holds rows",
								d->name, get_rel_name(root)),
						 errdetail("Its rows would vanish with no write logged (a table goes with its schema, its owner or an extension as well as by DROP TABLE)."),
						 errhint("Delete its rows first (the DELETE is logged), or unregister the table with gdpr.unregister_table().")));
		}
	}
}

/* A temporary table is known as such only once created. */
static void
check_created(CreateStmt *stmt)
{
	Oid			relid;

	if (stmt->inhRelations == NIL)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (OidIsValid(relid) && tree_registered_through_ancestor(relid))
		tree_refuse_kind(stmt->relation->relname, get_rel_persistence(relid), RELKIND_RELATION,
						 crm_gdpr_registered_as(relid));
}

static bool
locked_by_me(Oid relid, LOCKMODE lockmode)
{
	Relation	rel = RelationIdGetRelation(relid);
	bool		locked;

	if (!RelationIsValid(rel))
		return false;
	locked = CheckRelationLockedByMe(rel, lockmode, true);
	RelationClose(rel);
	return locked;
}

/* The tables that carry a trigger calling gdpr._log_write(). */
static List *
tables_with_log_triggers(void)
{
	Oid			nsp = get_namespace_oid("gdpr", true);	/* no USAGE check: the caller has none */
	Oid			fn = OidIsValid(nsp) ?
		GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum("_log_write"),
						PointerGetDatum(buildoidvector(NULL, 0)), ObjectIdGetDatum(nsp)) : InvalidOid;
	Relation	triggers;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *tables = NIL;

	if (!OidIsValid(fn))
		return NIL;
	triggers = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_trigger_tgfoid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(fn));
	scan = systable_beginscan(triggers, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		tables = list_append_unique_oid(tables, ((Form_pg_trigger) GETSTRUCT(tup))->tgrelid);
	systable_endscan(scan);
	table_close(triggers, AccessShareLock);
	return tables;
}

static void
refuse_left(Oid relid, RowsSeen seen)
{
	if (seen != ROWS_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 seen == ROWS_NOT_OWNER ?
				 errmsg("%s can leave a registered table's tree only by its owner, once empty", get_rel_name(relid)) :
				 errmsg("%s cannot leave a registered table's tree while it holds rows", get_rel_name(relid)),
				 errdetail("Its rows would leave the access log's reach with no write logged."),
				 errhint("Delete its rows first (the DELETE is logged), or unregister the table with gdpr.unregister_table().")));
}

/*
 * After DETACH PARTITION or NO INHERIT: a table that left a registered tree
 * (it still carries the log's triggers, is no longer registered, and the
 * statement holds it) must be empty.  gdpr._on_tree_left checks it first,
 * at the statement's end, then takes the triggers away: this is for when
 * event triggers did not run.
 */
static void
check_left(void)
{
	ListCell   *lc;

	foreach(lc, tables_with_log_triggers())
	{
		Oid			relid = lfirst_oid(lc);

		if (!tree_is_registered(relid) && locked_by_me(relid, AccessExclusiveLock))
			refuse_left(relid, tree_holds_rows(relid, NoLock));
	}
}

/*
 * gdpr._check_left(rel regclass): rel left a registered tree in this
 * statement (gdpr._on_tree_left, before its triggers are taken away).
 */
PG_FUNCTION_INFO_V1(gdpr_check_left);
Datum
gdpr_check_left(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	if (!tree_is_registered(relid))
		refuse_left(relid, tree_scan_rows(relid, NoLock));
	PG_RETURN_VOID();
}

static bool
takes_out(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableType t = lfirst_node(AlterTableCmd, lc)->subtype;

		if (t == AT_DetachPartition || t == AT_DetachPartitionFinalize || t == AT_DropInherit)
			return true;
	}
	return false;
}

/* Called by the ProcessUtility hook (read_hook.c) after the statement ran. */
void
crm_gdpr_guard_tree_after(Node *tree)
{
	List	   *dropped = dropped_members;

	dropped_members = NIL;
	check_dropped(dropped);
	if (IsA(tree, CreateStmt))
		check_created((CreateStmt *) tree);
	else if (IsA(tree, AlterTableStmt) && takes_out((AlterTableStmt *) tree))
		check_left();
}

/*
 * gdpr._check_new_member(rel regclass): rel just joined a registered tree
 * (gdpr._on_new_child, before it gets the triggers).  SHARE waits for the
 * writes in progress (INHERIT itself takes only SHARE UPDATE EXCLUSIVE).
 */
PG_FUNCTION_INFO_V1(gdpr_check_new_member);
Datum
gdpr_check_new_member(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			root = crm_gdpr_registered_as(relid);
	ListCell   *lc;

	if (!tree_is_registered(relid) || root == relid)
		PG_RETURN_VOID();		/* not in a tree, or registered in its own right */
	tree_refuse_kind(get_rel_name(relid), get_rel_persistence(relid), get_rel_relkind(relid), root);
	foreach(lc, tree_parents_of(relid))
		if (!tree_is_registered(lfirst_oid(lc)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("table %s cannot be in registered table %s's tree while it is a child of %s, which is not registered",
							get_rel_name(relid), get_rel_name(root), get_rel_name(lfirst_oid(lc))),
					 errdetail("Reads and writes through %s would reach rows of a registered table with no access log.",
							   get_rel_name(lfirst_oid(lc)))));
	if (tree_scan_rows(relid, ShareLock) != ROWS_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s holds rows and cannot join registered table %s", get_rel_name(relid), get_rel_name(root)),
				 errdetail("Its rows would enter a registered table with no write logged."),
				 errhint("Attach it empty and insert its rows through %s (logged).", get_rel_name(root))));
	PG_RETURN_VOID();
}

/*
 * gdpr._check_tree_edges(rel regclass): rel was altered or created (as
 * PostgreSQL resolved its name); no registered table among it and its
 * children may have a parent that is not registered.
 */
PG_FUNCTION_INFO_V1(gdpr_check_tree_edges);
Datum
gdpr_check_tree_edges(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	List	   *children = find_inheritance_children(relid, NoLock);
	ListCell   *lc;

	foreach(lc, tree_parents_of(relid))
		if (tree_is_registered(relid) && !tree_is_registered(lfirst_oid(lc)))
			tree_refuse_unregistered_parent(relid, lfirst_oid(lc));
	if (!tree_is_registered(relid))
		foreach(lc, children)
			if (tree_is_registered(lfirst_oid(lc)))
				tree_refuse_unregistered_parent(lfirst_oid(lc), relid);
	PG_RETURN_VOID();
}

void
crm_gdpr_tree_guard_init(bool preloading)
{
	if (!preloading)
		return;
	RegisterXactCallback(forget_dropped, NULL);
	prev_object_access = object_access_hook;
	object_access_hook = tree_guard_object_access;
}
