/*
 * tree_guard.c — rows enter and leave a registered table's tree of
 * partitions and inheritance children only through logged statements
 * (security review rounds 22 and 23).
 *
 * A partition or child is registered through its ancestor: it carries the
 * extension's triggers and policy while it is in the tree, and loses them
 * when it leaves (the DDL guard of 20_schema_sync.sql watches registered
 * tables only).  So, before PostgreSQL runs the statement (ProcessUtility,
 * where DETACH ... CONCURRENTLY is still one statement):
 *   - a registered table joins no parent that is not registered (ATTACH
 *     PARTITION, INHERIT, CREATE TABLE ... INHERITS with a registered and
 *     an unregistered parent): reads and writes through that parent reach
 *     its rows with no log, no restriction;
 *   - a table registered through an ancestor leaves the tree (DETACH
 *     PARTITION, NO INHERIT) only empty: its rows would leave the log's
 *     reach with no write recorded; DETACH ... CONCURRENTLY, which lets
 *     rows in while it waits, not at all;
 *   - a table joins a registered tree only empty, unless it is registered
 *     itself: its rows would enter a registered table with no write; nor
 *     may it, or a table under it, keep a parent outside the tree; nor be
 *     temporary (its rows vanish with the session) or foreign (its rows
 *     are elsewhere).
 * "Empty" is looked at in the table and its own partitions and children,
 * under the lock the statement takes (or one that waits for the writes in
 * progress): a row not yet committed is waited for, not missed.
 *
 * What only the statement's outcome shows (which table a name stood for
 * when PostgreSQL looked it up under its lock, what a drop took with it) is
 * checked after it: tree_guard_after.c.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "crm_gdpr.h"
#include "pg_compat.h"
#include "read_hook.h"
#include "tree_guard.h"


bool
tree_is_registered(Oid relid)
{
	const RelInfo *info = OidIsValid(relid) ? crm_gdpr_rel_info(relid) : NULL;

	return info != NULL && info->registered;
}

/* Registered only through an ancestor: it leaves the log's reach with the tree. */
bool
tree_registered_through_ancestor(Oid relid)
{
	const RelInfo *info = OidIsValid(relid) ? crm_gdpr_rel_info(relid) : NULL;

	return info != NULL && info->registered && info->registered_as != relid;
}


/*
 * Whether the table or any of its partitions and children holds a row, in
 * the latest snapshot taken under lockmode on each of them (a lock that
 * conflicts with writers waits for the writes in progress: an INSERT not
 * yet committed is then seen).  A foreign table's rows cannot be looked at
 * here: taken as holding some.  Nothing is read out: only whether a row
 * exists, and only for the table's owner (another role learns nothing, and
 * takes no lock).
 */
RowsSeen
tree_holds_rows(Oid relid, LOCKMODE lockmode)
{
	if (!relation_ownercheck(relid, GetUserId()))
		return ROWS_NOT_OWNER;
	return tree_scan_rows(relid, lockmode);
}

/* The same, whoever asks (the extension's own checks, after the statement). */
RowsSeen
tree_scan_rows(Oid relid, LOCKMODE lockmode)
{
	List	   *rels;
	Snapshot	snapshot;
	ListCell   *lc;
	bool		found = false;

	if (lockmode != NoLock)
		LockRelationOid(relid, lockmode);
	rels = find_all_inheritors(relid, lockmode == NoLock ? AccessShareLock : lockmode, NULL);
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
	return found ? ROWS_SOME : ROWS_NONE;
}

/*
 * The lock the statement takes on the parent, taken first as PostgreSQL
 * does (locking the child first would deadlock with a write through the
 * parent arriving meanwhile); only for its owner, whom the statement needs.
 */
static void
lock_parent(Oid parent, LOCKMODE lockmode)
{
	if (lockmode != NoLock && relation_ownercheck(parent, GetUserId()))
		LockRelationOid(parent, lockmode);
}

void
tree_refuse_unregistered_parent(Oid child, Oid parent)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("registered table %s cannot become a partition or child of %s, which is not registered",
					get_rel_name(child), get_rel_name(parent)),
			 errdetail("Reads and writes through %s would reach its rows with no access log and no restriction of processing.",
					   get_rel_name(parent)),
			 errhint("Register %s with gdpr.register_table() first.", get_rel_name(parent))));
}

/* A table that can never hold its rows in a registered tree: temporary or foreign. */
void
tree_refuse_kind(const char *child, char persistence, char kind, Oid parent)
{
	if (persistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("temporary table %s cannot become a partition or child of registered table %s",
						child, get_rel_name(parent)),
				 errdetail("Its rows would vanish with the session, with no write logged.")));
	if (kind == RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("foreign table %s cannot become a partition or child of registered table %s",
						child, get_rel_name(parent)),
				 errdetail("Its rows live in another server: they would enter a registered table, and change, with no write logged.")));
}

/* The tables relid directly inherits from (or is a partition of). */
List *
tree_parents_of(Oid relid)
{
	Relation	inherits = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *parents = NIL;

	ScanKeyInit(&key, Anum_pg_inherits_inhrelid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(inherits, InheritsRelidSeqnoIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		parents = lappend_oid(parents, ((Form_pg_inherits) GETSTRUCT(tup))->inhparent);
	systable_endscan(scan);
	table_close(inherits, AccessShareLock);
	return parents;
}

/*
 * The tables under child (itself included) may not be temporary or foreign,
 * nor have a parent outside the registered tree it joins: reads through
 * that parent would not be logged.
 */
static void
check_members(Oid parent, Oid child)
{
	List	   *members = find_all_inheritors(child, NoLock, NULL);
	ListCell   *lc;

	foreach(lc, members)
	{
		Oid			member = lfirst_oid(lc);
		ListCell   *pc;

		tree_refuse_kind(get_rel_name(member), get_rel_persistence(member), get_rel_relkind(member), parent);
		foreach(pc, tree_parents_of(member))
		{
			Oid			other = lfirst_oid(pc);

			if (other != parent && !list_member_oid(members, other) && !tree_is_registered(other))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("table %s cannot join registered table %s while %s is a child of %s, which is not registered",
								get_rel_name(child), get_rel_name(parent), get_rel_name(member), get_rel_name(other)),
						 errdetail("Reads and writes through %s would reach rows of a registered table with no access log.",
								   get_rel_name(other)),
						 errhint("Take %s out of %s (ALTER TABLE ... NO INHERIT), or register %s.",
								 get_rel_name(member), get_rel_name(other), get_rel_name(other))));
		}
	}
}

/*
 * parent gains child (ATTACH PARTITION, INHERIT); parent_lock, child_lock:
 * the locks taken before child's rows are looked at.
 */
static void
check_join(Oid parent, Oid child, LOCKMODE parent_lock, LOCKMODE child_lock)
{
	if (!OidIsValid(parent) || !OidIsValid(child))
		return;					/* PostgreSQL reports it */
	if (tree_is_registered(child) && !tree_is_registered(parent))
		tree_refuse_unregistered_parent(child, parent);
	if (!tree_is_registered(parent) || tree_is_registered(child))
		return;
	check_members(parent, child);
	lock_parent(parent, parent_lock);
	if (tree_holds_rows(child, child_lock) == ROWS_SOME)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s holds rows and cannot become a partition or child of registered table %s",
						get_rel_name(child), get_rel_name(parent)),
				 errdetail("Its rows would enter a registered table with no write logged."),
				 errhint("Attach it empty and insert its rows through %s (logged).", get_rel_name(parent))));
}

static void
refuse_leave(Oid child, const char *how, RowsSeen seen)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 seen == ROWS_NOT_OWNER ?
			 errmsg("%s of registered table %s can be %s only by its owner, once empty",
					get_rel_name(child), get_rel_name(crm_gdpr_registered_as(child)), how) :
			 errmsg("%s of registered table %s cannot be %s while it holds rows",
					get_rel_name(child), get_rel_name(crm_gdpr_registered_as(child)), how),
			 errdetail("Its rows would leave the access log's reach, or vanish, with no write logged."),
			 errhint("Delete its rows first (the DELETE is logged), or unregister the table with gdpr.unregister_table().")));
}

/*
 * child leaves parent's tree (DETACH PARTITION, NO INHERIT); parent_lock,
 * child_lock: the locks the statement takes, taken before child's rows are
 * looked at.
 */
static void
check_leave(Oid parent, Oid child, const char *how, LOCKMODE parent_lock, LOCKMODE child_lock)
{
	RowsSeen	seen;

	if (!OidIsValid(child) || !tree_registered_through_ancestor(child))
		return;
	if (OidIsValid(parent) && !tree_is_registered(parent))
		return;					/* not the parent it is registered through */
	lock_parent(parent, parent_lock);
	seen = tree_holds_rows(child, child_lock);
	if (seen != ROWS_NONE)
		refuse_leave(child, how, seen);
}

static Oid
relid_of(RangeVar *rv)
{
	return rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;
}

/*
 * DETACH ... CONCURRENTLY commits between its two steps: rows can enter the
 * partition (through its name, logged) after it was seen empty and leave
 * with it.  An empty partition detaches at once without it.
 */
static void
check_detach(Oid parent, PartitionCmd *cmd)
{
	Oid			child = relid_of(cmd->name);

	if (cmd->concurrent && OidIsValid(child) && tree_registered_through_ancestor(child))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("partition %s of registered table %s cannot be detached concurrently",
						get_rel_name(child), get_rel_name(crm_gdpr_registered_as(child))),
				 errdetail("Rows could enter it while the detach waits, and leave the access log's reach with it."),
				 errhint("Delete its rows (logged), then detach it without CONCURRENTLY: an empty partition detaches at once.")));
	check_leave(parent, child, "detached", AccessExclusiveLock, AccessExclusiveLock);
}

static void
check_alter_table(AlterTableStmt *stmt)
{
	Oid			relid;
	ListCell   *lc;

	if (stmt->objtype != OBJECT_TABLE && stmt->objtype != OBJECT_FOREIGN_TABLE)
		return;
	relid = relid_of(stmt->relation);
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_AttachPartition:
				check_join(relid, relid_of(((PartitionCmd *) cmd->def)->name), ShareUpdateExclusiveLock,
						   AccessExclusiveLock);
				break;
			case AT_AddInherit:
				/* INHERIT takes SHARE UPDATE EXCLUSIVE, which lets writers in: SHARE waits for them */
				check_join(relid_of((RangeVar *) cmd->def), relid, NoLock, ShareLock);
				break;
			case AT_DetachPartition:
			case AT_DetachPartitionFinalize:
				check_detach(relid, (PartitionCmd *) cmd->def);
				break;
			case AT_DropInherit:
				check_leave(relid_of((RangeVar *) cmd->def), relid, "taken out of its tree", NoLock,
							AccessExclusiveLock);
				break;
			default:
				break;
		}
	}
}

/*
 * CREATE TABLE ... PARTITION OF / INHERITS: a new table is empty, but it
 * may not be temporary or foreign under a registered parent, nor have a
 * registered and an unregistered parent.
 */
static void
check_create(CreateStmt *stmt, char kind)
{
	Oid			registered = InvalidOid;
	Oid			unregistered = InvalidOid;
	ListCell   *lc;

	foreach(lc, stmt->inhRelations)
	{
		Oid			parent = relid_of(lfirst_node(RangeVar, lc));

		if (!OidIsValid(parent))
			continue;			/* PostgreSQL reports it */
		if (tree_is_registered(parent))
			registered = parent;
		else
			unregistered = parent;
	}
	if (!OidIsValid(registered))
		return;
	tree_refuse_kind(stmt->relation->relname, stmt->relation->relpersistence, kind, registered);
	if (OidIsValid(unregistered))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s cannot inherit from registered table %s and from %s, which is not registered",
						stmt->relation->relname, get_rel_name(registered), get_rel_name(unregistered)),
				 errdetail("Reads and writes through %s would reach rows of a registered table with no access log and no restriction of processing.",
						   get_rel_name(unregistered)),
				 errhint("Register %s with gdpr.register_table() first.", get_rel_name(unregistered))));
}

/* Called by the ProcessUtility hook (read_hook.c) before any utility statement runs. */
void
crm_gdpr_guard_tree(Node *tree)
{
	if (IsA(tree, AlterTableStmt))
		check_alter_table((AlterTableStmt *) tree);
	else if (IsA(tree, CreateForeignTableStmt))
		check_create(&((CreateForeignTableStmt *) tree)->base, RELKIND_FOREIGN_TABLE);
	else if (IsA(tree, CreateStmt))
		check_create((CreateStmt *) tree, RELKIND_RELATION);
	else if (IsA(tree, CreateSchemaStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreateSchemaStmt *) tree)->schemaElts)
			crm_gdpr_guard_tree(lfirst(lc));
	}
}

