/*
 * restriction_dormant.c — the gdpr_restriction policy is armed only while a
 * restriction may be in force (GDPR Art. 18, issue 23.4).
 *
 * The RESTRICTIVE policy gdpr_restriction on every registered table
 * (25_triggers.sql) costs its expression's call per row read, even when
 * nobody is restricted.  So it has two states:
 *
 * - dormant: USING (true), which the planner folds away (no cost per row),
 *   while no row of gdpr.restrictions is active (lifted_at IS NULL;
 *   restrictions have no end date: they end only by being lifted);
 * - armed: USING (gdpr.restriction_visible(tableoid, ctid[, key])) on
 *   every registered table, its partitions and children, as soon as one is.
 *
 * A statement trigger on gdpr.restrictions (every path that changes it:
 * restrict_subject, lift_restriction, the erasure, gdpr_admin writing the
 * table) makes the policies follow the state, with ALTER POLICY as the
 * extension's own DDL (own_ddl.c), as the extension's owner.
 *
 * The rule that keeps it safe: armed whenever some restriction may be in
 * force.  Arming early or disarming late is harmless; disarming early would
 * show a restricted subject's rows.  Hence:
 *
 * - Flips are serialized by a transaction-level advisory lock with a fixed
 *   key (FLIP_LOCK_*), taken before the state is read and held to the end of
 *   the transaction, by the trigger and by whoever creates a policy
 *   (gdpr._restriction_policy_armed(), for a table registered or a partition
 *   attached).  A disarm cannot then slip between another transaction's
 *   restriction and its arming.
 * - The state and the policies to change are read with a snapshot taken
 *   after the lock (GetLatestSnapshot), not the caller's: a REPEATABLE READ
 *   or SERIALIZABLE transaction whose snapshot predates a restriction
 *   committed meanwhile still sees it, and stays armed.
 * - ALTER POLICY takes an ACCESS EXCLUSIVE lock on each table: it waits at
 *   most FLIP_LOCK_TIMEOUT (and so does the advisory lock), whatever the
 *   session's lock_timeout.  Arming that times out fails the statement
 *   (55P03, naming the table): no restriction is recorded while a policy is
 *   dormant.  Disarming that times out (or loses a deadlock to a reader)
 *   leaves every policy armed (a NOTICE says so); the next change of
 *   gdpr.restrictions disarms them, or the purge worker's next round.
 *
 * The purge worker brings the policies to the state of gdpr.restrictions
 * every round (gdpr._restriction_policy_reconcile()): a disarm given up
 * would otherwise cost every read of every registered table until the next
 * restriction, and a restriction written without triggers firing
 * (session_replication_role = replica, a logical subscription's apply)
 * would leave the policies dormant, and every backend's cache of the
 * restrictions as it was (the round invalidates them).  There a busy table
 * gives up either way, with a WARNING: the next round tries again.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "crm_gdpr.h"

/* The advisory lock (two int4 keys) that serializes the flips: "crmg", 23. */
#define FLIP_LOCK_KEY1 0x63726d67
#define FLIP_LOCK_KEY2 23
#define FLIP_LOCK_TIMEOUT "5s"

/* Wait for the other flips, at most FLIP_LOCK_TIMEOUT (set by the caller). */
static void
lock_flips(void)
{
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(FLIP_LOCK_KEY1), Int32GetDatum(FLIP_LOCK_KEY2));
}

/* The first column of the first row of sql as a boolean; with a snapshot taken now when latest. */
static bool
query_bool(const char *sql, bool latest)
{
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);
	bool		isnull;
	bool		result;

	if (plan == NULL)
		elog(ERROR, "crm_gdpr: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	/* Not read-only: the command counter advances, so this statement's own changes are seen. */
	crm_gdpr_spi_check(SPI_execute_snapshot(plan, NULL, NULL, latest ? GetLatestSnapshot() : InvalidSnapshot,
											InvalidSnapshot, false, false, 1),
					   SPI_OK_SELECT, "reading the state of the restrictions");
	result = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freeplan(plan);
	return !isnull && result;
}

/*
 * Under the lock, with a fresh snapshot: whether some restriction is active,
 * and the registered relations whose policy does not say so yet, with the
 * expression they need.  Copied into cxt.
 */
static bool
read_state(MemoryContext cxt, int *n, char ***tables, char ***quals)
{
	const char *sql = "SELECT s.armed, d.tbl::text, d.qual FROM (SELECT gdpr._restrictions_active() AS armed) s "
		"LEFT JOIN LATERAL gdpr._restriction_policy_drift(s.armed) d ON true";
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);
	bool		armed = true;
	bool		isnull;

	if (plan == NULL)
		elog(ERROR, "crm_gdpr: could not prepare the state of the restriction policies: %s",
			 SPI_result_code_string(SPI_result));
	crm_gdpr_spi_check(SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot, false, false, 0),
					   SPI_OK_SELECT, "reading the state of the restriction policies");
	*n = 0;
	*tables = MemoryContextAllocZero(cxt, sizeof(char *) * SPI_processed);
	*quals = MemoryContextAllocZero(cxt, sizeof(char *) * SPI_processed);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *tbl = SPI_getvalue(tuple, desc, 2);

		armed = DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull));
		if (tbl == NULL)
			continue;
		(*tables)[*n] = MemoryContextStrdup(cxt, tbl);
		(*quals)[(*n)++] = MemoryContextStrdup(cxt, SPI_getvalue(tuple, desc, 3));
	}
	SPI_freeplan(plan);
	return armed;
}

/* The error of an arming that could not take a lock in time. */
static void
refuse_busy(const char *table)
{
	if (table == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not arm the restriction policies: another change of gdpr.restrictions is under way"),
				 errdetail("The change waited " FLIP_LOCK_TIMEOUT " for that transaction to end; nothing was recorded."),
				 errhint("Retry when the other transaction has ended.")));
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("could not arm the restriction policy of %s: the table is in use", table),
			 errdetail("A restriction arms the gdpr_restriction policy of every registered table; ALTER POLICY waited "
					   FLIP_LOCK_TIMEOUT " for its ACCESS EXCLUSIVE lock on %s; nothing was recorded.", table),
			 errhint("Retry when the long transactions using %s have ended.", table)));
}

/*
 * Make every policy follow the state, in a subtransaction so that a disarm
 * that cannot take its locks is given up without failing the statement.
 * Runs as the extension's owner, with the lock timeout.
 */
/* follow_state() for the purge worker: a busy table gives up an arm too. */
static bool reconciling = false;
/* The policies the last follow_state() changed. */
static int	policies_changed = 0;

static void
follow_state(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	/* The door as it was (a subtransaction's abort closes it). */
	bool		own_ddl = crm_gdpr_set_own_ddl(false);
	volatile bool armed;
	const char *volatile table = NULL;
	char	  **tables;
	char	  **quals;
	int			n;

	crm_gdpr_set_own_ddl(own_ddl);
	/* Until the state is read under the lock: what this transaction sees (an arm fails on a timeout). */
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	armed = query_bool("SELECT gdpr._restrictions_active()", false);
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
		lock_flips();
		armed = read_state(cxt, &n, &tables, &quals);
		crm_gdpr_set_own_ddl(true);
		for (int i = 0; i < n; i++)
		{
			table = tables[i];
			crm_gdpr_spi_check(SPI_execute(psprintf("ALTER POLICY gdpr_restriction ON %s USING (%s)", tables[i], quals[i]),
										   false, 0),
							   SPI_OK_UTILITY, "changing the restriction policy");
		}
		crm_gdpr_set_own_ddl(own_ddl);
		crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
		policies_changed = n;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		crm_gdpr_set_own_ddl(own_ddl);
		policies_changed = 0;
		if (reconciling && (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
							edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED))
		{
			ereport(WARNING,
					(errmsg("crm_gdpr: the restriction policies could not be %s: %s is in use",
							armed ? "armed" : "disarmed",
							table ? table : "the lock serializing changes of gdpr.restrictions"),
					 errdetail("The purge worker tries again at its next round.")));
			return;
		}
		/* A disarm that waited too long, or was chosen as a deadlock's victim, is given up. */
		if (armed && edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			refuse_busy(table);
		if (armed || (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE && edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED))
			ReThrowError(edata);
		ereport(NOTICE,
				(errmsg("the restriction policies stay armed: %s is in use",
						table ? table : "the lock serializing changes of gdpr.restrictions"),
				 errdetail("Nobody is restricted any more; the next change of gdpr.restrictions disarms them.")));
	}
	PG_END_TRY();
}

/* Run f as the owner of fn_oid (the extension's), with the flips' lock timeout. */
static void
as_owner_with_timeout(Oid fn_oid, void (*f) (void))
{
	OwnerContext ctx;

	crm_gdpr_enter_owner_context(fn_oid, &ctx);
	(void) set_config_option("lock_timeout", FLIP_LOCK_TIMEOUT, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	f();
	crm_gdpr_leave_owner_context(&ctx);
}

/*
 * gdpr._restriction_policy_follow(): AFTER INSERT OR UPDATE OR DELETE OR
 * TRUNCATE ... FOR EACH STATEMENT on gdpr.restrictions.
 */
PG_FUNCTION_INFO_V1(gdpr_restriction_policy_follow);
Datum
gdpr_restriction_policy_follow(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(((TriggerData *) fcinfo->context)->tg_event))
		elog(ERROR, "gdpr._restriction_policy_follow() must be a statement trigger");
	as_owner_with_timeout(fcinfo->flinfo->fn_oid, follow_state);
	return PointerGetDatum(NULL);
}

static bool armed_result;

static void
read_armed(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	PG_TRY();
	{
		lock_flips();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		if (geterrcode() == ERRCODE_LOCK_NOT_AVAILABLE)
		{
			FlushErrorState();
			refuse_busy(NULL);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	armed_result = query_bool("SELECT gdpr._restrictions_active()", true);
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
}

/*
 * gdpr._restriction_policy_armed(): the state a policy created now must
 * have, read under the flips' lock (held to the end of the transaction, so
 * that no flip can miss the new policy).
 */
PG_FUNCTION_INFO_V1(gdpr_restriction_policy_armed);
Datum
gdpr_restriction_policy_armed(PG_FUNCTION_ARGS)
{
	as_owner_with_timeout(fcinfo->flinfo->fn_oid, read_armed);
	PG_RETURN_BOOL(armed_result);
}

/*
 * Every backend's caches of restrictions (restriction.c, restriction_reads.c)
 * read gdpr.restrictions again: they are invalidated by its triggers, which a
 * write without triggers did not fire.
 */
static void
forget_restrictions_everywhere(void)
{
	Oid			restrictions = get_relname_relid("restrictions", get_namespace_oid("gdpr", false));

	if (OidIsValid(restrictions))
		CacheInvalidateRelcacheByRelid(restrictions);
}

/*
 * gdpr._restriction_policy_reconcile(): the policies brought to the state
 * of gdpr.restrictions (the purge worker's round); how many were changed.
 */
PG_FUNCTION_INFO_V1(gdpr_restriction_policy_reconcile);
Datum
gdpr_restriction_policy_reconcile(PG_FUNCTION_ARGS)
{
	reconciling = true;
	policies_changed = 0;
	PG_TRY();
	{
		as_owner_with_timeout(fcinfo->flinfo->fn_oid, follow_state);
	}
	PG_FINALLY();
	{
		reconciling = false;
	}
	PG_END_TRY();
	forget_restrictions_everywhere();
	PG_RETURN_INT32(policies_changed);
}
