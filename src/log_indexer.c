/*
 * log_indexer.c — the access log's months that are over get their subject
 * indexes from a worker of their own, never from the log writer.
 *
 * A month's GIN index on the subjects' keys (what gdpr.access_history()
 * searches) is built once the month is over: kept up to date row by row it
 * cost the log writer more than everything else.  Built by the log writer's
 * hourly maintenance, it stopped the writer for the whole build (minutes on
 * a month of a busy CRM, an hour or more on a large one): the queue of reads
 * filled and every read after that was dropped, or refused under
 * crm_gdpr.log_queue_full = error.  So the log writer only asks, at each
 * maintenance, whether a month waits for its index
 * (gdpr._log_months_to_index(), a catalog query), and if one does starts
 * this worker for its database, one at a time: it builds the indexes
 * (gdpr._log_index_months()) and exits.  When no background worker is left
 * (max_worker_processes), the log writer says so in the server log and asks
 * again at its next maintenance; access_history still finds every row of a
 * month without its index, by reading the month.
 */
#include "postgres.h"

#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "crm_gdpr.h"
#include "workers.h"

#define INDEXER "crm_gdpr log indexer"

static BackgroundWorkerHandle *indexer = NULL;
static bool no_worker_logged = false;

/* Whether this log writer's indexer was started and has not exited yet. */
static bool
indexer_running(void)
{
	pid_t		pid;

	if (indexer == NULL)
		return false;
	switch (GetBackgroundWorkerPid(indexer, &pid))
	{
		case BGWH_STARTED:
		case BGWH_NOT_YET_STARTED:
			return true;
		default:
			pfree(indexer);
			indexer = NULL;
			return false;
	}
}

/*
 * Called by the log writer after its maintenance, in a transaction-free
 * moment: start the indexer if a month waits for its index and none runs.
 */
void
crm_gdpr_log_start_indexer(bool months_waiting)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	if (!months_waiting || indexer_running())
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_gdpr");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "crm_gdpr_log_indexer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %s", INDEXER, crm_gdpr_worker_database());
	snprintf(worker.bgw_type, BGW_MAXLEN, INDEXER);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = 0;
	old = MemoryContextSwitchTo(TopMemoryContext);	/* the handle outlives the step */
	started = RegisterDynamicBackgroundWorker(&worker, &indexer);
	MemoryContextSwitchTo(old);
	if (started)
	{
		no_worker_logged = false;
		return;
	}
	indexer = NULL;
	if (!no_worker_logged)
		ereport(LOG,
				(errmsg("crm_gdpr log writer: no background worker left to index the access log's months that are over in database \"%s\"",
						crm_gdpr_worker_database()),
				 errdetail("gdpr.access_history() reads those months whole until they are indexed; the log writer tries again at its next maintenance (hourly)."),
				 errhint("Raise max_worker_processes: the indexer takes one worker for a while, once a month.")));
	no_worker_logged = true;
}

/* The indexer: build the indexes of the months waiting for them, then exit. */
void
crm_gdpr_log_indexer_main(Datum arg)
{
	int64		n = 0;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	crm_gdpr_in_own_worker = true;
	pgstat_report_appname(INDEXER);
	crm_gdpr_begin_step("crm_gdpr: indexing the access log's months that are over");
	if (OidIsValid(get_extension_oid("crm_gdpr", true)))
		n = crm_gdpr_run_int8("SELECT gdpr._log_index_months()", 0, NULL, NULL);
	crm_gdpr_end_step();
	if (n > 0)
		ereport(LOG,
				(errmsg("crm_gdpr log indexer: indexed " INT64_FORMAT " month(s) of the access log", n)));
	proc_exit(0);
}
