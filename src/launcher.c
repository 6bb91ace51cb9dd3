/*
 * launcher.c — the one worker the postmaster starts: it starts, for every
 * database where crm_gdpr is installed, its purge worker and its log writer.
 *
 * Like TimescaleDB's launcher (and unlike pg_cron, which serves one
 * database), it is connected to no database: it reads pg_database (a shared
 * catalog) every crm_gdpr.launcher_naptime, or at once when woken (CREATE
 * EXTENSION crm_gdpr committing, a worker starting or stopping: they are
 * started with bgw_notify_pid).  Whether the extension is installed in a
 * database can only be seen from inside it: a database not known yet gets
 * its log writer, which stops at once when the extension is not there
 * (crm_gdpr_worker_stop_unless_installed); it is asked again every
 * launcher_naptime.  Two workers per database rather than one: a purge can
 * run for a long time and the read queue must not wait for it.
 *
 * The workers are dynamic, BGW_NEVER_RESTART: the launcher starts them again
 * (RESTART_MS after they stopped), so that a database dropped, filtered out
 * by crm_gdpr.database, or without the extension any more, is left alone.
 * Budget: crm_gdpr.max_databases slots (db_workers.c), and
 * max_worker_processes must hold 1 + 2 per database; over either, a LOG line
 * says which database is not served and why.
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"

#define RESTART_MS (10 * 1000L)
#define TICK_MS (5 * 1000L)

/* What the launcher keeps of each slot: its workers' handles. */
typedef struct Served
{
	BackgroundWorkerHandle *writer;
	BackgroundWorkerHandle *purge;
	TimestampTz writer_started;
	TimestampTz purge_started;
	bool		no_worker_logged;
} Served;

/* A database seen in pg_database, and when the launcher last asked it. */
typedef struct Known
{
	Oid			dboid;
	char		name[NAMEDATALEN];
	TimestampTz probed;
	bool		seen;			/* in this round's scan */
	bool		wanted;			/* by crm_gdpr.database */
	bool		over_logged;	/* "over crm_gdpr.max_databases" said once */
} Known;

static Served *served;
static Known *known;
static int	nknown = 0;
static int	known_room = 0;

/* Whether crm_gdpr.database ('' or a comma-separated list of names) lets the launcher serve name. */
static bool
database_wanted(const char *name)
{
	const char *p = crm_gdpr_database ? crm_gdpr_database : "";
	size_t		len = strlen(name);

	if (*p == '\0')
		return true;
	while (*p)
	{
		const char *end;

		while (*p == ' ' || *p == ',')
			p++;
		end = p;
		while (*end && *end != ',')
			end++;
		while (end > p && end[-1] == ' ')
			end--;
		if ((size_t) (end - p) == len && strncmp(p, name, len) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static Known *
known_database(Oid dboid, const char *name)
{
	for (int i = 0; i < nknown; i++)
		if (known[i].dboid == dboid)
			return &known[i];
	if (nknown == known_room)
	{
		known_room = Max(16, known_room * 2);
		known = known ? repalloc(known, sizeof(Known) * known_room) :
			MemoryContextAlloc(TopMemoryContext, sizeof(Known) * known_room);
	}
	memset(&known[nknown], 0, sizeof(Known));
	known[nknown].dboid = dboid;
	strlcpy(known[nknown].name, name, NAMEDATALEN);
	return &known[nknown++];
}

/* Mark seen the databases the launcher may serve (connectable, not templates), and which are wanted. */
static void
scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	for (int i = 0; i < nknown; i++)
		known[i].seen = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			Known	   *k = known_database(db->oid, NameStr(db->datname));

			k->seen = true;
			k->wanted = database_wanted(NameStr(db->datname));
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Whether a worker runs (or is starting); forgets the handle of one that stopped. */
static bool
running(BackgroundWorkerHandle **handle)
{
	pid_t		pid;

	if (*handle == NULL)
		return false;
	switch (GetBackgroundWorkerPid(*handle, &pid))
	{
		case BGWH_STARTED:
		case BGWH_NOT_YET_STARTED:
			return true;
		case BGWH_POSTMASTER_DIED:
			proc_exit(1);
			break;
		case BGWH_STOPPED:
			break;
	}
	pfree(*handle);
	*handle = NULL;
	return false;
}

/*
 * Whether a database's worker runs: by its handle, or by the pid in its slot
 * for one started by a launcher that has since failed and been restarted.
 */
static bool
alive(BackgroundWorkerHandle **handle, int pid)
{
	return *handle ? running(handle) : pid != 0;
}

static void
stop(BackgroundWorkerHandle *handle, int pid)
{
	if (handle)
		TerminateBackgroundWorker(handle);
	else if (pid != 0)
		kill(pid, SIGTERM);
}

/* Start a database's log writer or purge worker; false when no worker process is left. */
static bool
start(Served *s, Known *db, bool writer)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	const char *kind = writer ? "crm_gdpr log writer" : "crm_gdpr purge worker";

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_gdpr");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, writer ? "crm_gdpr_log_writer_main" : "crm_gdpr_purge_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %s", kind, db->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", kind);
	worker.bgw_main_arg = ObjectIdGetDatum(db->dboid);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		if (!s->no_worker_logged)
			ereport(LOG,
					(errmsg("crm_gdpr launcher: no background worker left to start the %s of database \"%s\"",
							kind, db->name),
					 errdetail("max_worker_processes is %d: the launcher takes 1, each database with crm_gdpr 2, parallel queries and other extensions the rest.",
							   max_worker_processes),
					 errhint("Raise max_worker_processes, or lower crm_gdpr.max_databases or list the databases to serve in crm_gdpr.database.")));
		s->no_worker_logged = true;
		return false;
	}
	s->no_worker_logged = false;
	if (writer)
	{
		s->writer = handle;
		s->writer_started = GetCurrentTimestamp();
	}
	else
	{
		s->purge = handle;
		s->purge_started = GetCurrentTimestamp();
	}
	return true;
}

static bool
restart_due(TimestampTz started)
{
	return started == 0 || TimestampDifferenceExceeds(started, GetCurrentTimestamp(), RESTART_MS);
}

/*
 * A slot whose database is gone (or not wanted by crm_gdpr.database: gone
 * false): its workers stopped, then the slot freed, with the records of a
 * database that is gone.  A database not wanted keeps its slot while
 * crm_gdpr is installed there: its reads keep their share of the queue, for
 * gdpr.flush_access_log() by hand.  (A dropped database's workers were
 * stopped by DROP DATABASE itself, db_workers.c.)
 */
static void
retire(DbSlot *slot, Served *s, bool gone)
{
	bool		writer = alive(&s->writer, slot->writer_pid);
	bool		purge = alive(&s->purge, slot->purge_pid);

	if (writer)
		stop(s->writer, slot->writer_pid);
	if (purge)
		stop(s->purge, slot->purge_pid);
	if (!writer && !purge && !gone && pg_atomic_read_u32(&slot->installed))
		memset(s, 0, sizeof(Served));
	else if (!writer && !purge)
	{
		if (gone)
			crm_gdpr_log_queue_discard(slot->dboid);
		crm_gdpr_db_slot_free(slot);
		memset(s, 0, sizeof(Served));
	}
}

/* A database with a slot: its two workers where crm_gdpr is installed; the slot freed where not. */
static void
serve(DbSlot *slot, Served *s, Known *db)
{
	bool		writer = alive(&s->writer, slot->writer_pid);
	bool		purge = alive(&s->purge, slot->purge_pid);

	if (crm_gdpr_db_slot_paused(slot))
	{
		/* Stopped on purpose: started again as soon as the pause ends. */
		s->writer_started = s->purge_started = 0;
		return;
	}
	if (pg_atomic_read_u32(&slot->installed))
	{
		if (!writer && restart_due(s->writer_started))
			writer = start(s, db, true);
		if (!purge && writer && restart_due(s->purge_started))
			(void) start(s, db, false);
		return;
	}
	/* Not installed (its log writer found it so, or the extension was dropped). */
	if (purge)
		stop(s->purge, slot->purge_pid);
	else if (!writer)
	{
		db->probed = GetCurrentTimestamp();
		crm_gdpr_db_slot_free(slot);
		memset(s, 0, sizeof(Served));
	}
}

/* A database without a slot: asked whether crm_gdpr is there, every launcher_naptime. */
static void
probe(Known *db)
{
	DbSlot	   *slot;

	if (db->probed != 0 && !TimestampDifferenceExceeds(db->probed, GetCurrentTimestamp(), crm_gdpr_launcher_naptime * 1000L))
		return;
	if ((slot = crm_gdpr_db_slot(db->dboid, true)) == NULL)
	{
		/* Said once; tried again at every round (a slot may be freed any time). */
		if (!db->over_logged)
			ereport(LOG,
					(errmsg("crm_gdpr launcher: database \"%s\" is not served: all crm_gdpr.max_databases (%d) slots are taken",
							db->name, crm_gdpr_db_slot_count()),
					 errdetail("Whether crm_gdpr is installed there cannot be checked either."),
					 errhint("Raise crm_gdpr.max_databases (and max_worker_processes: 1 + 2 per database), or list the databases to serve in crm_gdpr.database.")));
		db->over_logged = true;
		return;
	}
	db->over_logged = false;
	db->probed = GetCurrentTimestamp();
	(void) start(&served[slot - crm_gdpr_db_slot_at(0)], db, true);
}

static void
launcher_round(void)
{
	int			nslots = crm_gdpr_db_slot_count();

	scan_databases();
	for (int i = 0; i < nslots; i++)
	{
		DbSlot	   *slot = crm_gdpr_db_slot_at(i);
		Known	   *db = NULL;

		if (!OidIsValid(slot->dboid))
			continue;
		for (int k = 0; k < nknown && db == NULL; k++)
			if (known[k].dboid == slot->dboid && known[k].seen)
				db = &known[k];
		if (db == NULL || !db->wanted)
			retire(slot, &served[i], db == NULL);
		else
			serve(slot, &served[i], db);
	}
	for (int k = 0; k < nknown; k++)
		if (known[k].seen && known[k].wanted && crm_gdpr_db_slot(known[k].dboid, false) == NULL)
			probe(&known[k]);
	/* Forget the databases dropped. */
	for (int k = 0; k < nknown;)
		if (known[k].seen)
			k++;
		else
			known[k] = known[--nknown];
}

void
crm_gdpr_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* No database: pg_database is a shared catalog. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("crm_gdpr launcher");
	served = MemoryContextAllocZero(TopMemoryContext, sizeof(Served) * Max(crm_gdpr_db_slot_count(), 1));
	crm_gdpr_launcher_set_latch(MyLatch);
	ereport(LOG, (errmsg("crm_gdpr launcher started: up to %d databases, 2 workers each", crm_gdpr_db_slot_count())));

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		launcher_round();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(TICK_MS, crm_gdpr_launcher_naptime * 1000L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
