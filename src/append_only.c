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
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "crm_gdpr.h"

static bool erasure_open = false;
static bool callback_registered = false;

static void
close_at_end_of_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		erasure_open = false;
}

PG_FUNCTION_INFO_V1(gdpr_allow_ledger_erasure);
Datum
gdpr_allow_ledger_erasure(PG_FUNCTION_ARGS)
{
	if (!callback_registered)
	{
		RegisterXactCallback(close_at_end_of_xact, NULL);
		callback_registered = true;
	}
	erasure_open = true;
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
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) && erasure_open)
		return PointerGetDatum(td->tg_trigtuple);

	op = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" :
		TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) ? "TRUNCATE" : "this operation";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on %s is not allowed: it is append-only", op,
					quote_qualified_identifier(get_namespace_name(RelationGetNamespace(td->tg_relation)),
											   RelationGetRelationName(td->tg_relation))),
			 errdetail("Its rows are evidence; they are never changed, and removed only by the erasure of a subject."),
			 errhint("To erase a person, call gdpr.erase_subject().")));
	return PointerGetDatum(NULL);
}
