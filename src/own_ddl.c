/*
 * own_ddl.c — tell the extension's own DDL on CRM tables from anyone else's.
 *
 * The access log's triggers on registered tables must stay in place and
 * enabled: an event trigger (20_schema_sync.sql) refuses any DDL that leaves
 * one missing, renamed or disabled.  The extension itself creates and drops
 * them (registering, unregistering): it opens this door around those
 * statements.  The door is a backend-local flag that only the extension's
 * internal function can open (no role but its owner may execute it), closed
 * again by the caller, and at the end of the (sub)transaction whatever
 * happened, so an error in between cannot leave it open.
 *
 * The guard compares before and after: at the start of the DDL it keeps here
 * which registered tables had all their triggers (a restore, which creates
 * the triggers after the tables and their indexes, is not refused), at the
 * end it refuses if one of those lost one.  Kept in C, so that nothing the
 * DDL runs (an index expression, a default) can change what it compares to.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "crm_gdpr.h"

static bool own_ddl = false;
static char *start_state = NULL;	/* in TopMemoryContext */
static bool callbacks_registered = false;

static void
forget_start_state(void)
{
	if (start_state)
		pfree(start_state);
	start_state = NULL;
}

static void
close_at_xact_end(XactEvent event, void *arg)
{
	own_ddl = false;
	forget_start_state();
}

static void
close_at_subxact_abort(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		own_ddl = false;
		forget_start_state();
	}
}

static void
register_own_ddl_callbacks(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(close_at_xact_end, NULL);
		RegisterSubXactCallback(close_at_subxact_abort, NULL);
		callbacks_registered = true;
	}
}

/* gdpr._own_ddl(open boolean): open or close the door. */
PG_FUNCTION_INFO_V1(gdpr_own_ddl);
Datum
gdpr_own_ddl(PG_FUNCTION_ARGS)
{
	register_own_ddl_callbacks();
	own_ddl = PG_GETARG_BOOL(0);
	PG_RETURN_VOID();
}

/* The same for C code (restriction_dormant.c): the door's previous state, to put back. */
bool
crm_gdpr_set_own_ddl(bool open)
{
	bool		was = own_ddl;

	register_own_ddl_callbacks();
	own_ddl = open;
	return was;
}

/* gdpr._own_ddl_active(): whether the DDL now running is the extension's. */
PG_FUNCTION_INFO_V1(gdpr_own_ddl_active);
Datum
gdpr_own_ddl_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(own_ddl);
}

/* gdpr._ddl_start_state(state text): what the guard saw when the DDL started (NULL forgets it). */
PG_FUNCTION_INFO_V1(gdpr_set_ddl_start_state);
Datum
gdpr_set_ddl_start_state(PG_FUNCTION_ARGS)
{
	register_own_ddl_callbacks();
	forget_start_state();
	if (!PG_ARGISNULL(0))
		start_state = MemoryContextStrdup(TopMemoryContext, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

/* gdpr._ddl_start_state(): that state, or NULL. */
PG_FUNCTION_INFO_V1(gdpr_ddl_start_state);
Datum
gdpr_ddl_start_state(PG_FUNCTION_ARGS)
{
	if (start_state == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(start_state));
}
