/*
 * log_months.c — the access log's slow work on whole months, done by a
 * worker of its own (the log maintenance worker), never by the log writer.
 *
 * Once a month is over, its GIN index on the subjects' keys (what
 * gdpr.access_history() searches) is built in one pass (kept up to date row
 * by row it cost the log writer more than everything else); once it is past
 * crm_gdpr.access_log_keep, it is counted and dropped.  Done by the log
 * writer's hourly maintenance, both stopped it for their whole length: an
 * index build takes minutes on a busy CRM's month, an hour or more on a
 * large one; counting a month reads gigabytes, and its DROP waits for anyone
 * reading the log.  The queue of reads filled meanwhile and every read
 * after that was dropped (refused under crm_gdpr.log_queue_full = error).
 * So the log writer only asks, at each maintenance, whether a month waits
 * (gdpr._log_months_to_drop(), gdpr._log_months_to_index(): catalog
 * queries), and if one does starts this worker for its database, one at a
 * time: it drops (gdpr._log_drop_months()) and indexes
 * (gdpr._log_index_months()), each in a transaction of its own, and exits.
 * When no background worker is left (max_worker_processes), the log writer
 * says so in the server log and asks again at its next maintenance;
 * access_history still finds every row of a month without its index, by
 * reading the month.
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

#define WORKER "crm_gdpr log maintenance"

static BackgroundWorkerHandle *worker_handle = NULL;
static bool no_worker_logged = false;

/* Whether this log writer's maintenance worker was started and has not exited yet. */
static bool
worker_running(void)
{
	pid_t		pid;

	if (worker_handle == NULL)
		return false;
	switch (GetBackgroundWorkerPid(worker_handle, &pid))
	{
		case BGWH_STARTED:
		case BGWH_NOT_YET_STARTED:
			return true;
		default:
			pfree(worker_handle);
			worker_handle = NULL;
			return false;
	}
}

/*
 * Called by the log writer after its maintenance, in a transaction-free
 * moment: start the worker if a month waits and none runs.
 */
void
crm_gdpr_log_start_months_worker(bool months_waiting)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	if (!months_waiting || worker_running())
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_gdpr");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "crm_gdpr_log_months_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %s", WORKER, crm_gdpr_worker_database());
	snprintf(worker.bgw_type, BGW_MAXLEN, WORKER);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = 0;
	old = MemoryContextSwitchTo(TopMemoryContext);	/* the handle outlives the step */
	started = RegisterDynamicBackgroundWorker(&worker, &worker_handle);
	MemoryContextSwitchTo(old);
	if (started)
	{
		no_worker_logged = false;
		return;
	}
	worker_handle = NULL;
	if (!no_worker_logged)
		ereport(LOG,
				(errmsg("crm_gdpr log writer: no background worker left for the access log's months in database \"%s\"",
						crm_gdpr_worker_database()),
				 errdetail("Months over wait for their subject index (gdpr.access_history() reads them whole meanwhile), months past crm_gdpr.access_log_keep for their removal; the log writer tries again at its next maintenance (hourly)."),
				 errhint("Raise max_worker_processes: the log maintenance worker takes one worker for a while, about once a month.")));
	no_worker_logged = true;
}

/* The worker: drop the months past retention, index those over, exit. */
void
crm_gdpr_log_months_main(Datum arg)
{
	int64		dropped = 0;
	int64		indexed = 0;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	crm_gdpr_worker_pin_settings();
	crm_gdpr_in_own_worker = true;
	pgstat_report_appname(WORKER);
	crm_gdpr_begin_step("crm_gdpr: dropping the access log's months past retention");
	if (OidIsValid(get_extension_oid("crm_gdpr", true)))
		dropped = crm_gdpr_run_int8("SELECT gdpr._log_drop_months()", 0, NULL, NULL);
	crm_gdpr_end_step();
	crm_gdpr_begin_step("crm_gdpr: indexing the access log's months that are over");
	if (OidIsValid(get_extension_oid("crm_gdpr", true)))
		indexed = crm_gdpr_run_int8("SELECT gdpr._log_index_months()", 0, NULL, NULL);
	crm_gdpr_end_step();
	if (dropped > 0 || indexed > 0)
		ereport(LOG,
				(errmsg("crm_gdpr log maintenance: " INT64_FORMAT " month(s) of the access log indexed, " INT64_FORMAT " row(s) of months past retention dropped",
						indexed, dropped)));
	proc_exit(0);
}
