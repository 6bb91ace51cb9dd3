/*
 * suppression_gate.c — the suppression check where data enters.
 *
 * Every INSERT and UPDATE of a registered subject table passes the
 * suppression check (77_suppression.sql).  Most of the time nobody is on the
 * list yet, or the row brings nothing new.  The check is made by the access
 * log's INSERT and UPDATE statement triggers (log_write.c), which see those
 * rows anyway: a row trigger of its own cost each UPDATE a second fetch of
 * the old row and each statement a trigger more (make bench-log).  They ask
 * here, from a per-backend cache, whether the list is empty (a trigger on
 * gdpr.suppressions invalidates it in every backend, as restriction.c does
 * for restrictions), and only when it is not are the statement's new rows
 * checked, one query for the statement.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
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

/* Whether the suppression list is empty; asked as gate_fn's owner (the extension's). */
bool
crm_gdpr_suppression_list_empty(Oid gate_fn)
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
 * Check the new rows of one INSERT or UPDATE of a registered subject table
 * against the suppression list (gdpr._check_suppression(), 77_suppression.sql,
 * once per row, with the old row of an UPDATE matched by the subject key).
 * Called by the access log's statement trigger (log_write.c) once the list is
 * known not to be empty; new_rows and old_rows name its transition tables
 * (old_rows NULL for an INSERT), key_column the table's subject key.  Runs as
 * the extension's owner: the writer has no privilege in schema gdpr; the
 * rows become jsonb by gdpr._row_jsonb(), not to_jsonb(), which would call a
 * cast to json the table's owner made for his own type (cast_free.c).  The
 * whole rows are n.* and o.*: a bare n or o would be a column so named.
 */
void
crm_gdpr_check_suppression(TriggerData *td, Oid fn_oid, const char *key_column)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1] = {ObjectIdGetDatum(RelationGetRelid(td->tg_relation))};
	const char *key = quote_identifier(key_column);
	OwnerContext ctx;
	char	   *sql;

	if (td->tg_oldtable != NULL)
		sql = psprintf("SELECT gdpr._check_suppression($1, gdpr._row_jsonb(n.*), gdpr._row_jsonb(o.*)) "
					   "FROM gdpr_new n LEFT JOIN gdpr_old o ON o.%s = n.%s "
					   "WHERE EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = $1)", key, key);
	else
		sql = "SELECT gdpr._check_suppression($1, gdpr._row_jsonb(n.*), NULL) FROM gdpr_new n "
			"WHERE EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = $1)";
	crm_gdpr_enter_owner_context(fn_oid, &ctx);
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	crm_gdpr_spi_check(SPI_register_trigger_data(td), SPI_OK_TD_REGISTER, "registering the transition tables");
	crm_gdpr_spi_check(SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 0),
					   SPI_OK_SELECT, "checking the new rows against the suppression list");
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	crm_gdpr_leave_owner_context(&ctx);
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
