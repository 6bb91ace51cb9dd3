/*
 * bgworker.c — what the launcher, the purge worker and the log writer share.
 *
 * The purge worker and the log writer are started by the launcher for one
 * database each (launcher.c), and do
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
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "commands/dbcommands.h"
#include "utils/snapmgr.h"

#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"

static DbSlot *my_slot = NULL;
static bool my_slot_writer = false;
static char *my_dbname = NULL;

const char *
crm_gdpr_worker_database(void)
{
	return my_dbname ? my_dbname : "?";
}

static void
forget_pid(int code, Datum arg)
{
	if (my_slot && my_slot->dboid == MyDatabaseId)
		crm_gdpr_db_slot_set_pid(my_slot, my_slot_writer, 0);
}

/*
 * What a database's settings (ALTER DATABASE ... SET, which its owner may
 * do without being a superuser) could make of the workers' own transactions:
 * default_transaction_read_only = on made every flush of the log writer
 * fail, and the access log silent, from its next start; a statement_timeout
 * or a lock_timeout would cut purges and flushes short.  The workers run
 * with the server's defaults for these whatever the database says.
 */
static const char *const pinned_settings[][2] = {
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_deferrable", "off"},
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	{"row_security", "on"},
	{"search_path", "pg_catalog, pg_temp"},
	{"default_tablespace", ""},
	{"temp_tablespaces", ""},
	{"default_table_access_method", "heap"},
};

void
crm_gdpr_worker_pin_settings(void)
{
	for (int i = 0; i < lengthof(pinned_settings); i++)
		SetConfigOption(pinned_settings[i][0], pinned_settings[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * A worker's start: PostgreSQL's signal handlers (SIGTERM is die(), SIGHUP
 * sets ConfigReloadPending), connected to the database the launcher gave it
 * (arg) with the settings it needs whatever the database's are, its pid in
 * that database's slot, named in pg_stat_activity, its own reads not logged.
 */
void
crm_gdpr_worker_connect(const char *name, Datum arg, bool writer)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	crm_gdpr_worker_pin_settings();
	crm_gdpr_in_own_worker = true;
	pgstat_report_appname(name);
	my_slot = crm_gdpr_db_slot(MyDatabaseId, false);
	my_slot_writer = writer;
	if (my_slot)
	{
		crm_gdpr_db_slot_set_pid(my_slot, writer, MyProcPid);
		on_shmem_exit(forget_pid, (Datum) 0);
	}
}

/*
 * The launcher (launcher.c), the one worker the postmaster starts: once
 * recovery is over (never on a standby), again 10 s after a failure.  It
 * starts the others.
 */
void
crm_gdpr_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_gdpr");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "crm_gdpr_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "crm_gdpr launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "crm_gdpr launcher");
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

/*
 * Whether the extension is installed here, told to the launcher through
 * this database's slot.  A catalog lookup, not a query: the log writer asks
 * many times a second.
 */
bool
crm_gdpr_extension_ready(void)
{
	bool		ready;

	crm_gdpr_begin_step("crm_gdpr: checking the extension");
	ready = OidIsValid(get_extension_oid("crm_gdpr", true));
	if (my_dbname == NULL)
		my_dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	crm_gdpr_end_step();
	if (my_slot && my_slot->dboid == MyDatabaseId)
		pg_atomic_write_u32(&my_slot->installed, ready ? 1 : 0);
	return ready;
}

/*
 * A worker has nothing to do where the extension is not installed: it
 * exits (the launcher starts it again after CREATE EXTENSION).  Exit code 0:
 * a dynamic worker that is never restarted.  The launcher's first start in
 * a database is also how it learns whether the extension is there: that
 * case is not worth a line in the server log.
 */
void
crm_gdpr_worker_stop_unless_installed(const char *who)
{
	static bool was_ready = false;

	if (crm_gdpr_extension_ready())
	{
		was_ready = true;
		return;
	}
	ereport(was_ready ? LOG : DEBUG1,
			(errmsg("%s: extension crm_gdpr is not installed in database \"%s\"; stopping",
					who, my_dbname)));
	proc_exit(0);
}
