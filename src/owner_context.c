/*
 * owner_context.c — run SPI as the extension's owner from a trigger.
 *
 * Triggers on registered tables fire for whoever writes to the CRM, and that
 * role has no privilege in schema gdpr (PUBLIC gets nothing there).  Like a
 * SECURITY DEFINER function, the trigger switches to the owner of its own
 * function, with a safe search_path, for the queries it makes; unlike one, it
 * can first read GetUserId() to learn who is writing.  On error, transaction
 * abort restores the user and the GUC nest level.
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "crm_gdpr.h"

static Oid
function_owner(Oid fn_oid)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tp))->proowner;
	ReleaseSysCache(tp);
	return owner;
}

void
crm_gdpr_enter_owner_context(Oid fn_oid, OwnerContext *ctx)
{
	GetUserIdAndSecContext(&ctx->saved_userid, &ctx->saved_sec_context);
	ctx->guc_nest_level = NewGUCNestLevel();
	SetUserIdAndSecContext(function_owner(fn_oid),
						   ctx->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
crm_gdpr_leave_owner_context(OwnerContext *ctx)
{
	AtEOXact_GUC(true, ctx->guc_nest_level);
	SetUserIdAndSecContext(ctx->saved_userid, ctx->saved_sec_context);
}
