/*
 * append_only.c — ledgers that nobody rewrites.
 *
 * gdpr._append_only() is a BEFORE UPDATE OR DELETE row trigger and a BEFORE
 * TRUNCATE statement trigger for the extension's ledgers (consent events,
 * later the access log).  It refuses for everyone, the table's owner
 * included.  The one way rows go is the erasure of a subject: the erasure
 * function calls gdpr._allow_ledger_erasure(), which opens the door for
 * DELETE (never UPDATE or TRUNCATE) until the end of the current transaction.
 * That function is executable by superusers only (and through the extension's
 * SECURITY DEFINER erasure); a superuser can disable triggers anyway.
 *
 * The access log and its seals are stricter (trigger argument 'access log'):
 * erasure never opens them (subjects appear there only as keyed pseudonyms);
 * only the log's own retention, gdpr._log_maintain(), may delete from the
 * default partition and drop old partitions, after calling
 * gdpr._allow_log_maintenance(true), and closing after itself.  gdpr._protect_access_log(), an event
 * trigger, refuses ALTER TABLE and DROP TABLE on them except in that
 * maintenance, in the extension's own scripts, and the forms pg_restore needs
 * (attaching a partition, setting its owner and defaults).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "nodes/parsenodes.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "access_log.h"
#include "crm_gdpr.h"

static bool erasure_open = false;
static bool maintenance_open = false;
static bool callback_registered = false;

static void
close_at_end_of_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		erasure_open = maintenance_open = false;
}

/* Open a door until the end of the current transaction. */
static void
open_until_end_of_xact(bool *door)
{
	if (!callback_registered)
	{
		RegisterXactCallback(close_at_end_of_xact, NULL);
		callback_registered = true;
	}
	*door = true;
}

PG_FUNCTION_INFO_V1(gdpr_allow_ledger_erasure);
Datum
gdpr_allow_ledger_erasure(PG_FUNCTION_ARGS)
{
	open_until_end_of_xact(&erasure_open);
	PG_RETURN_VOID();
}

/* Opened by gdpr._log_maintain() for its own statements, closed after them. */
PG_FUNCTION_INFO_V1(gdpr_allow_log_maintenance);
Datum
gdpr_allow_log_maintenance(PG_FUNCTION_ARGS)
{
	if (PG_GETARG_BOOL(0))
		open_until_end_of_xact(&maintenance_open);
	else
		maintenance_open = false;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(gdpr_append_only);
Datum
gdpr_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._append_only() must be a BEFORE trigger")));
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) &&
		(td->tg_trigger->tgnargs > 0 ? maintenance_open : erasure_open))
		return PointerGetDatum(td->tg_trigtuple);

	op = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" :
		TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) ? "TRUNCATE" : "this operation";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on %s is not allowed: it is append-only", op,
					quote_qualified_identifier(get_namespace_name(RelationGetNamespace(td->tg_relation)),
											   RelationGetRelationName(td->tg_relation))),
			 td->tg_trigger->tgnargs > 0 ?
			 errdetail("Its rows are evidence; they are never changed, and removed only by its own retention (crm_gdpr.access_log_keep).") :
			 errdetail("Its rows are evidence; they are never changed, and removed only by the erasure of a subject."),
			 td->tg_trigger->tgnargs > 0 ? 0 : errhint("To erase a person, call gdpr.erase_subject().")));
	return PointerGetDatum(NULL);
}

/* --- the access log's tables: no ALTER, no DROP ------------------------ */

static bool
is_log_relation(RangeVar *rv)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);
	Oid			gdpr = get_namespace_oid("gdpr", true);
	char	   *name;

	if (!OidIsValid(relid) || !OidIsValid(gdpr) || get_rel_namespace(relid) != gdpr)
		return false;
	name = get_rel_name(relid);
	return name != NULL && strncmp(name, "access_log", strlen("access_log")) == 0;
}

/*
 * What pg_restore does to the log's partitions, and nothing else (the
 * storage, compression and statistics target of subject_refs are settings:
 * the data stays).
 */
static bool
restore_step(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype != AT_AttachPartition && cmd->subtype != AT_ChangeOwner &&
			cmd->subtype != AT_ColumnDefault && cmd->subtype != AT_SetCompression &&
			cmd->subtype != AT_SetStorage && cmd->subtype != AT_SetStatistics)
			return false;
	}
	return true;
}

static void
refuse_log_ddl(const char *what, RangeVar *rv)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on %s is not allowed: the access log is append-only", what,
					quote_qualified_identifier(rv->schemaname ? rv->schemaname : "gdpr", rv->relname)),
			 errdetail("The access log, its partitions and its seals change only through the extension (ALTER EXTENSION crm_gdpr UPDATE) and its own retention."),
			 errhint("Old months are dropped by the log's retention: see crm_gdpr.access_log_keep.")));
}

PG_FUNCTION_INFO_V1(gdpr_protect_access_log);
Datum
gdpr_protect_access_log(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *tree;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "gdpr._protect_access_log() must be an event trigger");
	if (creating_extension || maintenance_open)
		PG_RETURN_VOID();
	trigdata = (EventTriggerData *) fcinfo->context;
	tree = trigdata->parsetree;
	if (IsA(tree, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) tree;

		if (is_log_relation(stmt->relation) && !restore_step(stmt))
			refuse_log_ddl("ALTER TABLE", stmt->relation);
	}
	else if (IsA(tree, DropStmt) && ((DropStmt *) tree)->removeType == OBJECT_TABLE)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) tree)->objects)
		{
			RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));

			if (is_log_relation(rv))
				refuse_log_ddl("DROP TABLE", rv);
		}
	}
	else if (IsA(tree, RenameStmt) && ((RenameStmt *) tree)->relation &&
			 is_log_relation(((RenameStmt *) tree)->relation))
		refuse_log_ddl("ALTER TABLE", ((RenameStmt *) tree)->relation);
	PG_RETURN_VOID();
}
