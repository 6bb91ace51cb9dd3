/*
 * restriction.c — enforce restriction of processing (GDPR Art. 18) on writes.
 *
 * The access log's AFTER UPDATE and AFTER DELETE statement triggers on every
 * registered table (log_write.c) hand their old rows here.  While a subject
 * is restricted, his rows may be updated or deleted only by members of
 * gdpr_admin.  The registry lookups are SQL functions of the extension
 * (70_rights.sql); this file decides who is writing and runs them as owner.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "catalog/namespace.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "access_log.h"
#include "crm_gdpr.h"

/*
 * Whether any restriction is in force, cached per backend: most of the time
 * none is, and then a write pays no query at all.  A trigger on
 * gdpr.restrictions sends a relcache invalidation of that table with every
 * change; the callback forgets the cached answer in every backend.
 */
static bool restrictions_known = false;
static bool any_restriction = false;
static uint64 restrictions_generation = 0;
static Oid	restrictions_relid = InvalidOid;	/* gdpr.restrictions, once known */

/* Only a change of gdpr.restrictions (or of every relation) matters here. */
static void
forget_restrictions(Datum arg, Oid relid)
{
	if (OidIsValid(relid) && OidIsValid(restrictions_relid) && relid != restrictions_relid)
		return;
	restrictions_known = false;
	restrictions_relid = InvalidOid;
	restrictions_generation++;
}

void
crm_gdpr_restriction_init(void)
{
	CacheRegisterRelcacheCallback(forget_restrictions, (Datum) 0);
}

static bool
restrictions_in_force(void)
{
	uint64		generation = restrictions_generation;
	bool		any;

	Oid			relid;

	if (restrictions_known)
		return any_restriction;
	relid = get_relname_relid("restrictions", get_namespace_oid("gdpr", false));
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	crm_gdpr_spi_check(SPI_execute("SELECT EXISTS (SELECT FROM gdpr.restrictions WHERE lifted_at IS NULL)", true, 1),
					   SPI_OK_SELECT, "looking up restrictions");
	any = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	/* An invalidation that came in meanwhile may concern what was just read. */
	if (generation == restrictions_generation)
	{
		any_restriction = any;
		restrictions_relid = relid;
		restrictions_known = true;
	}
	return any;
}

/* Changes with every change of gdpr.restrictions: what restriction_reads.c caches is then stale. */
uint64
crm_gdpr_restrictions_generation(void)
{
	return restrictions_generation;
}

/* The same for other files (restriction_reads.c): the cache, or a query as fn_oid's owner. */
bool
crm_gdpr_restrictions_in_force(Oid fn_oid)
{
	OwnerContext ctx;
	bool		any;

	if (restrictions_known)
		return any_restriction;
	crm_gdpr_enter_owner_context(fn_oid, &ctx);
	any = restrictions_in_force();
	crm_gdpr_leave_owner_context(&ctx);
	return any;
}

PG_FUNCTION_INFO_V1(gdpr_restrictions_changed);
Datum
gdpr_restrictions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "gdpr._restrictions_changed() must be a trigger");
	CacheInvalidateRelcache(td->tg_relation);
	return PointerGetDatum(NULL);
}


/* Whether a subject of registered table tbl's subject table is restricted (in SPI). */
static bool
restriction_active(Datum tbl)
{
	Oid			argtypes[1] = {REGCLASSOID};

	crm_gdpr_spi_check(SPI_execute_with_args("SELECT gdpr._restriction_active($1) IS NOT NULL",
											 1, argtypes, &tbl, NULL, true, 1),
					   SPI_OK_SELECT, "looking up restrictions");
	return strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
}

/* The first restricted subject among the rows of transition table old_rows, or NULL. */
static char *
first_restricted_subject(TriggerData *td, const char *old_rows)
{
	Oid			argtypes[1] = {REGCLASSOID};
	/* A partition's or child's rows are restricted as its registered parent's. */
	Datum		args[1] = {ObjectIdGetDatum(crm_gdpr_registered_as(RelationGetRelid(td->tg_relation)))};
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *hit = NULL;

	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	crm_gdpr_spi_check(SPI_register_trigger_data(td), SPI_OK_TD_REGISTER, "registering the transition table");
	if (restriction_active(args[0]))
	{
		char	   *ids_sql;
		Oid			ids_types[2] = {REGCLASSOID, TEXTARRAYOID};
		Datum		ids[2];
		char		nulls[2] = {' ', ' '};
		bool		isnull;

		crm_gdpr_spi_check(SPI_execute_with_args(psprintf("SELECT gdpr._subject_ids_sql($1, %s)",
														  quote_literal_cstr(old_rows)),
												 1, argtypes, args, NULL, true, 1),
						   SPI_OK_SELECT, "building the query of the changed rows' subjects");
		ids_sql = SPI_processed == 1 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
		if (ids_sql == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the subjects of the rows changed in %s cannot be found", get_rel_name(RelationGetRelid(td->tg_relation))),
					 errdetail("The registry names no way from this table to its subject table.")));
		/* The ids as the table's owner (owner_context.c), the look-up as the extension's. */
		crm_gdpr_spi_read_as_table_owner(DatumGetObjectId(args[0]),
										 psprintf("SELECT array_agg(id) FROM (%s) ids(id)", ids_sql),
										 "finding the changed rows' subjects");
		ids[0] = args[0];
		ids[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		nulls[1] = isnull ? 'n' : ' ';
		crm_gdpr_spi_check(SPI_execute_with_args("SELECT gdpr._first_restricted(gdpr._restriction_active($1), $2)",
												 2, ids_types, ids, nulls, true, 1),
						   SPI_OK_SELECT, "looking up the restricted subjects");
		hit = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (hit)
			hit = MemoryContextStrdup(caller_cxt, hit);
	}
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	return hit;
}

/*
 * TRUNCATE has no rows to look at (its AFTER trigger comes when they are
 * gone; its error takes them back): while a subject of the table's subject
 * table is restricted, it is refused outright, and DELETE, which refuses
 * only the restricted subjects' rows, is the way (security review round
 * 25.4).
 */
static void
restricted_truncate(TriggerData *td)
{
	bool		active;

	if (!restrictions_in_force())
		return;
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	active = restriction_active(ObjectIdGetDatum(crm_gdpr_registered_as(RelationGetRelid(td->tg_relation))));
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	if (active)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("TRUNCATE of %s is refused while a subject of its subject table is restricted",
						quote_qualified_identifier(get_namespace_name(RelationGetNamespace(td->tg_relation)),
												   RelationGetRelationName(td->tg_relation))),
				 errdetail("While restricted (Art. 18) a subject's rows may only be stored; TRUNCATE cannot tell his rows from the others."),
				 errhint("DELETE the rows instead (only a restricted subject's are refused), or ask a gdpr_admin.")));
}

/*
 * Refuse an UPDATE or DELETE that changed a restricted subject's rows
 * (old_rows: the name of its transition table of old rows).  Called by the
 * access log's statement trigger (log_write.c), which sees every write of a
 * registered table anyway: a trigger of its own cost the CRM's writes as
 * much again in PostgreSQL's trigger machinery.
 */
void
crm_gdpr_refuse_restricted_write(TriggerData *td, Oid fn_oid, const char *old_rows)
{
	OwnerContext ctx;
	char	   *hit;

	/*
	 * gdpr_admin may change restricted rows; so may the extension's own
	 * statements run as the table's owner (key rotation: the purge and the
	 * erasure leave restricted subjects alone before they get here), but not
	 * what the owner's code they fire writes (security review round 25.3),
	 * nor what a foreign key of the owner's cascades into another table
	 * (round 26.4: a NOT VALID key tied a restricted subject's row to an
	 * erased one's).
	 */
	if ((restrictions_known && !any_restriction) || crm_gdpr_is_admin(GetUserId()) ||
		(crm_gdpr_in_owner_statement() &&
		 crm_gdpr_registered_as(RelationGetRelid(td->tg_relation)) ==
		 crm_gdpr_registered_as(crm_gdpr_owner_statement_table())))
		return;

	crm_gdpr_enter_owner_context(fn_oid, &ctx);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		restricted_truncate(td);
		hit = NULL;
	}
	else
		hit = restrictions_in_force() ? first_restricted_subject(td, old_rows) : NULL;
	crm_gdpr_leave_owner_context(&ctx);

	if (hit)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("processing of subject \"%s\" is restricted", hit),
				 errdetail("%s on %s touches his rows; while restricted (Art. 18) they may only be stored.",
						   TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" : "DELETE",
						   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(td->tg_relation)),
													  RelationGetRelationName(td->tg_relation))),
				 errhint("Ask a gdpr_admin, or lift the restriction with gdpr.lift_restriction().")));
}

/*
 * gdpr._enforce_restriction(): the trigger of 0.1 and 0.2 (gdpr_restrict_update
 * and gdpr_restrict_delete), kept for their scripts; 0.3 does the same in
 * gdpr._log_write().
 */
PG_FUNCTION_INFO_V1(gdpr_enforce_restriction);
Datum
gdpr_enforce_restriction(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) || td->tg_oldtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._enforce_restriction() must be an AFTER statement trigger with an old transition table")));
	crm_gdpr_refuse_restricted_write(td, fcinfo->flinfo->fn_oid, "changed_rows");
	return PointerGetDatum(NULL);
}
