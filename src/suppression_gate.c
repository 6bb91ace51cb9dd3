/*
 * suppression_gate.c — the suppression trigger's fast path.
 *
 * Every INSERT and UPDATE of a registered subject table passes the
 * suppression check (77_suppression.sql).  Most of the time nobody is on the
 * list yet, or the row brings nothing new; a PL/pgSQL SECURITY DEFINER call
 * per row cost a fifth of the CRM's write throughput (make bench-log).  So
 * the row trigger is this C function: it answers from a per-backend cache
 * whether the list is empty (a trigger on gdpr.suppressions invalidates it
 * in every backend, as restriction.c does for restrictions), and only when
 * it is not does it hand the row to gdpr._enforce_suppression(), with the
 * same trigger context and arguments.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "crm_gdpr.h"

static bool list_known = false;
static bool list_empty = false;
static uint64 list_generation = 0;
static Oid	list_relid = InvalidOid;
static bool callback_registered = false;

static void
forget_list(Datum arg, Oid relid)
{
	if (OidIsValid(relid) && OidIsValid(list_relid) && relid != list_relid)
		return;
	list_known = false;
	list_relid = InvalidOid;
	list_generation++;
}

/* Whether the suppression list is empty; asked as the extension's owner. */
static bool
suppression_list_empty(Oid gate_fn)
{
	uint64		generation = list_generation;
	OwnerContext ctx;
	bool		empty;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_list, (Datum) 0);
		callback_registered = true;
	}
	if (list_known)
		return list_empty;
	crm_gdpr_enter_owner_context(gate_fn, &ctx);
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	crm_gdpr_spi_check(SPI_execute("SELECT NOT EXISTS (SELECT FROM gdpr.suppressions)", true, 1),
					   SPI_OK_SELECT, "looking at the suppression list");
	empty = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	crm_gdpr_leave_owner_context(&ctx);
	/* An invalidation that came in meanwhile may concern what was just read. */
	if (generation == list_generation)
	{
		list_empty = empty;
		list_relid = get_relname_relid("suppressions", get_namespace_oid("gdpr", false));
		list_known = true;
	}
	return empty;
}

/*
 * gdpr._enforce_suppression(), looked up as the extension's owner (the
 * writer has no USAGE on schema gdpr; calling it needs none, like a trigger).
 */
static Oid
enforcement_function(Oid gate_fn)
{
	OwnerContext ctx;
	Oid			fn;

	crm_gdpr_enter_owner_context(gate_fn, &ctx);
	fn = LookupFuncName(list_make2(makeString("gdpr"), makeString("_enforce_suppression")), 0, NULL, false);
	crm_gdpr_leave_owner_context(&ctx);
	return fn;
}

/* gdpr._suppression_gate(): BEFORE INSERT OR UPDATE ... FOR EACH ROW on subject tables. */
PG_FUNCTION_INFO_V1(gdpr_suppression_gate);
Datum
gdpr_suppression_gate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Oid			check;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(call, 0);

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._suppression_gate() must be a BEFORE row trigger")));
	if (suppression_list_empty(fcinfo->flinfo->fn_oid))
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
	check = enforcement_function(fcinfo->flinfo->fn_oid);
	fmgr_info(check, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 0, InvalidOid, fcinfo->context, NULL);
	return FunctionCallInvoke(call);
}

/* gdpr._suppressions_changed(): statement trigger on gdpr.suppressions. */
PG_FUNCTION_INFO_V1(gdpr_suppressions_changed);
Datum
gdpr_suppressions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "gdpr._suppressions_changed() must be a trigger");
	CacheInvalidateRelcache(td->tg_relation);
	return PointerGetDatum(NULL);
}
