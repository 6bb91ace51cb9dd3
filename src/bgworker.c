/*
 * bgworker.c — what the purge worker and the log writer share.
 *
 * Both are registered the same way, connect to crm_gdpr.database, and do
 * their work in steps: one transaction each, with SPI connected and a
 * snapshot pushed, and their activity shown in pg_stat_activity.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"

/*
 * A worker's start: PostgreSQL's signal handlers (SIGTERM is die(), SIGHUP
 * sets ConfigReloadPending), connected to crm_gdpr.database, named in
 * pg_stat_activity, its own reads not logged.
 */
void
crm_gdpr_worker_connect(const char *name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(crm_gdpr_database, NULL, 0);
	crm_gdpr_in_own_worker = true;
	pgstat_report_appname(name);
}

/*
 * Register one of the extension's workers: connected to crm_gdpr.database,
 * started once recovery is over (never on a standby), restarted 10 s after
 * a failure.
 */
void
crm_gdpr_register_worker(const char *name, const char *function)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_gdpr");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&worker);
}

/* Run one SQL statement returning a single int8 (or NULL -> -2). */
int64
crm_gdpr_run_int8(const char *sql, int nargs, Oid *types, Datum *values)
{
	bool		isnull;
	int64		result;

	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "crm_gdpr worker: unexpected result from \"%s\"", sql);
	result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return isnull ? -2 : result;
}

void
crm_gdpr_begin_step(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
crm_gdpr_end_step(void)
{
	crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Whether the extension is installed here; logged once when it is not. */
bool
crm_gdpr_extension_ready(bool *warned, const char *who)
{
	bool		ready;

	crm_gdpr_begin_step("crm_gdpr: checking the extension");
	/* A catalog lookup, not a query: the log writer asks many times a second. */
	ready = OidIsValid(get_extension_oid("crm_gdpr", true));
	crm_gdpr_end_step();
	if (!ready && !*warned)
		ereport(LOG,
				(errmsg("%s: extension crm_gdpr is not installed in database \"%s\"; waiting",
						who, crm_gdpr_database)));
	*warned = !ready;
	return ready;
}
