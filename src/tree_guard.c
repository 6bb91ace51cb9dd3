/*
 * tree_guard.c — rows enter and leave a registered table's tree of
 * partitions and inheritance children only through logged statements
 * (security review round 22).
 *
 * A partition or child is registered through its ancestor: it carries the
 * extension's triggers and policy while it is in the tree, and loses them
 * when it leaves (the DDL guard of 20_schema_sync.sql watches registered
 * tables only).  So, before PostgreSQL runs the statement (ProcessUtility,
 * where DETACH ... CONCURRENTLY is still one statement):
 *   - a registered table joins no parent that is not registered (ATTACH
 *     PARTITION, INHERIT): reads and writes through that parent reach its
 *     rows with no log, no restriction;
 *   - a table registered through an ancestor leaves the tree (DETACH
 *     PARTITION, NO INHERIT, DROP TABLE) only empty: its rows would leave
 *     the log's reach with no write recorded, or vanish;
 *   - a table joins a registered tree only empty, unless it is registered
 *     itself: its rows would enter a registered table with no write.
 * "Empty" is looked at in the table and its own partitions and children.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "crm_gdpr.h"
#include "pg_compat.h"
#include "read_hook.h"

static bool
is_registered(Oid relid)
{
	const RelInfo *info = OidIsValid(relid) ? crm_gdpr_rel_info(relid) : NULL;

	return info != NULL && info->registered;
}

/* Registered only through an ancestor: it leaves the log's reach with the tree. */
static bool
registered_through_ancestor(Oid relid)
{
	const RelInfo *info = OidIsValid(relid) ? crm_gdpr_rel_info(relid) : NULL;

	return info != NULL && info->registered && info->registered_as != relid;
}

/*
 * Whether the table or any of its partitions and children holds a row (in
 * the latest snapshot).  A foreign table's rows cannot be looked at here:
 * taken as holding some.  Nothing is read out: only whether a row exists,
 * and only for the table's owner (whom the statement needs anyway: another
 * role learns nothing here, and PostgreSQL refuses him).
 */
static bool
holds_rows(Oid relid)
{
	List	   *rels;
	Snapshot	snapshot;
	ListCell   *lc;
	bool		found = false;

	if (!relation_ownercheck(relid, GetUserId()))
		return false;
	rels = find_all_inheritors(relid, AccessShareLock, NULL);
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	foreach(lc, rels)
	{
		Relation	rel = table_open(lfirst_oid(lc), NoLock);
		char		kind = rel->rd_rel->relkind;

		if (kind == RELKIND_FOREIGN_TABLE)
			found = true;
		else if (kind == RELKIND_RELATION || kind == RELKIND_MATVIEW)
		{
			TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
			TupleTableSlot *slot = table_slot_create(rel, NULL);

			found = table_scan_getnextslot(scan, ForwardScanDirection, slot);
			ExecDropSingleTupleTableSlot(slot);
			table_endscan(scan);
		}
		table_close(rel, NoLock);
		if (found)
			break;
	}
	UnregisterSnapshot(snapshot);
	return found;
}

/* parent gains child (ATTACH PARTITION, INHERIT). */
static void
check_join(Oid parent, Oid child)
{
	if (!OidIsValid(parent) || !OidIsValid(child))
		return;					/* PostgreSQL reports it */
	if (is_registered(child) && !is_registered(parent))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("registered table %s cannot become a partition or child of %s, which is not registered",
						get_rel_name(child), get_rel_name(parent)),
				 errdetail("Reads and writes through %s would reach its rows with no access log and no restriction of processing.",
						   get_rel_name(parent)),
				 errhint("Register %s with gdpr.register_table() first.", get_rel_name(parent))));
	if (is_registered(parent) && !is_registered(child) && holds_rows(child))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s holds rows and cannot become a partition or child of registered table %s",
						get_rel_name(child), get_rel_name(parent)),
				 errdetail("Its rows would enter a registered table with no write logged."),
				 errhint("Attach it empty and insert its rows through %s (logged).", get_rel_name(parent))));
}

/* child leaves parent's tree (DETACH PARTITION, NO INHERIT, DROP TABLE); parent InvalidOid for a drop. */
static void
check_leave(Oid parent, Oid child, const char *how)
{
	if (!OidIsValid(child) || !registered_through_ancestor(child))
		return;
	if (OidIsValid(parent) && !is_registered(parent))
		return;					/* not the parent it is registered through */
	if (holds_rows(child))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s of registered table %s cannot be %s while it holds rows",
						get_rel_name(child), get_rel_name(crm_gdpr_rel_info(child)->registered_as), how),
				 errdetail("Its rows would leave the access log's reach, or vanish, with no write logged."),
				 errhint("Delete its rows first (the DELETE is logged), or unregister the table with gdpr.unregister_table().")));
}

static Oid
relid_of(RangeVar *rv)
{
	return rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;
}

static void
check_alter_table(AlterTableStmt *stmt)
{
	Oid			relid;
	ListCell   *lc;

	if (stmt->objtype != OBJECT_TABLE)
		return;
	relid = relid_of(stmt->relation);
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_AttachPartition:
				check_join(relid, relid_of(((PartitionCmd *) cmd->def)->name));
				break;
			case AT_AddInherit:
				check_join(relid_of((RangeVar *) cmd->def), relid);
				break;
			case AT_DetachPartition:
			case AT_DetachPartitionFinalize:
				check_leave(relid, relid_of(((PartitionCmd *) cmd->def)->name), "detached");
				break;
			case AT_DropInherit:
				check_leave(relid_of((RangeVar *) cmd->def), relid, "taken out of its tree");
				break;
			default:
				break;
		}
	}
}

static void
check_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_TABLE)
		return;
	foreach(lc, stmt->objects)
		check_leave(InvalidOid, relid_of(makeRangeVarFromNameList((List *) lfirst(lc))), "dropped");
}

/* Called by the ProcessUtility hook (read_hook.c) before any utility statement runs. */
void
crm_gdpr_guard_tree(Node *tree)
{
	if (IsA(tree, AlterTableStmt))
		check_alter_table((AlterTableStmt *) tree);
	else if (IsA(tree, DropStmt))
		check_drop((DropStmt *) tree);
}
