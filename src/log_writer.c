/*
 * log_writer.c — the log writer: a second background worker.
 *
 * Separate from the purge worker because a purge can run for a long time and
 * the read queue must not wait for it.  Started by the launcher (launcher.c)
 * in each database where crm_gdpr is installed; it stops when the extension
 * is dropped (it looks every round).  Every
 * crm_gdpr.log_flush_interval (or sooner, when the queue is a quarter full) it
 * writes the journal's writes and the queued reads (at once again while the
 * queue stays a quarter full); every crm_gdpr.log_seal_interval it seals the
 * settled rows into the next block; every hour it creates the coming month
 * partitions and starts the log maintenance worker for whole months to
 * index or drop (log_months.c: both take too long for the read queue to
 * wait).  Each step is a transaction of
 * its own.  Only this process seals, so the chain has one writer (the SQL
 * locks gdpr.access_log_seals as well, for manual calls).
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/vacuum.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"

#define MAINTAIN_INTERVAL_MS (3600 * 1000L)


/* Report the error in hand, roll its transaction back, and carry on. */
static void
go_on_after_error(MemoryContext caller)
{
	MemoryContextSwitchTo(caller);
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * One round in its own transaction.  A round that fails (a full disk: the
 * log cannot be extended) is reported and rolled back, and the writer goes
 * on: the reads it took from the queue are then counted as lost in this
 * process (log_losses.c) and recorded in gdpr.access_log_losses by the next
 * round that succeeds.  Exiting instead would forget that count: the reads
 * of a failed round were in no table and no counter (test/shell/
 * log_full_disk.sh).  FATAL and the postmaster's death still end the worker.
 */
static int64
step(const char *activity, const char *sql)
{
	int64		result = 0;
	MemoryContext caller = CurrentMemoryContext;

	PG_TRY();
	{
		crm_gdpr_begin_step(activity);
		result = crm_gdpr_run_int8(sql, 0, NULL, NULL);
		crm_gdpr_end_step();
	}
	PG_CATCH();
	{
		go_on_after_error(caller);
		result = 0;
	}
	PG_END_TRY();
	return result;
}

static bool
due(TimestampTz *last, long interval_ms)
{
	TimestampTz now = GetCurrentTimestamp();

	if (*last != 0 && !TimestampDifferenceExceeds(*last, now, interval_ms))
		return false;
	*last = now;
	return true;
}

/*
 * Every write leaves a journal row that the writer deletes a moment later.
 * Autovacuum comes once a minute at best: in between, inserts find no free
 * space and extend the table, and every move scans all of it (at 16,000
 * writes a second, 130 MB a minute, most of the writer's time).  Vacuumed
 * after each move, the journals stay a few pages long and inserts reuse
 * them.  Only those emptied by DELETE (log_journals.c): one truncated has
 * nothing left to vacuum, and one that grew because a snapshot kept VACUUM
 * from removing its dead rows is truncated a later round.  Skipped when a
 * journal is locked (an extension upgrade): the writer does not wait.
 * VACUUM must be a top-level command: it runs here outside any step, as
 * autovacuum would.
 */
static void
vacuum_journal(void)
{
	VacuumStmt *stmt = makeNode(VacuumStmt);
	MemoryContext caller = CurrentMemoryContext;
	const char *name;

	stmt->options = list_make2(makeDefElem("truncate", (Node *) makeString("false"), -1),
							   makeDefElem("skip_locked", (Node *) makeString("true"), -1));
	while ((name = crm_gdpr_journal_to_vacuum()) != NULL)
		stmt->rels = lappend(stmt->rels, makeVacuumRelation(makeRangeVar("gdpr", pstrdup(name), -1), InvalidOid, NIL));
	if (stmt->rels == NIL)
		return;
	stmt->is_vacuumcmd = true;
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "crm_gdpr: vacuuming the journal");
		ExecVacuum(make_parsestate(NULL), stmt, true);
		CommitTransactionCommand();
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		go_on_after_error(caller);	/* a full disk: autovacuum will do it */
	}
	PG_END_TRY();
}

/*
 * Each round allocates tens of megabytes (the journal's folds, the rows,
 * the executor's memory) and frees them at its end; glibc gives large blocks
 * back to the kernel at once, and the next round faults every page in again
 * and has it zeroed: an eighth of the writer's time under writes.  The
 * writer keeps what it freed instead (its peak stays resident).
 */
static void
keep_freed_memory(void)
{
#ifdef __GLIBC__
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
#endif
}

/*
 * Nothing is moved, MACed or sealed while the master key cannot be read
 * (log_key_wait.c): the journal and the queue wait, and the writer catches
 * up when the key is back.  Looked at once per crm_gdpr.log_flush_interval
 * while the key is there (a burst of reads wakes the writer many times a
 * second, and each look is a transaction), every round while it is not; a
 * key that goes in between fails that round, which counts its reads.
 */
static bool
key_ready(bool force)
{
	static TimestampTz last_check = 0;
	static bool ready = false;

	if (!force && ready && !due(&last_check, crm_gdpr_log_flush_interval))
		return true;
	crm_gdpr_begin_step("crm_gdpr: looking at the master key");
	ready = crm_gdpr_log_key_ready();
	crm_gdpr_end_step();
	return ready;
}

/*
 * A clean shutdown: pg_ctl stop -m fast sends SIGTERM to every backend and
 * worker at once, and the reads still queued died with the shared memory
 * (2,733 at 4,000 reads/s, uncounted: issue 24.3).  The writer's SIGTERM
 * only asks it to stop (SignalHandlerForShutdownRequest, not die()); it then
 * lets the other backends of its database finish the read in hand (a record
 * is packed without an interrupt check) and exit, 5 s at most, writes the
 * queue until nothing is left, and records what it could not write in
 * gdpr.access_log_losses before it exits.
 */
static void
drain_and_exit(bool active)
{
	for (int i = 0; i < 50 && CountDBBackends(MyDatabaseId) > 1; i++)
		pg_usleep(100 * 1000L);
	if (active)
	{
		ereport(LOG, (errmsg("crm_gdpr log writer: writing the queued reads before shutting down")));
		for (int i = 0; i < 100 && step("crm_gdpr: writing queued reads at shutdown", "SELECT gdpr._log_flush(true)") > 0; i++)
			;
		step("crm_gdpr: recording losses at shutdown", "SELECT gdpr._log_note_losses(true)");
	}
	proc_exit(0);
}


void
crm_gdpr_log_writer_main(Datum arg)
{
	TimestampTz last_seal = 0;
	TimestampTz last_maintain = 0;
	TimestampTz last_journal = 0;
	int64		written = 0;

	keep_freed_memory();
	crm_gdpr_in_log_writer = true;	/* truncates the journals (log_journals.c) */
	crm_gdpr_worker_connect("crm_gdpr log writer", arg, true);
	crm_gdpr_worker_stop_unless_installed("crm_gdpr log writer");
	ereport(LOG, (errmsg("crm_gdpr log writer started in database \"%s\"", crm_gdpr_worker_database())));
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);	/* drain first: drain_and_exit() */
	crm_gdpr_cache_log_refs();
	crm_gdpr_log_queue_set_writer();

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			drain_and_exit(crm_gdpr_enable_log_writer && !RecoveryInProgress() && key_ready(true));
		written = 0;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		crm_gdpr_worker_stop_unless_installed("crm_gdpr log writer");
		if (crm_gdpr_enable_log_writer && !RecoveryInProgress() && key_ready(false))
		{
			if (due(&last_maintain, MAINTAIN_INTERVAL_MS))
			{
				step("crm_gdpr: access log partitions and retention", "SELECT gdpr._log_maintain()");
				/* Whole months are indexed and dropped by a worker of their own (log_months.c). */
				crm_gdpr_log_start_months_worker(step("crm_gdpr: looking for months to index or drop",
													  "SELECT (SELECT count(*) FROM gdpr._log_months_to_index()) + "
													  "(SELECT count(*) FROM gdpr._log_months_to_drop())") > 0);
			}
			if (due(&last_journal, crm_gdpr_log_flush_interval))
			{
				written = step("crm_gdpr: writing the journal and queued reads", "SELECT gdpr._log_flush(true)");
				if (written > 0)
					vacuum_journal();
			}
			else
				written = step("crm_gdpr: writing queued reads", "SELECT gdpr._log_flush(false)");
			if (due(&last_seal, crm_gdpr_log_seal_interval * 1000L))
				step("crm_gdpr: sealing the access log",
					 "SELECT CASE WHEN gdpr._log_keyed_hash('\\x') IS NULL THEN 0 ELSE gdpr.seal_access_log() END");
		}
		/*
		 * Under a burst of reads, write again at once rather than drop; but
		 * not when nothing was written (the waiting reads are another
		 * database's): a loop that never waits would not see the postmaster
		 * die.
		 */
		if (crm_gdpr_enable_log_writer && written > 0 && crm_gdpr_log_queue_busy() && PostmasterIsAlive())
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 crm_gdpr_log_flush_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
