/*
 * purge_worker.c — the background worker that purges what is past its retention.
 *
 * Started by the launcher (launcher.c) in each database where crm_gdpr is
 * installed.  It wakes every crm_gdpr.purge_naptime, and runs the purge
 * of 60_retention.sql one batch per transaction, so that it never holds
 * locks for long.  Lessons of pg_cron and worker_spi: it starts once recovery
 * is finished and still checks RecoveryInProgress() each cycle (a promoted
 * standby starts purging, a standby never does); SIGTERM is PostgreSQL's own
 * die(); every batch runs in a SQL subtransaction so that one broken policy
 * is recorded as failed without putting the worker in a restart loop; runs
 * left 'running' by a crash are marked interrupted when it starts.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"


/*
 * A policy's statement, built once for all its batches (catalog look-ups
 * that would otherwise be made again in every batch's transaction).  False
 * when the policy was removed meanwhile; *statement NULL when it cannot be
 * built: the batch then tries again and records why it fails.
 */
static bool
policy_statement(int policy_id, char **statement)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(policy_id), Int32GetDatum(crm_gdpr_purge_batch_size)};
	bool		found;

	*statement = NULL;
	crm_gdpr_begin_step("crm_gdpr: preparing a purge");
	crm_gdpr_spi_check(SPI_execute_with_args("SELECT gdpr._purge_statement(p, $2) FROM gdpr.retention_policies p WHERE p.id = $1",
											 2, types, values, NULL, true, 1),
					   SPI_OK_SELECT, "preparing a purge");
	found = SPI_processed == 1;
	if (found && SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) != NULL)
		*statement = MemoryContextStrdup(TopMemoryContext,
										 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	crm_gdpr_end_step();
	return found;
}

/* One purge: every policy, children first, one batch per transaction. */
static void
purge_once(void)
{
	Oid			types[5] = {INT8OID, INT4OID, INT4OID, BOOLOID, TEXTOID};
	Datum		values[5];
	int64		run_id;
	List	   *policies = NIL;
	ListCell   *lc;

	crm_gdpr_begin_step("crm_gdpr: starting a purge");
	run_id = crm_gdpr_run_int8("SELECT gdpr._purge_begin('worker', false)", 0, NULL, NULL);
	if (run_id >= 0)
	{
		MemoryContext oldcxt;

		values[0] = Int64GetDatum(run_id);
		/* Not read-only: it must see the rows _purge_begin just inserted. */
		crm_gdpr_spi_check(SPI_execute_with_args("SELECT gdpr._purge_order($1)", 1, types, values, NULL, false, 0),
						   SPI_OK_SELECT, "ordering a purge's policies");
		/* The list outlives this transaction. */
		oldcxt = MemoryContextSwitchTo(TopMemoryContext);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			policies = lappend_int(policies,
								   DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)));
		}
		MemoryContextSwitchTo(oldcxt);
	}
	crm_gdpr_end_step();
	if (run_id < 0)
		return;					/* another purge holds the lock */

	foreach(lc, policies)
	{
		char	   *statement;
		bool		found = policy_statement(lfirst_int(lc), &statement);

		while (found)
		{
			int64		done;

			CHECK_FOR_INTERRUPTS();
			/* A purge can be long: do not outlive the postmaster (it could not restart). */
			if (!PostmasterIsAlive())
				proc_exit(1);
			if (RecoveryInProgress())
				return;
			crm_gdpr_begin_step("crm_gdpr: purging");
			values[0] = Int64GetDatum(run_id);
			values[1] = Int32GetDatum(lfirst_int(lc));
			values[2] = Int32GetDatum(crm_gdpr_purge_batch_size);
			values[3] = BoolGetDatum(false);
			values[4] = statement ? CStringGetTextDatum(statement) : (Datum) 0;
			done = crm_gdpr_run_int8(statement ? "SELECT gdpr._purge_batch($1, $2, $3, $4, $5)" :
									 "SELECT gdpr._purge_batch($1, $2, $3, $4)", statement ? 5 : 4, types, values);
			crm_gdpr_end_step();
			if (done <= 0)
				break;
		}
		if (statement)
			pfree(statement);
	}
	list_free(policies);
	crm_gdpr_begin_step("crm_gdpr: finishing a purge");
	values[0] = Int64GetDatum(run_id);
	crm_gdpr_spi_check(SPI_execute_with_args("SELECT gdpr._purge_finish($1)", 1, types, values, NULL, false, 0),
					   SPI_OK_SELECT, "finishing a purge");
	crm_gdpr_end_step();
}

/*
 * The restriction's read policies in the state of gdpr.restrictions
 * (restriction_dormant.c): each round, after the purge.
 */
static void
reconcile_restriction_policies(void)
{
	int64		changed;

	crm_gdpr_begin_step("crm_gdpr: checking the restriction policies");
	/* Not before ALTER EXTENSION crm_gdpr UPDATE: the SQL of 0.2 has no dormant policies. */
	changed = crm_gdpr_run_int8("SELECT (to_regprocedure('gdpr._restriction_policy_reconcile()') IS NOT NULL)::int::int8",
								0, NULL, NULL);
	if (changed > 0)
		changed = crm_gdpr_run_int8("SELECT gdpr._restriction_policy_reconcile()::bigint", 0, NULL, NULL);
	crm_gdpr_end_step();
	if (changed > 0)
		ereport(LOG,
				(errmsg("crm_gdpr purge worker: %lld restriction policies brought to the state of gdpr.restrictions",
						(long long) changed)));
}

static void
mark_interrupted_runs(void)
{
	crm_gdpr_begin_step("crm_gdpr: marking interrupted purges");
	if (crm_gdpr_run_int8("SELECT gdpr._purge_mark_interrupted()", 0, NULL, NULL) > 0)
		ereport(LOG, (errmsg("crm_gdpr purge worker: purges left running by a crash are marked interrupted")));
	crm_gdpr_end_step();
}

void
crm_gdpr_purge_worker_main(Datum arg)
{
	bool		started = false;

	crm_gdpr_worker_connect("crm_gdpr purge worker", arg, false);
	crm_gdpr_worker_stop_unless_installed("crm_gdpr purge worker");
	ereport(LOG, (errmsg("crm_gdpr purge worker started in database \"%s\"", crm_gdpr_worker_database())));

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		crm_gdpr_worker_stop_unless_installed("crm_gdpr purge worker");
		if (crm_gdpr_enable_worker && !RecoveryInProgress())
		{
			if (!started)
			{
				mark_interrupted_runs();
				started = true;
			}
			purge_once();
			reconcile_restriction_policies();
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 crm_gdpr_purge_naptime * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
